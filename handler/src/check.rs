//! `handler check`: every Azure dependency, checked with the Function App's own settings and
//! identity, each answer in words a user can act on. Nothing billable is created: it reads
//! tokens, the resource provider's registration, the identity's permissions, the MongoDB
//! server's `hello`, and whether Service Bus and the registry answer.
//!
//! Why each check, and what it reads:
//!
//! - **token**: the managed identity gives a token for ARM (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER`).
//! - **ACI provider**: `registrationState` of `Microsoft.ContainerInstance`; unregistered, every
//!   create answers 409 `MissingSubscriptionRegistration`
//!   (https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-register-resource-provider).
//! - **create permission**: `Permissions_ListForResourceGroup` (azure-rest-api-specs
//!   `specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/authorization-RoleDefinitionsCalls.json`)
//!   must allow `Microsoft.ContainerInstance/containerGroups/write` and `.../delete`.
//! - **Cosmos version**: `hello`'s `maxWireVersion` at least the driver's minimum
//!   ([`crate::store::mongo::DRIVER_MIN_WIRE_VERSION`]).
//! - **Service Bus**: a token for `https://servicebus.azure.net/` and an answer from the
//!   namespace's HTTPS endpoint (whether the roles are right only the trigger itself shows).
//! - **image**: the image names the configured registry, and the registry's `/v2/` answers
//!   (200 or 401 is "there"; the pull identity belongs to the container groups, so whether the
//!   image exists cannot be asked with the app's identity).
//! - **standby pool** (only when one is configured): the pool's container group profile can be
//!   read (`ContainerGroupProfiles_Get`), and which tasks it starts warm.

use crate::config::CheckArgs;
use crate::runtime::aci::{self, AciConfig, AciRuntime};
use crate::store::mongo::{self, MongoStore};
use azure_core::auth::TokenCredential;
use std::sync::Arc;
use std::time::Duration;

/// Errors of the check command itself (not of the things it checks: those are [`Finding`]s).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// At least one check failed (the report says which).
    #[error("{0} check(s) failed")]
    Failed(usize),
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Works.
    Ok,
    /// Could not be told; the text says what to look at.
    Warn,
    /// Broken; the text says what to do.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Which dependency.
    pub what: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found and, unless it is fine, what to do.
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.verdict {
            Verdict::Ok => "OK  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.what, self.text)
    }
}

/// Where the checks look (resolved from [`CheckArgs`], or built by tests).
#[derive(Debug, Clone)]
pub struct Target {
    /// The ACI runtime's settings (ARM endpoint, subscription, resource group, registry).
    pub aci: AciConfig,
    /// MongoDB / Cosmos DB connection string.
    pub mongo_uri: String,
    /// Worker image.
    pub image: String,
    /// Service Bus namespace host, if configured.
    pub service_bus_namespace: Option<String>,
    /// Base URL Service Bus is reached at.
    pub service_bus_endpoint: Option<String>,
    /// Base URL of the registry.
    pub registry_endpoint: Option<String>,
}

impl Target {
    /// The target of `args`, with the defaults the platform implies.
    pub fn from_args(args: &CheckArgs) -> Target {
        let aci = AciConfig::from_args(&args.azure);
        let ns = args.service_bus_namespace.clone().filter(|s| !s.is_empty());
        Target {
            service_bus_endpoint: args
                .service_bus_endpoint
                .clone()
                .or_else(|| ns.as_ref().map(|n| format!("https://{n}"))),
            registry_endpoint: args
                .registry_endpoint
                .clone()
                .or_else(|| aci.registry_server.as_ref().map(|r| format!("https://{r}"))),
            service_bus_namespace: ns,
            mongo_uri: args.azure.mongo_uri.clone(),
            image: args.image.clone(),
            aci,
        }
    }
}

fn found(what: &'static str, verdict: Verdict, text: impl Into<String>) -> Finding {
    Finding {
        what,
        verdict,
        text: text.into(),
    }
}

