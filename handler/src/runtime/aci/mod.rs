//! Azure Container Instances: one container group per task attempt, over the ARM REST API.
//!
//! # Why reqwest for ARM, and `azure_identity` for the token
//!
//! Request and response bodies are the `azure_mgmt_containerinstance` models (`ContainerGroup`,
//! `EnvironmentVariable` with `secure_value`, `ResourceRequirements`, the instance view), so the
//! JSON shape is the one generated from Microsoft's REST specification. The ARM calls are made
//! with `reqwest` directly because:
//!
//! - the generated client hides the long-running operation: we poll `Azure-AsyncOperation`
//!   ourselves, with our own interval and deadline, and hand a slow creation to the reconciler
//!   instead of blocking a Functions invocation for minutes;
//! - every ARM and Azure Monitor endpoint comes from [`AciConfig`], so the tests point them at
//!   one local stand-in server.
//!
//! The bearer token comes from an `azure_core` [`TokenCredential`], the seam between this
//! runtime and the identity. In production it is `azure_identity`'s
//! `AppServiceManagedIdentityCredential` ([`app_service_identity`]): the Function App's
//! system-assigned managed identity, `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=..`
//! with `X-IDENTITY-HEADER`, and the crate's token cache (renewed 20 s before expiry; concurrent
//! callers at expiry make one request). It sends its requests through our `reqwest` client.
//!
//! **An exception to "only `config` reads the environment":** `azure_identity` 0.21 reads
//! `IDENTITY_ENDPOINT` (once, when the credential is created) and `IDENTITY_HEADER` (on every
//! token request) from the process environment itself; it has no way to pass either value in
//! (its in-memory environment is crate-private and the header is read with `std::env::var`).
//! App Service sets both, so that is where they must be. `config` still reads them, only to
//! refuse to start with a clear message when they are missing ([`AciError::NoIdentity`]).
//! 0.21 has no user-assigned identity for this credential (its client-id variant is
//! crate-private), which is why the Function App uses its system-assigned identity for ARM.
//! The in-process tests inject their own [`TokenCredential`] pointing at the stand-in; the
//! process test runs the real binary with both variables set, through this crate path.
//!
//! # Layout
//!
//! - this file: settings, the runtime and its [`ContainerRuntime`] calls;
//! - `arm`: talking to ARM (token, URLs, answers, the group body, the create operation);
//! - [`standby`]: warm starts from an ACI standby pool;
//! - [`logs`]: logs captured while containers run; `error`: Azure's errors sorted into
//!   [`RuntimeError`]s; `view`: group states and Azure Monitor samples.
//!
//! # The API
//!
//! - create: `GET` the group first (exists: [`Created::AlreadyExisted`], no `PUT`), else claim
//!   a ready group from the standby pool when one is configured and the task fits its profile
//!   ([`standby`]), else `PUT` it cold; then poll the operation until
//!   `Succeeded`/`Failed` or [`AciConfig::create_wait`].
//! - status: the group's `instanceView.state` (Stopped, Succeeded, Failed: over), then its
//!   container's `currentState` ([`status_of`]).
//! - kill: `POST .../stop`; remove: `DELETE` (200, 202, 204 and 404 are all fine).
//! - logs: `GET .../containers/{name}/logs?tail=&timestamps=true`, read while the container
//!   runs and once more at the end, merged by [`logs`]; metrics: Azure Monitor
//!   `CpuUsage`, `MemoryUsage` on the group's resource id.
//!
//! Errors: 5xx, 408 and transport errors are [`RuntimeError::Unavailable`]; ARM's 429 and a
//! container-group quota reached are [`RuntimeError::Throttled`] with the `Retry-After` Azure
//! gave; 409 `MissingSubscriptionRegistration` is [`RuntimeError::NotSetUp`] with the command
//! that fixes it. All three are transient: never the message's fault.

mod arm;
mod error;
pub mod logs;
pub mod standby;
mod view;

