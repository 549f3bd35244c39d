//! The MongoDB / Cosmos DB store through the same conformance suite as SQLite.
//!
//! Where the server comes from, first match wins:
//!
//! 1. `EDA_TEST_MONGO_URI`: any MongoDB-compatible server (a `mongod`, a Cosmos DB for MongoDB
//!    account).
//! 2. The wire-protocol stand-in `tests/mongo-standin/server.py` (mongomock behind the MongoDB
//!    wire protocol), started here when the Python named by `EDA_MONGO_STANDIN_PYTHON`
//!    (default `python3`) can import `pymongo` and `mongomock`. (CI starts it with
//!    `tests/mongo-standin/start.sh` and passes its URI as `EDA_TEST_MONGO_URI`.)
//! 3. Neither: the test says loudly that it was skipped.
//!
//! Each run uses a fresh database, dropped at the end. What needs no server at all (document
//! mapping, URI normalisation, throttling detection) is unit-tested in `handler/src/store/mongo.rs`.

use e2e::store_conformance;
use handler::store::mongo::MongoStore;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

/// The stand-in server process, killed on drop.
struct StandIn(Child);

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the stand-in on a free port if its Python modules are there; returns its URI.
fn start_stand_in() -> Option<(StandIn, String)> {
    let python = handler::config::env("EDA_MONGO_STANDIN_PYTHON").unwrap_or("python3".into());
    let importable = Command::new(&python)
        .args(["-c", "import pymongo, mongomock"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mongo-standin/server.py");
    let mut child = Command::new(&python)
        .args([script, "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    let addr = line.trim().rsplit(' ').next()?.to_string();
    Some((StandIn(child), format!("mongodb://{addr}/")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_passes_the_store_conformance_suite() {
    let mut _stand_in = None;
    let uri = match handler::config::env("EDA_TEST_MONGO_URI") {
        Some(uri) => uri,
        None => match start_stand_in() {
            Some((s, uri)) => {
                eprintln!("using the MongoDB wire-protocol stand-in at {uri}");
                _stand_in = Some(s);
                uri
            }
            None => {
                eprintln!(
                    "SKIPPED: no MongoDB (set EDA_TEST_MONGO_URI, or install pymongo + mongomock \
                     for the stand-in in tests/mongo-standin)"
                );
                return;
            }
        },
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
