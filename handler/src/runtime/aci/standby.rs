//! Warm starts on Azure Container Instances: claiming a ready container group from a standby
//! pool instead of creating one cold.
//!
//! Sources (MicrosoftDocs/azure-compute-docs `articles/container-instances/`, and
//! azure-rest-api-specs `specification/containerinstance/resource-manager/Microsoft.ContainerInstance/ContainerInstance/examples/2025-09-01/`):
//!
//! - [POOL] `container-instances-standby-pool-overview.md`: a standby pool
//!   (`Microsoft.StandbyPool/standbyContainerGroupPools`) keeps up to `maxReadyCapacity` container
//!   groups "fully provisioned, initialized, and ready to receive work", made from a container
//!   group profile, and refills itself (`refillPolicy: always`). A group is taken with a
//!   container group PUT naming the pool; "if no instances in the pool are available, Azure
//!   Container Instances will default back to net new container group creation".
//! - [CLAIM] `ContainerGroupCreateOrUpdateStandbyPool.json` (operation
//!   `ContainerGroups_CreateOrUpdate`, api-version 2025-09-01): the PUT body is `location` and
//!   `properties.{containerGroupProfile: {id, revision}, containers: [{name, properties:
//!   {configMap: {keyValuePairs}}}], standbyPoolProfile: {id}}`; the answer (200 or 201) is
//!   the group with the profile's containers and `isCreatedFromStandbyPool`.
//!   `StandbyPoolProfileDefinition.failContainerGroupCreateOnReuseFailure` (the crate's 2024-05
//!   model, same in the spec) decides whether ACI fails the create when no pooled group can be
//!   had; we send `false`, so ACI itself falls back to a new group from the same profile.
//! - [CONFIGMAP] `container-instances-config-map.md`: a config map is applied to a running
//!   container without a restart and appears in a Linux container as one file per key under
//!   `/mnt/configmap/<containername>/`. That is how the task's inputs reach a worker that was
//!   started before the task existed (`model::standby`, worker `standby.rs`).
//! - [PROFILE] `ContainerGroupProfilesGet.json` (`ContainerGroupProfiles_Get`): the profile's
//!   containers with their image and `resources.requests` (`cpu`, `memoryInGB`), read once to
//!   know which tasks fit the pool.
//!
//! A task fits when its image and resources are the profile's; other tasks start cold, as do
//! claims ARM refuses (a deleted pool or profile, missing permissions): warm starts are an
//! optimisation and never the reason a task does not run. The config map, unlike a
//! `secureValue` environment variable, is returned by a GET of the group ([CLAIM]'s answer
//! shows it), so the task token in it can be read by whoever can read the container group;
//! the token only lets its holder report the state of that one attempt (docs/AZURE.md).

use super::arm::Answer;
use super::{memory_gb, AciError, AciRuntime, API_VERSION, PROFILE_RETRY};
use crate::runtime::ContainerSpec;
use azure_mgmt_containerinstance::models::{
    container_group_properties::Properties, ConfigMap, Container, ContainerGroup,
    ContainerGroupProfile, ContainerGroupProfileReferenceDefinition, ContainerGroupProperties,
    ContainerProperties, StandbyPoolProfileDefinition,
};
use model::standby::{Assignment, ASSIGNMENT_KEY};
use reqwest::Method;
use std::time::Instant;

/// Where warm container groups come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standby {
    /// Resource id of the standby pool.
    pub pool: String,
    /// Resource id of the container group profile its groups are made from.
    pub profile: String,
    /// The profile's revision the pool uses.
    pub revision: i32,
}

/// What the pool's groups are: the profile's one container ([PROFILE]).
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The container's name: config maps are per container, and logs are read by it.
    pub container: String,
    /// Its image.
    pub image: String,
    /// Its CPU request.
    pub cpu: f64,
    /// Its memory request, in GB.
    pub memory_gb: f64,
}

impl Shape {
    /// The shape of profile `body` (a `ContainerGroupProfiles_Get` answer).
    pub fn of_profile(body: &[u8]) -> Result<Shape, AciError> {
        let profile: ContainerGroupProfile = serde_json::from_slice(body)?;
        let c = profile
            .container_group_profile_properties
            .properties
            .containers
            .into_iter()
            .next()
            .ok_or_else(|| {
                AciError::Standby("the container group profile has no container".into())
            })?;
        let requests = c.properties.resources.map(|r| r.requests);
        Ok(Shape {
            container: c.name,
            image: c.properties.image.unwrap_or_default(),
            cpu: requests.as_ref().map_or(0.0, |r| r.cpu),
            memory_gb: requests.as_ref().map_or(0.0, |r| r.memory_in_gb),
        })
    }

