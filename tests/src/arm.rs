//! A local stand-in for Azure Resource Manager, Azure Monitor and App Service's managed-identity
//! endpoint, speaking the documented protocols over real HTTP and recording every request.
//! Shared by the ACI runtime tests and the functions-mode process test.
//!
//! Every behaviour is taken from a primary source, cited where it is played:
//!
//! - [SPEC] azure-rest-api-specs
//!   `specification/containerinstance/resource-manager/Microsoft.ContainerInstance/stable/2025-09-01/containerInstance.json`
//!   and its `examples/` (paths, status codes per operation, bodies, `Logs`, `tail`, `timestamps`).
//! - [ASYNC] https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations
//!   (201 + `Azure-AsyncOperation` + `Retry-After`; the operation body's `status` is
//!   `InProgress` until `Succeeded`/`Failed`/`Canceled`, with `error` when it failed).
//! - [STATES] https://learn.microsoft.com/azure/container-instances/container-state (group
//!   `instanceView.state`: Running, Stopped, Pending, Succeeded, Failed; containers'
//!   `currentState.state` Running/Terminated/Waiting).
//! - [THROTTLE] https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling
//!   (429 Too Many Requests with `Retry-After` seconds).
//! - [REGISTER] https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-register-resource-provider
//!   (`MissingSubscriptionRegistration`: "The subscription is not registered to use namespace
//!   ..."), and the Resources API's provider `registrationState`.
//! - [QUOTA] MicrosoftDocs/SupportArticles-docs
//!   `support/azure/azure-container-instances/configuration-setup/service-unavailable-container-group-quota-exceeded.md`
//!   (the quota-exceeded message) and
//!   https://learn.microsoft.com/azure/container-instances/container-instances-resource-and-quota-limits.
//! - [PERMS] Microsoft.Authorization `Permissions_ListForResourceGroup`, azure-rest-api-specs
//!   `specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01/authorization-RoleDefinitionsCalls.json`:
//!   `GET /subscriptions/{id}/resourcegroups/{rg}/providers/Microsoft.Authorization/permissions`
//!   answers `{"value": [{"actions": [...], "notActions": [...]}]}` for the caller.
//!
//! Fault injections that no source documents are named as such (`log_retained_after_stop`).

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use azure_core::auth::{AccessToken, TokenCredential};
use handler::runtime::aci::{AciConfig, AciRuntime};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The subscription the stand-in serves.
pub const SUB: &str = "sub-1";
/// The resource group the stand-in serves.
pub const RG: &str = "rg-1";
/// The `X-IDENTITY-HEADER` value App Service would set; the identity endpoint checks it.
pub const IDENTITY_SECRET: &str = "identity-secret";

/// One request the stand-in saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// `Authorization` header.
    pub auth: Option<String>,
    /// `X-IDENTITY-HEADER` header.
    pub identity_header: Option<String>,
    /// `Metadata: true`: sent by `azure_identity`'s managed-identity credential.
    pub metadata: Option<String>,
    /// JSON body (`Null` when none).
    pub body: Value,
}

