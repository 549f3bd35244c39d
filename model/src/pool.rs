//! The warm pool's hand-over: what the worker of a pool container receives when a task claims
//! it (local mode, `handler local --warm N`).
//!
//! A pool container starts with only `POOL_URL` and `POOL_TOKEN`; its worker long-polls
//! `GET <POOL_URL>` with that token until the handler answers with an [`Assignment`]. From then
//! on it is exactly a cold worker: the assignment carries what a cold container gets in its
//! environment (`MESSAGE`, `TASK_ID`, `CALLBACK_URL`, `CONTAINER_NAME`, `ATTEMPT`) and the task
//! token it reports with.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The path of a pool container's assignment, under the worker listener's base URL.
pub fn assignment_path(slot: &str) -> String {
    format!("/api/pool/{slot}/assignment")
}

/// One task handed to a waiting pool worker.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The plain environment a cold container of the task would have had.
    pub env: BTreeMap<String, String>,
    /// The task's bearer token (`TASK_TOKEN` of a cold container). Never printed.
    pub token: String,
}

impl std::fmt::Debug for Assignment {
    /// Hand-written so that a debug print can never show the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assignment")
            .field("env", &self.env)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_never_debug_printed() {
        let a = Assignment {
            env: BTreeMap::from([("MESSAGE".into(), "m".into())]),
            token: "s3cret".into(),
        };
        assert!(!format!("{a:?}").contains("s3cret"));
        let back: Assignment = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
