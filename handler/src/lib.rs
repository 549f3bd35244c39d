//! The Event-Driven ACI handler: one binary that is both the Azure Functions custom handler and
//! the local mode a new user runs first.
//!
//! # Layout
//!
//! - [`config`]: the only place arguments and environment are read; resolves [`config::Settings`].
//! - [`app`]: the shared context ([`app::App`]) and the [`app::Intake`] trait (how work is queued).
//! - [`api`]: the HTTP routes (thin: parse, check, delegate, map errors to statuses).
//! - [`functions`]: Azure Functions custom-handler invocation payloads <-> the same domain calls.
//! - [`spawn`]: THE one code path from a queue message to a running container; the slot cap.
//! - [`run_env`]: the context a run gets in its environment (task, message, key, labels).
//! - [`pool`]: the warm pool of local mode (`--warm N`): started containers whose workers wait
//!   for a task; a message claims one instead of starting a cold container.
//! - [`reconcile`]: watches containers, finishes tasks from exit codes, timeouts, retries,
//!   captures logs and metrics, removes finished containers.
//! - [`retention`]: finished tasks older than `--retention-secs` purged with their logs and
//!   metrics (local mode's loop; Functions mode's `ReconcileTimer`).
//! - [`queue`]: local mode's durable queue (SQLite) and its consumer loop.
//! - [`policy`]: the one delivery policy (complete, retry after a delay, dead-letter) both
//!   modes apply to a spawn's result, and the backoff.
//! - [`tasks`]: the task service, the only writer: `Tasks::apply(id, Event)` runs the store's
//!   atomic update around `model::Task::apply` (the lifecycle) and publishes the result.
//! - [`store`]: the [`store::TaskStore`] trait (load, compare-and-set, query); SQLite, MongoDB
//!   and in-memory (tests) backends.
//! - [`runtime`]: the [`runtime::ContainerRuntime`] trait; Docker, process and ACI backends.
//! - [`events`]: the broadcast bus behind the SSE stream; it feeds [`metrics`], the Prometheus
//!   series behind `GET /metrics`.
//! - [`webhooks`]: completion webhooks: CloudEvents recorded in a durable outbox when a task
//!   changes, POSTed, signed and retried by a background dispatcher.
//! - [`dashboard`]: serves the embedded Leptos dashboard.
//! - [`compose`]: the one composition root: builds the [`app::App`] and picks its store and
//!   runtime from configuration, for both modes.
//! - [`local`]: runs local mode (queue consumer, reconciler, servers); [`client`]: `submit`
//!   and `tasks` commands.
//! - [`sampler`]: CPU and memory samples of running containers (one rule for both modes).
//! - [`token`], [`clock`]: small helpers (worker tokens, time).
//! - [`check`]: `handler check`, every Azure dependency checked with the app's identity.

pub mod api;
pub mod app;
pub mod check;
pub mod client;
pub mod clock;
pub mod compose;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod functions;
pub mod local;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod queue;
pub mod reconcile;
pub mod retention;
pub mod run_env;
pub mod runtime;
pub mod sampler;
pub mod spawn;
pub mod store;
pub mod tasks;
pub mod token;
pub mod webhooks;

#[cfg(test)]
mod tests;
