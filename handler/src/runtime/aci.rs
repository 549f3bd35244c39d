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
//! # The API
//!
//! - create: `GET` the group first (exists: [`Created::AlreadyExisted`], no `PUT`), else `PUT`
//!   it and poll the operation until `Succeeded`/`Failed` or [`AciConfig::create_wait`].
//! - status: the group's `instanceView` and its container's `currentState`.
//! - kill: `POST .../stop`; remove: `DELETE` (202, 204 and 404 are all fine).
//! - logs: `GET .../containers/{name}/logs?tail=`; metrics: Azure Monitor `CpuUsage`,
//!   `MemoryUsage` on the group's resource id.
//!
//! 429 and 5xx (and transport errors) are [`RuntimeError::Unavailable`]: the spawner retries them
//! without spending one of the message's deliveries.

use super::{ContainerRuntime, ContainerSpec, ContainerStatus, Created, Phase, RuntimeError};
use crate::config::AzureArgs;
use async_trait::async_trait;
use azure_core::auth::TokenCredential;
use azure_identity::{AppServiceManagedIdentityCredential, TokenCredentialOptions};
use azure_mgmt_containerinstance::models::{
    container_group_properties::{
        properties::{OsType, RestartPolicy},
        Properties,
    },
    Container, ContainerGroup, ContainerGroupIdentity, ContainerGroupProperties,
    ContainerProperties, EnvironmentVariable, ImageRegistryCredential, ResourceRequests,
    ResourceRequirements,
};
use model::{Logs, MetricSample};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ARM API version of the container group calls: the one the models were generated from
/// (`azure_mgmt_containerinstance`'s default tag, package-preview-2024-05).
pub const API_VERSION: &str = "2024-05-01-preview";
/// The Azure Monitor metrics API version.
pub const METRICS_API_VERSION: &str = "2018-01-01";

/// Errors talking to Azure, before they are mapped to [`RuntimeError`] in one place.
#[derive(Debug, thiserror::Error)]
pub enum AciError {
    /// No managed identity is configured (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER` missing or
    /// not a URL).
    #[error("no managed identity: {0}")]
    NoIdentity(String),
    /// The identity endpoint refused or answered something unreadable.
    #[error("managed identity token: {0}")]
    Identity(String),
    /// The identity endpoint did not answer, or answered 429/5xx: worth trying again.
    #[error("managed identity endpoint unavailable: {0}")]
    IdentityUnavailable(String),
    /// Azure answered an error status with its `{"error": {code, message}}` body.
    #[error("{status} {code}: {message}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// ARM error code, e.g. `InaccessibleImage`.
        code: String,
        /// ARM error message.
        message: String,
    },
    /// The long-running create operation ended `Failed` or `Canceled`.
    #[error("container group creation {status}: {code}: {message}")]
    OperationFailed {
        /// Final status of the operation.
        status: String,
        /// Error code of the operation.
        code: String,
        /// Error message of the operation.
        message: String,
    },
    /// The request did not get an answer (connection refused, timeout).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// A body did not have the documented shape.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl From<AciError> for RuntimeError {
    fn from(e: AciError) -> RuntimeError {
        let text = e.to_string();
        match &e {
            AciError::Transport(_) | AciError::IdentityUnavailable(_) => {
                RuntimeError::Unavailable(text)
            }
            AciError::Status { status, .. }
                if *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
                    || status.is_server_error() =>
            {
                RuntimeError::Unavailable(text)
            }
            AciError::Status { code, .. } | AciError::OperationFailed { code, .. }
                if is_image_error(code) =>
            {
                RuntimeError::ImageMissing(text)
            }
            AciError::Status { status, .. } if status.is_client_error() => {
                RuntimeError::Rejected(text)
            }
            AciError::OperationFailed { .. } => RuntimeError::Rejected(text),
            AciError::NoIdentity(_)
            | AciError::Identity(_)
            | AciError::Status { .. }
            | AciError::Decode(_) => RuntimeError::Other(text),
        }
    }
}

