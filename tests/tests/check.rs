//! `handler check` against the stand-ins: ARM, the identity endpoint and a registry's `/v2/`
//! (`e2e::arm`, every behaviour cited there) and the MongoDB wire-protocol stand-in
//! answering `hello` as a given server version (`tests/mongo-standin/server.py
//! --server-version`). Each broken dependency must come back as a FAIL line that says what to
//! do; a healthy setup must be all OK.

use e2e::arm::{aci_config, stand_in, StandIn, StandInCredential, RG, SUB};
use handler::check::{run, Finding, Target, Verdict};
use handler::runtime::aci::AciConfig;
use std::sync::Arc;
use std::time::Duration;

fn target(s: &StandIn, mongo_uri: &str) -> Target {
    Target {
        aci: AciConfig {
            create_wait: Duration::from_secs(5),
            ..aci_config(s)
        },
        mongo_uri: mongo_uri.into(),
        image: "myacr.azurecr.io/eda-worker:latest".into(),
        service_bus_namespace: Some("edademo-sb.servicebus.windows.net".into()),
        service_bus_endpoint: Some(format!("{}/sb", s.base)),
        registry_endpoint: Some(s.base.clone()),
    }
}

async fn check(s: &StandIn, mongo_uri: &str) -> Vec<Finding> {
    let credential = Arc::new(StandInCredential::new(&s.base));
    run(&target(s, mongo_uri), reqwest::Client::new(), credential).await
}

fn line<'a>(findings: &'a [Finding], what: &str) -> &'a Finding {
    findings.iter().find(|f| f.what == what).unwrap()
}

/// A MongoDB server answering as `version`, or a loud skip (mandatory in CI).
fn mongo(version: &str) -> Option<e2e::mongo::MongoStandIn> {
    let s = e2e::mongo::start_with(&["--server-version", version]);
    e2e::need("the MongoDB stand-in (pymongo + mongomock)", s.is_some());
    s
}

#[actix_web::test]
async fn a_healthy_setup_is_all_ok() {
    let Some(m) = mongo("6.0") else { return };
    let s = stand_in(3600).await;
    let findings = check(&s, &format!("{}?serverSelectionTimeoutMS=5000", m.uri)).await;
    for f in &findings {
        assert_eq!(f.verdict, Verdict::Ok, "{f}");
    }
    let whats: Vec<&str> = findings.iter().map(|f| f.what).collect();
    assert_eq!(
        whats,
        [
            "token",
            "ACI provider",
            "create permission",
            "Cosmos version",
            "Service Bus",
            "image"
        ]
    );
    assert!(line(&findings, "Cosmos version")
        .text
        .contains("wire version 17 (MongoDB 6.0)"));
    // Nothing billable: no container group was created, only reads.
    let w = s.world.lock().unwrap();
    assert!(w.groups.is_empty());
    assert!(w.seen.iter().all(|r| r.method == "GET"), "{:?}", w.seen);
}

#[actix_web::test]
async fn each_broken_dependency_says_what_to_do() {
    let Some(m) = mongo("4.2") else { return };
    let s = stand_in(3600).await;
    {
        let mut w = s.world.lock().unwrap();
        w.unregistered = true;
        w.permissions = Some(vec!["*/read".into()]);
    }
    let mut t = target(&s, &format!("{}?serverSelectionTimeoutMS=5000", m.uri));
    t.image = "docker.io/library/busybox:latest".into();
    t.service_bus_namespace = None;
    let credential = Arc::new(StandInCredential::new(&s.base));
    let findings = run(&t, reqwest::Client::new(), credential).await;
    for f in &findings[1..] {
        assert_eq!(f.verdict, Verdict::Fail, "{f}");
    }
    let text = |w: &str| line(&findings, w).text.clone();
    assert!(text("ACI provider")
        .contains("az provider register --namespace Microsoft.ContainerInstance"));
    assert!(text("create permission").contains("Microsoft.ContainerInstance/containerGroups/write"));
    let cosmos = text("Cosmos version");
    assert!(
        cosmos.contains("MongoDB 4.2") && cosmos.contains("MongoDB 4.4+"),
        "{cosmos}"
    );
    assert!(text("Service Bus").contains("ServiceBusConnection__fullyQualifiedNamespace"));
    assert!(text("image").contains("is not in myacr.azurecr.io"));
}

