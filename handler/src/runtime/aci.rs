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
//! - status: the group's `instanceView.state` (Stopped, Succeeded, Failed: over), then its
//!   container's `currentState` ([`status_of`]).
//! - kill: `POST .../stop`; remove: `DELETE` (200, 202, 204 and 404 are all fine).
//! - logs: `GET .../containers/{name}/logs?tail=&timestamps=true`, read while the container
//!   runs and once more at the end, merged by [`super::aci_logs`]; metrics: Azure Monitor
//!   `CpuUsage`, `MemoryUsage` on the group's resource id.
//!
//! Errors: 5xx, 408 and transport errors are [`RuntimeError::Unavailable`]; ARM's 429 and a
//! container-group quota reached are [`RuntimeError::Throttled`] with the `Retry-After` Azure
//! gave; 409 `MissingSubscriptionRegistration` is [`RuntimeError::NotSetUp`] with the command
//! that fixes it. All three are transient: never the message's fault.

use super::aci_error::identity_error;
pub use super::aci_error::{AciError, NOT_REGISTERED, REGISTER_HINT};
use super::aci_logs::Capture;
pub use super::aci_view::{sample_of, status_of};
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
    /// Logs captured while containers run, by container name ([`aci_logs`]): filled by
    /// [`ContainerRuntime::status`] when it sees a running container, completed and read by
    /// [`ContainerRuntime::logs`], dropped by [`ContainerRuntime::remove`]. In this process's
    /// memory: another instance or a restart starts from what ACI still holds (and says when
    /// that was cut).
    captures: Mutex<HashMap<String, Capture>>,
    /// Lines asked for per log read ([`LOG_TAIL_LINES`] unless [`AciRuntime::with_log_capture`]).
    log_tail: usize,
    /// Least time between two log reads of one running container (ARM read budget).
    log_every: Duration,
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
            retry_after: retry_after(&self.headers),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AciError> {
        Ok(serde_json::from_slice(&self.body)?)
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
            captures: Mutex::new(HashMap::new()),
            log_tail: LOG_TAIL_LINES,
            log_every: Duration::from_secs(5),
        }
    }

    /// Reads a running container's log at most once per `every`, `tail_lines` lines at a time
    /// (defaults: every 5 s, [`LOG_TAIL_LINES`]).
    pub fn with_log_capture(mut self, tail_lines: usize, every: Duration) -> AciRuntime {
        self.log_tail = tail_lines.max(1);
        self.log_every = every;
        self
    }

    /// Reads the container's log once and merges it into its capture.
    async fn capture_logs(&self, name: &str) -> Result<(), AciError> {
        let url = format!(
            "{}&tail={}&timestamps=true",
            self.url(
                &format!("{}/containers/{name}/logs", self.group_id(name)),
                API_VERSION
            ),
            self.log_tail
        );
        let a = self.call(Method::GET, &url, None).await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        if !a.status.is_success() {
            return Err(a.into_error());
        }
        let logs: azure_mgmt_containerinstance::models::Logs = a.json()?;
        let mut captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
        let c = captures.entry(name.to_string()).or_default();
        c.merge(&logs.content.unwrap_or_default(), self.log_tail);
        c.read_at = Some(Instant::now());
        Ok(())
    }

    /// Reads a running container's log unless it was read less than `log_every` ago. A
    /// failure is only logged: the next look tries again, and the final read happens anyway.
    async fn capture_while_running(&self, name: &str) {
        let due = {
            let captures = self.captures.lock().unwrap_or_else(|p| p.into_inner());
            captures
                .get(name)
                .and_then(|c| c.read_at)
                .is_none_or(|t| t.elapsed() >= self.log_every)
        };
        if due {
            if let Err(e) = self.capture_logs(name).await {
                tracing::debug!(container = name, error = %e, "log capture failed; retried later");
            }
        }
    }

    /// Whether the subscription is registered for `Microsoft.ContainerInstance`
    /// (`registrationState` of `GET /subscriptions/{id}/providers/Microsoft.ContainerInstance`,
    /// Resources API [`PROVIDERS_API_VERSION`]). Used by `handler check`.
    pub async fn registration_state(&self) -> Result<String, AciError> {
        #[derive(Deserialize)]
        struct Provider {
            #[serde(rename = "registrationState", default)]
            registration_state: String,
        }
        let path = format!(
            "/subscriptions/{}/providers/Microsoft.ContainerInstance",
            self.cfg.subscription_id
        );
        let a = self
            .call(Method::GET, &self.url(&path, PROVIDERS_API_VERSION), None)
            .await?;
        if !a.status.is_success() {
            return Err(a.into_error());
        }
        Ok(a.json::<Provider>()?.registration_state)
    }

    /// The actions this identity may perform on the resource group (`Permissions_ListForResourceGroup`,
    /// azure-rest-api-specs `specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/authorization-RoleDefinitionsCalls.json`), to
    /// tell before any spawn whether it may create container groups. Used by `handler check`.
    pub async fn permissions(&self) -> Result<Vec<(Vec<String>, Vec<String>)>, AciError> {
        let scope = format!(
            "/subscriptions/{}/resourcegroups/{}",
            self.cfg.subscription_id, self.cfg.resource_group
        );
        self.permissions_at(&scope).await
    }

    /// The actions this identity may perform on the resource with id `scope`
    /// (`Permissions_ListForResource`, same spec file as [`AciRuntime::permissions`]): e.g. on
    /// the pull identity, whose `assign/action` a create with it needs.
    pub async fn permissions_at(
        &self,
        scope: &str,
    ) -> Result<Vec<(Vec<String>, Vec<String>)>, AciError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            value: Vec<Permission>,
            #[serde(rename = "nextLink", default)]
            next_link: Option<String>,
        }
        #[derive(Deserialize)]
        struct Permission {
            #[serde(default)]
            actions: Vec<String>,
            #[serde(rename = "notActions", default)]
            not_actions: Vec<String>,
        }
        let path = format!(
            "{}/providers/Microsoft.Authorization/permissions",
            scope.trim_end_matches('/')
        );
        // Pageable (`x-ms-pageable: nextLink` in the spec): follow every page.
        let mut next = Some(self.url(&path, "2022-04-01"));
        let mut all = Vec::new();
        while let Some(url) = next.take() {
            let a = self.call(Method::GET, &url, None).await?;
            if !a.status.is_success() {
                return Err(a.into_error());
            }
            let page: Page = a.json()?;
            all.extend(page.value.into_iter().map(|p| (p.actions, p.not_actions)));
            next = page.next_link.filter(|l| !l.is_empty());
        }
        Ok(all)
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

    /// A bearer token for ARM, from the credential (which caches it).
    async fn token(&self) -> Result<String, AciError> {
        let scope = self.cfg.arm_resource.as_str();
        match self.credential.get_token(&[scope]).await {
            Ok(t) => Ok(t.token.secret().to_string()),
            Err(e) => Err(identity_error(e)),
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
                    None => return Err(AciError::Vanished(name.to_string())),
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
                Ok(())
            }
            _ => Err(a.into_error().into()),
        }
    }

    async fn logs(&self, name: &str, max_bytes: usize) -> Result<Logs, RuntimeError> {
        // One last read completes what was captured while it ran ([`aci_logs`]).
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