/// What the stand-in knows and how it should misbehave.
#[derive(Default)]
pub struct World {
    /// Every request, in order.
    pub seen: Vec<Seen>,
    /// Container groups by name, as ARM would answer a GET of them.
    pub groups: HashMap<String, Value>,
    /// Polls of each group's create operation.
    pub op_polls: HashMap<String, u32>,
    /// Answer 429 to the next ARM request.
    pub throttle: bool,
    /// The create operation ends Failed with this code.
    pub fail_op: Option<String>,
    /// The operation URL answers 403 (it is at subscription scope); the group itself finishes
    /// provisioning on its second read.
    pub op_forbidden: bool,
    /// Reads of a group while it was `Creating`.
    pub creating_reads: u32,
    /// Seconds the identity endpoint's tokens live.
    pub token_ttl: i64,
    /// Tokens the identity endpoint gave out.
    pub tokens_issued: u32,
    /// Answer 401 to the next ARM request (a revoked token).
    pub unauthorized: bool,
    /// `Retry-After` seconds sent with a 429 ([THROTTLE]); 0 by default so tests stay fast.
    pub retry_after_secs: u64,
    /// The subscription is not registered for Microsoft.ContainerInstance: every container
    /// group request answers 409 `MissingSubscriptionRegistration` and the provider reads
    /// `NotRegistered` ([REGISTER]).
    pub unregistered: bool,
    /// The regional container-group quota is reached: a PUT of a new group answers 409
    /// `ContainerGroupQuotaReached` with the quota message ([QUOTA]).
    pub quota_reached: bool,
    /// Each group's container output: (RFC 3339 timestamp, line), oldest first. Groups with
    /// none answer the fixed three lines the older tests expect, unless `quiet`.
    pub logs: HashMap<String, Vec<(String, String)>>,
    /// Groups print nothing but what is [`print`]ed for them (set by
    /// [`crate::aci_containers`], whose processes print for real).
    pub quiet: bool,
    /// How many times each group was created (a PUT that made it), so a group made again
    /// under a deleted one's name can be told from it.
    pub generation: HashMap<String, u64>,
    /// Fault injection (no source documents how much ACI keeps): once a group is stopped or
    /// ended, its log answers keep only this many newest lines.
    pub log_retained_after_stop: Option<usize>,
    /// The actions `Permissions_ListForResourceGroup` reports ([PERMS]); `None`: the custom
    /// role `infra/main.bicep` grants.
    pub permissions: Option<Vec<String>>,
    /// The actions `Permissions_ListForResource` reports on any other resource (the pull
    /// identity); `None`: Managed Identity Operator's, which `infra/main.bicep` assigns there.
    pub resource_permissions: Option<Vec<String>>,
    /// Container group profiles by resource id ([`crate::arm_standby`]).
    pub profiles: HashMap<String, Value>,
    /// Standby pools by resource id ([`crate::arm_standby`]).
    pub pools: HashMap<String, crate::arm_standby::Pool>,
    /// Names given to the pools' groups so far.
    pub standby_seq: u64,
    /// Ready groups handed over under a task's name, `(old, new)`, for
    /// [`crate::aci_containers`] to follow (the same running container, renamed).
    pub renamed: Vec<(String, String)>,
    /// Fault injection: ARM refuses every standby pool claim (a deleted pool, say).
    pub refuse_claims: bool,
}

/// Managed Identity Operator's actions (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
pub const MANAGED_IDENTITY_OPERATOR_ACTIONS: &[&str] = &[
    "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
    "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Support/*",
];

/// The custom role's actions in `infra/main.bicep`.
pub const BICEP_ROLE_ACTIONS: &[&str] = &[
    "Microsoft.ContainerInstance/containerGroups/*",
    "Microsoft.ContainerInstance/locations/*/read",
    "Microsoft.ContainerInstance/containerGroupProfiles/read",
    "Microsoft.StandbyPool/standbyContainerGroupPools/read",
    "Microsoft.Insights/metrics/read",
    "Microsoft.Insights/metricDefinitions/read",
];

/// The stand-in's state, shared by its handlers and the test.
pub type Shared = Arc<Mutex<World>>;

/// Now, in seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// App Service's managed-identity endpoint (`GET /identity`, api-version 2019-08-01).
pub async fn identity(req: HttpRequest, w: web::Data<Shared>) -> HttpResponse {
    let mut w = w.lock().unwrap();
    record(&mut w, &req, Value::Null);
    if header(&req, "x-identity-header").as_deref() != Some(IDENTITY_SECRET) {
        return HttpResponse::BadRequest().finish();
    }
    w.tokens_issued += 1;
    HttpResponse::Ok().json(json!({
        "access_token": format!("tok-{}", w.tokens_issued),
        "expires_on": (now_secs() + w.token_ttl).to_string(),
        "resource": "https://management.azure.com/",
        "token_type": "Bearer",
    }))
}

