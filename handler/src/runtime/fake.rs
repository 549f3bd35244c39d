//! [`FakeRuntime`]: an in-memory [`ContainerRuntime`] for fast tests of the code above the
//! runtime (spawn, reconcile, the delivery policy, the Functions adapter), with no Docker, no
//! processes and no network.
//!
//! It keeps the trait's promises the way the real backends do (one container per name, exit
//! codes, "killed by signal 9" after a kill, logs cut from the end, exits pushed on
//! [`ContainerRuntime::exits`]), and it passes the runtime conformance suite
//! (`tests/src/runtime_conformance.rs`) where a runtime without processes can. What a
//! container's process would do is scripted by the test ([`Script`]); so are the runtime's
//! failures ([`Fault`]): a create that fails once or every time, transiently or for good.
//!
//! Time is tokio's, so a test with a paused clock decides when scripted exits happen.

use super::{ContainerRuntime, ContainerSpec, ContainerStatus, Created, Phase, RuntimeError};
use async_trait::async_trait;
use futures::stream::BoxStream;
use model::output::{killed_by_signal, signal_of};
use model::{Logs, MetricSample};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// What a container's process does, as far as the runtime can tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    /// Everything it prints; `None`: one line, `output of <name>`.
    pub output: Option<String>,
    /// It ends by itself after this long with this exit code; `None`: it runs until it is
    /// killed or the test calls [`FakeRuntime::exit`].
    pub exit: Option<(Duration, i64)>,
    /// What [`ContainerRuntime::sample`] answers while it runs; `None`: 12.5 % of a core and
    /// 4 KiB, stamped with the time it was created (so a second sample is the same point).
    pub sample: Option<MetricSample>,
    /// It was created but never started (the handler died in between): it stays
    /// [`Phase::Starting`] until a create of the same name adopts and starts it.
    pub never_started: bool,
}

/// A failure the runtime answers to a create instead of making the container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// [`RuntimeError::Unavailable`]: the daemon is down (transient).
    Unavailable,
    /// [`RuntimeError::Throttled`]: ARM's 429 with this `Retry-After` (transient).
    Throttled(Option<Duration>),
    /// [`RuntimeError::NotSetUp`]: an operator must act (transient for the message).
    NotSetUp,
    /// [`RuntimeError::Rejected`]: the spec is refused (permanent).
    Rejected,
}

impl Fault {
    /// The error this fault answers.
    fn error(self) -> RuntimeError {
        let message = "scripted by the test (FakeRuntime)".to_string();
        match self {
            Fault::Unavailable => RuntimeError::unavailable(message),
            Fault::Throttled(retry_after) => RuntimeError::Throttled {
                message,
                retry_after,
                source: None,
            },
            Fault::NotSetUp => RuntimeError::not_set_up(message),
            Fault::Rejected => RuntimeError::rejected(message),
        }
    }
}

/// One container, as long as it is not removed.
#[derive(Debug, Clone)]
struct Container {
    /// The spec it was created with.
    spec: ContainerSpec,
    /// Tells it from a later container of the same name, so a scripted exit of a removed one
    /// never ends the new one.
    generation: u64,
    /// What its process does.
    script: Script,
    /// Where it is, and how it ended once it did.
    status: ContainerStatus,
    /// When it was created, ms since the epoch (the stamp of its default sample).
    created_ms: i64,
}

/// Everything the fake knows; touched briefly by every call, never across an await.
#[derive(Debug, Default)]
struct State {
    /// Containers by name.
    containers: HashMap<String, Container>,
    /// Scripts for containers not created yet, by name; taken by the create.
    scripts: HashMap<String, Script>,
    /// Faults the next creates answer, one each, oldest first.
    next_faults: VecDeque<Fault>,
    /// A fault every create answers (after `next_faults` are used up), until cleared.
    every_fault: Option<Fault>,
    /// Images that cannot be had: a create with one is [`RuntimeError::ImageMissing`].
    missing_images: HashSet<String>,
    /// Containers made ([`Created::New`] answers).
    creates: u32,
    /// Creates asked for, whatever they answered.
    create_calls: u32,
    /// The last generation handed out.
    generation: u64,
}

