//! Talking to Azure Resource Manager for the ACI runtime: the bearer token, resource URLs, one
//! call and its answer, the container group body of a cold create, the create operation's
//! polling, listing groups, and reading logs while containers run (module docs of
//! [`super`] say which API and why).

use super::error::identity_error;
use super::{memory_gb, AciError, AciRuntime, API_VERSION, PROVIDERS_API_VERSION};
use crate::runtime::ContainerSpec;
use azure_mgmt_containerinstance::models::{
    container_group_properties::{
        properties::{OsType, RestartPolicy},
        Properties,
    },
    Container, ContainerGroup, ContainerGroupIdentity, ContainerGroupProperties,
    ContainerProperties, EnvironmentVariable, ImageRegistryCredential, ResourceRequests,
    ResourceRequirements,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::time::{Duration, Instant};

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
    pub(super) status: String,
    #[serde(default)]
    error: Option<CloudErrorBody>,
}

/// One answer from Azure, whatever its status.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) body: bytes::Bytes,
}

impl Answer {
    /// The answer as an error (for statuses the caller does not expect).
    pub(super) fn into_error(self) -> AciError {
        let e: CloudError = serde_json::from_slice(&self.body).unwrap_or_default();
        AciError::Status {
            status: self.status,
            code: e.error.code,
            message: e.error.message,
            retry_after: retry_after(&self.headers),
        }
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AciError> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

impl AciRuntime {
    /// Reads the container's log once and merges it into its capture.
    pub(super) async fn capture_logs(&self, name: &str) -> Result<(), AciError> {
        let url = format!(
            "{}&tail={}&timestamps=true",
            self.url(
                &format!(
                    "{}/containers/{}/logs",
                    self.group_id(name),
                    self.container_of(name)
                ),
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
    pub(super) async fn capture_while_running(&self, name: &str) {
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

    /// A bearer token for ARM, from the credential (which caches it).
    pub(super) async fn token(&self) -> Result<String, AciError> {
        let scope = self.cfg.arm_resource.as_str();
        match self.credential.get_token(&[scope]).await {
            Ok(t) => Ok(t.token.secret().to_string()),
            Err(e) => Err(identity_error(e)),
        }
    }

    /// The container group's resource id (also the Azure Monitor resource).
    pub(super) fn group_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups/{name}",
            self.cfg.subscription_id, self.cfg.resource_group
        )
    }

    /// Full URL of `path` (a resource id plus suffix) at `api_version`.
    pub(super) fn url(&self, path: &str, api_version: &str) -> String {
        format!("{}{path}?api-version={api_version}", self.cfg.arm_endpoint)
    }

    /// Sends one authenticated request; answers every status (callers decide what is fine).
    pub(super) async fn call(
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
    pub(super) async fn get_group(&self, name: &str) -> Result<Option<ContainerGroup>, AciError> {
        let url = self.url(&self.group_id(name), API_VERSION);
        let a = self.call(Method::GET, &url, None).await?;
        match a.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let group: ContainerGroup = a.json()?;
                self.learn_container(name, &group);
                Ok(Some(group))
            }
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
        props.resources = Some(ResourceRequirements::new(ResourceRequests::new(
            memory_gb(spec.resources.memory_mb),
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
    pub(super) async fn wait_for(
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
    pub(super) async fn list_groups(&self) -> Result<Vec<String>, AciError> {
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
pub(super) fn last_event(containers: &[Container]) -> String {
    containers
        .first()
        .and_then(|c| c.properties.instance_view.as_ref())
        .and_then(|v| v.events.last())
        .and_then(|e| e.message.clone())
        .unwrap_or_default()
}

/// The `Retry-After` header in seconds, capped at a minute.
pub(super) fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = h.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}
