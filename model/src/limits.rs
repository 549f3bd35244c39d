//! Every input limit in one place. The API, the CLI, the queue consumer and docs/API.md quote
//! these constants, so an error message always names the limit that was hit.

/// Largest message (work text) in bytes: 64 KiB. Container environment values must stay small
/// (ACI and Docker both carry the message as an environment variable).
pub const MAX_WORK_BYTES: usize = 64 * 1024;
/// Most tasks one `POST /api/work` may create.
pub const MAX_BATCH: usize = 1000;
/// Largest request body the API reads, in bytes (4 MiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Largest result a task keeps (`RESULT_PATH`), in bytes (64 KiB); a larger file keeps its
/// first bytes and is marked truncated (`model::result`).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Largest worker state report body, in bytes: 16 KiB plus room for a result of
/// [`MAX_RESULT_BYTES`] even if every byte is a control character JSON escapes as `\u00XX`
/// (six bytes each): 400 KiB.
pub const MAX_REPORT_BYTES: usize = 16 * 1024 + 6 * MAX_RESULT_BYTES;
/// Longest failure reason kept, in bytes; longer ones are cut.
pub const MAX_REASON_BYTES: usize = 1024;
/// Most log bytes kept per task (the tail is kept).
pub const MAX_LOG_BYTES: usize = 256 * 1024;
/// Largest page of `GET /api/tasks`.
pub const MAX_PAGE: usize = 1000;
/// Largest `offset` of `GET /api/tasks` (how far a virtualised board may jump in one call).
pub const MAX_OFFSET: usize = 10_000_000;
/// Default page of `GET /api/tasks`.
pub const DEFAULT_PAGE: usize = 100;
/// Most attempts a task may ask for.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest timeout a task may ask for, in seconds (24 h).
pub const MAX_TIMEOUT_SECS: u32 = 24 * 3600;
/// Most metric samples kept per task (about one per second: ~1 hour).
pub const MAX_METRIC_SAMPLES: usize = 3600;
/// Deepest JSON nesting accepted in any body (serde_json's own recursion limit is 128).
pub const MAX_JSON_DEPTH: usize = 32;
/// Longest search query (`q` of `GET /api/tasks`), in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Most parts (words, phrases, qualifiers) of one search query.
pub const MAX_SEARCH_TERMS: usize = 16;
/// Most ids one bulk action (`POST /api/tasks/bulk`) may name.
pub const MAX_BULK_IDS: usize = 1000;
/// Most tasks one bulk action with `all_matching` acts on; the answer says when more matched
/// (call again: the tasks acted on no longer match, since the action changed their state).
pub const MAX_BULK_MATCHING: usize = 10_000;
/// Lowest priority a task may ask for.
pub const MIN_PRIORITY: i32 = -1000;
/// Highest priority a task may ask for.
pub const MAX_PRIORITY: i32 = 1000;
/// Furthest ahead a task may be scheduled (`not_before` or `delay_secs`), in seconds (7 days).
pub const MAX_DELAY_SECS: u64 = 7 * 24 * 3600;
/// Longest concurrency key, in bytes (characters from a-z, 0-9, '.', '_' and '-').
pub const MAX_KEY_LEN: usize = 64;
/// Most labels on one task.
pub const MAX_LABELS: usize = 8;
/// Longest label name (characters from a-z, 0-9 and '_').
pub const MAX_LABEL_NAME: usize = 32;
/// Longest label value, in bytes (printable text).
pub const MAX_LABEL_VALUE: usize = 128;
/// Longest image reference, in bytes.
pub const MAX_IMAGE_LEN: usize = 255;
