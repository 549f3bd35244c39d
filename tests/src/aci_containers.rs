//! Plays the containers of the ARM stand-in's container groups ([`crate::arm`]): the stand-in
//! only records groups, so this runs the real static worker as each group's one container, with
//! the command and environment (`secureValue` included) of its PUT body, feeds its output to the
//! stand-in's log answers, and reports its end in the group's instance view as ACI shows it.
//!
//! What it plays, and from where:
//! - a group whose container became `Running` (the stand-in's create operation succeeded) gets
//!   its process; ACI's `command` replaces the image's entrypoint, so the command's first word
//!   (the worker's path in the image, `AciConfig::entrypoint`) is the worker binary here and the
//!   rest are its arguments ([SPEC] `Container.properties.command`, in `arm`'s sources);
//! - every line the process prints is appended to the group's log ([`crate::arm::print`], which
//!   stamps it as `Containers_ListLogs` with `timestamps=true` shows it);
//! - a process that ends is reported as the container's `currentState` `Terminated` with its
//!   exit code, which makes the group `Succeeded` or `Failed` ([STATES], `arm::set_state`);
//!   a process ended by a signal reports 128 + the signal, as a container engine does;
//! - a group that was stopped (`POST .../stop`) or deleted has its process killed; a stopped
//!   group keeps the state the stand-in gave it ([STATES]: `Stopped`);
//! - a container's config map appears as one file per key in a folder that plays
//!   `/mnt/configmap/<container>/` ([CONFIGMAP] in [`crate::arm_standby`]): an environment
//!   variable `EDA_CONFIGMAP_DIR` of the container is pointed at that folder, and the files are
//!   rewritten whenever the group's config map changes, while the process runs;
//! - a standby pool's ready group handed over to a task ([`crate::arm::World::renamed`]) keeps
//!   its process, now under the task's group name ([CLAIM] in [`crate::arm_standby`]).

use crate::arm::{print, set_state, Shared};
use model::standby::CONFIGMAP_DIR_ENV;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the stand-in's groups are looked at.
const STEP: Duration = Duration::from_millis(20);

/// One container's process.
struct Proc {
    /// The process.
    child: Child,
    /// The threads forwarding its output.
    readers: Vec<JoinHandle<()>>,
    /// The name of its group now (a claimed standby group changes name), read by the readers.
    group: Arc<Mutex<String>>,
    /// The folder playing its config map mount, if it has one.
    configmap: Option<PathBuf>,
    /// The config map last written there.
    written: Value,
}

/// The worker processes of the stand-in's groups; kills what is left when dropped.
pub struct Containers {
    /// The stand-in's state.
    world: Shared,
    /// The static worker binary every container runs.
    worker: PathBuf,
    /// Live processes by group name.
    running: HashMap<String, Proc>,
    /// The folder of the config map mounts (removed on drop).
    mounts: PathBuf,
    /// Groups (name and generation) whose process was started: a group runs once (restart
    /// policy Never), and a group made again under the same name is another group.
    started: HashSet<(String, u64)>,
}