/// A request header as text.
pub fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Adds `req` to the requests seen.
pub fn record(w: &mut World, req: &HttpRequest, body: Value) {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    w.seen.push(Seen {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query,
        auth: header(req, "authorization"),
        identity_header: header(req, "x-identity-header"),
        metadata: header(req, "metadata"),
        body,
    });
}

/// ARM's 404 body.
pub fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(json!({"error": {"code": "ResourceNotFound", "message": "not found"}}))
}

/// ARM and Azure Monitor: everything that is not the identity endpoint.
pub async fn arm(req: HttpRequest, body: web::Bytes, w: web::Data<Shared>) -> HttpResponse {
    let mut w = w.lock().unwrap();
    let json_body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&mut w, &req, json_body.clone());
    if std::mem::take(&mut w.unauthorized) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}));
    }
    if std::mem::take(&mut w.throttle) {
        // [THROTTLE]: 429 with Retry-After in seconds.
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", w.retry_after_secs.to_string()))
            .json(json!({"error": {"code": "TooManyRequests", "message": "The request is being throttled as the limit has been reached for operation 'PutContainerGroup'."}}));
    }
    let path = req.path().to_string();
    if path == "/v2/" {
        // A container registry's API base: 401 with a Bearer challenge when not signed in
        // (distribution/distribution docs/spec/api.md, "API Version Check").
        return HttpResponse::Unauthorized()
            .insert_header(("Docker-Distribution-API-Version", "registry/2.0"))
            .insert_header(("WWW-Authenticate", "Bearer realm=\"https://myacr.azurecr.io/oauth2/token\",service=\"myacr.azurecr.io\""))
            .finish();
    }
    if path == format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance") {
        // [REGISTER]: the provider's registration state (Resources API, Providers_Get).
        let state = if w.unregistered {
            "NotRegistered"
        } else {
            "Registered"
        };
        return HttpResponse::Ok().json(json!({
            "id": format!("/subscriptions/{SUB}/providers/Microsoft.ContainerInstance"),
            "namespace": "Microsoft.ContainerInstance",
            "registrationState": state,
        }));
    }
    if path
        == format!(
        "/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.Authorization/permissions"
    ) {
        // [PERMS]
        let actions = w
            .permissions
            .clone()
            .unwrap_or_else(|| BICEP_ROLE_ACTIONS.iter().map(|a| a.to_string()).collect());
        return HttpResponse::Ok().json(json!({"value": [{"actions": actions, "notActions": []}]}));
    }
    if path.ends_with("/providers/Microsoft.Authorization/permissions") {
        // [PERMS] Permissions_ListForResource, on any other resource (the pull identity).
        let actions = w.resource_permissions.clone().unwrap_or_else(|| {
            MANAGED_IDENTITY_OPERATOR_ACTIONS
                .iter()
                .map(|a| a.to_string())
                .collect()
        });
        return HttpResponse::Ok().json(json!({"value": [{"actions": actions, "notActions": []}]}));
    }
    if let Some(name) = path.strip_prefix("/ops/") {
        if w.op_forbidden {
            return HttpResponse::Forbidden()
                .json(json!({"error": {"code": "AuthorizationFailed", "message": "no"}}));
        }
        return poll_op(&mut w, name);
    }
    if let Some(answer) = crate::arm_standby::route(&mut w, &req, &path, &json_body) {
        return answer;
    }
    let prefix = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerInstance/containerGroups"
    );
    let Some(rest) = path.strip_prefix(&prefix) else {
        return not_found();
    };
    if w.unregistered {
        // [REGISTER]: ARM refuses every request for an unregistered namespace with 409.
        return HttpResponse::Conflict().json(json!({"error": {
            "code": "MissingSubscriptionRegistration",
            "message": "The subscription is not registered to use namespace 'Microsoft.ContainerInstance'. See https://aka.ms/rps-not-found for how to register subscriptions."}}));
    }
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let method = req.method().as_str();
    match (method, parts.as_slice()) {
        ("GET", [""]) => {
            let value: Vec<Value> = w.groups.values().cloned().collect();
            HttpResponse::Ok().json(json!({ "value": value }))
        }
        ("GET", [name]) => {
            let creating = match w.groups.get(*name) {
                None => return not_found(),
                Some(g) => g["properties"]["provisioningState"] == "Creating",
            };
            if creating {
                w.creating_reads += 1;
                if w.creating_reads >= 2 {
                    w.groups.get_mut(*name).unwrap()["properties"]["provisioningState"] =
                        json!("Succeeded");
                }
            }
            HttpResponse::Ok().json(&w.groups[*name])
        }
        ("PUT", [name]) if w.groups.contains_key(*name) => {
            // [SPEC] ContainerGroups_CreateOrUpdate: PUT is idempotent; an existing group
            // answers 200 with its body (nothing new is made).
            HttpResponse::Ok().json(&w.groups[*name])
        }
        ("PUT", _) if w.quota_reached => {
            // [QUOTA]
            HttpResponse::Conflict().json(json!({"error": {
                "code": "ContainerGroupQuotaReached",
                "message": "Resource type 'Microsoft.ContainerInstance/containerGroups' container group quota 'ContainerGroups' exceeded in region 'westeurope'. Limit: '100', Usage: '100' Requested: '1'."}}))
        }
        ("PUT", [name]) => {
            // [SPEC] 201 with the group, [ASYNC] Azure-AsyncOperation + Retry-After.
            let mut g = json_body;
            g["name"] = json!(name);
            g["id"] = json!(format!("{prefix}/{name}"));
            g["properties"]["provisioningState"] = json!("Creating");
            w.groups.insert(name.to_string(), g.clone());
            *w.generation.entry(name.to_string()).or_default() += 1;
            if w.quiet {
                w.logs.insert(name.to_string(), Vec::new());
            }
            let host = req.connection_info().host().to_string();
            HttpResponse::Created()
                .insert_header(("Azure-AsyncOperation", format!("http://{host}/ops/{name}")))
                .insert_header(("Retry-After", "0"))
                .json(g)
        }
        // [SPEC] ContainerGroups_Delete: 202 "Delete started", 204 "not found".
        ("DELETE", [name]) => match w.groups.remove(*name) {
            Some(_) => {
                w.logs.remove(*name);
                HttpResponse::Accepted().finish()
            }
            None => HttpResponse::NoContent().finish(),
        },
        ("POST", [name, "stop"]) if w.groups.contains_key(*name) => {
            // [SPEC] ContainerGroups_Stop: 204. [STATES] the group is then `Stopped`; no
            // source says what the container view shows after a stop, so it is dropped (the
            // hardest case for a reader: only the group's state tells it is over).
            let g = w.groups.get_mut(*name).unwrap();
            g["properties"]["instanceView"] = json!({"state": "Stopped", "events": []});
            if let Some(c) = g["properties"]["containers"][0]["properties"].as_object_mut() {
                c.remove("instanceView");
            }
            HttpResponse::NoContent().finish()
        }
        ("GET", [name, "containers", _, "logs"]) if w.groups.contains_key(*name) => {
            logs_answer(&w, name, &req)
        }
        ("GET", [name, "providers", "Microsoft.Insights", "metrics"])
            if w.groups.contains_key(*name) =>
        {
            HttpResponse::Ok().json(json!({"value": [
                {"name": {"value": "CpuUsage"}, "unit": "Count", "timeseries": [{"data": [
                    {"timeStamp": "2026-11-30T10:00:00Z", "average": 120.0},
                    {"timeStamp": "2026-11-30T10:01:00Z", "average": 500.0}]}]},
                {"name": {"value": "MemoryUsage"}, "unit": "Bytes", "timeseries": [{"data": [
                    {"timeStamp": "2026-11-30T10:01:00Z", "average": 2097152.0}]}]}]}))
        }
        _ => not_found(),
    }
}

