//! The one conformance suite of [`ContainerRuntime`]: every check is written once against a
//! [`Harness`] (the runtime as the app holds it, `Arc<dyn ContainerRuntime>`, and how to ask it
//! for some work), so any backend can run it: [`run_all`] in one call, or one test per check
//! with [`runtime_conformance!`](crate::runtime_conformance!).
//!
//! `tests/tests/runtime_conformance.rs` runs it against the process runtime, Docker, the ACI
//! runtime (against the ARM stand-in, with [`crate::aci_containers`] running the real worker
//! as each container group) and the in-memory `FakeRuntime`.
//!
//! # What a runtime may not support
//!
//! Some promises cannot be kept by every backend; a harness lists its [`Gap`]s, each with the
//! reason, and the checks skip exactly that part, saying so on stderr:
//!
//! - [`Gap::ExitEvents`]: no push of exits. ACI has no event stream the runtime subscribes to
//!   (exits are found by the `ReconcileTimer` sweep).
//! - [`Gap::KillExitCode`]: a killed container shows no exit code. ACI's `POST .../stop` leaves
//!   the group `Stopped`, and a stopped group may have no container view left to carry one
//!   (`aci::status_of`).
//! - [`Gap::ConcurrentCreateNew`]: two creates of one name at the same moment may both answer
//!   `New`. ACI creates by `PUT`, idempotent by name ([SPEC] `ContainerGroups_CreateOrUpdate`):
//!   both calls find no group, both `PUT`, one group exists, and neither can tell it did not
//!   make it. Sequential creates still answer `AlreadyExisted`.
//! - [`Gap::SampleUntilRemoved`]: samples do not end when the container does. Azure Monitor
//!   keeps answering a group's per-minute averages after it stopped.
//! - [`Gap::FailedCreateLeavesGroup`]: a create that failed leaves the container behind. ARM
//!   keeps a group whose provisioning failed until it is deleted (the reconciler deletes it).
//! - [`Gap::MemoryLimit`]: no memory limit to check: the process runtime where memory cgroups
//!   are not writable, ACI's stand-in (it runs the worker as a plain process), and the fake
//!   (it runs nothing).

use futures::StreamExt;
use handler::runtime::RuntimeError;
use handler::runtime::{ContainerRuntime, ContainerSpec, ContainerStatus, Created, Phase};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

pub use crate::runtimes::{unique, wait_for};

/// Long enough for a container to start and exit on a busy 2-core machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// A promise a backend cannot keep (module docs say which and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// `exits()` is `None`.
    ExitEvents,
    /// A killed container shows no exit code 137.
    KillExitCode,
    /// Concurrent creates of one name may both answer [`Created::New`].
    ConcurrentCreateNew,
    /// `sample` answers for an exited container.
    SampleUntilRemoved,
    /// A failed create leaves an (exited) container behind.
    FailedCreateLeavesGroup,
    /// No memory limit is enforced.
    MemoryLimit,
}

/// Work a check asks a container to do; each [`Harness`] turns it into a spec its runtime runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// The worker's demo: hashes for `seconds`, printing progress and a final `sha256` digest,
    /// then exits 0.
    Demo {
        /// How long it works.
        seconds: u32,
    },
    /// Prints `out` on stdout and `err` on stderr, then exits with `code`.
    Print {
        /// A line for stdout.
        out: &'static str,
        /// A line for stderr.
        err: &'static str,
        /// Its exit code.
        code: i32,
    },
    /// Allocates up to 512 MiB, printing `no-limit` if it got there.
    Hog,
}

/// Turns work into a spec for container `name` (and, for the fake, scripts it).
pub type SpecFn = Box<dyn Fn(&str, &Work) -> ContainerSpec + Send + Sync>;