/// Runs every check and returns the findings in order (each check runs even when an earlier
/// one failed, so one run shows everything to fix).
pub async fn run(
    target: &Target,
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
) -> Vec<Finding> {
    let rt = AciRuntime::new(http.clone(), target.aci.clone(), credential.clone());
    let mut findings = vec![
        token(&target.aci, credential.as_ref()).await,
        registration(&rt).await,
        permission(&rt).await,
        cosmos(&target.mongo_uri).await,
        service_bus(target, &http, credential.as_ref()).await,
        image(target, &http).await,
    ];
    findings.extend(standby(&rt).await);
    findings
}

/// With a standby pool configured: whether its container group profile can be read, and
/// which tasks it starts warm.
async fn standby(rt: &AciRuntime) -> Option<Finding> {
    const W: &str = "standby pool";
    let pool = rt.config().standby.as_ref()?.pool.clone();
    Some(match rt.standby_profile().await? {
        Ok(shape) => found(
            W,
            Verdict::Ok,
            format!("{pool}: tasks of image {} with {} CPU and {} GB start warm", shape.image, shape.cpu, shape.memory_gb),
        ),
        Err(e) => found(
            W,
            Verdict::Fail,
            format!("cannot read the pool's container group profile ({e}); every task starts cold until the identity may read Microsoft.ContainerInstance/containerGroupProfiles (the custom role infra/main.bicep defines grants it)"),
        ),
    })
}

async fn token(aci: &AciConfig, credential: &dyn TokenCredential) -> Finding {
    match credential.get_token(&[aci.arm_resource.as_str()]).await {
        Ok(_) => found("token", Verdict::Ok, format!("the managed identity gives tokens for {}", aci.arm_resource)),
        Err(e) => found(
            "token",
            Verdict::Fail,
            format!("no token for {}: {e}. Turn on the Function App's system-assigned identity (Identity blade, or `identity: SystemAssigned` in infra/main.bicep)", aci.arm_resource),
        ),
    }
}

async fn registration(rt: &AciRuntime) -> Finding {
    const W: &str = "ACI provider";
    match rt.registration_state().await {
        Ok(s) if s.eq_ignore_ascii_case("Registered") => {
            found(W, Verdict::Ok, "Microsoft.ContainerInstance is registered in the subscription")
        }
        Ok(s) => found(
            W,
            Verdict::Fail,
            format!("Microsoft.ContainerInstance is {s}: {}", aci::REGISTER_HINT),
        ),
        Err(aci::AciError::Status { status, .. }) if status.as_u16() == 403 => found(
            W,
            Verdict::Warn,
            format!("the identity may not read the subscription's providers (403); ask an administrator to check `az provider show -n Microsoft.ContainerInstance --query registrationState` (if it is not Registered: {})", aci::REGISTER_HINT),
        ),
        Err(e) => found(W, Verdict::Fail, format!("cannot read the registration: {e}")),
    }
}

/// Whether `action` is matched by the ARM action pattern `pattern` (`*` matches any run of
/// characters; case-insensitive, as ARM compares actions). A `/*/` segment also matches a
/// single `/`: built-in roles grant `Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action`
/// for the action `Microsoft.ManagedIdentity/userAssignedIdentities/assign/action`.
fn action_matches(pattern: &str, action: &str) -> bool {
    glob_matches(pattern, action) || glob_matches(&pattern.replace("/*/", "/"), action)
}

/// Plain `*` glob, case-insensitive.
fn glob_matches(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| glob(rest, &a[i..])),
            Some((c, rest)) => a.first() == Some(c) && glob(rest, &a[1..]),
        }
    }
    glob(
        pattern.to_ascii_lowercase().as_bytes(),
        action.to_ascii_lowercase().as_bytes(),
    )
}

