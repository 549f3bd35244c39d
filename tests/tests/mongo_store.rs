//! The MongoDB / Cosmos DB store through the same conformance suite as SQLite.
//!
//! No MongoDB server can be installed on these machines, so this runs only when
//! `EDA_TEST_MONGO_URI` names one (a local `mongod`, a Cosmos DB for MongoDB account, or any
//! MongoDB-compatible server); otherwise it says loudly that it was skipped. Each run uses a
//! fresh database, dropped at the end. What can be checked without a server (document mapping,
//! URI normalisation, throttling detection) is unit-tested in `handler/src/store/mongo.rs`.

use e2e::store_conformance;
use handler::store::mongo::MongoStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_passes_the_store_conformance_suite() {
    let Some(uri) = handler::config::env("EDA_TEST_MONGO_URI") else {
        eprintln!("SKIPPED: no MongoDB (set EDA_TEST_MONGO_URI to run the Mongo store conformance suite)");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let db = format!("eda_test_{nanos}");
    let store = MongoStore::connect(&uri, &db, "tasks")
        .await
        .expect("connecting to EDA_TEST_MONGO_URI");
    store_conformance::run_all(Arc::new(store)).await;
    MongoStore::drop_database(&uri, &db)
        .await
        .expect("dropping the test database");
}
