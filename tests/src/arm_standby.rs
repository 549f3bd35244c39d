//! The ARM stand-in's container group profiles and ACI standby pools ([`crate::arm`]), played
//! from these primary sources (MicrosoftDocs/azure-compute-docs
//! `articles/container-instances/`, azure-rest-api-specs
//! `specification/containerinstance/resource-manager/Microsoft.ContainerInstance/ContainerInstance/examples/2025-09-01/`):
//!
//! - [PROFILES] `ContainerGroupProfilesCreateOrUpdate.json`, `ContainerGroupProfilesGet.json`:
//!   `PUT`/`GET .../Microsoft.ContainerInstance/containerGroupProfiles/{name}`; the body's
//!   `properties` hold the containers, and the answer carries the profile's `revision`.
//! - [POOL] `container-instances-standby-pool-overview.md` and the Microsoft.StandbyPool
//!   template reference (`standbyContainerGroupPools`, `properties.elasticityProfile.
//!   {maxReadyCapacity, refillPolicy}`, `properties.containerGroupProperties.
//!   containerGroupProfile.{id, revision}`): the pool keeps `maxReadyCapacity` groups of the
//!   profile provisioned and running, and refills at once when one is taken (`always`, the
//!   only refill policy).
//! - [CLAIM] `ContainerGroupCreateOrUpdateStandbyPool.json`: a container group `PUT` naming
//!   `standbyPoolProfile.id` and `containerGroupProfile.{id, revision}` with a container's
//!   `configMap` answers the group with the profile's containers, the config map, and
//!   `isCreatedFromStandbyPool: true`, already `Running`. [POOL]: with no ready group, ACI
//!   "will default back to net new container group creation" from the profile (here: a normal
//!   create, `isCreatedFromStandbyPool: false`) unless `failContainerGroupCreateOnReuseFailure`
//!   (`StandbyPoolProfileDefinition`) asks it to fail.
//! - [CONFIGMAP] `container-instances-config-map.md`: config map values appear in the running
//!   container as files `/mnt/configmap/<container>/<key>` without a restart
//!   ([`crate::aci_containers`] plays that mount with a folder).
//!
//! Not documented, and so named as fault injections: the answer to a claim that cannot be
//! served when failing was asked for, and [`crate::arm::World::refuse_claims`] (ARM refusing a
//! claim, e.g. a deleted pool).

use crate::arm::{not_found, set_state, World, RG, SUB};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

/// One standby pool.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    /// Resource id of its container group profile.
    pub profile: String,
    /// Groups it keeps ready.
    pub max_ready: usize,
    /// Names of its ready groups, oldest first.
    pub ready: Vec<String>,
}

/// Resource id prefix of the stand-in's resource group.
fn rg() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers")
}

/// Answers profile and pool requests, and container group PUTs that claim from a pool; `None`
/// for everything else (the plain container group API in [`crate::arm::arm`]).
pub fn route(w: &mut World, req: &HttpRequest, path: &str, body: &Value) -> Option<HttpResponse> {
    let method = req.method().as_str();
    let profiles = format!(
        "{}/Microsoft.ContainerInstance/containerGroupProfiles/",
        rg()
    );
    let pools = format!("{}/Microsoft.StandbyPool/standbyContainerGroupPools/", rg());
    let groups = format!("{}/Microsoft.ContainerInstance/containerGroups/", rg());
    if let Some(name) = path.strip_prefix(&profiles) {
        return Some(match method {
            "PUT" => put_profile(w, path, name, body),
            "GET" => w
                .profiles
                .get(path)
                .map_or_else(not_found, |p| HttpResponse::Ok().json(p)),
            _ => not_found(),
        });
    }
    if let Some(name) = path.strip_prefix(&pools) {
        return Some(match method {
            "PUT" => put_pool(w, path, name, body),
            _ => not_found(),
        });
    }
    let name = path.strip_prefix(&groups)?;
    let claim = method == "PUT"
        && !name.contains('/')
        && !w.groups.contains_key(name)
        && body["properties"].get("standbyPoolProfile").is_some();
    claim.then(|| claim_group(w, req, name, body))
}

/// [PROFILES]: stores the profile; each PUT is a new revision.
fn put_profile(w: &mut World, id: &str, name: &str, body: &Value) -> HttpResponse {
    let revision = w
        .profiles
        .get(id)
        .map_or(0, |p| p["properties"]["revision"].as_i64().unwrap_or(0))
        + 1;
    let mut p = body.clone();
    p["id"] = json!(id);
    p["name"] = json!(name);
    p["type"] = json!("Microsoft.ContainerInstance/containerGroupProfiles");
    p["properties"]["revision"] = json!(revision);
    let created = revision == 1;
    w.profiles.insert(id.to_string(), p.clone());
    match created {
        true => HttpResponse::Created().json(p),
        false => HttpResponse::Ok().json(p),
    }
}

