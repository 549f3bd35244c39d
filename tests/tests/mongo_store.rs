//! The MongoDB / Cosmos DB store through the same conformance suite as SQLite.
//!
//! The server is `EDA_TEST_MONGO_URI`: any MongoDB-compatible server (a `mongod`, a Cosmos DB
//! for MongoDB account, or the wire-protocol stand-in `tests/mongo-standin`, which CI starts
//! with `start.sh`). Without it the test says loudly that it was skipped.
//!
//! Each run uses a fresh database, dropped at the end. What needs no server at all (document
//! mapping, URI normalisation, throttling detection) is unit-tested in `handler/src/store/mongo.rs`.

use e2e::store_conformance;
use handler::store::mongo::MongoStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_passes_the_store_conformance_suite() {
    let Some(uri) = handler::config::env("EDA_TEST_MONGO_URI") else {
        eprintln!(
            "SKIPPED: no MongoDB (set EDA_TEST_MONGO_URI; `bash tests/mongo-standin/start.sh` \
             starts the wire-protocol stand-in and prints its URI, as CI does)"
        );
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let db = format!("eda_test_{nanos}");
    let store = MongoStore::connect(&uri, &db, "tasks")
        .await
        .expect("connecting to the MongoDB server");
    store_conformance::run_all(Arc::new(store)).await;
    MongoStore::drop_database(&uri, &db)
        .await
        .expect("dropping the test database");
}
