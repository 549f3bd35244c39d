//! `POST /api/tasks/bulk`: one action (cancel, retry, redrive) on many tasks, named by id or by
//! a search (`all_matching`). Each task goes through the same path as its single-task route
//! ([`super::cancel_task`], [`super::retry_task`]), so the lifecycle decides as it does there;
//! a task the action does not apply to is skipped with the reason, never an error of the call.
//!
//! Bounded: at most `MAX_BULK_IDS` ids, or `MAX_BULK_MATCHING` matched tasks per call (the
//! answer's `more` says to call again: the tasks acted on no longer match, since the search is
//! narrowed to the states the action applies to). At most [`IN_FLIGHT`] tasks at once.

use super::{parse_search, parse_states, read_json, ApiError, Data, Result};
use crate::app::App;
use crate::store::ListFilter;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use model::limits::{MAX_BODY_BYTES, MAX_BULK_IDS, MAX_BULK_MATCHING, MAX_PAGE};
use model::{
    BulkAction, BulkOutcome, BulkRequest, BulkResponse, BulkSkip, Matching, TaskId, TaskState,
};
use std::collections::{BTreeMap, HashSet};

/// Tasks acted on at once (the SQLite writer commits them in groups).
const IN_FLIGHT: usize = 16;

/// `POST /api/tasks/bulk`.
pub async fn bulk(app: Data, payload: web::Payload) -> Result<HttpResponse> {
    let req: BulkRequest = read_json(payload, MAX_BODY_BYTES).await?;
    let (ids, more) = match (req.ids, req.all_matching) {
        (Some(ids), None) => (named(ids)?, false),
        (None, Some(m)) => matching(&app, req.action, &m).await?,
        _ => {
            return Err(ApiError::bad(
                "invalid_body",
                "give either ids or all_matching (one of them)",
            ))
        }
    };
    let action = req.action;
    let results: Vec<(TaskId, BulkOutcome, String)> = futures::stream::iter(ids)
        .map(|id| {
            let app = app.clone();
            async move {
                let (outcome, why) = act(&app, action, &id).await;
                (id, outcome, why)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut outcomes = BTreeMap::new();
    let mut skipped = Vec::new();
    for (id, outcome, reason) in results.iter().cloned() {
        *outcomes.entry(outcome).or_insert(0) += 1;
        if outcome != BulkOutcome::Done && skipped.len() < MAX_BULK_IDS {
            skipped.push(BulkSkip {
                id,
                outcome,
                reason,
            });
        }
    }
    Ok(HttpResponse::Ok().json(BulkResponse {
        action,
        matched: results.len() as u64,
        outcomes,
        skipped,
        more,
    }))
}

/// The ids given, each once, within the limit.
fn named(ids: Vec<TaskId>) -> Result<Vec<TaskId>> {
    if ids.is_empty() || ids.len() > MAX_BULK_IDS {
        return Err(ApiError::bad(
            "invalid_ids",
            format!(
                "ids must name 1..={MAX_BULK_IDS} tasks (MAX_BULK_IDS); got {}",
                ids.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    Ok(ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

/// The ids of the tasks `m` matches that `action` applies to (newest first, at most
/// `MAX_BULK_MATCHING`), paged through the store; and whether more matched.
async fn matching(app: &App, action: BulkAction, m: &Matching) -> Result<(Vec<TaskId>, bool)> {
    let search = parse_search(m.q.as_deref(), m.from.as_deref(), m.to.as_deref())?;
    let asked = m.state.as_deref().map(parse_states).transpose()?;
    let states: Vec<TaskState> = TaskState::matching(|s| action.applies_to(s))
        .filter(|s| asked.as_ref().is_none_or(|a| a.contains(s)))
        .collect();
    if states.is_empty() {
        return Ok((Vec::new(), false)); // the asked states and the action's have none in common
    }
    let mut filter = ListFilter {
        states,
        limit: MAX_PAGE,
        cursor: None,
        offset: 0,
        active_since_ms: None,
        search,
    };
    let mut ids = Vec::new();
    loop {
        let page = app.tasks().list(&filter).await?;
        ids.extend(page.tasks.into_iter().map(|t| t.id));
        if ids.len() > MAX_BULK_MATCHING {
            ids.truncate(MAX_BULK_MATCHING);
            return Ok((ids, true));
        }
        match page.next {
            Some(next) if ids.len() < MAX_BULK_MATCHING => filter.cursor = Some(next),
            Some(_) => return Ok((ids, true)),
            None => return Ok((ids, false)),
        }
    }
}

/// Applies `action` to task `id` through its single-task path; the outcome and, when not
/// done, why.
async fn act(app: &App, action: BulkAction, id: &TaskId) -> (BulkOutcome, String) {
    let task = match app.tasks().get(id).await {
        Ok(Some(t)) => t,
        Ok(None) => return (BulkOutcome::NotFound, "no task has this id".into()),
        Err(e) => return failed(e.into()),
    };
    if !action.applies_to(task.state) {
        let why = format!(
            "task is {}; {} applies to {}",
            task.state,
            action.as_str(),
            action.applies_to_words()
        );
        return (BulkOutcome::NotApplicable, why);
    }
    let done = match action {
        BulkAction::Cancel => super::cancel_task(app, id).await.map_err(ApiError::from),
        BulkAction::Retry | BulkAction::Redrive => super::retry_task(app, &task).await,
    };
    match done {
        Ok(_) => (BulkOutcome::Done, String::new()),
        Err(e) if e.status == actix_web::http::StatusCode::CONFLICT => {
            (BulkOutcome::NotApplicable, e.message)
        }
        Err(e) => failed(e),
    }
}

fn failed(e: ApiError) -> (BulkOutcome, String) {
    (BulkOutcome::Failed, format!("{}: {}", e.code, e.message))
}