pub use error::{AciError, NOT_REGISTERED, REGISTER_HINT};
use logs::Capture;
pub use standby::{Shape, Standby};
pub use view::{sample_of, status_of};

use super::{ContainerRuntime, ContainerSpec, ContainerStatus, Created, Phase, RuntimeError};
use crate::config::AzureArgs;
use arm::retry_after;
use async_trait::async_trait;
use azure_core::auth::TokenCredential;
use azure_identity::{AppServiceManagedIdentityCredential, TokenCredentialOptions};
use azure_mgmt_containerinstance::models::ContainerGroup;
use model::{Logs, MetricSample};
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The ARM API version of the container group calls: the newest stable one,
/// azure-rest-api-specs
/// `specification/containerinstance/resource-manager/Microsoft.ContainerInstance/stable/2025-09-01/containerInstance.json`.
/// The bodies are `azure_mgmt_containerinstance`'s 2024-05-01-preview models; every field we
/// send (see [`AciRuntime::group_body`]) exists with the same name and shape in 2025-09-01,
/// which `tests/tests/aci_runtime.rs` checks field by field against a list taken from that
/// spec, and every field we read (`provisioningState`, `instanceView.state`, the containers'
/// `instanceView.currentState`, `Logs.content`) is there too.
pub const API_VERSION: &str = "2025-09-01";
/// The Resources API version used to read the provider's registration state
/// (`GET /subscriptions/{id}/providers/Microsoft.ContainerInstance`).
pub const PROVIDERS_API_VERSION: &str = "2021-04-01";
/// Lines asked for per read of a container's log.
pub const LOG_TAIL_LINES: usize = 5_000;
/// The Azure Monitor metrics API version.
pub const METRICS_API_VERSION: &str = "2018-01-01";

/// `memory_mb` as ACI asks for memory: GB in steps of 0.1, at least 0.1.
pub fn memory_gb(memory_mb: u32) -> f64 {
    let gb = f64::from(memory_mb) / 1024.0;
    ((gb * 10.0).ceil() / 10.0).max(0.1)
}

/// How long a failed read of the standby pool's profile keeps tasks cold before it is tried
/// again (each try is one ARM read).
const PROFILE_RETRY: Duration = Duration::from_secs(300);

/// The resolved settings of the ACI runtime.
#[derive(Debug, Clone)]
pub struct AciConfig {
    /// ARM base URL without a trailing slash (tests: the stand-in server).
    pub arm_endpoint: String,
    /// Token audience for ARM.
    pub arm_resource: String,
    /// Subscription of the container groups.
    pub subscription_id: String,
    /// Resource group of the container groups.
    pub resource_group: String,
    /// Region of the container groups.
    pub location: String,
    /// Registry server of the worker image, if private.
    pub registry_server: Option<String>,
    /// User-assigned identity (resource id) the groups pull the image with.
    pub registry_identity: Option<String>,
    /// The worker's path in the image (ACI `command` replaces the entrypoint).
    pub entrypoint: String,
    /// Time between polls of the create operation (unless `Retry-After` asks for more).
    pub poll: Duration,
    /// How long `create` waits for the operation before leaving it to the reconciler.
    pub create_wait: Duration,
    /// The standby pool to claim warm container groups from, if any ([`standby`]).
    pub standby: Option<Standby>,
}

impl AciConfig {
    /// Builds the runtime settings from the parsed flags.
    pub fn from_args(a: &AzureArgs) -> AciConfig {
        AciConfig {
            arm_endpoint: a.arm_endpoint.trim_end_matches('/').to_string(),
            arm_resource: a.arm_resource.clone(),
            subscription_id: a.subscription_id.clone(),
            resource_group: a.resource_group.clone(),
            location: a.location.clone(),
            registry_server: a.registry_server.clone().filter(|s| !s.is_empty()),
            registry_identity: a.registry_identity.clone().filter(|s| !s.is_empty()),
            entrypoint: a.aci_entrypoint.clone(),
            poll: Duration::from_millis(a.aci_poll_ms.max(10)),
            create_wait: Duration::from_secs(a.aci_create_wait_secs),
            standby: a
                .aci_standby_pool
                .clone()
                .filter(|p| !p.is_empty())
                .zip(a.aci_group_profile.clone())
                .map(|(pool, profile)| Standby {
                    pool,
                    profile,
                    revision: a.aci_group_profile_revision,
                }),
        }
    }
}

