//! The ACI runtime against a local stand-in for ARM, Azure Monitor and App Service's
//! managed-identity endpoint, over real HTTP. The stand-in speaks the documented protocol and
//! records every request, so each test checks method, path, api-version, headers and body.
//!
//! The token comes through the runtime's seam, an `azure_core` `TokenCredential`: here
//! `common::arm::StandInCredential` (uncached, so each ARM call shows the token it was given).
//! `azure_identity`'s own credential reads `IDENTITY_ENDPOINT` from the process environment, so
//! it is exercised, with its cache, by `functions_process.rs` on the real binary.

mod common;

use common::arm::{stand_in, Seen, StandIn, StandInCredential, IDENTITY_SECRET, RG, SUB};
use handler::runtime::aci::{AciConfig, AciRuntime};
use handler::runtime::{ContainerRuntime, ContainerSpec, Created, Phase, RuntimeError};
use model::Resources;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn runtime(s: &StandIn) -> AciRuntime {
    runtime_with(s, Arc::new(StandInCredential::new(&s.base)))
}

fn runtime_with(s: &StandIn, credential: Arc<StandInCredential>) -> AciRuntime {
    let http = reqwest::Client::new();
    let cfg = AciConfig {
        arm_endpoint: s.base.clone(),
        arm_resource: "https://management.azure.com/".into(),
        subscription_id: SUB.into(),
        resource_group: RG.into(),
        location: "westeurope".into(),
        registry_server: Some("myacr.azurecr.io".into()),
        registry_identity: Some("/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull".into()),
        entrypoint: "/worker".into(),
        poll: Duration::from_millis(20),
        create_wait: Duration::from_secs(10),
    };
    AciRuntime::new(http, cfg, credential)
}

fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "myacr.azurecr.io/eda-worker:1".into(),
        args: vec!["--seconds".into(), "5".into()],
        env: vec![
            ("MESSAGE".into(), "hello".into()),
            ("TASK_ID".into(), "t1".into()),
        ],
        secret_env: vec![("TASK_TOKEN".into(), "s3cret".into())],
        resources: Resources {
            cpu: 0.5,
            memory_mb: 1536,
        },
    }
}

fn seen(s: &StandIn) -> Vec<Seen> {
    s.world.lock().unwrap().seen.clone()
}

const GROUP_PATH: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ContainerInstance/containerGroups/eda-t1-1";

#[actix_web::test]
async fn create_is_one_put_polled_to_success_with_the_documented_body() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    assert_eq!(rt.create(&spec("eda-t1-1")).await.unwrap(), Created::New);

    let all = seen(&s);
    let token_req = &all[0];
    assert_eq!(
        (token_req.method.as_str(), token_req.path.as_str()),
        ("GET", "/identity")
    );
    assert_eq!(token_req.query["resource"], "https://management.azure.com/");
    assert_eq!(token_req.query["api-version"], "2019-08-01");
    assert_eq!(token_req.identity_header.as_deref(), Some(IDENTITY_SECRET));

    let arm: Vec<&Seen> = all.iter().filter(|r| r.path != "/identity").collect();
    let calls: Vec<(&str, &str)> = arm
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("GET", GROUP_PATH),
            ("PUT", GROUP_PATH),
            ("GET", "/ops/eda-t1-1"),
            ("GET", "/ops/eda-t1-1")
        ]
    );
    // Each ARM call carries the token the credential fetched just before it.
    let mut issued = 0;
    for r in &all {
        if r.path == "/identity" {
            issued += 1;
            continue;
        }
        let expected = format!("Bearer tok-{issued}");
        assert_eq!(r.auth, Some(expected), "{} {}", r.method, r.path);
    }
    for r in &arm[..2] {
        assert_eq!(r.query["api-version"], "2024-05-01-preview");
    }

    let body = &arm[1].body;
    assert_eq!(body["location"], "westeurope");
    let props = &body["properties"];
    assert_eq!(props["osType"], "Linux");
    assert_eq!(props["restartPolicy"], "Never");
    assert_eq!(
        props["imageRegistryCredentials"][0]["server"],
        "myacr.azurecr.io"
    );
    assert!(props["imageRegistryCredentials"][0]["identity"]
        .as_str()
        .unwrap()
        .ends_with("/userAssignedIdentities/pull"));
    assert!(props["imageRegistryCredentials"][0]
        .get("password")
        .is_none());
    assert_eq!(body["identity"]["type"], "UserAssigned");
    let c = &props["containers"][0];
    assert_eq!(c["name"], "eda-t1-1");
    assert_eq!(c["properties"]["image"], "myacr.azurecr.io/eda-worker:1");
    assert_eq!(
        c["properties"]["command"],
        json!(["/worker", "--seconds", "5"])
    );
    assert_eq!(
        c["properties"]["resources"]["requests"],
        json!({"cpu": 0.5, "memoryInGB": 1.5})
    );
    let env = c["properties"]["environmentVariables"].as_array().unwrap();
    assert!(env.contains(&json!({"name": "MESSAGE", "value": "hello"})));
    assert!(env.contains(&json!({"name": "TASK_TOKEN", "secureValue": "s3cret"})));
    assert!(
        !env.iter()
            .any(|e| e["name"] == "TASK_TOKEN" && e.get("value").is_some()),
        "the token must only travel as a secureValue"
    );
}