    /// Whether a task's container can be one of these groups: same image, same requests.
    pub fn fits(&self, spec: &ContainerSpec) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        spec.image == self.image
            && close(spec.resources.cpu, self.cpu)
            && close(memory_gb(spec.resources.memory_mb), self.memory_gb)
    }
}

/// The PUT body that claims a pooled group for `spec` ([CLAIM]): the profile and pool by id,
/// and the task's inputs as the config map of the profile's container ([CONFIGMAP]).
pub fn claim_body(
    s: &Standby,
    shape: &Shape,
    spec: &ContainerSpec,
    location: &str,
) -> ContainerGroup {
    let assignment = Assignment {
        args: spec.args.clone(),
        env: spec.env.iter().chain(&spec.secret_env).cloned().collect(),
    };
    let text = serde_json::to_string(&assignment).unwrap_or_default();
    let mut props = ContainerProperties::new();
    props.config_map = Some(ConfigMap {
        key_value_pairs: Some(serde_json::json!({ ASSIGNMENT_KEY: text })),
    });
    let mut p = Properties::new(vec![Container::new(shape.container.clone(), props)]);
    p.container_group_profile = Some(ContainerGroupProfileReferenceDefinition {
        id: Some(s.profile.clone()),
        revision: Some(s.revision),
    });
    let mut pool = StandbyPoolProfileDefinition::new();
    pool.id = Some(s.pool.clone());
    pool.fail_container_group_create_on_reuse_failure = Some(false);
    p.standby_pool_profile = Some(pool);
    let mut group = ContainerGroup::new(ContainerGroupProperties::new(p));
    group.resource.location = Some(location.to_string());
    group.resource.tags = Some(serde_json::json!({ "eda": "task" }));
    group
}

impl AciRuntime {
    /// Remembers the container name of group `name` when it is not the group's own.
    pub(super) fn learn_container(&self, name: &str, group: &ContainerGroup) {
        let Some(c) = group
            .container_group_properties
            .properties
            .containers
            .first()
        else {
            return;
        };
        let mut names = self
            .container_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if c.name == name {
            names.remove(name);
        } else {
            names.insert(name.to_string(), c.name.clone());
        }
    }

    /// The name of group `name`'s container (its own name unless learnt otherwise).
    pub(super) fn container_of(&self, name: &str) -> String {
        let names = self
            .container_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        names.get(name).cloned().unwrap_or_else(|| name.to_string())
    }

    /// Reads the standby pool's container group profile now ([PROFILE]); `None` when no pool
    /// is configured. For `handler check`.
    pub async fn standby_profile(&self) -> Option<Result<Shape, AciError>> {
        let standby = self.cfg.standby.as_ref()?;
        Some(self.read_profile(standby).await)
    }

    /// One read of `standby`'s profile.
    async fn read_profile(&self, standby: &Standby) -> Result<Shape, AciError> {
        let a = self
            .call(Method::GET, &self.url(&standby.profile, API_VERSION), None)
            .await?;
        if !a.status.is_success() {
            return Err(a.into_error());
        }
        Shape::of_profile(&a.body)
    }