/// `azure_identity`'s App Service managed-identity credential, sending its requests through
/// `http` (our client, so there is one TLS stack and one timeout). Reads `IDENTITY_ENDPOINT` now
/// and `IDENTITY_HEADER` on each token request, from the process environment (module docs).
pub fn app_service_identity(http: &reqwest::Client) -> Result<Arc<dyn TokenCredential>, AciError> {
    let client: Arc<dyn azure_core::HttpClient> = Arc::new(http.clone());
    let credential = AppServiceManagedIdentityCredential::create(TokenCredentialOptions::from(
        client,
    ))
    .map_err(|e| AciError::NoIdentity {
        what: "azure_identity refused the App Service identity settings".into(),
        source: Some(e),
    })?;
    Ok(Arc::new(credential))
}

/// The ACI backend of [`ContainerRuntime`].
pub struct AciRuntime {
    /// Shared HTTP client (connection pool) for ARM and Azure Monitor.
    http: reqwest::Client,
    /// Where and how.
    cfg: AciConfig,
    /// Bearer tokens for ARM (caches them itself).
    credential: Arc<dyn TokenCredential>,
    /// Logs captured while containers run, by container name ([`logs`]): filled by
    /// [`ContainerRuntime::status`] when it sees a running container, completed and read by
    /// [`ContainerRuntime::logs`], dropped by [`ContainerRuntime::remove`]. In this process's
    /// memory: another instance or a restart starts from what ACI still holds (and says when
    /// that was cut).
    captures: Mutex<HashMap<String, Capture>>,
    /// Lines asked for per log read ([`LOG_TAIL_LINES`] unless [`AciRuntime::with_log_capture`]).
    log_tail: usize,
    /// Least time between two log reads of one running container (ARM read budget).
    log_every: Duration,
    /// The standby pool's profile as last read ([`standby`]): its shape, or when reading it
    /// failed (tasks start cold until [`PROFILE_RETRY`] has passed).
    profile: Mutex<Option<Result<Shape, Instant>>>,
    /// Each group's container name, when it is not the group's own (a group claimed from a
    /// standby pool has its profile's container): logs are read by container name. Learnt from
    /// every read of a group, so it survives a restart of this process.
    container_names: Mutex<HashMap<String, String>>,
}

impl AciRuntime {
    /// A runtime for `cfg`, authenticating with tokens for `cfg.arm_resource` from `credential`.
    pub fn new(
        http: reqwest::Client,
        cfg: AciConfig,
        credential: Arc<dyn TokenCredential>,
    ) -> AciRuntime {
        AciRuntime {
            http,
            cfg,
            credential,
            captures: Mutex::new(HashMap::new()),
            log_tail: LOG_TAIL_LINES,
            log_every: Duration::from_secs(5),
            profile: Mutex::new(None),
            container_names: Mutex::new(HashMap::new()),
        }
    }

    /// Reads a running container's log at most once per `every`, `tail_lines` lines at a time
    /// (defaults: every 5 s, [`LOG_TAIL_LINES`]).
    pub fn with_log_capture(mut self, tail_lines: usize, every: Duration) -> AciRuntime {
        self.log_tail = tail_lines.max(1);
        self.log_every = every;
        self
    }

    /// The settings this runtime was built with.
    pub fn config(&self) -> &AciConfig {
        &self.cfg
    }