/// Sets the container's `currentState` and, as ACI does with restart policy Never
/// ([STATES]), the group's `instanceView.state`: `Running` while it runs, `Succeeded` after
/// exit code 0, `Failed` after any other.
pub fn set_state(w: &mut World, name: &str, state: Value) {
    let group_state = match (state["state"].as_str(), state["exitCode"].as_i64()) {
        (Some("Terminated"), Some(0)) => "Succeeded",
        (Some("Terminated"), _) => "Failed",
        (Some("Running"), _) => "Running",
        _ => "Pending",
    };
    if let Some(g) = w.groups.get_mut(name) {
        g["properties"]["containers"][0]["properties"]["instanceView"] =
            json!({ "currentState": state });
        g["properties"]["instanceView"] = json!({ "state": group_state, "events": [] });
    }
}

/// Appends `lines` to the output of group `name`, stamped one millisecond apart after
/// `2026-12-02T10:00:00Z` plus what the group already printed.
pub fn print(w: &mut World, name: &str, lines: &[&str]) {
    let out = w.logs.entry(name.to_string()).or_default();
    for line in lines {
        let n = out.len();
        let ts = format!(
            "2026-12-02T10:{:02}:{:02}.{:03}000000Z",
            n / 60_000,
            (n / 1000) % 60,
            n % 1000
        );
        out.push((ts, line.to_string()));
    }
}