    /// The standby pool's profile shape, when a pool is configured and its profile could be
    /// read (cached; a failed read is tried again after [`PROFILE_RETRY`]).
    pub(super) async fn standby_shape(&self) -> Option<(&Standby, Shape)> {
        let standby = self.cfg.standby.as_ref()?;
        {
            let cached = self.profile.lock().unwrap_or_else(|p| p.into_inner());
            match &*cached {
                Some(Ok(shape)) => return Some((standby, shape.clone())),
                Some(Err(at)) if at.elapsed() < PROFILE_RETRY => return None,
                _ => {}
            }
        }
        let result = self.read_profile(standby).await;
        let mut cached = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(shape) => {
                tracing::info!(pool = %standby.pool, image = %shape.image, cpu = shape.cpu, memory_gb = shape.memory_gb, "standby pool profile read; fitting tasks start warm");
                *cached = Some(Ok(shape.clone()));
                Some((standby, shape))
            }
            Err(e) => {
                tracing::warn!(profile = %standby.profile, error = %e, "cannot read the standby pool's container group profile; tasks start cold");
                *cached = Some(Err(Instant::now()));
                None
            }
        }
    }

    /// Claims a group of the standby pool for `spec` (module docs). `Ok(None)`: the task
    /// does not fit, or ARM refused the claim for good (the caller creates the group cold);
    /// transient errors (throttling, ARM away) are returned, so the spawn is retried as any.
    pub(super) async fn claim(&self, spec: &ContainerSpec) -> Result<Option<Answer>, AciError> {
        let Some((standby, shape)) = self.standby_shape().await else {
            return Ok(None);
        };
        if !shape.fits(spec) {
            return Ok(None);
        }
        let body = claim_body(standby, &shape, spec, &self.cfg.location);
        let url = self.url(&self.group_id(&spec.name), API_VERSION);
        let a = self.call(Method::PUT, &url, Some(&body)).await?;
        if a.status.is_success() {
            let from_pool = a.json::<ContainerGroup>().ok().and_then(|g| {
                g.container_group_properties
                    .properties
                    .is_created_from_standby_pool
            });
            tracing::info!(name = %spec.name, from_pool = ?from_pool, "container group claimed from the standby pool");
            self.container_names
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(spec.name.clone(), shape.container.clone());
            return Ok(Some(a));
        }
        let e = a.into_error();
        if e.is_transient() {
            return Err(e);
        }
        tracing::warn!(name = %spec.name, pool = %standby.pool, error = %e, "the standby pool claim was refused; creating the group cold");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Resources;

    fn spec(image: &str, cpu: f64, memory_mb: u32) -> ContainerSpec {
        ContainerSpec {
            name: "eda-t-1".into(),
            image: image.into(),
            args: vec!["--".into(), "sh".into()],
            env: vec![("MESSAGE".into(), "hi".into())],
            secret_env: vec![("TASK_TOKEN".into(), "s3cret".into())],
            resources: Resources { cpu, memory_mb },
        }
    }

    /// [PROFILE]: the profile example's shape (one container, cpu 1, memoryInGB 1.5).
    const PROFILE: &str = r#"{"id":"/subscriptions/subid/resourceGroups/demo/providers/Microsoft.ContainerInstance/containerGroupProfiles/demo1","name":"demo1","type":"Microsoft.ContainerInstance/containerGroupProfiles","location":"WestEurope","properties":{"revision":1,"sku":"Standard","containers":[{"name":"worker","properties":{"image":"myacr.azurecr.io/eda-worker:1","command":[],"ports":[],"environmentVariables":[],"resources":{"requests":{"cpu":1,"memoryInGB":1.5}}}}],"osType":"Linux"}}"#;

    #[test]
    fn a_task_fits_only_the_profiles_image_and_requests() {
        let shape = Shape::of_profile(PROFILE.as_bytes()).unwrap();
        assert_eq!(shape.container, "worker");
        assert!(shape.fits(&spec("myacr.azurecr.io/eda-worker:1", 1.0, 1536)));
        assert!(!shape.fits(&spec("other:1", 1.0, 1536)));
        assert!(!shape.fits(&spec("myacr.azurecr.io/eda-worker:1", 2.0, 1536)));
        assert!(!shape.fits(&spec("myacr.azurecr.io/eda-worker:1", 1.0, 512)));
    }

    #[test]
    fn the_claim_names_pool_and_profile_and_carries_the_inputs_in_one_key() {
        let s = Standby {
            pool: "/p".into(),
            profile: "/cgp".into(),
            revision: 3,
        };
        let shape = Shape::of_profile(PROFILE.as_bytes()).unwrap();
        let body =
            serde_json::to_value(claim_body(&s, &shape, &spec("i", 1.0, 1536), "westeurope"))
                .unwrap();
        let p = &body["properties"];
        assert_eq!(
            p["containerGroupProfile"],
            serde_json::json!({"id": "/cgp", "revision": 3})
        );
        assert_eq!(p["standbyPoolProfile"]["id"], "/p");
        assert_eq!(
            p["standbyPoolProfile"]["failContainerGroupCreateOnReuseFailure"],
            false
        );
        let c = &p["containers"][0];
        assert_eq!(c["name"], "worker");
        assert!(
            c["properties"].get("image").is_none(),
            "the profile's image is kept"
        );
        let text = c["properties"]["configMap"]["keyValuePairs"][ASSIGNMENT_KEY]
            .as_str()
            .unwrap();
        let a: Assignment = serde_json::from_str(text).unwrap();
        assert_eq!(a.args, vec!["--", "sh"]);
        assert!(a.env.contains(&("TASK_TOKEN".into(), "s3cret".into())));
        assert_eq!(body["location"], "westeurope");
    }
}
