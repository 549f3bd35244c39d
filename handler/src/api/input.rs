//! Reading what clients send: a JSON body within its limits, work items checked before
//! anything is stored, task ids, and state filters.

use super::{ApiError, Result};
use crate::app::App;
use crate::clock::now_ms;
use crate::spawn::check_work;
use actix_web::http::StatusCode;
use actix_web::web;
use futures::StreamExt;
use model::{limits, Task, TaskId, TaskState, WorkItem};

/// Reads a JSON body: at most `limit` bytes, UTF-8, nesting at most `MAX_JSON_DEPTH`.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    mut payload: web::Payload,
    limit: usize,
) -> Result<T> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad("body_unreadable", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over the limit of {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad("invalid_utf8", format!("the body is not valid UTF-8: {e}")))?;
    if json_depth(text) > limits::MAX_JSON_DEPTH {
        return Err(ApiError::bad(
            "too_deep",
            format!(
                "JSON nesting is deeper than {} levels",
                limits::MAX_JSON_DEPTH
            ),
        ));
    }
    serde_json::from_str(text)
        .map_err(|e| ApiError::bad("invalid_json", format!("invalid JSON body: {e}")))
}

/// The deepest nesting of arrays and objects in `text` (strings are skipped).
pub(super) fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        match (in_str, esc, b) {
            (true, true, _) => esc = false,
            (true, false, b'\\') => esc = true,
            (true, false, b'"') => in_str = false,
            (true, ..) => {}
            (false, _, b'"') => in_str = true,
            (false, _, b'[' | b'{') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Checks every item and makes its tasks (not stored yet).
pub fn new_tasks(app: &App, items: Vec<WorkItem>) -> Result<Vec<Task>> {
    if items.is_empty() {
        return Err(ApiError::bad("empty_batch", "the batch has no items"));
    }
    let total: u64 = items.iter().map(|i| u64::from(i.count.unwrap_or(1))).sum();
    if total > limits::MAX_BATCH as u64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "the batch makes {total} tasks; the limit is {} per request (MAX_BATCH)",
                limits::MAX_BATCH
            ),
        ));
    }
    let s = app.settings();
    let now = now_ms();
    let mut tasks = Vec::with_capacity(total as usize);
    for (n, item) in items.into_iter().enumerate() {
        check_item(&item)
            .map_err(|(status, code, m)| ApiError::new(status, code, format!("item {n}: {m}")))?;
        let shape = model::shape::of_item(&item, &s.shape.bounds, s.resources, now)
            .map_err(|e| ApiError::bad(e.code, format!("item {n}: {}", e.message)))?;
        for _ in 0..item.count.unwrap_or(1) {
            let attempts = item.max_attempts.unwrap_or(s.max_attempts);
            let timeout = item.timeout_secs.unwrap_or(s.timeout_secs);
            let mut task = Task::new(
                new_id(now),
                item.work.clone(),
                shape.resources,
                attempts,
                timeout,
                now,
            );
            task.priority = shape.priority;
            task.not_before_ms = shape.not_before_ms;
            task.key = shape.key.clone();
            task.image = shape.image.clone();
            task.labels = shape.labels.clone();
            tasks.push(task);
        }
    }
    Ok(tasks)
}

fn check_item(item: &WorkItem) -> std::result::Result<(), (StatusCode, &'static str, String)> {
    if item.work.len() > limits::MAX_WORK_BYTES {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "work_too_large",
            check_work(&item.work).unwrap_err(),
        ));
    }
    check_work(&item.work).map_err(|m| (StatusCode::BAD_REQUEST, "invalid_work", m))?;
    let bad = |code, m: String| Err((StatusCode::BAD_REQUEST, code, m));
    if item.count == Some(0) {
        return bad("invalid_count", "count must be at least 1".into());
    }
    if item
        .max_attempts
        .is_some_and(|a| a == 0 || a > limits::MAX_ATTEMPTS)
    {
        return bad(
            "invalid_attempts",
            format!(
                "max_attempts must be 1..={} (MAX_ATTEMPTS)",
                limits::MAX_ATTEMPTS
            ),
        );
    }
    if item
        .timeout_secs
        .is_some_and(|t| t == 0 || t > limits::MAX_TIMEOUT_SECS)
    {
        return bad(
            "invalid_timeout",
            format!(
                "timeout_secs must be 1..={} (MAX_TIMEOUT_SECS)",
                limits::MAX_TIMEOUT_SECS
            ),
        );
    }
    Ok(())
}

/// A new task id: milliseconds (hex, so ids sort by time) and 32 random bits.
pub fn new_id(now_ms: i64) -> TaskId {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).expect("the OS random source is available");
    TaskId::parse(&format!("{:011x}{}", now_ms, hex::encode(r))).expect("hex makes a valid id")
}

/// Parses `?state=`: names, or `active`, `finished`, `failed`.
pub fn parse_states(raw: &str) -> Result<Vec<TaskState>> {
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "active" => out.extend(TaskState::ALL.into_iter().filter(|s| !s.is_terminal())),
            "finished" => out.extend(TaskState::ALL.into_iter().filter(|s| s.is_terminal())),
            "failed" => out.extend(TaskState::ALL.into_iter().filter(|s| s.is_failure())),
            name => out.push(name.parse().map_err(|e: model::state::UnknownState| {
                ApiError::bad("invalid_state", e.to_string())
            })?),
        }
    }
    Ok(out)
}
