//! Warm starts on ACI (issue 11, item 2): the ACI runtime claims a ready container group from a
//! standby pool for a task that fits the pool's container group profile, hands it the task
//! through the container's config map, and falls back to a cold create when the task does not
//! fit or ARM refuses the claim.
//!
//! Azure is played by the ARM stand-in ([`e2e::arm`]); its profiles, pools and claims follow
//! the sources cited in [`e2e::arm_standby`], and its containers run the real static worker
//! ([`e2e::aci_containers`]): a pool's groups are worker processes started before any task
//! exists, waiting on their config map folder, exactly as the profile in `infra/main.bicep`
//! starts them (`EDA_CONFIGMAP_DIR=/mnt/configmap/worker`).

use e2e::aci_containers::Driver;
use e2e::arm::{stand_in, StandIn, RG, SUB};
use handler::runtime::aci::{AciConfig, AciRuntime, Standby};
use handler::runtime::{ContainerRuntime, ContainerSpec, Created, Phase};
use model::Resources;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The image of the profile (and of the tasks that fit it).
const IMAGE: &str = "myacr.azurecr.io/eda-worker:1";

fn profile_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroupProfiles/eda-worker")
}

fn pool_id() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.StandbyPool/standbyContainerGroupPools/eda-pool")
}

/// Makes the profile and the pool as `infra/main.bicep` does (through ARM).
async fn deploy(s: &StandIn, ready: u64) {
    let http = reqwest::Client::new();
    let profile = json!({
        "location": "westeurope",
        "properties": {
            "containers": [{"name": "worker", "properties": {
                "image": IMAGE,
                "command": ["/worker"],
                "environmentVariables": [{"name": "EDA_CONFIGMAP_DIR", "value": "/mnt/configmap/worker"}],
                "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.5}},
            }}],
            "osType": "Linux",
            "restartPolicy": "Never",
            "sku": "Standard",
        }
    });
    let url = |id: &str, v: &str| format!("{}{id}?api-version={v}", s.base);
    let r = http
        .put(url(&profile_id(), "2025-09-01"))
        .json(&profile)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let pool = json!({
        "location": "westeurope",
        "properties": {
            "elasticityProfile": {"maxReadyCapacity": ready, "refillPolicy": "always"},
            "containerGroupProperties": {"containerGroupProfile": {"id": profile_id(), "revision": 1}},
        }
    });
    let r = http
        .put(url(&pool_id(), "2025-03-01"))
        .json(&pool)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// The ACI runtime against `s`, claiming from the pool.
fn runtime(s: &StandIn) -> AciRuntime {
    let cfg = AciConfig {
        standby: Some(Standby {
            pool: pool_id(),
            profile: profile_id(),
            revision: 1,
        }),
        ..e2e::arm::aci_config(s)
    };
    AciRuntime::new(
        reqwest::Client::new(),
        cfg,
        Arc::new(e2e::arm::StandInCredential::new(&s.base)),
    )
}

/// A task container that prints its message through a shell command.
fn spec(name: &str, image: &str, message: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: image.into(),
        args: vec![
            "--".into(),
            "sh".into(),
            "-c".into(),
            "echo \"got: $MESSAGE\"".into(),
        ],
        env: vec![
            ("MESSAGE".into(), message.into()),
            ("CONTAINER_NAME".into(), name.into()),
        ],
        secret_env: vec![("TASK_TOKEN".into(), "tok".into())],
        resources: Resources {
            cpu: 1.0,
            memory_mb: 1536,
        },
    }
}

/// Polls `check` every 20 ms until it is true, for at most 20 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Names of the pool's ready groups whose worker already printed that it waits.
fn waiting(s: &StandIn) -> Vec<String> {
    let w = s.world.lock().unwrap();
    let ready = w
        .pools
        .get(&pool_id())
        .map(|p| p.ready.clone())
        .unwrap_or_default();
    ready
        .into_iter()
        .filter(|g| {
            w.logs.get(g).is_some_and(|l| {
                l.iter()
                    .any(|(_, line)| line.contains("waiting for an assignment"))
            })
        })
        .collect()
}

/// The last PUT of group `name` the stand-in saw.
fn last_put(s: &StandIn, name: &str) -> Value {
    let w = s.world.lock().unwrap();
    w.seen
        .iter()
        .rev()
        .find(|r| r.method == "PUT" && r.path.ends_with(&format!("/containerGroups/{name}")))
        .map(|r| r.body.clone())
        .expect("a PUT of the group")
}

