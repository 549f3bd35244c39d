//! 202 means durable (issue 14, item 3): the write that answers `POST /api/work` (the intake's
//! `submit`, which the route awaits before it answers 202) returns only after its group commit
//! was fsynced. Tested without a power cut, by fault injection at the durability point
//! (`Db::set_sync_hook`, run by the writer thread right after the fsync and before anyone of
//! the batch is answered):
//!
//! - a power cut simulated at every durability point: the hook copies the database files as
//!   they are at that instant (what the disk holds once the fsync returned; anything written
//!   after it may be lost). Every task acknowledged is in the last copy made before its
//!   acknowledgment, so a power cut at any later instant cannot lose it. What it proves: the
//!   order "commit, fsync, then answer", for every caller of every batch, under concurrency. What
//!   it cannot prove: that the drive honours the flush (that is the kernel's and the drive's).
//! - a durability point held: no caller of the batch is answered while it is held.
//! - a durability point failing (the fsync's error): the callers get the storage error, naming
//!   the data directory, not a success.
//!
//! The tests can fail: with the writer changed to answer right after the commit and fsync only
//! afterwards (a mutation run by hand on 2026-12-03), all three failed.

use e2e::TempDir;
use handler::app::{Intake, IntakeError};
use handler::events::Events;
use handler::queue::LocalQueue;
use handler::store::sqlite::SqliteStore;
use handler::store::{StorageProblem, StoreError, TaskStore};
use handler::tasks::{Rates, Tasks};
use model::{Resources, Task, TaskId};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn task(n: usize) -> Task {
    let r = Resources {
        cpu: 1.0,
        memory_mb: 128,
    };
    Task::new(
        TaskId::parse(&format!("durable-{n}")).unwrap(),
        format!("work {n}"),
        r,
        3,
        60,
        1,
    )
}

/// A fresh store in `dir/data` and its intake (the local queue, as local mode wires them).
fn open(dir: &Path) -> (SqliteStore, Arc<LocalQueue>) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = SqliteStore::open(&data.join("eda.db"))
        .unwrap()
        .with_outbox(handler::queue::enqueue_new);
    let tasks = Tasks::new(Arc::new(store.clone()), Events::default(), Rates::default());
    let queue = Arc::new(LocalQueue::new(store.db.clone(), tasks));
    (store, queue)
}

/// Copies the database and its WAL as they are now into `to` (the shared-memory index is
/// rebuilt from the WAL on open, as after a reboot).
fn copy_files(data: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for f in ["eda.db", "eda.db-wal"] {
        std::fs::copy(data.join(f), to.join(f))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_task_is_in_the_disk_image_of_its_last_durability_point() {
    const CALLERS: usize = 16;
    const EACH: usize = 12;
    let dir = TempDir::new("durable");
    let (store, queue) = open(&dir.0);
    // Durability point k leaves the disk image `images/k`; `taken` counts the finished ones.
    let images = dir.0.join("images");
    let taken = Arc::new(AtomicUsize::new(0));
    let t = taken.clone();
    let at = images.clone();
    store.db.set_sync_hook(Some(Arc::new(move |data: &Path| {
        // Only the writer thread calls this, one batch at a time.
        let k = t.load(Ordering::SeqCst);
        copy_files(data, &at.join(k.to_string()))?;
        t.store(k + 1, Ordering::SeqCst);
        Ok(())
    })));
    let acked: Arc<Mutex<Vec<(TaskId, usize)>>> = Arc::default();
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let (queue, taken, acked) = (queue.clone(), taken.clone(), acked.clone());
        callers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let t = task(c * EACH + i);
                let stored = queue.submit(vec![t]).await.expect("accepted");
                // Acknowledged now: the newest image finished by now must hold it.
                let newest = taken.load(Ordering::SeqCst) - 1;
                acked.lock().unwrap().push((stored[0].id.clone(), newest));
            }
        }));
    }
    for c in callers {
        c.await.unwrap();
    }
    // Control: the images are the files as they were, not the live files. A task acknowledged
    // later is absent from an earlier image (so the check below can fail) and present in its own.
    let before = taken.load(Ordering::SeqCst) - 1;
    let late = queue.submit(vec![task(100_000)]).await.unwrap()[0]
        .id
        .clone();
    let after = taken.load(Ordering::SeqCst) - 1;
    store.db.set_sync_hook(None);
    assert!(boot(&dir.0, &images, before)
        .get(&late)
        .await
        .unwrap()
        .is_none());
    assert!(boot(&dir.0, &images, after)
        .get(&late)
        .await
        .unwrap()
        .is_some());
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), CALLERS * EACH);
    let batches = taken.load(Ordering::SeqCst);
    assert!(
        batches < acked.len(),
        "group commit: {batches} fsyncs carried {} writes",
        acked.len()
    );
    // "Power cut" right after each image: open a copy of it as a rebooted machine would.
    let mut images_checked = std::collections::BTreeMap::<usize, Vec<TaskId>>::new();
    for (id, k) in acked {
        images_checked.entry(k).or_default().push(id);
    }
    for (k, ids) in images_checked {
        let disk = boot(&dir.0, &images, k);
        for id in ids {
            assert!(
                disk.get(&id).await.unwrap().is_some(),
                "task {id} was acknowledged after durability point {k} but is not on its disk"
            );
        }
    }
}

