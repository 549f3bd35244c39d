//! The warm pool on the fake runtime: a claim hands the task over to the waiting worker with
//! no cold create, a redelivery finds the claimed container, and a restart between claim and
//! hand-over hands the task over again (the real-Docker tests are `tests/tests/warm_pool.rs`).

use super::fixture::{delivery, Fixture};
use crate::config::PoolSettings;
use crate::pool::Pool;
use crate::runtime::ContainerRuntime;
use crate::spawn::{self, Outcome};
use crate::store::sqlite::Db;
use crate::token;
use model::pool::Assignment;
use model::TaskState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A SQLite file in a fresh temporary folder (removed on drop) for the pool's rows.
struct TempDb(PathBuf, Db);

impl TempDb {
    fn new() -> TempDb {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).unwrap();
        let dir = std::env::temp_dir().join(format!("eda-pool-unit-{}", hex::encode(r)));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(&dir.join("eda.db")).unwrap();
        TempDb(dir, db)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn pool(f: &Fixture, db: &TempDb, size: usize) -> Arc<Pool> {
    aged_pool(f, db, size, Duration::from_secs(600)).await
}

async fn aged_pool(f: &Fixture, db: &TempDb, size: usize, max_age: Duration) -> Arc<Pool> {
    let settings = PoolSettings { size, max_age };
    let runtime: Arc<dyn ContainerRuntime> = Arc::new(f.runtime.clone());
    Arc::new(
        Pool::new(settings, f.app.settings(), runtime, db.1.clone())
            .await
            .unwrap(),
    )
}

/// Waits (polling, 5 s at most) until the pool shows `n` containers in `state`; their names.
async fn names_in(pool: &Pool, state: &str, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = pool
            .view()
            .containers
            .into_iter()
            .filter(|c| c.state == state)
            .map(|c| c.name)
            .collect();
        if names.len() == n {
            return names;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} {state}: {:?}",
            pool.view()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The pool token of warm container `name`, as its worker reads it from its environment.
fn pool_token(f: &Fixture, name: &str) -> String {
    let spec = f.runtime.spec(name).expect("the warm container exists");
    spec.secret_env
        .iter()
        .find(|(k, _)| k == "POOL_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("a pool token")
}

/// A worker asking for its task (held until a claim or the hold ends).
fn ask(pool: &Arc<Pool>, name: &str, token: String) -> tokio::task::JoinHandle<Option<Assignment>> {
    let (pool, name) = (pool.clone(), name.to_string());
    tokio::spawn(async move {
        pool.assignment(&name, &token, &CancellationToken::new())
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn a_claim_hands_the_task_to_the_waiting_worker_without_a_create() {
    let (f, db) = (Fixture::new(&[]), TempDb::new());
    let pool = pool(&f, &db, 1).await;
    f.app.set_pool(pool.clone());
    let stop = CancellationToken::new();
    let keeper = tokio::spawn(pool.clone().keep(stop.clone()));
    let name = names_in(&pool, "waiting", 1).await.remove(0);
    let worker = ask(&pool, &name, pool_token(&f, &name));
    names_in(&pool, "ready", 1).await;
    let creates = f.runtime.creates();

    let d = delivery("q-warm", "echo warm", 1);
    let id = spawn::derived_id("q-warm");
    assert_eq!(
        spawn::handle(&f.app, &d).await.unwrap(),
        Outcome::Started(id.clone())
    );
    let a = worker.await.unwrap().expect("the task was handed over");
    let container = model::naming::container_name(&id, 1);
    assert_eq!(a.env["MESSAGE"], "echo warm");
    assert_eq!(a.env["CONTAINER_NAME"], container);
    assert_eq!(a.env["TASK_ID"], id.as_str());
    let hash = f.app.tasks().token_hash(&id).await.unwrap().unwrap();
    assert!(token::verify(&a.token, &hash), "the task's own token");
    // The warm container now carries the task's name; nothing was created for the task.
    let spec = f.runtime.spec(&container).expect("renamed");
    assert!(spec.env.iter().any(|(k, v)| k == "POOL_SLOT" && *v == name));
    assert!(f.runtime.status(&name).await.unwrap().is_none());
    let task = f.task(&id).await;
    assert_eq!(task.state, TaskState::Provisioning);
    assert_eq!(task.container.as_deref(), Some(container.as_str()));
    // A redelivery finds it; the pool refills in the background.
    let again = delivery("q-warm", "echo warm", 2);
    assert_eq!(
        spawn::handle(&f.app, &again).await.unwrap(),
        Outcome::AlreadyRunning(id)
    );
    let refill = names_in(&pool, "waiting", 1).await.remove(0);
    assert_ne!(refill, name);
    assert_eq!(f.runtime.creates(), creates + 1, "only the refill");
    // The handed-over container has left the pool: its token opens nothing any more.
    let gone = pool
        .assignment(&name, &pool_token(&f, &container), &stop)
        .await;
    assert!(matches!(gone, Err(crate::pool::PoolError::NoSuchSlot(_))));
    stop.cancel();
    keeper.await.unwrap();
    assert!(
        f.runtime.status(&refill).await.unwrap().is_none(),
        "drained"
    );
}

#[tokio::test]
async fn a_restart_between_claim_and_hand_over_hands_the_task_over_again() {
    let (f, db) = (Fixture::new(&[]), TempDb::new());
    let first = pool(&f, &db, 2).await;
    f.app.set_pool(first.clone());
    let stop = CancellationToken::new();
    let keeper = tokio::spawn(first.clone().keep(stop.clone()));
    let names = names_in(&first, "waiting", 2).await;
    let (claimed, idle) = (names[0].clone(), names[1].clone());
    let token = pool_token(&f, &claimed);
    // Its worker asks once, then loses the connection before any task comes.
    let asking = ask(&first, &claimed, token.clone());
    names_in(&first, "ready", 1).await;
    asking.abort();
    let id = spawn::derived_id("q-crash");
    spawn::handle(&f.app, &delivery("q-crash", "echo again", 1))
        .await
        .unwrap();
    let container = model::naming::container_name(&id, 1);
    assert!(f.runtime.status(&container).await.unwrap().is_some());
    let old_hash = f.app.tasks().token_hash(&id).await.unwrap().unwrap();
    // The handler dies here: its keeper stops without draining (as a kill would).
    keeper.abort();
    let _ = keeper.await;

    let second = pool(&f, &db, 2).await;
    let (again, removed) = second.recover(&f.app).await.unwrap();
    // The claimed one is handed its task again; the other row's container is removed (and
    // the refill its keeper made is not in this pool's rows any more either).
    assert_eq!(again, 1);
    assert!(removed >= 1, "{removed}");
    assert!(f.runtime.status(&idle).await.unwrap().is_none());
    let a = second
        .assignment(&claimed, &token, &stop)
        .await
        .unwrap()
        .expect("handed over again");
    let hash = f.app.tasks().token_hash(&id).await.unwrap().unwrap();
    assert_ne!(hash, old_hash, "a fresh task token");
    assert!(token::verify(&a.token, &hash));
    assert_eq!(a.env["CONTAINER_NAME"], container);
    assert_eq!(f.task(&id).await.state, TaskState::Provisioning);
}

#[tokio::test]
async fn an_old_warm_container_is_replaced() {
    let (f, db) = (Fixture::new(&[]), TempDb::new());
    let pool = aged_pool(&f, &db, 1, Duration::from_millis(300)).await;
    f.app.set_pool(pool.clone());
    let stop = CancellationToken::new();
    let keeper = tokio::spawn(pool.clone().keep(stop.clone()));
    let first = names_in(&pool, "waiting", 1).await.remove(0);
    // Past its age, at the keeper's next check (once a second), it is replaced.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let second = loop {
        let now = pool.view().containers;
        if let Some(c) = now.iter().find(|c| c.name != first && c.state == "waiting") {
            break c.name.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not replaced: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(f.runtime.status(&first).await.unwrap().is_none(), "removed");
    stop.cancel();
    keeper.await.unwrap();
    assert!(
        f.runtime.status(&second).await.unwrap().is_none(),
        "drained"
    );
}

#[tokio::test]
async fn a_claimed_container_that_dies_before_taking_its_task_leaves_the_pool() {
    let (f, db) = (Fixture::new(&[]), TempDb::new());
    let pool = pool(&f, &db, 1).await;
    f.app.set_pool(pool.clone());
    let stop = CancellationToken::new();
    let keeper = tokio::spawn(pool.clone().keep(stop.clone()));
    let second = names_in(&pool, "waiting", 1).await.remove(0);
    let asking = ask(&pool, &second, pool_token(&f, &second));
    names_in(&pool, "ready", 1).await;
    asking.abort();
    let id = spawn::derived_id("q-dies");
    spawn::handle(&f.app, &delivery("q-dies", "echo x", 1))
        .await
        .unwrap();
    let container = model::naming::container_name(&id, 1);
    let spec = f.runtime.spec(&container).expect("the task's container");
    assert!(
        spec.env.iter().any(|(k, _)| k == "POOL_SLOT"),
        "served warm"
    );
    f.runtime.exit(&container, 137);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pool.view().containers.iter().any(|c| c.state == "claimed") {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", pool.view());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    keeper.await.unwrap();
}