#[actix_web::test]
async fn no_identity_and_no_registry_are_named() {
    let s = stand_in(3600).await;
    let credential = Arc::new(StandInCredential {
        endpoint: "http://127.0.0.1:9/identity".into(),
        ..StandInCredential::new(&s.base)
    });
    let mut t = target(&s, "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500");
    t.registry_endpoint = Some("http://127.0.0.1:9".into());
    let findings = run(&t, reqwest::Client::new(), credential).await;
    let token = line(&findings, "token");
    assert_eq!(token.verdict, Verdict::Fail);
    assert!(token.text.contains("system-assigned identity"), "{token}");
    let image = line(&findings, "image");
    assert_eq!(image.verdict, Verdict::Fail);
    assert!(image.text.contains("cannot be reached"), "{image}");
    assert_eq!(line(&findings, "Cosmos version").verdict, Verdict::Fail);
}

/// The real binary, configured by environment as the Function App's console would be: the
/// token comes from `azure_identity`'s App Service credential (`IDENTITY_ENDPOINT`,
/// `IDENTITY_HEADER`), each finding is one line, and any FAIL makes the exit status non-zero.
#[actix_web::test]
async fn the_check_command_prints_one_line_per_dependency_and_fails_on_a_fail() {
    let Some(m) = mongo("6.0") else { return };
    let s = stand_in(3600).await;
    let run_binary = |s: &StandIn| {
        let envs = [
            ("IDENTITY_ENDPOINT", format!("{}/identity", s.base)),
            ("IDENTITY_HEADER", e2e::arm::IDENTITY_SECRET.to_string()),
            ("EDA_ARM_ENDPOINT", s.base.clone()),
            ("EDA_SUBSCRIPTION_ID", SUB.to_string()),
            ("EDA_RESOURCE_GROUP", RG.to_string()),
            ("EDA_LOCATION", "westeurope".to_string()),
            ("EDA_MONGO_URI", format!("{}?serverSelectionTimeoutMS=5000", m.uri)),
            ("EDA_IMAGE", "myacr.azurecr.io/eda-worker:latest".to_string()),
            ("EDA_REGISTRY_SERVER", "myacr.azurecr.io".to_string()),
            ("EDA_REGISTRY_IDENTITY", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull".to_string()),
            ("EDA_REGISTRY_ENDPOINT", s.base.clone()),
            ("ServiceBusConnection__fullyQualifiedNamespace", "edademo-sb.servicebus.windows.net".to_string()),
            ("EDA_SERVICE_BUS_ENDPOINT", format!("{}/sb", s.base)),
        ];
        let mut cmd = std::process::Command::new(e2e::faults::handler_bin());
        cmd.arg("check").env_clear().envs(envs);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let ok = run_binary(&s).await.unwrap();
    let out = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(
        ok.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK   ")).count(),
        6,
        "{out}"
    );

    s.world.lock().unwrap().unregistered = true;
    let bad = run_binary(&s).await.unwrap();
    let out = String::from_utf8_lossy(&bad.stdout).to_string();
    assert!(!bad.status.success(), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL ACI provider:")
            && l.contains("az provider register --namespace Microsoft.ContainerInstance")),
        "{out}"
    );
}

/// Attaching the pull identity needs its `assign/action`; without it every create would fail
/// with `LinkedAuthorizationFailed`, so the check says which role to assign where.
#[actix_web::test]
async fn a_missing_assign_permission_on_the_pull_identity_is_named() {
    let s = stand_in(3600).await;
    s.world.lock().unwrap().resource_permissions = Some(vec!["*/read".into()]);
    let findings = check(&s, "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500").await;
    let f = line(&findings, "create permission");
    assert_eq!(f.verdict, Verdict::Fail, "{f}");
    assert!(
        f.text.contains("userAssignedIdentities/assign/action")
            && f.text.contains("Managed Identity Operator"),
        "{f}"
    );
    let asked = s.world.lock().unwrap().seen.iter().any(|r| {
        r.path == "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull/providers/Microsoft.Authorization/permissions"
    });
    assert!(asked, "asked on the pull identity itself");
}