/// Sorts a credential error: no answer, throttling and server errors are transient.
fn identity_error(e: &azure_core::Error) -> AciError {
    let transient = match e.kind() {
        azure_core::error::ErrorKind::Io => true,
        azure_core::error::ErrorKind::HttpResponse { status, .. } => {
            status.is_server_error() || *status == azure_core::StatusCode::TooManyRequests
        }
        _ => false,
    };
    match transient {
        true => AciError::IdentityUnavailable(e.to_string()),
        false => AciError::Identity(e.to_string()),
    }
}

/// ARM error codes that mean the image cannot be had (wrong name, no pull permission).
fn is_image_error(code: &str) -> bool {
    [
        "InaccessibleImage",
        "ImageNotFound",
        "RegistryErrorResponse",
    ]
    .iter()
    .any(|c| code.eq_ignore_ascii_case(c))
}

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
        }
    }
}

/// `azure_identity`'s App Service managed-identity credential, sending its requests through
/// `http` (our client, so there is one TLS stack and one timeout). Reads `IDENTITY_ENDPOINT` now
/// and `IDENTITY_HEADER` on each token request, from the process environment (module docs).
pub fn app_service_identity(http: &reqwest::Client) -> Result<Arc<dyn TokenCredential>, AciError> {
    let client: Arc<dyn azure_core::HttpClient> = Arc::new(http.clone());
    let credential =
        AppServiceManagedIdentityCredential::create(TokenCredentialOptions::from(client))
            .map_err(|e| AciError::NoIdentity(e.to_string()))?;
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
}

/// ARM's error body.
#[derive(Deserialize, Default)]
struct CloudError {
    #[serde(default)]
    error: CloudErrorBody,
}

/// ARM's error details.
#[derive(Deserialize, Default)]
struct CloudErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The body of an `Azure-AsyncOperation` URL.
#[derive(Deserialize)]
struct OperationStatus {
    status: String,
    #[serde(default)]
    error: Option<CloudErrorBody>,
}