/// Runs `spec` to its end on `rt` and returns its logs.
async fn run_to_end(rt: &AciRuntime, spec: &ContainerSpec) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = rt
            .status(&spec.name)
            .await
            .unwrap()
            .expect("the group exists");
        if st.phase == Phase::Exited {
            assert_eq!(st.exit_code, Some(0), "{st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the task did not end: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.logs(&spec.name, 64 * 1024).await.unwrap().text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fitting_task_claims_a_running_group_and_the_pool_refills() {
    let s = stand_in(3600).await;
    let _containers = Driver::start(s.world.clone(), e2e::worker_bin());
    deploy(&s, 2).await;
    until("two ready groups with a waiting worker", || {
        waiting(&s).len() == 2
    })
    .await;
    let before = waiting(&s);
    let rt = runtime(&s);
    let task = spec("eda-warm-1", IMAGE, "warm hello");
    assert_eq!(rt.create(&task).await.unwrap(), Created::New);
    let put = last_put(&s, "eda-warm-1");
    assert_eq!(put["properties"]["standbyPoolProfile"]["id"], pool_id());
    assert_eq!(
        put["properties"]["containerGroupProfile"]["id"],
        profile_id()
    );
    assert!(put["properties"]["containers"][0]["properties"]
        .get("image")
        .is_none());
    {
        let w = s.world.lock().unwrap();
        assert_eq!(
            w.groups["eda-warm-1"]["properties"]["isCreatedFromStandbyPool"],
            true
        );
        assert!(
            !w.groups.contains_key(&before[0]),
            "the oldest ready group was taken"
        );
    }
    let logs = run_to_end(&rt, &task).await;
    assert!(
        logs.contains("waiting for an assignment") && logs.contains("got: warm hello"),
        "the worker that waited before the task existed ran it: {logs}"
    );
    until("the pool refilled to two", || waiting(&s).len() == 2).await;
    assert!(!waiting(&s).contains(&before[0]));
    // The claimed group is the task's own now: remove works as for a cold one.
    rt.remove(&task.name).await.unwrap();
    assert!(rt.status(&task.name).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_do_not_fit_and_refused_claims_start_cold() {
    let s = stand_in(3600).await;
    let _containers = Driver::start(s.world.clone(), e2e::worker_bin());
    deploy(&s, 1).await;
    until("one ready group", || waiting(&s).len() == 1).await;
    let rt = runtime(&s);
    let other = spec("eda-cold-1", "myacr.azurecr.io/other:2", "cold one");
    assert_eq!(rt.create(&other).await.unwrap(), Created::New);
    let put = last_put(&s, "eda-cold-1");
    assert!(
        put["properties"].get("standbyPoolProfile").is_none(),
        "{put}"
    );
    assert_eq!(
        put["properties"]["containers"][0]["properties"]["image"],
        "myacr.azurecr.io/other:2"
    );
    assert!(run_to_end(&rt, &other).await.contains("got: cold one"));
    assert_eq!(waiting(&s).len(), 1, "the pool was not touched");

    s.world.lock().unwrap().refuse_claims = true;
    let refused = spec("eda-cold-2", IMAGE, "refused");
    assert_eq!(rt.create(&refused).await.unwrap(), Created::New);
    let puts: Vec<Value> = {
        let w = s.world.lock().unwrap();
        w.seen
            .iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with("/containerGroups/eda-cold-2"))
            .map(|r| r.body.clone())
            .collect()
    };
    assert_eq!(puts.len(), 2, "a claim, then a cold create");
    assert!(puts[0]["properties"].get("standbyPoolProfile").is_some());
    assert!(puts[1]["properties"].get("standbyPoolProfile").is_none());
    assert!(run_to_end(&rt, &refused).await.contains("got: refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pool_makes_a_new_group_from_the_profile() {
    let s = stand_in(3600).await;
    let _containers = Driver::start(s.world.clone(), e2e::worker_bin());
    deploy(&s, 0).await;
    let rt = runtime(&s);
    let task = spec("eda-new-1", IMAGE, "net new");
    assert_eq!(rt.create(&task).await.unwrap(), Created::New);
    assert_eq!(
        s.world.lock().unwrap().groups["eda-new-1"]["properties"]["isCreatedFromStandbyPool"],
        false
    );
    let logs = run_to_end(&rt, &task).await;
    assert!(logs.contains("got: net new"), "{logs}");
}

/// `handler check` reads the pool's profile with the app's identity: which tasks start warm, or
/// why every task would start cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_says_which_tasks_start_warm() {
    use handler::check::{run, Target, Verdict};
    let s = stand_in(3600).await;
    let target = |aci: AciConfig| Target {
        aci,
        mongo_uri: "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200".into(),
        image: IMAGE.into(),
        service_bus_namespace: None,
        service_bus_endpoint: None,
        registry_endpoint: Some(s.base.clone()),
    };
    let cfg = AciConfig {
        standby: Some(Standby {
            pool: pool_id(),
            profile: profile_id(),
            revision: 1,
        }),
        ..e2e::arm::aci_config(&s)
    };
    let credential = Arc::new(e2e::arm::StandInCredential::new(&s.base));
    let line = |findings: Vec<handler::check::Finding>| {
        findings
            .into_iter()
            .find(|f| f.what == "standby pool")
            .expect("a standby pool line")
    };
    let missing = line(
        run(
            &target(cfg.clone()),
            reqwest::Client::new(),
            credential.clone(),
        )
        .await,
    );
    assert_eq!(missing.verdict, Verdict::Fail, "{}", missing.text);
    assert!(
        missing.text.contains("every task starts cold"),
        "{}",
        missing.text
    );
    deploy(&s, 0).await;
    let ok = line(run(&target(cfg), reqwest::Client::new(), credential.clone()).await);
    assert_eq!(ok.verdict, Verdict::Ok, "{}", ok.text);
    assert!(
        ok.text.contains(IMAGE) && ok.text.contains("1.5 GB"),
        "{}",
        ok.text
    );
    let none = run(
        &target(e2e::arm::aci_config(&s)),
        reqwest::Client::new(),
        credential,
    )
    .await;
    assert!(
        none.iter().all(|f| f.what != "standby pool"),
        "no pool, no line"
    );
}