impl Containers {
    /// Containers for the groups of `world`, each running `worker`; the groups' logs become
    /// what the processes print ([`crate::arm::World::quiet`]).
    pub fn new(world: Shared, worker: PathBuf) -> Containers {
        world.lock().unwrap().quiet = true;
        static DRIVERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = DRIVERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mounts =
            std::env::temp_dir().join(format!("eda-configmaps-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&mounts);
        Containers {
            world,
            worker,
            running: HashMap::new(),
            mounts,
            started: HashSet::new(),
        }
    }

    /// One look at the stand-in: start a worker for each group whose container runs, report
    /// each worker that exited, kill the workers of stopped or deleted groups.
    pub fn step(&mut self) {
        let (groups, generation, renamed) = {
            let mut w = self.world.lock().unwrap();
            let renamed = std::mem::take(&mut w.renamed);
            (w.groups.clone(), w.generation.clone(), renamed)
        };
        let generation_of = |name: &str| generation.get(name).copied().unwrap_or(0);
        for (old, new) in renamed {
            if let Some(p) = self.running.remove(&old) {
                *p.group.lock().unwrap() = new.clone();
                self.running.insert(new.clone(), p);
                self.started.insert((new.clone(), generation_of(&new)));
            }
        }
        // A process whose group was deleted (and maybe made again) or stopped is killed.
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let gone = !self.started.contains(&(name.clone(), generation_of(&name)));
            let over = gone
                || groups
                    .get(&name)
                    .is_none_or(|g| g["properties"]["instanceView"]["state"] == "Stopped");
            let p = self.running.get_mut(&name).unwrap();
            if over {
                let _ = p.child.kill();
                let _ = p.child.wait();
                self.running.remove(&name);
                continue;
            }
            if let Some(dir) = &p.configmap {
                let map = &groups[&name]["properties"]["containers"][0]["properties"]["configMap"];
                if *map != p.written {
                    mount(dir, map);
                    p.written = map.clone();
                }
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                // Its last lines are in the log before its end is reported.
                let p = self.running.remove(&name).unwrap();
                for r in p.readers {
                    let _ = r.join();
                }
                let code = status
                    .code()
                    .map(i64::from)
                    .or(status.signal().map(model::output::signal_exit_code))
                    .unwrap_or(-1);
                let mut w = self.world.lock().unwrap();
                let detail = if code == 0 { "Completed" } else { "Error" };
                set_state(
                    &mut w,
                    &name,
                    json!({"state": "Terminated", "exitCode": code, "detailStatus": detail}),
                );
            }
        }
        self.started
            .retain(|(name, g)| groups.contains_key(name) && generation_of(name) == *g);
        for (name, g) in &groups {
            let c = &g["properties"]["containers"][0]["properties"];
            let state = &c["instanceView"]["currentState"]["state"];
            let key = (name.clone(), generation_of(name));
            if state == "Running" && !self.running.contains_key(name) && self.started.insert(key) {
                let child = self.start(name, c);
                self.running.insert(name.clone(), child);
            }
        }
    }

    /// Starts the worker of group `name` whose container properties are `c`.
    fn start(&self, name: &str, c: &Value) -> Proc {
        let command: Vec<String> = c["command"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut cmd = Command::new(&self.worker);
        let path = handler::config::env("PATH").unwrap_or_default();
        cmd.args(command.iter().skip(1))
            .env_clear()
            .env("PATH", path)
            // The container's writable space (its RESULT_PATH folder): under this driver's own
            // folder, removed with it, even when the test kills the worker.
            .env("TMPDIR", &self.mounts)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut configmap = None;
        for e in c["environmentVariables"].as_array().into_iter().flatten() {
            let v = e["value"]
                .as_str()
                .or(e["secureValue"].as_str())
                .unwrap_or("");
            let key = e["name"].as_str().unwrap();
            if key == CONFIGMAP_DIR_ENV {
                // [CONFIGMAP]: the mount, played by a folder of this container's own.
                let dir = self
                    .mounts
                    .join(format!("{name}-{}", crate::arm::now_secs()));
                std::fs::create_dir_all(&dir).expect("a config map folder");
                mount(&dir, &c["configMap"]);
                cmd.env(key, &dir);
                configmap = Some(dir);
                continue;
            }
            cmd.env(key, v);
        }
        let mut child = cmd.spawn().expect("start the worker");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let group = Arc::new(Mutex::new(name.to_string()));
        let readers = vec![self.forward(&group, out), self.forward(&group, err)];
        Proc {
            child,
            readers,
            group,
            configmap,
            written: c["configMap"].clone(),
        }
    }

    /// Appends every line `from` yields to the log of the process's group while it exists.
    fn forward(
        &self,
        group: &Arc<Mutex<String>>,
        from: impl Read + Send + 'static,
    ) -> JoinHandle<()> {
        let (world, group) = (self.world.clone(), group.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { return };
                let name = group.lock().unwrap().clone();
                let mut w = world.lock().unwrap();
                if w.groups.contains_key(&name) {
                    print(&mut w, &name, &[&line]);
                }
            }
        })
    }
}

/// Writes config map `map` (`{"keyValuePairs": {..}}`) into `dir`, one file per key, each
/// written whole (a temporary file renamed over the old one).
fn mount(dir: &std::path::Path, map: &Value) {
    for (key, value) in map["keyValuePairs"].as_object().into_iter().flatten() {
        let tmp = dir.join(format!(".{key}.tmp"));
        std::fs::write(&tmp, value.as_str().unwrap_or_default()).expect("write a config map key");
        std::fs::rename(&tmp, dir.join(key)).expect("place a config map key");
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for p in self.running.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.mounts);
    }
}

/// [`Containers`] stepped every 20 ms by a background task; dropping it stops the task and
/// kills the workers still running.
pub struct Driver {
    /// The stepping task; aborted on drop (which drops the [`Containers`] it owns).
    task: tokio::task::JoinHandle<()>,
}

impl Driver {
    /// Starts playing the containers of `world`'s groups with `worker`.
    pub fn start(world: Shared, worker: PathBuf) -> Driver {
        let mut containers = Containers::new(world, worker);
        let task = tokio::spawn(async move {
            loop {
                containers.step();
                tokio::time::sleep(STEP).await;
            }
        });
        Driver { task }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