    /// Builds the runtime from the parsed flags with the Function App's managed identity
    /// ([`app_service_identity`]); fails when App Service did not give this process one.
    pub fn from_args(a: &AzureArgs) -> Result<AciRuntime, AciError> {
        if a.identity_endpoint.is_none() || !a.identity_header_set {
            return Err(AciError::NoIdentity {
                what: "IDENTITY_ENDPOINT and IDENTITY_HEADER must be set".into(),
                source: None,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let credential = app_service_identity(&http)?;
        Ok(AciRuntime::new(http, AciConfig::from_args(a), credential))
    }
}

#[async_trait]
impl ContainerRuntime for AciRuntime {
    fn kind(&self) -> &'static str {
        "aci"
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<Created, RuntimeError> {
        if self.get_group(&spec.name).await?.is_some() {
            return Ok(Created::AlreadyExisted);
        }
        let a = match self.claim(spec).await? {
            Some(claimed) => claimed,
            None => {
                let url = self.url(&self.group_id(&spec.name), API_VERSION);
                let a = self
                    .call(Method::PUT, &url, Some(&self.group_body(spec)))
                    .await?;
                if !a.status.is_success() {
                    return Err(a.into_error().into());
                }
                a
            }
        };
        let created: Option<ContainerGroup> = a.json().ok();
        let done = created
            .and_then(|g| g.container_group_properties.properties.provisioning_state)
            .is_some_and(|s| s == "Succeeded");
        if !done {
            let op = a
                .headers
                .get("azure-asyncoperation")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let first = retry_after(&a.headers).unwrap_or(self.cfg.poll);
            self.wait_for(&spec.name, op, first).await?;
        }
        Ok(Created::New)
    }

    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, RuntimeError> {
        let status = self.get_group(name).await?.as_ref().map(status_of);
        if status.as_ref().is_some_and(|s| s.phase == Phase::Running) {
            self.capture_while_running(name).await;
        }
        Ok(status)
    }

    async fn kill(&self, name: &str) -> Result<(), RuntimeError> {
        let url = self.url(&format!("{}/stop", self.group_id(name)), API_VERSION);
        let a = self.call(Method::POST, &url, None).await?;
        match a.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(a.into_error().into()),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let url = self.url(&self.group_id(name), API_VERSION);
        let a = self.call(Method::DELETE, &url, None).await?;
        match a.status {
            // 200, 202 ("Delete started") and 204 ("not found") per the spec's
            // ContainerGroups_Delete; 404 from a proxy in between is fine too.
            s if s.is_success() || s == StatusCode::NOT_FOUND => {
                let mut captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
                captures.remove(name);
                let mut names = self
                    .container_names
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                names.remove(name);
                Ok(())
            }
            _ => Err(a.into_error().into()),
        }
    }

    async fn logs(&self, name: &str, max_bytes: usize) -> Result<Logs, RuntimeError> {
        // One last read completes what was captured while it ran ([`logs`]).
        self.capture_logs(name).await?;
        let captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = captures.get(name) else {
            return Ok(Logs {
                text: String::new(),
                truncated: false,
            });
        };
        let logs = Logs {
            text: c.text.clone(),
            truncated: c.truncated,
        };
        Ok(logs.last(max_bytes))
    }

    async fn sample(&self, name: &str) -> Result<Option<MetricSample>, RuntimeError> {
        let url = format!(
            "{}&metricnames=CpuUsage,MemoryUsage&interval=PT1M&aggregation=Average",
            self.url(
                &format!(
                    "{}/providers/Microsoft.Insights/metrics",
                    self.group_id(name)
                ),
                METRICS_API_VERSION
            )
        );
        let a = self.call(Method::GET, &url, None).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !a.status.is_success() {
            return Err(a.into_error().into());
        }
        sample_of(&a.body)
    }

    async fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let names = self.list_groups().await?;
        // Groups another instance deleted leave no capture behind here.
        let mut captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
        captures.retain(|name, _| names.contains(name));
        Ok(names)
    }
}
