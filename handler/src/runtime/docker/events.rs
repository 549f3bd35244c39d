//! The exit events of our containers: Docker's `die` events, resubscribed with backoff (and
//! replayed from the last event seen) when the daemon goes away and comes back.

use super::{EVENTS_FIRST_BACKOFF, EVENTS_MAX_BACKOFF, MANAGED_LABEL};
use bollard::errors::Error as DockerError;
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures::stream::{BoxStream, StreamExt};
use std::collections::HashMap;
use std::time::Duration;

/// Where the exit-event stream is: connected or waiting to reconnect.
pub(super) struct EventsState {
    /// Client used to (re)subscribe.
    docker: Docker,
    /// The open subscription, if any.
    events: Option<BoxStream<'static, Result<bollard::models::EventMessage, DockerError>>>,
    /// Time (s since the epoch) of the last event seen, so a reconnect replays the gap.
    since: Option<i64>,
    /// Pause before the next reconnect.
    backoff: Duration,
}

/// Names of our containers as they die, from Docker's event stream; resubscribes with backoff
/// (replaying from the last event seen) when the daemon goes away and comes back.
pub(super) fn exit_events(docker: Docker) -> BoxStream<'static, String> {
    let state = EventsState {
        docker,
        events: None,
        // The subscription starts at the first poll; replaying from now covers the gap between
        // this call and then (at worst an event of the same second twice: exits are idempotent).
        since: Some(crate::clock::now_ms() / 1000),
        backoff: EVENTS_FIRST_BACKOFF,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            let events = st
                .events
                .get_or_insert_with(|| subscribe(&st.docker, st.since));
            match events.next().await {
                Some(Ok(ev)) => {
                    st.backoff = EVENTS_FIRST_BACKOFF;
                    st.since = ev.time.or(st.since);
                    let name = ev.actor.and_then(|a| a.attributes?.remove("name"));
                    if let Some(name) = name {
                        return Some((name, st));
                    }
                }
                end => {
                    if let Some(Err(e)) = end {
                        tracing::debug!(error = %e, "docker event stream failed; reconnecting");
                    }
                    st.events = None;
                    tokio::time::sleep(st.backoff).await;
                    st.backoff = (st.backoff * 2).min(EVENTS_MAX_BACKOFF);
                }
            }
        }
    })
    .boxed()
}

/// One subscription to `die` events of managed containers, from `since` when reconnecting.
pub(super) fn subscribe(
    docker: &Docker,
    since: Option<i64>,
) -> BoxStream<'static, Result<bollard::models::EventMessage, DockerError>> {
    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("event", vec!["die".to_string()]),
        ("label", vec![format!("{MANAGED_LABEL}=true")]),
    ]);
    let mut options = EventsOptionsBuilder::new().filters(&filters);
    if let Some(since) = since {
        options = options.since(&since.to_string());
    }
    docker.events(Some(options.build())).boxed()
}
