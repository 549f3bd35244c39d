//! The in-memory store (`handler::store::memory`, for fast unit tests of spawn, reconcile and
//! policy) through the same conformance suite as SQLite and MongoDB, so a test that uses it
//! sees what production stores do.

use e2e::store_conformance;
use handler::store::memory::MemoryStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_store_conformance_suite() {
    store_conformance::run_all(Arc::new(MemoryStore::new())).await;
}
