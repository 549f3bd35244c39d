//! The MongoDB / Cosmos DB store through the same conformance suite as SQLite.
//!
//! The server is `EDA_TEST_MONGO_URI`: any MongoDB-compatible server (a `mongod`, a Cosmos DB
//! for MongoDB account, or the wire-protocol stand-in `tests/mongo-standin`, which CI starts
//! with `start.sh`). Without it the test is skipped loudly, and fails when `CI=true`.
//!
//! Each run uses a fresh database, dropped at the end. What needs no server at all (document
//! mapping, URI normalisation, throttling detection) is unit-tested in `handler/src/store/mongo.rs`.

use e2e::store_conformance;
use handler::store::mongo::MongoStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_passes_the_store_conformance_suite() {
    let what = "a MongoDB server in EDA_TEST_MONGO_URI (`bash tests/mongo-standin/start.sh` \
                starts the wire-protocol stand-in and prints its URI, as CI does)";
    let Some(uri) = handler::config::env("EDA_TEST_MONGO_URI") else {
        e2e::need(what, false);
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

/// Item 1 of issue 8: a server below the driver's minimum (a Cosmos DB for MongoDB account at
/// serverVersion 4.2 answers `hello` with maxWireVersion 8) must stop the store at its first
/// command with words naming the server's version and the driver's minimum, not with the
/// driver's bare "wire version" text. The stand-in answers `hello` as MongoDB 4.2 does
/// (`--server-version 4.2`: wire version table in tests/mongo-standin/server.py); the driver's
/// minimum is `DRIVER_MIN_WIRE_VERSION = 9` in mongodb-3.x `src/sdam/description/server.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_older_than_the_drivers_minimum_is_refused_with_its_version() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mongo-standin/start.sh");
    let port = e2e::free_port().to_string();
    let started = std::process::Command::new("bash")
        .args([script, &port])
        .env("MONGO_STANDIN_ARGS", "--server-version 4.2")
        .env("MONGO_STANDIN_QUIET", "1")
        .output();
    let uri = match started {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        other => {
            e2e::need(
                &format!("the MongoDB stand-in (start.sh {port}: {other:?})"),
                false,
            );
            return;
        }
    };
    let stop = || {
        let _ = std::process::Command::new("bash")
            .args([script, "--stop", &port])
            .output();
        // start.sh keeps a state folder per port; this one was only ours.
        let root = handler::config::env("MONGO_STANDIN_STATE")
            .unwrap_or_else(|| "/tmp/eda-mongo-standin".into());
        let _ = std::fs::remove_dir_all(format!("{root}/{port}"));
    };
    let sep = if uri.contains('?') { '&' } else { '?' };
    let uri = format!("{uri}{sep}serverSelectionTimeoutMS=10000");
    let begun = std::time::Instant::now();
    let result = MongoStore::connect(&uri, "eda_old_server", "tasks").await;
    stop();
    let Err(err) = result else {
        panic!("a wire-version-8 server was accepted")
    };
    let text = err.to_string();
    assert!(
        text.contains("wire version 8 (MongoDB 4.2")
            && text.contains("serverVersion 4.2")
            && text.contains("wire version 9 or newer (MongoDB 4.4+)"),
        "{text}"
    );
    assert!(
        begun.elapsed() < std::time::Duration::from_secs(9),
        "refused at once, not after the selection timeout: {:?}",
        begun.elapsed()
    );
}
