//! Fast tests of spawn and reconcile against [`crate::runtime::fake::FakeRuntime`]: no Docker,
//! no processes, no network; a real store in a temporary folder. They run with
//! `cargo test -p handler --lib` in well under a second each.
//!
//! [`fixture`] is the one place that builds an [`App`] for them.

mod fixture;
mod reconcile;
mod spawn;