/// Whether the permission list allows `action` (an allowing `actions` entry and no matching
/// `notActions` entry in the same permission).
pub fn allowed(perms: &[(Vec<String>, Vec<String>)], action: &str) -> bool {
    perms.iter().any(|(actions, not_actions)| {
        actions.iter().any(|p| action_matches(p, action))
            && !not_actions.iter().any(|p| action_matches(p, action))
    })
}

async fn permission(rt: &AciRuntime) -> Finding {
    const W: &str = "create permission";
    let needed = [
        "Microsoft.ContainerInstance/containerGroups/write",
        "Microsoft.ContainerInstance/containerGroups/read",
        "Microsoft.ContainerInstance/containerGroups/delete",
    ];
    if let Some(f) = assign_permission(rt).await {
        return f;
    }
    match rt.permissions().await {
        Ok(perms) => {
            let missing: Vec<&str> = needed
                .iter()
                .copied()
                .filter(|a| !allowed(&perms, a))
                .collect();
            match missing.is_empty() {
                true => found(W, Verdict::Ok, format!("the identity may create, read and delete container groups in {}", rt.config().resource_group)),
                false => found(
                    W,
                    Verdict::Fail,
                    format!("the identity lacks {} on resource group {}: assign the custom role infra/main.bicep defines (or Contributor) to the Function App's identity", missing.join(", "), rt.config().resource_group),
                ),
            }
        }
        Err(e) => found(
            W,
            Verdict::Fail,
            format!("cannot list the identity's permissions: {e}"),
        ),
    }
}

/// A create that attaches the pull identity needs its `assign/action` (else ARM answers
/// `LinkedAuthorizationFailed`): `Some(FAIL)` when the identity lacks it, `None` when it has it
/// or no pull identity is configured.
async fn assign_permission(rt: &AciRuntime) -> Option<Finding> {
    const W: &str = "create permission";
    let id = rt.config().registry_identity.clone()?;
    let action = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";
    match rt.permissions_at(&id).await {
        Ok(perms) if allowed(&perms, action) => None,
        Ok(_) => Some(found(
            W,
            Verdict::Fail,
            format!("the identity lacks {action} on the pull identity {id}: assign it Managed Identity Operator there (infra/main.bicep does)"),
        )),
        Err(e) => Some(found(W, Verdict::Fail, format!("cannot list the identity's permissions on the pull identity: {e}"))),
    }
}

async fn cosmos(uri: &str) -> Finding {
    const W: &str = "Cosmos version";
    let probe = tokio::time::timeout(Duration::from_secs(40), MongoStore::wire_version(uri));
    match probe.await {
        Ok(Ok(wire)) if wire >= mongo::DRIVER_MIN_WIRE_VERSION => found(
            W,
            Verdict::Ok,
            format!(
                "the server speaks wire version {wire} (MongoDB {}); the driver needs {} or newer",
                mongo::server_version_of_wire(wire),
                mongo::DRIVER_MIN_WIRE_VERSION
            ),
        ),
        Ok(Ok(wire)) => found(
            W,
            Verdict::Fail,
            mongo::explain_incompatible(&format!("reports wire version {wire}"))
                .unwrap_or_default(),
        ),
        Ok(Err(e)) => found(
            W,
            Verdict::Fail,
            format!("{e} (check EDA_MONGO_URI and the account's firewall)"),
        ),
        Err(_) => found(
            W,
            Verdict::Fail,
            "no answer within 40 s: check EDA_MONGO_URI and the Cosmos account's network settings",
        ),
    }
}

