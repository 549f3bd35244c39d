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
//!   group keeps the state the stand-in gave it ([STATES]: `Stopped`).

use crate::arm::{print, set_state, Shared};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the stand-in's groups are looked at.
const STEP: Duration = Duration::from_millis(20);

/// The worker processes of the stand-in's groups; kills what is left when dropped.
pub struct Containers {
    /// The stand-in's state.
    world: Shared,
    /// The static worker binary every container runs.
    worker: PathBuf,
    /// Live processes by group name, with the threads forwarding their output.
    running: HashMap<String, (Child, Vec<JoinHandle<()>>)>,
    /// Groups (name and generation) whose process was started: a group runs once (restart
    /// policy Never), and a group made again under the same name is another group.
    started: HashSet<(String, u64)>,
}

impl Containers {
    /// Containers for the groups of `world`, each running `worker`; the groups' logs become
    /// what the processes print ([`crate::arm::World::quiet`]).
    pub fn new(world: Shared, worker: PathBuf) -> Containers {
        world.lock().unwrap().quiet = true;
        Containers {
            world,
            worker,
            running: HashMap::new(),
            started: HashSet::new(),
        }
    }

    /// One look at the stand-in: start a worker for each group whose container runs, report
    /// each worker that exited, kill the workers of stopped or deleted groups.
    pub fn step(&mut self) {
        let (groups, generation) = {
            let w = self.world.lock().unwrap();
            (w.groups.clone(), w.generation.clone())
        };
        let generation_of = |name: &str| generation.get(name).copied().unwrap_or(0);
        // A process whose group was deleted (and maybe made again) or stopped is killed.
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let gone = !self.started.contains(&(name.clone(), generation_of(&name)));
            let over = gone
                || groups
                    .get(&name)
                    .is_none_or(|g| g["properties"]["instanceView"]["state"] == "Stopped");
            let (child, _) = self.running.get_mut(&name).unwrap();
            if over {
                let _ = child.kill();
                let _ = child.wait();
                self.running.remove(&name);
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Its last lines are in the log before its end is reported.
                let (_, readers) = self.running.remove(&name).unwrap();
                for r in readers {
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
    fn start(&self, name: &str, c: &Value) -> (Child, Vec<JoinHandle<()>>) {
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
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for e in c["environmentVariables"].as_array().into_iter().flatten() {
            let v = e["value"]
                .as_str()
                .or(e["secureValue"].as_str())
                .unwrap_or("");
            cmd.env(e["name"].as_str().unwrap(), v);
        }
        let mut child = cmd.spawn().expect("start the worker");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let readers = vec![self.forward(name, out), self.forward(name, err)];
        (child, readers)
    }

    /// Appends every line `from` yields to group `name`'s log while the group exists.
    fn forward(&self, name: &str, from: impl Read + Send + 'static) -> JoinHandle<()> {
        let (world, name) = (self.world.clone(), name.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { return };
                let mut w = world.lock().unwrap();
                if w.groups.contains_key(&name) {
                    print(&mut w, &name, &[&line]);
                }
            }
        })
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        for (c, _) in self.running.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