/// [POOL]: makes the pool and fills it.
fn put_pool(w: &mut World, id: &str, name: &str, body: &Value) -> HttpResponse {
    let props = &body["properties"];
    let profile = props["containerGroupProperties"]["containerGroupProfile"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !w.profiles.contains_key(&profile) {
        return HttpResponse::BadRequest().json(json!({"error": {"code": "InvalidContainerGroupProfile", "message": "the container group profile does not exist"}}));
    }
    let max_ready = props["elasticityProfile"]["maxReadyCapacity"]
        .as_u64()
        .unwrap_or(0) as usize;
    w.pools.insert(
        id.to_string(),
        Pool {
            profile,
            max_ready,
            ready: Vec::new(),
        },
    );
    refill(w, id, name);
    let mut answer = body.clone();
    answer["id"] = json!(id);
    answer["name"] = json!(name);
    answer["properties"]["provisioningState"] = json!("Succeeded");
    HttpResponse::Ok().json(answer)
}

/// [POOL]: tops pool `id` up to its capacity with running groups of its profile.
fn refill(w: &mut World, id: &str, pool_name: &str) {
    let Some(pool) = w.pools.get(id).cloned() else {
        return;
    };
    let profile = w.profiles[&pool.profile].clone();
    for _ in pool.ready.len()..pool.max_ready {
        w.standby_seq += 1;
        let name = format!("standby-{pool_name}-{}", w.standby_seq);
        let mut g = json!({
            "id": format!("{}/Microsoft.ContainerInstance/containerGroups/{name}", rg()),
            "name": name,
            "location": profile["location"],
            "properties": profile["properties"].clone(),
        });
        g["properties"]["provisioningState"] = json!("Succeeded");
        w.groups.insert(name.clone(), g);
        *w.generation.entry(name.clone()).or_default() += 1;
        w.logs.insert(name.clone(), Vec::new());
        set_state(w, &name, json!({"state": "Running", "detailStatus": ""}));
        w.pools.get_mut(id).unwrap().ready.push(name);
    }
}

/// [CLAIM]: hands a ready group of the pool over under `name` with the request's config map,
/// or makes a new group from the profile when none is ready.
fn claim_group(w: &mut World, req: &HttpRequest, name: &str, body: &Value) -> HttpResponse {
    let props = &body["properties"];
    let pool_id = props["standbyPoolProfile"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let profile_id = props["containerGroupProfile"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if w.refuse_claims || !w.pools.contains_key(&pool_id) || !w.profiles.contains_key(&profile_id) {
        // Fault injection: no source documents this answer.
        return HttpResponse::BadRequest().json(json!({"error": {"code": "InvalidStandbyPoolProfile", "message": "the standby pool or its profile cannot be used"}}));
    }
    let config_map = props["containers"][0]["properties"]["configMap"].clone();
    let id = format!(
        "{}/Microsoft.ContainerInstance/containerGroups/{name}",
        rg()
    );
    let taken = w
        .pools
        .get_mut(&pool_id)
        .and_then(|p| (!p.ready.is_empty()).then(|| p.ready.remove(0)));
    if let Some(standby) = taken {
        let mut g = w.groups.remove(&standby).expect("a ready group exists");
        w.generation.remove(&standby);
        let logs = w.logs.remove(&standby).unwrap_or_default();
        g["id"] = json!(id);
        g["name"] = json!(name);
        g["tags"] = body["tags"].clone();
        g["properties"]["containers"][0]["properties"]["configMap"] = config_map;
        g["properties"]["containerGroupProfile"] = props["containerGroupProfile"].clone();
        g["properties"]["standbyPoolProfile"] = props["standbyPoolProfile"].clone();
        g["properties"]["isCreatedFromStandbyPool"] = json!(true);
        w.groups.insert(name.to_string(), g.clone());
        *w.generation.entry(name.to_string()).or_default() += 1;
        w.logs.insert(name.to_string(), logs);
        w.renamed.push((standby, name.to_string()));
        let pool_name = pool_id.rsplit('/').next().unwrap_or_default().to_string();
        refill(w, &pool_id, &pool_name);
        return HttpResponse::Ok().json(g);
    }
    if props["standbyPoolProfile"]["failContainerGroupCreateOnReuseFailure"] == true {
        // Fault injection: no source documents this answer.
        return HttpResponse::BadRequest().json(json!({"error": {"code": "StandbyPoolReservationFailed", "message": "no container group is ready in the standby pool"}}));
    }
    // [POOL]: net new creation from the profile, as any create ([ASYNC] in `arm`).
    let profile = &w.profiles[&profile_id];
    let mut g = json!({
        "id": id,
        "name": name,
        "location": body["location"],
        "tags": body["tags"],
        "properties": profile["properties"].clone(),
    });
    g["properties"]["containers"][0]["properties"]["configMap"] = config_map;
    g["properties"]["containerGroupProfile"] = props["containerGroupProfile"].clone();
    g["properties"]["standbyPoolProfile"] = props["standbyPoolProfile"].clone();
    g["properties"]["isCreatedFromStandbyPool"] = json!(false);
    g["properties"]["provisioningState"] = json!("Creating");
    w.groups.insert(name.to_string(), g.clone());
    *w.generation.entry(name.to_string()).or_default() += 1;
    w.logs.insert(name.to_string(), Vec::new());
    let host = req.connection_info().host().to_string();
    HttpResponse::Created()
        .insert_header(("Azure-AsyncOperation", format!("http://{host}/ops/{name}")))
        .insert_header(("Retry-After", "0"))
        .json(g)
}