/// One backend under test.
pub struct Harness {
    /// The runtime, as the app holds it.
    pub rt: Arc<dyn ContainerRuntime>,
    /// Makes the spec of some work.
    pub spec: SpecFn,
    /// A runtime and an image it cannot have, for the `ImageMissing` check.
    pub broken: (Arc<dyn ContainerRuntime>, String),
    /// What this backend cannot do, and why.
    pub gaps: Vec<(Gap, &'static str)>,
    /// Whatever must live as long as the harness (stand-ins, drivers, temporary folders).
    pub keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl Harness {
    /// The spec of `work` in container `name`.
    pub fn spec(&self, name: &str, work: &Work) -> ContainerSpec {
        (self.spec)(name, work)
    }

    /// Removes container `name` when the returned guard is dropped, so a check that fails
    /// leaves no container behind.
    pub fn removal(&self, name: &str) -> Removal {
        Removal {
            rt: self.rt.clone(),
            name: name.to_string(),
        }
    }

    /// Whether this backend has `gap`; says so on stderr when it has.
    pub fn lacks(&self, gap: Gap) -> bool {
        let Some((_, why)) = self.gaps.iter().find(|(g, _)| *g == gap) else {
            return false;
        };
        eprintln!("NOT CHECKED on {}: {gap:?}: {why}", self.rt.kind());
        true
    }

    async fn status(&self, name: &str) -> Option<ContainerStatus> {
        self.rt.status(name).await.expect("status")
    }

    /// Waits until `name` has exited and returns its status.
    async fn exited(&self, name: &str) -> ContainerStatus {
        wait_for(&format!("{name} to exit"), WAIT, || async {
            self.status(name).await.filter(|s| s.phase == Phase::Exited)
        })
        .await
    }

    /// Waits until `name` runs.
    async fn running(&self, name: &str) {
        wait_for(&format!("{name} to run"), WAIT, || async {
            let s = self.status(name).await;
            assert_ne!(s.as_ref().map(|s| s.phase), Some(Phase::Exited), "{s:?}");
            s.filter(|s| s.phase == Phase::Running)
        })
        .await;
    }
}

/// Removes a container when dropped (also while a failed check unwinds).
pub struct Removal {
    /// Where it runs.
    rt: Arc<dyn ContainerRuntime>,
    /// Its name.
    name: String,
}

impl Drop for Removal {
    fn drop(&mut self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The checks run on the multi-threaded runtime, where blocking in place is allowed.
        tokio::task::block_in_place(|| {
            let _ = handle.block_on(self.rt.remove(&self.name));
        });
    }
}

/// Runs every check against `h`, one after the other, on a multi-threaded tokio runtime (each
/// check's [`Removal`] blocks in place when it drops).
pub async fn run_all(h: &Harness) {
    demo_exits_zero_with_logs_and_exit_event(h).await;
    command_exit_code_passes_through(h).await;
    kill_is_137(h).await;
    create_twice_makes_one(h).await;
    sample_while_running(h).await;
    remove_forgets(h).await;
    missing_image_is_image_missing(h).await;
    memory_limit_is_enforced(h).await;
}

/// The demo work runs, exits 0, its output is in the logs (cut from the end when asked for
/// less) and its name comes out of `exits()`.
pub async fn demo_exits_zero_with_logs_and_exit_event(h: &Harness) {
    let name = unique("zero");
    let _removal = h.removal(&name);
    let exits = match h.lacks(Gap::ExitEvents) {
        true => None,
        false => Some(h.rt.exits().expect("this runtime pushes exits")),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = exits.map(|mut exits| {
        tokio::spawn(async move {
            while let Some(n) = exits.next().await {
                let _ = tx.send(n);
            }
        })
    });
    let created =
        h.rt.create(&h.spec(&name, &Work::Demo { seconds: 2 }))
            .await;
    assert_eq!(created.unwrap(), Created::New);
    h.running(&name).await;
    let s = h.exited(&name).await;
    assert_eq!(s.exit_code, Some(0), "{s:?}");
    assert!(!s.oom_killed);
    let logs = h.rt.logs(&name, 64 * 1024).await.unwrap();
    assert!(logs.text.contains("sha256 "), "{logs:?}");
    assert!(!logs.truncated);
    let tail = h.rt.logs(&name, 16).await.unwrap();
    assert!(tail.truncated && tail.text.len() <= 16, "{tail:?}");
    assert!(
        logs.text.ends_with(&tail.text),
        "{tail:?} is the end of {logs:?}"
    );
    if let Some(watcher) = watcher {
        let seen = tokio::time::timeout(WAIT, async {
            while let Some(n) = rx.recv().await {
                if n == name {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true), "exits() never yielded {name}");
        watcher.abort();
    }
    h.rt.remove(&name).await.unwrap();
}

/// The work's exit code is the container's, and both its output streams are in the logs.
pub async fn command_exit_code_passes_through(h: &Harness) {
    let name = unique("three");
    let _removal = h.removal(&name);
    let work = Work::Print {
        out: "to-out",
        err: "to-err",
        code: 3,
    };
    h.rt.create(&h.spec(&name, &work)).await.unwrap();
    let s = h.exited(&name).await;
    assert_eq!(s.exit_code, Some(3), "{s:?}");
    let logs = h.rt.logs(&name, 4096).await.unwrap();
    assert!(
        logs.text.contains("to-out") && logs.text.contains("to-err"),
        "{logs:?}"
    );
    h.rt.remove(&name).await.unwrap();
}

/// A killed container exits 137 and says it was killed by signal 9; killing it again, or a
/// container that does not exist, is fine.
pub async fn kill_is_137(h: &Harness) {
    let name = unique("kill");
    let _removal = h.removal(&name);
    h.rt.create(&h.spec(&name, &Work::Demo { seconds: 60 }))
        .await
        .unwrap();
    h.running(&name).await;
    h.rt.kill(&name).await.unwrap();
    let s = h.exited(&name).await;
    if !h.lacks(Gap::KillExitCode) {
        assert_eq!(s.exit_code, Some(137), "{s:?}");
        assert!(
            s.detail.as_deref().unwrap_or("").contains("signal 9"),
            "{s:?}"
        );
    }
    h.rt.kill(&name).await.unwrap();
    h.rt.kill(&unique("never")).await.unwrap();
    h.rt.remove(&name).await.unwrap();
}

/// Creating one name twice, even at the same time, makes one container.
pub async fn create_twice_makes_one(h: &Harness) {
    let name = unique("twice");
    let _removal = h.removal(&name);
    let spec = h.spec(&name, &Work::Demo { seconds: 30 });
    let (a, b) = tokio::join!(h.rt.create(&spec), h.rt.create(&spec));
    let mut both = [a.unwrap(), b.unwrap()];
    both.sort_by_key(|c| *c == Created::AlreadyExisted);
    if !h.lacks(Gap::ConcurrentCreateNew) {
        assert_eq!(both, [Created::New, Created::AlreadyExisted]);
    }
    assert_eq!(h.rt.create(&spec).await.unwrap(), Created::AlreadyExisted);
    let listed = h.rt.list().await.unwrap();
    assert_eq!(
        listed.iter().filter(|n| **n == name).count(),
        1,
        "{listed:?}"
    );
    h.rt.remove(&name).await.unwrap();
}

/// A running container has CPU and memory samples (the demo burns CPU); an exited or unknown
/// one has none.
pub async fn sample_while_running(h: &Harness) {
    let name = unique("sample");
    let _removal = h.removal(&name);
    h.rt.create(&h.spec(&name, &Work::Demo { seconds: 60 }))
        .await
        .unwrap();
    h.running(&name).await;
    let sample = wait_for("a busy sample", WAIT, || async {
        let s = h.rt.sample(&name).await.unwrap();
        s.filter(|s| s.cpu_percent > 5.0 && s.memory_bytes > 0)
    })
    .await;
    assert!(sample.cpu_percent < 400.0, "{sample:?}");
    assert!(sample.at_ms > 0);
    h.rt.kill(&name).await.unwrap();
    h.exited(&name).await;
    if !h.lacks(Gap::SampleUntilRemoved) {
        assert_eq!(h.rt.sample(&name).await.unwrap(), None);
    }
    assert_eq!(h.rt.sample(&unique("never")).await.unwrap(), None);
    h.rt.remove(&name).await.unwrap();
}

/// After remove, the name is unknown: no status, not listed; removing again is fine; a running
/// container can be removed too, and the name can be used again.
pub async fn remove_forgets(h: &Harness) {
    let name = unique("remove");
    let _removal = h.removal(&name);
    let quick = h.spec(&name, &Work::Demo { seconds: 0 });
    h.rt.create(&quick).await.unwrap();
    h.exited(&name).await;
    assert!(h.rt.list().await.unwrap().contains(&name));
    h.rt.remove(&name).await.unwrap();
    assert_eq!(h.status(&name).await, None);
    assert!(!h.rt.list().await.unwrap().contains(&name));
    h.rt.remove(&name).await.unwrap();
    h.rt.create(&h.spec(&name, &Work::Demo { seconds: 60 }))
        .await
        .unwrap();
    h.rt.remove(&name).await.unwrap();
    assert_eq!(h.status(&name).await, None);
    let again = h.spec(&name, &Work::Demo { seconds: 0 });
    assert_eq!(h.rt.create(&again).await.unwrap(), Created::New);
    h.exited(&name).await;
    h.rt.remove(&name).await.unwrap();
}

/// An image (for the process runtime: a worker binary) that cannot be had is `ImageMissing`,
/// a permanent error, and leaves nothing running behind.
pub async fn missing_image_is_image_missing(h: &Harness) {
    let (rt, image) = &h.broken;
    let name = unique("noimage");
    let mut spec = h.spec(&name, &Work::Demo { seconds: 0 });
    spec.image = image.clone();
    let err = rt.create(&spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing { .. }), "{err:?}");
    assert!(!err.is_transient());
    let left = rt.status(&name).await.unwrap();
    if h.lacks(Gap::FailedCreateLeavesGroup) {
        assert!(
            left.as_ref().is_none_or(|s| s.phase == Phase::Exited),
            "{left:?}"
        );
        rt.remove(&name).await.unwrap();
    } else {
        assert_eq!(left, None);
    }
}

/// Allocating beyond the memory limit gets the work OOM-killed.
pub async fn memory_limit_is_enforced(h: &Harness) {
    if h.lacks(Gap::MemoryLimit) {
        return;
    }
    let name = unique("oom");
    let _removal = h.removal(&name);
    let mut spec = h.spec(&name, &Work::Hog);
    spec.resources.memory_mb = 32;
    h.rt.create(&spec).await.unwrap();
    let s = h.exited(&name).await;
    let logs = h.rt.logs(&name, 4096).await.unwrap();
    assert!(s.oom_killed, "{s:?} {logs:?}");
    assert_ne!(s.exit_code, Some(0), "{s:?}");
    assert!(!logs.text.contains("no-limit"), "{logs:?}");
    h.rt.remove(&name).await.unwrap();
}

/// Declares one test per check for a backend: `runtime_conformance!(name, harness)` makes a
/// module `name` with a `#[tokio::test]` per check, each building its harness with the
/// expression `harness` (an `Option<Harness>` future: `None` skips, as `e2e::need` says).
#[macro_export]
macro_rules! runtime_conformance {
    ($backend:ident, $harness:expr) => {
        $crate::runtime_conformance!(
            @tests $backend, $harness,
            demo_exits_zero_with_logs_and_exit_event,
            command_exit_code_passes_through,
            kill_is_137,
            create_twice_makes_one,
            sample_while_running,
            remove_forgets,
            missing_image_is_image_missing,
            memory_limit_is_enforced
        );
    };
    (@tests $backend:ident, $harness:expr, $($check:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if let Some(h) = $harness.await {
                        $crate::runtime_conformance::$check(&h).await;
                    }
                }
            )*
        }
    };
}
