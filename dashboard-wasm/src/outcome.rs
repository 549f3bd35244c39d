//! What a finished task handed back, in the details panel: its result (`RESULT_PATH`) and its
//! webhook deliveries (status per URL, attempts, last error). Rendered as text only.

use crate::format::{clock, duration_ms};
use leptos::prelude::*;
use model::webhook::{Deliveries, Delivery, DeliveryStatus};
use model::TaskResult;

/// The result's text, with a note when it was cut; "(none)" when the work wrote none.
#[component]
pub fn ResultView(
    /// The task's result, once loaded.
    result: Signal<Option<TaskResult>>,
) -> impl IntoView {
    move || match result.get() {
        None => view! { <p class="result-none">"(no result)"</p> }.into_any(),
        Some(r) => {
            let note = r.truncated.then(|| {
                format!(
                    "first {} of {} bytes shown (cut at the result limit)",
                    r.text.len(),
                    r.bytes
                )
            });
            view! {
                <pre class="result" tabindex="0">{r.text}</pre>
                {note.map(|n| view! { <p class="result-cut">{n}</p> })}
            }
            .into_any()
        }
    }
}

/// One line per delivery: event type, URL, status, attempts, and the last error.
#[component]
pub fn WebhooksView(
    /// The task's deliveries, once loaded (`None` before the first load).
    deliveries: Signal<Option<Deliveries>>,
) -> impl IntoView {
    move || {
        let list = deliveries.get().map(|d| d.deliveries).unwrap_or_default();
        if list.is_empty() {
            return view! { <p class="webhooks-none">"(no webhook deliveries)"</p> }.into_any();
        }
        view! { <ul class="webhooks">{list.into_iter().map(row).collect::<Vec<_>>()}</ul> }
            .into_any()
    }
}

fn row(d: Delivery) -> impl IntoView {
    let kind = d
        .event_type
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let status = d.status.as_str();
    let tries = d.attempts.len();
    let last = d.attempts.last().map(|a| {
        let answer = a
            .status
            .map_or_else(|| "no answer".into(), |s| format!("HTTP {s}"));
        format!(
            "last: {} {answer} in {}",
            clock(a.at_ms),
            duration_ms(a.duration_ms as i64)
        )
    });
    let error = d
        .last_error()
        .map(str::to_string)
        .filter(|_| d.status != DeliveryStatus::Delivered);
    view! {
        <li class=format!("webhook wh-{status}")>
            <b>{kind}</b> " → " <code>{d.url}</code> " "
            <span class="wh-status">{status}</span>
            " (" {tries} {if tries == 1 { " attempt" } else { " attempts" }} ")"
            {last.map(|l| view! { <div class="wh-last">{l}</div> })}
            {error.map(|e| view! { <div class="wh-error">{e}</div> })}
        </li>
    }
}