/// Disk image `k` opened by the store, as a rebooted machine would open the disk (on a fresh
/// copy, so the image stays as it was).
fn boot(dir: &Path, images: &Path, k: usize) -> SqliteStore {
    static BOOTS: AtomicUsize = AtomicUsize::new(0);
    let n = BOOTS.fetch_add(1, Ordering::SeqCst);
    let to = dir.join(format!("boot-{n}"));
    copy_files(&images.join(k.to_string()), &to).unwrap();
    SqliteStore::open(&to.join("eda.db")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_is_answered_while_the_durability_point_is_held() {
    let dir = TempDir::new("durable-held");
    let (store, queue) = open(&dir.0);
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let entered_tx = Mutex::new(entered_tx);
    store.db.set_sync_hook(Some(Arc::new(move |_: &Path| {
        let _ = entered_tx.lock().unwrap().send(());
        let _ = released.lock().unwrap().recv();
        Ok(())
    })));
    let q = queue.clone();
    let submit = tokio::spawn(async move { q.submit(vec![task(1)]).await });
    // The writer thread reached the durability point of this batch...
    tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    // ...so the commit is done, yet the caller has no answer.
    assert!(
        !submit.is_finished(),
        "answered before the durability point"
    );
    release.send(()).unwrap();
    let stored = submit.await.unwrap().expect("accepted once durable");
    assert_eq!(stored[0].id.as_str(), "durable-1");
    store.db.set_sync_hook(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_not_acknowledged_and_names_the_data_directory() {
    let dir = TempDir::new("durable-fail");
    let (store, queue) = open(&dir.0);
    store.db.set_sync_hook(Some(Arc::new(|_: &Path| {
        Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
    })));
    let err = queue.submit(vec![task(1)]).await.unwrap_err();
    let IntakeError::Store(StoreError::Storage {
        dir: d, problem, ..
    }) = &err
    else {
        panic!("expected a storage error, got {err:?}");
    };
    let data: PathBuf = dir.0.join("data");
    assert_eq!((d, *problem), (&data, StorageProblem::Full));
    assert!(
        err.to_string().contains(&data.display().to_string()),
        "{err}"
    );
    assert!(store.ready().await.is_err(), "not ready while it fails");
    store.db.set_sync_hook(None);
    store
        .ready()
        .await
        .expect("ready again once the fsync works");
    queue.submit(vec![task(2)]).await.expect("accepted again");
}