/// One answer from Azure, whatever its status.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    /// The answer as an error (for statuses the caller does not expect).
    fn into_error(self) -> AciError {
        let e: CloudError = serde_json::from_slice(&self.body).unwrap_or_default();
        AciError::Status {
            status: self.status,
            code: e.error.code,
            message: e.error.message,
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AciError> {
        serde_json::from_slice(&self.body).map_err(|e| AciError::Decode(e.to_string()))
    }
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
        }
    }

    /// Builds the runtime from the parsed flags with the Function App's managed identity
    /// ([`app_service_identity`]); fails when App Service did not give this process one.
    pub fn from_args(a: &AzureArgs) -> Result<AciRuntime, AciError> {
        if a.identity_endpoint.is_none() || !a.identity_header_set {
            return Err(AciError::NoIdentity(
                "IDENTITY_ENDPOINT and IDENTITY_HEADER must be set".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let credential = app_service_identity(&http)?;
        Ok(AciRuntime::new(http, AciConfig::from_args(a), credential))
    }

    /// A bearer token for ARM, from the credential (which caches it).
    async fn token(&self) -> Result<String, AciError> {
        let scope = self.cfg.arm_resource.as_str();
        match self.credential.get_token(&[scope]).await {
            Ok(t) => Ok(t.token.secret().to_string()),
            Err(e) => Err(identity_error(&e)),
        }
    }

    /// The container group's resource id (also the Azure Monitor resource).
    fn group_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups/{name}",
            self.cfg.subscription_id, self.cfg.resource_group
        )
    }

    /// Full URL of `path` (a resource id plus suffix) at `api_version`.
    fn url(&self, path: &str, api_version: &str) -> String {
        format!("{}{path}?api-version={api_version}", self.cfg.arm_endpoint)
    }

    /// Sends one authenticated request; answers every status (callers decide what is fine).
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&ContainerGroup>,
    ) -> Result<Answer, AciError> {
        let token = self.token().await?;
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        if status == StatusCode::UNAUTHORIZED {
            // The token was revoked or is for another audience: ask for a fresh one next time.
            let _ = self.credential.clear_cache().await;
        }
        let body = resp.bytes().await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// The group as ARM has it, or `None` when there is none.
    async fn get_group(&self, name: &str) -> Result<Option<ContainerGroup>, AciError> {
        let url = self.url(&self.group_id(name), API_VERSION);
        let a = self.call(Method::GET, &url, None).await?;
        match a.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => a.json().map(Some),
            _ => Err(a.into_error()),
        }
    }

    /// The request body of a task's container group.
    pub fn group_body(&self, spec: &ContainerSpec) -> ContainerGroup {
        let mut env: Vec<EnvironmentVariable> = Vec::new();
        for (k, v) in &spec.env {
            let mut e = EnvironmentVariable::new(k.clone());
            e.value = Some(v.clone());
            env.push(e);
        }
        for (k, v) in &spec.secret_env {
            let mut e = EnvironmentVariable::new(k.clone());
            e.secure_value = Some(v.clone());
            env.push(e);
        }
        let mut props = ContainerProperties::new();
        props.image = Some(spec.image.clone());
        props.environment_variables = env;
        if !spec.args.is_empty() {
            props.command = std::iter::once(self.cfg.entrypoint.clone())
                .chain(spec.args.iter().cloned())
                .collect();
        }
        let gb = f64::from(spec.resources.memory_mb) / 1024.0;
        // ACI wants memory in steps of 0.1 GB.
        let gb = ((gb * 10.0).ceil() / 10.0).max(0.1);
        props.resources = Some(ResourceRequirements::new(ResourceRequests::new(
            gb,
            spec.resources.cpu,
        )));
        let mut p = Properties::new(vec![Container::new(spec.name.clone(), props)]);
        p.os_type = Some(OsType::Linux);
        p.restart_policy = Some(RestartPolicy::Never);
        let mut group = ContainerGroup::new(ContainerGroupProperties::new(p));
        group.resource.location = Some(self.cfg.location.clone());
        group.resource.tags = Some(serde_json::json!({ "eda": "task" }));
        if let Some(server) = &self.cfg.registry_server {
            let mut cred = ImageRegistryCredential::new(server.clone());
            cred.identity = self.cfg.registry_identity.clone();
            let props = &mut group.container_group_properties;
            props.properties.image_registry_credentials = vec![cred];
            if let Some(id) = &self.cfg.registry_identity {
                let mut ident = ContainerGroupIdentity::new();
                ident.type_ = Some(
                    azure_mgmt_containerinstance::models::container_group_identity::Type::UserAssigned,
                );
                ident.user_assigned_identities = Some(serde_json::json!({ id: {} }));
                props.identity = Some(ident);
            }
        }
        group
    }

    /// Polls the create operation until it ends or the wait is over (then the reconciler
    /// watches the group like any other). When the operation URL cannot be read (it lives at
    /// subscription scope, outside a role assigned on the resource group) or was not given,
    /// the group's own `provisioningState` is polled instead.
    async fn wait_for(
        &self,
        name: &str,
        mut op_url: Option<String>,
        first_delay: Duration,
    ) -> Result<(), AciError> {
        let deadline = Instant::now() + self.cfg.create_wait;
        let mut delay = first_delay;
        loop {
            if Instant::now() + delay > deadline {
                tracing::warn!(
                    name,
                    "container group still provisioning; reconciler takes over"
                );
                return Ok(());
            }
            tokio::time::sleep(delay).await;
            delay = self.cfg.poll;
            let (status, error) = match &op_url {
                Some(url) => {
                    let a = self.call(Method::GET, url, None).await?;
                    if matches!(a.status.as_u16(), 401 | 403 | 404) {
                        tracing::info!(name, status = %a.status, "operation status unreadable; polling the group");
                        op_url = None;
                        delay = Duration::ZERO;
                        continue;
                    }
                    if !a.status.is_success() {
                        return Err(a.into_error());
                    }
                    delay = retry_after(&a.headers).unwrap_or(self.cfg.poll);
                    let op: OperationStatus = a.json()?;
                    (op.status, op.error.unwrap_or_default())
                }
                None => match self.get_group(name).await? {
                    Some(g) => {
                        let p = g.container_group_properties.properties;
                        let state = p.provisioning_state.unwrap_or_default();
                        let message = last_event(&p.containers);
                        let code = "ProvisioningFailed".to_string();
                        (state, CloudErrorBody { code, message })
                    }
                    None => {
                        return Err(AciError::Decode(format!(
                            "group {name} vanished while being created"
                        )))
                    }
                },
            };
            match status.as_str() {
                "Succeeded" => return Ok(()),
                "Failed" | "Canceled" => {
                    return Err(AciError::OperationFailed {
                        status,
                        code: error.code,
                        message: error.message,
                    })
                }
                _ => {}
            }
        }
    }

    /// Every group of ours in the resource group, following `nextLink`.
    async fn list_groups(&self) -> Result<Vec<String>, AciError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            value: Vec<Named>,
            #[serde(rename = "nextLink", default)]
            next_link: Option<String>,
        }
        #[derive(Deserialize)]
        struct Named {
            #[serde(default)]
            name: String,
        }
        let path = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups",
            self.cfg.subscription_id, self.cfg.resource_group
        );
        let mut next = Some(self.url(&path, API_VERSION));
        let mut names = Vec::new();
        while let Some(url) = next.take() {
            let a = self.call(Method::GET, &url, None).await?;
            if !a.status.is_success() {
                return Err(a.into_error());
            }
            let page: Page = a.json()?;
            names.extend(page.value.into_iter().map(|n| n.name));
            next = page.next_link.filter(|l| !l.is_empty());
        }
        names.retain(|n| n.starts_with(model::naming::PREFIX));
        Ok(names)
    }
}

