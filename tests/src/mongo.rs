//! A MongoDB server for tests: `EDA_TEST_MONGO_URI` when set (CI starts the wire-protocol
//! stand-in with `tests/mongo-standin/start.sh`), else the stand-in started here when its Python
//! modules are installed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The stand-in server process, killed on drop.
pub struct MongoStandIn {
    child: Child,
    /// `mongodb://127.0.0.1:<port>/`.
    pub uri: String,
}

impl Drop for MongoStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The URI of a MongoDB server, with the stand-in process when this started one.
pub fn server() -> Option<(Option<MongoStandIn>, String)> {
    if let Some(uri) = handler::config::env("EDA_TEST_MONGO_URI") {
        return Some((None, uri));
    }
    let s = start()?;
    let uri = s.uri.clone();
    Some((Some(s), uri))
}

/// Starts the stand-in on a free port if the Python named by `EDA_MONGO_STANDIN_PYTHON`
/// (default: the venv `tests/mongo-standin/start.sh` builds, else `python3`) can import
/// `pymongo` and `mongomock`; `None` otherwise.
pub fn start() -> Option<MongoStandIn> {
    start_with(&[])
}

/// [`start`] with extra `server.py` flags, e.g. `["--server-version", "4.2"]`.
pub fn start_with(extra: &[&str]) -> Option<MongoStandIn> {
    let venv = "/tmp/eda-mongo-standin-venv/bin/python";
    let default = match std::path::Path::new(venv).exists() {
        true => venv.to_string(),
        false => "python3".to_string(),
    };
    let python = handler::config::env("EDA_MONGO_STANDIN_PYTHON").unwrap_or(default);
    let importable = Command::new(&python)
        .args(["-c", "import pymongo, mongomock"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        return None;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/mongo-standin/server.py"
    );
    let mut child = Command::new(&python)
        .args([script, "--port", "0", "--quiet"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    let addr = line.trim().rsplit(' ').next()?.to_string();
    Some(MongoStandIn {
        child,
        uri: format!("mongodb://{addr}/"),
    })
}