async fn service_bus(
    target: &Target,
    http: &reqwest::Client,
    credential: &dyn TokenCredential,
) -> Finding {
    const W: &str = "Service Bus";
    let (Some(ns), Some(url)) = (&target.service_bus_namespace, &target.service_bus_endpoint)
    else {
        return found(W, Verdict::Fail, "ServiceBusConnection__fullyQualifiedNamespace is not set: the trigger and the output bindings have no namespace");
    };
    if let Err(e) = credential
        .get_token(&["https://servicebus.azure.net/"])
        .await
    {
        return found(W, Verdict::Fail, format!("no token for Service Bus: {e}"));
    }
    match http.get(url).timeout(Duration::from_secs(15)).send().await {
        Ok(r) => found(
            W,
            Verdict::Ok,
            format!("{ns} answers (HTTP {}) and the identity gets Service Bus tokens; its roles on the queue (Data Receiver, Data Owner, Data Sender) show when the trigger runs", r.status().as_u16()),
        ),
        Err(e) => found(W, Verdict::Fail, format!("{ns} cannot be reached: {e}")),
    }
}

async fn image(target: &Target, http: &reqwest::Client) -> Finding {
    const W: &str = "image";
    let image = &target.image;
    let Some(server) = &target.aci.registry_server else {
        return found(
            W,
            Verdict::Warn,
            format!(
                "no EDA_REGISTRY_SERVER: {image} must be public (ACI pulls it without credentials)"
            ),
        );
    };
    if !image.starts_with(&format!("{server}/")) {
        return found(W, Verdict::Fail, format!("{image} is not in {server}: set EDA_IMAGE to {server}/<name>:<tag> or EDA_REGISTRY_SERVER to its registry"));
    }
    if target.aci.registry_identity.is_none() {
        return found(
            W,
            Verdict::Fail,
            "EDA_REGISTRY_IDENTITY is not set: the container groups have no identity to pull with",
        );
    }
    let url = format!(
        "{}/v2/",
        target.registry_endpoint.clone().unwrap_or_default()
    );
    match http.get(&url).timeout(Duration::from_secs(15)).send().await {
        Ok(r) if r.status().is_success() || r.status().as_u16() == 401 => found(
            W,
            Verdict::Ok,
            format!("{server} answers; {image} is pulled with the pull identity (push it with `az acr build`, docs/AZURE.md)"),
        ),
        Ok(r) => found(W, Verdict::Fail, format!("{server} answered {} at /v2/: is it a container registry?", r.status())),
        Err(e) => found(W, Verdict::Fail, format!("{server} cannot be reached: {e}")),
    }
}

/// `handler check`: prints one line per check and fails when any check failed.
pub async fn main(args: CheckArgs) -> anyhow::Result<()> {
    args.require()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(CheckError::Http)?;
    let target = Target::from_args(&args);
    let credential = match aci::app_service_identity(&http) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL token: {e}. Run this in the Function App (its console has IDENTITY_ENDPOINT and IDENTITY_HEADER)");
            return Err(CheckError::Failed(1).into());
        }
    };
    let findings = run(&target, http, credential).await;
    for f in &findings {
        println!("{f}");
    }
    let failed = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    match failed {
        0 => Ok(()),
        n => Err(CheckError::Failed(n).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(actions: &[&str], not: &[&str]) -> Vec<(Vec<String>, Vec<String>)> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        vec![(v(actions), v(not))]
    }

    #[test]
    fn wildcards_and_not_actions_decide_permissions() {
        let write = "Microsoft.ContainerInstance/containerGroups/write";
        assert!(allowed(
            &perms(&["Microsoft.ContainerInstance/containerGroups/*"], &[]),
            write
        ));
        assert!(allowed(&perms(&["*"], &[]), write));
        assert!(allowed(
            &perms(&["microsoft.containerinstance/*"], &[]),
            write
        ));
        assert!(!allowed(&perms(&["*/read"], &[]), write));
        assert!(allowed(
            &perms(&["*/read"], &[]),
            "Microsoft.ContainerInstance/containerGroups/read"
        ));
        assert!(!allowed(
            &perms(&["*"], &["Microsoft.ContainerInstance/*"]),
            write
        ));
        assert!(!allowed(
            &perms(&["Microsoft.Insights/metrics/read"], &[]),
            write
        ));
        let assign = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";
        let operator = "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action";
        assert!(allowed(&perms(&[operator], &[]), assign));
    }
}