/// [SPEC] Containers_ListLogs: `{"content": ...}`; `tail` = the last N lines; without it,
/// everything "up to 4mb"; `timestamps=true` puts each line's time first.
fn logs_answer(w: &World, name: &str, req: &HttpRequest) -> HttpResponse {
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let fixed = [
        ("2026-12-02T10:00:00.000000000Z", "starting"),
        ("2026-12-02T10:00:00.001000000Z", "working on it"),
        ("2026-12-02T10:00:00.002000000Z", "done"),
    ]
    .map(|(t, l)| (t.to_string(), l.to_string()));
    let mut lines: Vec<(String, String)> = w.logs.get(name).cloned().unwrap_or(fixed.to_vec());
    let state = w.groups[name]["properties"]["instanceView"]["state"].clone();
    let ended = matches!(state.as_str(), Some("Stopped" | "Succeeded" | "Failed"));
    if let (true, Some(keep)) = (ended, w.log_retained_after_stop) {
        lines = lines.split_off(lines.len().saturating_sub(keep));
    }
    if let Some(tail) = q.get("tail").and_then(|t| t.parse::<usize>().ok()) {
        lines = lines.split_off(lines.len().saturating_sub(tail));
    }
    let stamps = q.get("timestamps").map(String::as_str) == Some("true");
    let mut content: String = lines
        .iter()
        .map(|(t, l)| match stamps {
            true => format!("{t} {l}\n"),
            false => format!("{l}\n"),
        })
        .collect();
    const MAX: usize = 4 * 1024 * 1024;
    if content.len() > MAX {
        let mut start = content.len() - MAX;
        while !content.is_char_boundary(start) {
            start += 1;
        }
        content = content.split_off(start);
    }
    HttpResponse::Ok().json(json!({ "content": content }))
}