/// The newest event message of the group's container (why provisioning failed).
fn last_event(containers: &[Container]) -> String {
    containers
        .first()
        .and_then(|c| c.properties.instance_view.as_ref())
        .and_then(|v| v.events.last())
        .and_then(|e| e.message.clone())
        .unwrap_or_default()
}

/// The `Retry-After` header in seconds, capped at a minute.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = h.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// Reads the status of a group from its provisioning state and its container's instance view.
pub fn status_of(group: &ContainerGroup) -> ContainerStatus {
    let p = &group.container_group_properties.properties;
    let current = p
        .containers
        .first()
        .and_then(|c| c.properties.instance_view.as_ref())
        .and_then(|v| v.current_state.as_ref());
    let starting = ContainerStatus {
        phase: Phase::Starting,
        exit_code: None,
        oom_killed: false,
        detail: None,
    };
    if let Some(s) = current {
        let detail = s.detail_status.clone().filter(|d| !d.is_empty());
        let oom = detail.as_deref().is_some_and(|d| d.contains("OOMKilled"));
        return match s.state.as_deref() {
            Some("Running") => ContainerStatus {
                phase: Phase::Running,
                ..starting
            },
            Some("Terminated") => ContainerStatus {
                phase: Phase::Exited,
                exit_code: s.exit_code.map(i64::from),
                oom_killed: oom,
                detail,
            },
            _ => ContainerStatus { detail, ..starting },
        };
    }
    match p.provisioning_state.as_deref() {
        Some("Failed") | Some("Canceled") => ContainerStatus {
            phase: Phase::Exited,
            exit_code: None,
            oom_killed: false,
            detail: Some(format!(
                "container group provisioning {}",
                p.provisioning_state.as_deref().unwrap_or_default()
            )),
        },
        _ => starting,
    }
}

