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
//! - [`reconcile`]: watches containers, finishes tasks from exit codes, timeouts, retries,
//!   captures logs and metrics, removes finished containers.
//! - [`queue`]: local mode's durable queue (SQLite) and its consumer loop.
//! - [`tasks`]: the task service: every state change goes through it (store + billing + events).
//! - [`store`]: the [`store::TaskStore`] trait; SQLite and MongoDB backends.
//! - [`runtime`]: the [`runtime::ContainerRuntime`] trait; Docker, process and ACI backends.
//! - [`events`]: the broadcast bus behind the SSE stream.
//! - [`dashboard`]: serves the embedded Leptos dashboard.
//! - [`local`]: wires local mode together and runs it; [`client`]: `submit` and `tasks` commands.
//! - [`token`], [`clock`]: small helpers (worker tokens, time).
//! - [`check`]: `handler check`, every Azure dependency checked with the app's identity.

pub mod api;
pub mod app;
pub mod check;
pub mod client;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod functions;
pub mod local;
pub mod queue;
pub mod reconcile;
pub mod runtime;
pub mod spawn;
pub mod store;
pub mod tasks;
pub mod token;

#[cfg(test)]
mod tests;