#[actix_web::test]
async fn re_create_finds_the_group_and_does_not_put_again() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    assert_eq!(
        rt.create(&spec("eda-t1-1")).await.unwrap(),
        Created::AlreadyExisted
    );
    let puts = seen(&s).iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 1);
}

#[actix_web::test]
async fn status_logs_metrics_list_kill_and_delete() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    assert_eq!(rt.status("eda-t1-1").await.unwrap(), None);
    rt.create(&spec("eda-t1-1")).await.unwrap();
    assert_eq!(
        rt.status("eda-t1-1").await.unwrap().unwrap().phase,
        Phase::Running
    );

    let logs = rt.logs("eda-t1-1", 1 << 20).await.unwrap();
    assert_eq!(logs.text, "starting\nworking on it\ndone\n");
    assert!(!logs.truncated);
    let short = rt.logs("eda-t1-1", 5).await.unwrap();
    assert_eq!((short.text.as_str(), short.truncated), ("done\n", true));
    let log_req = seen(&s)
        .into_iter()
        .rfind(|r| r.path.ends_with("/logs"))
        .unwrap();
    assert_eq!(
        log_req.path,
        format!("{GROUP_PATH}/containers/eda-t1-1/logs")
    );
    assert!(log_req.query["tail"].parse::<u32>().unwrap() > 0);

    let sample = rt.sample("eda-t1-1").await.unwrap().unwrap();
    assert_eq!((sample.cpu_percent, sample.memory_bytes), (50.0, 2_097_152));
    let m = seen(&s)
        .into_iter()
        .rfind(|r| r.path.ends_with("/metrics"))
        .unwrap();
    assert_eq!(
        m.path,
        format!("{GROUP_PATH}/providers/Microsoft.Insights/metrics")
    );
    assert_eq!(m.query["api-version"], "2018-01-01");
    assert_eq!(m.query["metricnames"], "CpuUsage,MemoryUsage");
    assert_eq!(m.query["interval"], "PT1M");

    assert_eq!(rt.list().await.unwrap(), vec!["eda-t1-1".to_string()]);

    rt.kill("eda-t1-1").await.unwrap();
    let st = rt.status("eda-t1-1").await.unwrap().unwrap();
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(137)));

    rt.remove("eda-t1-1").await.unwrap();
    rt.remove("eda-t1-1").await.unwrap();
    assert_eq!(rt.status("eda-t1-1").await.unwrap(), None);
    let deletes = seen(&s)
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == GROUP_PATH)
        .count();
    assert_eq!(deletes, 2);
}

#[actix_web::test]
async fn throttling_is_transient_and_a_failed_pull_is_image_missing() {
    let s = stand_in(3600).await;
    let rt = runtime(&s);
    s.world.lock().unwrap().throttle = true;
    let err = rt.create(&spec("eda-t1-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());

    s.world.lock().unwrap().fail_op = Some("InaccessibleImage".into());
    let err = rt.create(&spec("eda-t2-1")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing(_)), "{err:?}");
    let st = rt.status("eda-t2-1").await.unwrap().unwrap();
    assert_eq!(st.phase, Phase::Exited, "a failed group reads as exited");
}

#[actix_web::test]
async fn a_401_clears_the_credentials_cache_and_the_next_call_gets_a_new_token() {
    let s = stand_in(3600).await;
    let credential = Arc::new(StandInCredential::new(&s.base));
    let rt = runtime_with(&s, credential.clone());
    s.world.lock().unwrap().unauthorized = true;
    let err = rt.status("eda-x-1").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Rejected(_)), "{err:?}");
    assert_eq!(credential.clears.load(Ordering::SeqCst), 1);
    assert_eq!(rt.status("eda-x-1").await.unwrap(), None);
    assert_eq!(credential.clears.load(Ordering::SeqCst), 1);
    let auths: Vec<Option<String>> = seen(&s)
        .into_iter()
        .filter(|r| r.path != "/identity")
        .map(|r| r.auth)
        .collect();
    assert_eq!(
        auths,
        vec![Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]
    );
}

#[actix_web::test]
async fn an_unreachable_identity_endpoint_is_transient() {
    let s = stand_in(3600).await;
    let credential = Arc::new(StandInCredential {
        endpoint: "http://127.0.0.1:9/identity".into(),
        ..StandInCredential::new(&s.base)
    });
    let err = runtime_with(&s, credential)
        .status("eda-x-1")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(seen(&s).is_empty(), "no ARM call without a token");
}

#[actix_web::test]
async fn an_unreadable_operation_falls_back_to_polling_the_group() {
    let s = stand_in(3600).await;
    s.world.lock().unwrap().op_forbidden = true;
    let rt = runtime(&s);
    assert_eq!(rt.create(&spec("eda-t1-1")).await.unwrap(), Created::New);
    let calls: Vec<(String, String)> = seen(&s)
        .into_iter()
        .filter(|r| r.path != "/identity")
        .map(|r| (r.method, r.path))
        .collect();
    let get = ("GET".to_string(), GROUP_PATH.to_string());
    assert_eq!(
        calls,
        vec![
            get.clone(),
            ("PUT".into(), GROUP_PATH.into()),
            ("GET".into(), "/ops/eda-t1-1".into()),
            get.clone(),
            get
        ]
    );
    let g = &s.world.lock().unwrap().groups["eda-t1-1"];
    assert_eq!(g["properties"]["provisioningState"], "Succeeded");
}
