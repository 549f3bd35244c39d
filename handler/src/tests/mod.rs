//! Fast tests of spawn and reconcile against [`crate::runtime::fake::FakeRuntime`]: no Docker,
//! no processes, no network; a real store in a temporary folder. They run with
//! `cargo test -p handler --lib`, all of them in about a second (the timeout test waits out a
//! one-second timeout on the real clock, which the store stamps).
//!
//! [`fixture`] is the one place that builds an [`App`](crate::app::App) for them.

mod fixture;
mod phases;
mod pool;
mod reconcile;
mod spawn;