/// State shared with the tasks that play scripted exits.
#[derive(Debug)]
struct Inner {
    /// The containers and the script.
    state: Mutex<State>,
    /// Names of containers as they exit, for [`ContainerRuntime::exits`].
    exits: broadcast::Sender<String>,
}

/// The in-memory runtime (module docs). Cheap to clone: clones share their containers.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl Default for FakeRuntime {
    fn default() -> FakeRuntime {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    /// An empty runtime: every create succeeds and every container runs until told otherwise.
    pub fn new() -> FakeRuntime {
        let (exits, _) = broadcast::channel(1024);
        FakeRuntime {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                exits,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container named `name`, when it is created, does what `script` says.
    pub fn script(&self, name: &str, script: Script) {
        self.state().scripts.insert(name.to_string(), script);
    }

    /// The next create (after those already scripted to fail) answers `fault`.
    pub fn fail_next_create(&self, fault: Fault) {
        self.state().next_faults.push_back(fault);
    }

    /// Every create answers `fault` until this is called with `None`.
    pub fn fail_every_create(&self, fault: Option<Fault>) {
        self.state().every_fault = fault;
    }

    /// `image` cannot be had: creates with it answer [`RuntimeError::ImageMissing`].
    pub fn missing_image(&self, image: &str) {
        self.state().missing_images.insert(image.to_string());
    }

    /// How many containers were made.
    pub fn creates(&self) -> u32 {
        self.state().creates
    }

    /// How many creates were asked for, whatever they answered.
    pub fn create_calls(&self) -> u32 {
        self.state().create_calls
    }

    /// The spec the container `name` was created with, while it exists.
    pub fn spec(&self, name: &str) -> Option<ContainerSpec> {
        self.state().containers.get(name).map(|c| c.spec.clone())
    }

    /// The container's process ends now with `code` (a code of 129..=192 reads as a signal);
    /// the exit is pushed on [`ContainerRuntime::exits`]. Nothing happens to a container that
    /// already ended or does not exist.
    pub fn exit(&self, name: &str, code: i64) {
        self.end(name, None, code, false);
    }

    /// The container's process is killed by the kernel's OOM killer (exit code 137).
    pub fn oom(&self, name: &str) {
        self.end(name, None, 137, true);
    }

    /// The container disappears without an exit (removed behind the handler's back).
    pub fn vanish(&self, name: &str) {
        self.state().containers.remove(name);
    }

    /// Ends container `name` (of `generation`, when given) with `code`.
    fn end(&self, name: &str, generation: Option<u64>, code: i64, oom_killed: bool) {
        {
            let mut st = self.state();
            let Some(c) = st.containers.get_mut(name) else {
                return;
            };
            if c.status.phase == Phase::Exited || generation.is_some_and(|g| g != c.generation) {
                return;
            }
            let detail = match oom_killed {
                true => Some("out of memory (OOM killed)".to_string()),
                false => signal_of(code).map(killed_by_signal),
            };
            c.status = ContainerStatus {
                phase: Phase::Exited,
                exit_code: Some(code),
                oom_killed,
                detail,
            };
        }
        let _ = self.inner.exits.send(name.to_string());
    }

    /// Plays a scripted exit: after `after`, ends that container (not a later one of its name).
    fn schedule_exit(&self, name: &str, generation: u64, (after, code): (Duration, i64)) {
        let (me, name) = (self.clone(), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            me.end(&name, Some(generation), code, false);
        });
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError> {
        let (generation, exit) = {
            let mut st = self.state();
            st.create_calls += 1;
            if let Some(fault) = st.next_faults.pop_front().or(st.every_fault) {
                return Err(fault.error());
            }
            if st.missing_images.contains(&spec.image) {
                return Err(RuntimeError::image_missing(format!(
                    "{} (FakeRuntime::missing_image)",
                    spec.image
                )));
            }
            if let Some(c) = st.containers.get_mut(&spec.name) {
                // Adopted as Docker does: started if it never was, otherwise left alone.
                let started = c.status.phase == Phase::Starting;
                if started {
                    c.status.phase = Phase::Running;
                }
                let (generation, exit) = (c.generation, c.script.exit.filter(|_| started));
                drop(st);
                if let Some(exit) = exit {
                    self.schedule_exit(&spec.name, generation, exit);
                }
                return Ok(Created::AlreadyExisted);
            }
            let script = st.scripts.remove(&spec.name).unwrap_or_default();
            st.generation += 1;
            st.creates += 1;
            let generation = st.generation;
            let phase = match script.never_started {
                true => Phase::Starting,
                false => Phase::Running,
            };
            let exit = script.exit.filter(|_| phase == Phase::Running);
            let container = Container {
                spec: spec.clone(),
                generation,
                script,
                status: ContainerStatus {
                    phase,
                    exit_code: None,
                    oom_killed: false,
                    detail: None,
                },
                created_ms: crate::clock::now_ms(),
            };
            st.containers.insert(spec.name.clone(), container);
            (generation, exit)
        };
        if let Some(exit) = exit {
            self.schedule_exit(&spec.name, generation, exit);
        }
        Ok(Created::New)
    }

    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        Ok(self.state().containers.get(name).map(|c| c.status.clone()))
    }

    async fn kill(&self, name: &str) -> Result<(), RuntimeError> {
        self.end(name, None, model::output::signal_exit_code(9), false);
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.state().containers.remove(name);
        Ok(())
    }

    async fn logs(&self, name: &str, max_bytes: usize) -> Result<Logs, RuntimeError> {
        let st = self.state();
        let c = st
            .containers
            .get(name)
            .ok_or_else(|| RuntimeError::NoSuchContainer(name.to_string()))?;
        let text = c
            .script
            .output
            .clone()
            .unwrap_or_else(|| format!("output of {name}\n"));
        Ok(Logs {
            text,
            truncated: false,
        }
        .last(max_bytes))
    }

    async fn sample(&self, name: &str) -> Result<Option<MetricSample>, RuntimeError> {
        let st = self.state();
        let Some(c) = st
            .containers
            .get(name)
            .filter(|c| c.status.phase == Phase::Running)
        else {
            return Ok(None);
        };
        Ok(Some(c.script.sample.unwrap_or(MetricSample {
            at_ms: c.created_ms,
            cpu_percent: 12.5,
            memory_bytes: 4096,
        })))
    }

    async fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let st = self.state();
        Ok(st
            .containers
            .keys()
            .filter(|n| n.starts_with(model::naming::PREFIX))
            .cloned()
            .collect())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        let mut st = self.state();
        if st.containers.contains_key(to) {
            return Err(RuntimeError::rejected(format!("the name {to} is taken")));
        }
        let mut c = st
            .containers
            .remove(from)
            .ok_or_else(|| RuntimeError::NoSuchContainer(from.to_string()))?;
        c.spec.name = to.to_string();
        st.containers.insert(to.to_string(), c);
        Ok(())
    }

    fn exits(&self) -> Option<BoxStream<'static, String>> {
        let rx = self.inner.exits.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(name) => return Some((name, rx)),
                    // Missed some: the reconciler's sweep catches those.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Some(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use model::Resources;

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "img".into(),
            args: vec![],
            env: vec![],
            secret_env: vec![],
            resources: Resources {
                cpu: 1.0,
                memory_mb: 64,
            },
        }
    }

    #[tokio::test]
    async fn one_container_per_name_and_scripted_faults_in_order() {
        let rt = FakeRuntime::new();
        rt.fail_next_create(Fault::Unavailable);
        rt.fail_next_create(Fault::Rejected);
        let first = rt.create(&spec("eda-a-1")).await.unwrap_err();
        assert!(first.is_transient(), "{first}");
        let second = rt.create(&spec("eda-a-1")).await.unwrap_err();
        assert!(matches!(second, RuntimeError::Rejected { .. }), "{second}");
        assert_eq!(rt.create(&spec("eda-a-1")).await.unwrap(), Created::New);
        assert_eq!(
            rt.create(&spec("eda-a-1")).await.unwrap(),
            Created::AlreadyExisted
        );
        assert_eq!((rt.creates(), rt.create_calls()), (1, 4));
        rt.fail_every_create(Some(Fault::Throttled(Some(Duration::from_secs(3)))));
        let e = rt.create(&spec("eda-b-1")).await.unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        rt.fail_every_create(None);
        rt.missing_image("gone:1");
        let mut s = spec("eda-c-1");
        s.image = "gone:1".into();
        let e = rt.create(&s).await.unwrap_err();
        assert!(matches!(e, RuntimeError::ImageMissing { .. }) && !e.is_transient());
        assert_eq!(rt.status("eda-c-1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn exits_kills_and_vanishing_read_as_in_a_real_runtime() {
        let rt = FakeRuntime::new();
        let mut exits = rt.exits().unwrap();
        rt.create(&spec("eda-x-1")).await.unwrap();
        rt.exit("eda-x-1", 3);
        assert_eq!(exits.next().await.as_deref(), Some("eda-x-1"));
        let s = rt.status("eda-x-1").await.unwrap().unwrap();
        assert_eq!(
            (s.phase, s.exit_code, s.detail),
            (Phase::Exited, Some(3), None)
        );
        assert_eq!(rt.sample("eda-x-1").await.unwrap(), None);
        rt.create(&spec("eda-k-1")).await.unwrap();
        assert!(rt.sample("eda-k-1").await.unwrap().is_some());
        rt.kill("eda-k-1").await.unwrap();
        let s = rt.status("eda-k-1").await.unwrap().unwrap();
        assert_eq!(s.exit_code, Some(137));
        assert_eq!(s.detail.as_deref(), Some("killed by signal 9"));
        rt.vanish("eda-k-1");
        assert_eq!(rt.status("eda-k-1").await.unwrap(), None);
        assert_eq!(rt.list().await.unwrap(), vec!["eda-x-1".to_string()]);
        assert!(matches!(
            rt.logs("eda-k-1", 10).await,
            Err(RuntimeError::NoSuchContainer(_))
        ));
    }

    #[tokio::test]
    async fn scripted_exits_end_their_container_and_spare_a_later_one_of_its_name() {
        let rt = FakeRuntime::new();
        let mut exits = rt.exits().unwrap();
        let script = Script {
            output: Some("0123456789".into()),
            exit: Some((Duration::from_millis(50), 0)),
            ..Script::default()
        };
        rt.script("eda-s-1", script.clone());
        rt.create(&spec("eda-s-1")).await.unwrap();
        let logs = rt.logs("eda-s-1", 4).await.unwrap();
        assert_eq!((logs.text.as_str(), logs.truncated), ("6789", true));
        // Removed and made again before the first one's exit was due: the new one runs on,
        // past a witness whose exit was scripted later than the first one's.
        rt.remove("eda-s-1").await.unwrap();
        rt.create(&spec("eda-s-1")).await.unwrap();
        rt.script(
            "eda-w-1",
            Script {
                exit: Some((Duration::from_millis(150), 4)),
                ..Script::default()
            },
        );
        rt.create(&spec("eda-w-1")).await.unwrap();
        assert_eq!(exits.next().await.as_deref(), Some("eda-w-1"));
        let s = rt.status("eda-w-1").await.unwrap().unwrap();
        assert_eq!((s.phase, s.exit_code), (Phase::Exited, Some(4)));
        let s = rt.status("eda-s-1").await.unwrap().unwrap();
        assert_eq!(s.phase, Phase::Running);
        rt.script(
            "eda-t-1",
            Script {
                never_started: true,
                ..script
            },
        );
        rt.create(&spec("eda-t-1")).await.unwrap();
        let s = rt.status("eda-t-1").await.unwrap().unwrap();
        assert_eq!(s.phase, Phase::Starting);
        assert_eq!(
            rt.create(&spec("eda-t-1")).await.unwrap(),
            Created::AlreadyExisted
        );
        let s = rt.status("eda-t-1").await.unwrap().unwrap();
        assert_eq!(s.phase, Phase::Running, "adopted and started");
    }
}
