//! Helpers shared by the handler's integration tests.

pub mod arm;
pub mod mongo;
