//! Types shared by every part of Event-Driven ACI.
//!
//! # Layout
//!
//! - [`state`]: the task lifecycle as a type: [`TaskState`] and the one [`TaskState::transition`]
//!   function that decides which moves are legal.
//! - [`task`]: a task as stored and as served by the API ([`Task`], [`TaskId`], [`Transition`]).
//! - [`api`]: request and response bodies of the HTTP API, the worker's state report, the queue
//!   envelope and the events streamed to the dashboard.
//! - [`limits`]: every input limit, in one place, so the API, the CLI and the docs agree.
//! - [`naming`]: the deterministic container name of a task attempt.
//! - [`output`]: the tail of a container's output and how its exit reads ("killed by signal 9").
//!
//! This crate has no I/O and builds for `wasm32-unknown-unknown`, because the dashboard shares it.

pub mod api;
pub mod limits;
pub mod naming;
pub mod output;
pub mod state;
pub mod task;

pub use api::*;
pub use state::{TaskState, TransitionError};
pub use task::{Resources, Task, TaskId, TaskIdError, Transition};
