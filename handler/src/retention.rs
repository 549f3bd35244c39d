//! Retention: finished tasks older than `--retention-secs` are removed with their logs and
//! metrics (0 keeps them forever). Local mode runs [`run`]; Functions mode purges once per
//! `ReconcileTimer` invocation ([`purge`]). Each removal is announced on the SSE `cleared` event,
//! so open dashboards drop the tiles.
//!
//! The store removes at most [`BATCH`] tasks per call (one short transaction on SQLite's single
//! writer), so a purge of 100,000 old tasks never holds back the writes of running work for
//! long: the work of submitters and workers interleaves with the batches.

use crate::app::App;
use crate::clock::now_ms;
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Duration;

/// Most tasks removed per store call.
pub const BATCH: usize = 500;

/// Removes every task that finished more than the retention ago (none when retention is off),
/// in batches; returns how many were removed.
pub async fn purge(app: &App) -> Result<usize, StoreError> {
    let Some(age) = app.settings().retention else {
        return Ok(0);
    };
    let before = now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    let mut total = 0;
    loop {
        let removed = app.tasks().remove_finished_before(before, BATCH).await?;
        total += removed.len();
        if removed.len() < BATCH {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// How often local mode purges for a retention of `age`: a tenth of it, between 1 s and 60 s,
/// so a task is removed at most ~10% (or a minute) after it became old enough.
pub fn period(age: Duration) -> Duration {
    (age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Local mode's retention loop, until shutdown (returns at once when retention is off).
pub async fn run(app: Arc<App>) {
    let Some(age) = app.settings().retention else {
        return;
    };
    let mut tick = tokio::time::interval(period(age));
    loop {
        tokio::select! {
            _ = app.shutdown().cancelled() => return,
            _ = tick.tick() => {}
        }
        match purge(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "retention: removed finished tasks"),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; the next one retries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_tenth_of_the_age_within_bounds() {
        assert_eq!(period(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(period(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(
            period(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(60)
        );
    }
}