/// Azure Monitor's metrics answer (only the fields we use).
#[derive(Deserialize)]
struct MetricsResponse {
    #[serde(default)]
    value: Vec<Metric>,
}

#[derive(Deserialize)]
struct Metric {
    name: MetricName,
    #[serde(default)]
    timeseries: Vec<TimeSeries>,
}

#[derive(Deserialize)]
struct MetricName {
    value: String,
}

#[derive(Deserialize)]
struct TimeSeries {
    #[serde(default)]
    data: Vec<DataPoint>,
}

#[derive(Deserialize)]
struct DataPoint {
    #[serde(rename = "timeStamp")]
    time_stamp: String,
    #[serde(default)]
    average: Option<f64>,
}

/// The newest (time, average) of the metric `name`.
fn latest(resp: &MetricsResponse, name: &str) -> Option<(i64, f64)> {
    let m = resp.value.iter().find(|m| m.name.value == name)?;
    let point = m
        .timeseries
        .iter()
        .flat_map(|t| t.data.iter())
        .filter_map(|d| Some((d.time_stamp.as_str(), d.average?)))
        .max_by(|a, b| a.0.cmp(b.0))?;
    let at = azure_core::date::parse_rfc3339(point.0).ok()?;
    Some(((at.unix_timestamp_nanos() / 1_000_000) as i64, point.1))
}

/// Turns Azure Monitor's answer into one sample: `CpuUsage` is in millicores (1000 = one core),
/// so percent of one core is value / 10; `MemoryUsage` is bytes.
pub fn sample_of(body: &[u8]) -> Result<Option<MetricSample>, RuntimeError> {
    let resp: MetricsResponse = serde_json::from_slice(body)
        .map_err(|e| RuntimeError::Other(format!("metrics response: {e}")))?;
    let cpu = latest(&resp, "CpuUsage");
    let mem = latest(&resp, "MemoryUsage");
    if cpu.is_none() && mem.is_none() {
        return Ok(None);
    }
    let at_ms = cpu.map(|c| c.0).max(mem.map(|m| m.0)).unwrap_or_default();
    Ok(Some(MetricSample {
        at_ms,
        cpu_percent: cpu.map(|c| c.1 / 10.0).unwrap_or(0.0),
        memory_bytes: mem.map(|m| m.1.max(0.0) as u64).unwrap_or(0),
    }))
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
        let url = self.url(&self.group_id(&spec.name), API_VERSION);
        let a = self
            .call(Method::PUT, &url, Some(&self.group_body(spec)))
            .await?;
        if !a.status.is_success() {
            return Err(a.into_error().into());
        }
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
        Ok(self.get_group(name).await?.as_ref().map(status_of))
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
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(a.into_error().into()),
        }
    }

    async fn logs(&self, name: &str, max_bytes: usize) -> Result<Logs, RuntimeError> {
        // `tail` counts lines: ask for enough short lines to fill `max_bytes`, then cut bytes.
        let tail = (max_bytes / 16).clamp(100, 100_000);
        let url = format!(
            "{}&tail={tail}",
            self.url(
                &format!("{}/containers/{name}/logs", self.group_id(name)),
                API_VERSION
            )
        );
        let a = self.call(Method::GET, &url, None).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(Logs {
                text: String::new(),
                truncated: false,
            });
        }
        if !a.status.is_success() {
            return Err(a.into_error().into());
        }
        let logs: azure_mgmt_containerinstance::models::Logs = a.json()?;
        let text = logs.content.unwrap_or_default();
        let lines = text.lines().count();
        let cut = tail_bytes(&text, max_bytes);
        Ok(Logs {
            truncated: cut.len() < text.len() || lines >= tail,
            text: cut.to_string(),
        })
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
        Ok(self.list_groups().await?)
    }
}

