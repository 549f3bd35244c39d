//! The Function App as the host loads it: `host.json` and every `<Function>/function.json` read
//! from the deployment zip (the one `cargo xtask package` writes, built here by the same xtask
//! code, `xtask/src/appzip.rs`), extracted to a folder, and the custom handler started from it
//! the way `HttpWorkerProcess` starts it.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One binding of a function.json.
#[derive(Debug, Clone)]
pub struct Binding {
    /// `name`.
    pub name: String,
    /// `type` (`serviceBusTrigger`, `httpTrigger`, `http`, `serviceBus`, `timerTrigger`).
    pub kind: String,
    /// `direction`.
    pub direction: String,
    /// The raw JSON, for type-specific properties (`route`, `methods`, `queueName`, ...).
    pub raw: Value,
}

impl Binding {
    /// A string property, with `%Setting%` resolved from the app settings the way the host's
    /// `INameResolver` does for binding expressions.
    pub fn prop(&self, key: &str, settings: &BTreeMap<String, String>) -> Option<String> {
        let v = self.raw.get(key)?.as_str()?;
        Some(resolve(v, settings))
    }

    /// `dataType` is `binary`.
    pub fn binary(&self) -> bool {
        self.raw
            .get("dataType")
            .and_then(Value::as_str)
            .is_some_and(|d| d.eq_ignore_ascii_case("binary"))
    }
}

/// Replaces each `%NAME%` with the app setting `NAME` (unknown names stay, as the host would
/// then fail the function's indexing: the tests check they all resolve).
pub fn resolve(v: &str, settings: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find('%') {
        let Some(len) = rest[start + 1..].find('%') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        out.push_str(&rest[..start]);
        match settings.get(name) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// One function: its folder name and bindings.
#[derive(Debug, Clone)]
pub struct Function {
    /// Its folder's name.
    pub name: String,
    /// The `bindings` of its function.json.
    pub bindings: Vec<Binding>,
}

impl Function {
    /// The trigger binding (`direction: in`, type ending in `Trigger`).
    pub fn trigger(&self) -> &Binding {
        self.bindings
            .iter()
            .find(|b| b.direction == "in" && b.kind.ends_with("Trigger"))
            .unwrap_or_else(|| panic!("{} has no trigger", self.name))
    }

    /// The output bindings, in function.json order (`FunctionMetadata.OutputBindings`).
    pub fn outputs(&self) -> Vec<super::wire::OutBinding> {
        self.bindings
            .iter()
            .filter(|b| b.direction == "out")
            .map(|b| super::wire::OutBinding {
                name: b.name.clone(),
                kind: b.kind.clone(),
                binary: b.binary(),
            })
            .collect()
    }

    /// `FunctionMetadata.IsHttpInAndOutFunction`: an HTTP trigger whose only output is `http`.
    pub fn http_in_and_out(&self) -> bool {
        let outs: Vec<&Binding> = self
            .bindings
            .iter()
            .filter(|b| b.direction == "out")
            .collect();
        self.trigger().kind == "httpTrigger" && outs.len() == 1 && outs[0].kind == "http"
    }
}

/// The app: host.json, the functions, the folder it was extracted to.
pub struct FunctionApp {
    /// host.json, `%Setting%` expressions resolved.
    pub host_json: Value,
    /// Every function of the app.
    pub functions: Vec<Function>,
    /// Where the zip was extracted (`wwwroot`).
    pub root: PathBuf,
    /// Every entry name of the zip.
    pub entries: Vec<String>,
}

impl FunctionApp {
    /// Extracts `zip` into `root` (file modes kept) and reads host.json and every
    /// `<dir>/function.json` at the zip's top level, as the host's function metadata provider
    /// scans the app root.
    pub fn load(zip: &Path, root: &Path) -> FunctionApp {
        let file = std::fs::File::open(zip).expect("open the zip");
        let mut archive = zip::ZipArchive::new(file).expect("read the zip");
        let mut entries = Vec::new();
        for i in 0..archive.len() {
            let mut e = archive.by_index(i).expect("zip entry");
            let name = e.name().expect("utf-8 entry name").to_string();
            let out = root.join(&name);
            std::fs::create_dir_all(out.parent().expect("parent")).unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            std::fs::write(&out, bytes).unwrap();
            #[cfg(unix)]
            if let Some(mode) = e.unix_mode() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o777))
                    .unwrap();
            }
            entries.push(name);
        }
        let read = |p: &str| -> Value {
            let text = std::fs::read_to_string(root.join(p)).expect(p);
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
        };
        let host_json = read("host.json");
        let mut functions = Vec::new();
        for name in &entries {
            let Some(dir) = name.strip_suffix("/function.json") else {
                continue;
            };
            if dir.contains('/') {
                continue;
            }
            let json = read(name);
            let bindings = json["bindings"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has no bindings"))
                .iter()
                .map(|b| Binding {
                    name: b["name"].as_str().unwrap_or_default().to_string(),
                    kind: b["type"].as_str().unwrap_or_default().to_string(),
                    direction: b["direction"].as_str().unwrap_or("in").to_string(),
                    raw: b.clone(),
                })
                .collect();
            functions.push(Function {
                name: dir.to_string(),
                bindings,
            });
        }
        FunctionApp {
            host_json,
            functions,
            root: root.to_path_buf(),
            entries,
        }
    }

    /// The function named `name`.
    pub fn function(&self, name: &str) -> &Function {
        self.functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function {name} in the zip"))
    }

    /// A host.json value by path (`extensions.serviceBus.maxConcurrentCalls`), case-sensitive
    /// as written.
    pub fn host(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.host_json, |v, k| v.get(k))
    }
}

