//! Warm pool mode (`POOL_URL` + `POOL_TOKEN`): the container was started before its task
//! existed, so the worker asks the handler for it, `GET <POOL_URL>` with its pool token, until
//! the answer is the task (200 and a `model::pool::Assignment`). The handler holds each request
//! open while there is nothing to do and answers 204; the worker then asks again at once.
//!
//! A refusal (401, 404: the handler does not know this container or its token) ends the worker
//! with [`REFUSED`], and the handler replaces the container. Connection errors and 5xx (the
//! handler restarting) are retried with a capped backoff for as long as it takes: a warm
//! container has no task to lose, and the handler removes it when it wants it gone.

use crate::args::PoolEnv;
use model::pool::Assignment;
use std::time::Duration;

/// Exit code when the handler refuses this container's token or slot.
pub const REFUSED: i32 = 3;
/// Longest wait for one answer: longer than the handler holds a request (20 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// First pause after a failed request; doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between two failed requests.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Waits for this warm container's task. `Err` carries the refusal, printed by the caller.
pub fn wait(pool: &PoolEnv) -> Result<Assignment, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .proxy(None)
        .build()
        .into();
    let mut delay = FIRST_DELAY;
    loop {
        let failure = match ask(&agent, pool) {
            Ok(Some(a)) => return Ok(a),
            Ok(None) => {
                delay = FIRST_DELAY;
                continue;
            }
            Err(Ask::Refused(status)) => {
                return Err(format!(
                    "the handler refused this warm container: HTTP {status}"
                ))
            }
            Err(Ask::Failed(why)) => why.replace(&pool.token, "<redacted>"),
        };
        eprintln!("worker: waiting for a task failed ({failure}); retrying in {delay:?}");
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// Why one request gave no task.
enum Ask {
    /// 4xx: this container is not (or no longer) in the pool, or its token is wrong.
    Refused(u16),
    /// Transport error, 5xx, or an unreadable body: worth another try.
    Failed(String),
}

/// One request: the task, or `None` when the handler had nothing before its hold ended.
fn ask(agent: &ureq::Agent, pool: &PoolEnv) -> Result<Option<Assignment>, Ask> {
    let mut resp = agent
        .get(&pool.url)
        .header("Authorization", format!("Bearer {}", pool.token))
        .call()
        .map_err(|e| Ask::Failed(e.to_string()))?;
    match resp.status().as_u16() {
        200 => {
            let body = resp
                .body_mut()
                .read_to_string()
                .map_err(|e| Ask::Failed(e.to_string()))?;
            serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| Ask::Failed(format!("unreadable assignment: {e}")))
        }
        204 => Ok(None),
        s @ 400..=499 => Err(Ask::Refused(s)),
        s => Err(Ask::Failed(format!("HTTP {s}"))),
    }
}