/// The last `max` bytes of `s`, starting on a character boundary.
fn tail_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(json: serde_json::Value) -> ContainerGroup {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn instance_view_maps_to_phases() {
        let terminated = group(
            serde_json::json!({"properties": {"provisioningState": "Succeeded",
            "containers": [{"name": "c", "properties": {"image": "i", "instanceView": {"currentState":
            {"state": "Terminated", "exitCode": 3, "detailStatus": "Error"}}}}]}}),
        );
        let s = status_of(&terminated);
        assert_eq!(
            (s.phase, s.exit_code, s.detail.as_deref()),
            (Phase::Exited, Some(3), Some("Error"))
        );
        let creating = group(
            serde_json::json!({"properties": {"provisioningState": "Creating",
            "containers": [{"name": "c", "properties": {"image": "i"}}]}}),
        );
        assert_eq!(status_of(&creating).phase, Phase::Starting);
        let failed = group(
            serde_json::json!({"properties": {"provisioningState": "Failed",
            "containers": [{"name": "c", "properties": {"image": "i"}}]}}),
        );
        assert_eq!(status_of(&failed).phase, Phase::Exited);
    }

    #[test]
    fn metrics_take_the_newest_point_and_convert_millicores() {
        let body = serde_json::json!({"value": [
            {"name": {"value": "CpuUsage"}, "timeseries": [{"data": [
                {"timeStamp": "2026-11-30T10:00:00Z", "average": 100.0},
                {"timeStamp": "2026-11-30T10:01:00Z", "average": 250.0},
                {"timeStamp": "2026-11-30T10:02:00Z"}]}]},
            {"name": {"value": "MemoryUsage"}, "timeseries": [{"data": [
                {"timeStamp": "2026-11-30T10:01:00Z", "average": 1048576.0}]}]}]});
        let s = sample_of(body.to_string().as_bytes()).unwrap().unwrap();
        assert_eq!(s.cpu_percent, 25.0);
        assert_eq!(s.memory_bytes, 1_048_576);
        assert_eq!(s.at_ms, 1_796_032_860_000);
        assert_eq!(sample_of(br#"{"value": []}"#).unwrap(), None);
    }

    #[test]
    fn tails_cut_on_char_boundaries() {
        assert_eq!(tail_bytes("héllo", 4), "llo");
        assert_eq!(tail_bytes("abc", 10), "abc");
    }

    #[test]
    fn credential_errors_without_an_answer_or_with_5xx_are_transient() {
        use azure_core::error::ErrorKind;
        let kind = |k: ErrorKind| RuntimeError::from(identity_error(&k.into_error()));
        let status = |s| ErrorKind::http_response(s, None);
        assert!(kind(ErrorKind::Io).is_transient());
        assert!(kind(status(azure_core::StatusCode::ServiceUnavailable)).is_transient());
        assert!(kind(status(azure_core::StatusCode::TooManyRequests)).is_transient());
        assert!(!kind(status(azure_core::StatusCode::Forbidden)).is_transient());
        assert!(!kind(ErrorKind::Credential).is_transient());
    }

    #[test]
    fn errors_map_to_runtime_errors() {
        let status = |status: StatusCode, code: &str| AciError::Status {
            status,
            code: code.into(),
            message: "m".into(),
        };
        let e = |x: AciError| RuntimeError::from(x);
        assert!(e(status(StatusCode::TOO_MANY_REQUESTS, "x")).is_transient());
        assert!(e(status(StatusCode::BAD_GATEWAY, "x")).is_transient());
        assert!(matches!(
            e(status(StatusCode::BAD_REQUEST, "InaccessibleImage")),
            RuntimeError::ImageMissing(_)
        ));
        assert!(matches!(
            e(status(StatusCode::FORBIDDEN, "AuthorizationFailed")),
            RuntimeError::Rejected(_)
        ));
    }
}