/// The custom handler process, killed on drop.
pub struct HandlerProcess {
    /// The process.
    pub child: Child,
    /// `FUNCTIONS_CUSTOMHANDLER_PORT` it listens on.
    pub port: u16,
    /// How long it took from spawn to the first HTTP answer.
    pub started_in: Duration,
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `customHandler.description` the way `HttpWorkerProcess.CreateWorkerProcess` does
/// (`src/WebJobs.Script/Workers/Http/HttpWorkerProcess.cs`): `defaultExecutablePath` with
/// `arguments`, in `workingDirectory` (relative to the app root), with the app settings plus
/// `FUNCTIONS_CUSTOMHANDLER_PORT` (a free port the host picks, `WorkerUtilities.GetUnusedTcpPort`),
/// `FUNCTIONS_CUSTOMHANDLER_WORKER_ID`, `FUNCTIONS_HTTPWORKER_PORT`, `FUNCTIONS_HTTPWORKER_ID`
/// and `FUNCTIONS_APP_ROOT_PATH`. Then waits as `DefaultHttpWorkerService.IsWorkerReady` does:
/// a request to `http://127.0.0.1:{port}/` every 25 ms (`WorkerReadyCheckPollingIntervalMilliseconds`)
/// until any HTTP answer, for `HttpWorkerOptions.InitializationTimeout` (30 s); past it the
/// host gives up ("Initializing HttpWorker timed out.").
pub async fn start_handler(
    app: &FunctionApp,
    settings: &BTreeMap<String, String>,
) -> HandlerProcess {
    let desc = &app.host_json["customHandler"]["description"];
    let exe = desc["defaultExecutablePath"]
        .as_str()
        .expect("customHandler.description.defaultExecutablePath");
    let args: Vec<String> = desc["arguments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let wd = app
        .root
        .join(desc["workingDirectory"].as_str().unwrap_or(""));
    let port = crate::free_port();
    let id = format!("{:x}", super::wire::rand_u128());
    let t0 = Instant::now();
    let child = Command::new(app.root.join(exe))
        .args(&args)
        .current_dir(&wd)
        .env_clear()
        .envs(settings)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &id)
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_ID", &id)
        .env("FUNCTIONS_APP_ROOT_PATH", &app.root)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the custom handler");
    let mut p = HandlerProcess {
        child,
        port,
        started_in: Duration::ZERO,
    };
    let http = reqwest::Client::new();
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .is_ok()
        {
            p.started_in = t0.elapsed();
            return p;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("the custom handler exited during start-up: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "Initializing HttpWorker timed out (30 s)"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