/// The create operation: InProgress once, then Succeeded (or Failed when asked to).
pub fn poll_op(w: &mut World, name: &str) -> HttpResponse {
    let polls = w.op_polls.entry(name.to_string()).or_default();
    *polls += 1;
    if *polls == 1 {
        return HttpResponse::Ok().json(json!({"status": "InProgress"}));
    }
    if let Some(code) = w.fail_op.clone() {
        if let Some(g) = w.groups.get_mut(name) {
            g["properties"]["provisioningState"] = json!("Failed");
        }
        return HttpResponse::Ok()
            .json(json!({"status": "Failed", "error": {"code": code, "message": "cannot pull"}}));
    }
    if let Some(g) = w.groups.get_mut(name) {
        g["properties"]["provisioningState"] = json!("Succeeded");
    }
    set_state(w, name, json!({"state": "Running", "detailStatus": ""}));
    HttpResponse::Ok().json(json!({"status": "Succeeded"}))
}

/// A running stand-in server on a loopback port; stops when dropped.
pub struct StandIn {
    /// Its state.
    pub world: Shared,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The server, stopped on drop.
    pub _server: actix_web::dev::ServerHandle,
}

/// Starts a stand-in whose identity endpoint issues tokens living `token_ttl` seconds.
pub async fn stand_in(token_ttl: i64) -> StandIn {
    let world: Shared = Arc::new(Mutex::new(World {
        token_ttl,
        ..World::default()
    }));
    let data = web::Data::new(world.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/identity", web::get().to(identity))
            .default_service(web::to(arm))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    StandIn {
        world,
        base: format!("http://{addr}"),
        _server: handle,
    }
}

/// The ACI runtime's settings pointed at stand-in `s` (subscription [`SUB`], group [`RG`], a
/// private registry pulled with a user-assigned identity), polling every 20 ms.
pub fn aci_config(s: &StandIn) -> AciConfig {
    AciConfig {
        arm_endpoint: s.base.clone(),
        arm_resource: "https://management.azure.com/".into(),
        subscription_id: SUB.into(),
        resource_group: RG.into(),
        location: "westeurope".into(),
        registry_server: Some("myacr.azurecr.io".into()),
        registry_identity: Some(format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull")),
        entrypoint: "/worker".into(),
        poll: Duration::from_millis(20),
        create_wait: Duration::from_secs(10),
        standby: None,
    }
}

/// The ACI runtime against stand-in `s`, with an uncached [`StandInCredential`].
pub fn runtime(s: &StandIn) -> AciRuntime {
    runtime_with(s, Arc::new(StandInCredential::new(&s.base)))
}

/// The ACI runtime against stand-in `s`, with `credential`.
pub fn runtime_with(s: &StandIn, credential: Arc<StandInCredential>) -> AciRuntime {
    AciRuntime::new(reqwest::Client::new(), aci_config(s), credential)
}

/// The in-process tests' [`TokenCredential`]: App Service's protocol against the stand-in's
/// `/identity`, without a cache, so every ARM call shows which token the runtime asked for.
/// (`azure_identity`'s own credential reads its endpoint from the process environment; the
/// process test runs the real binary with it.) Counts `clear_cache` calls.
#[derive(Debug)]
pub struct StandInCredential {
    /// The client for the identity endpoint.
    pub http: reqwest::Client,
    /// `<stand-in>/identity`.
    pub endpoint: String,
    /// How often the runtime asked to drop its cached token.
    pub clears: std::sync::atomic::AtomicU32,
}

impl StandInCredential {
    /// A credential asking the stand-in at `base`.
    pub fn new(base: &str) -> Self {
        StandInCredential {
            http: reqwest::Client::new(),
            endpoint: format!("{base}/identity"),
            clears: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for StandInCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let other = |e: reqwest::Error| azure_core::Error::new(azure_core::error::ErrorKind::Io, e);
        let body: Value = self
            .http
            .get(&self.endpoint)
            .query(&[("api-version", "2019-08-01"), ("resource", scopes[0])])
            .header("X-IDENTITY-HEADER", IDENTITY_SECRET)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(other)?
            .json()
            .await
            .map_err(other)?;
        let expires: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
        Ok(AccessToken::new(
            body["access_token"].as_str().unwrap().to_string(),
            time::OffsetDateTime::from_unix_timestamp(expires).unwrap(),
        ))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.clears
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
