//! Containment of task containers on Docker: which network a task sees, and what it may do.
//!
//! A task runs somebody else's code, with a message that is often a secret. On the host's
//! network it could reach this handler's API on 127.0.0.1 (list every task and its output,
//! enqueue, cancel, clear) and every other service the host keeps on its loopback. So, by
//! default:
//!
//! - Tasks run on a Docker bridge network of the handler's own (`eda-tasks`), created when
//!   missing and kept: it costs nothing idle, and containers left running across a restart of
//!   the handler stay attached to it. A task's 127.0.0.1 is its own; the handler answers tasks
//!   only on a second listener bound to the network's gateway address, which serves the
//!   worker's report route and nothing else (`local`, `api::worker_routes`). Traffic between
//!   containers on the network is off (`enable_icc=false`). `isolated` is the same on an
//!   `internal` network (nothing beyond the host), `none` has no network, `host` is the old
//!   behaviour and only an explicit opt-in.
//! - Creating a network namespace and a veth pair costs ~300 ms per container on Docker 20.10
//!   here, three to four times a host-network start (BENCHMARKS.md). So one sandbox container
//!   (`<network>-ns`, running a 129-byte program that only waits, see `image::pause_program`)
//!   holds a namespace on the network and every task joins it (`container:<sandbox>`), which
//!   costs what host networking costs. The price: tasks share that namespace and can reach each
//!   other's listening ports. `--task-netns own` gives each task its own instead.
//! - Hardening that costs nothing at run time: no new privileges, every capability dropped
//!   unless one is asked for, a pids limit, a read-only root with a small tmpfs at /tmp, and
//!   user 65534 ("nobody"). A worker that needs more says so in configuration (`config`).

use super::image;
use super::RuntimeError;
use crate::config::{TaskNetns, TaskNetwork};
use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use std::collections::HashMap;
use std::net::IpAddr;

/// Label on the networks and sandbox containers the handler creates (value: the level).
pub const NETWORK_LABEL: &str = "eda.network";
/// Environment a task without a network gets no use of: its callback and its token.
const REPORT_ENV: [&str; 2] = ["CALLBACK_URL", "TASK_TOKEN"];
/// Memory of a sandbox container (the waiting program needs a few hundred KiB).
const SANDBOX_MEMORY: i64 = 16 << 20;
/// Processes of a sandbox container (runc's init needs a few threads before it execs).
const SANDBOX_PIDS: i64 = 16;

/// Resolved containment of task containers (from `config::ContainmentArgs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Containment {
    /// What network tasks see.
    pub network: TaskNetwork,
    /// The Docker network for `bridge`/`isolated`; also names the sandbox (`<name>-ns`).
    pub network_name: String,
    /// One shared namespace, or one per task.
    pub netns: TaskNetns,
    /// What a task may do inside its container.
    pub hardening: Hardening,
}

/// Restrictions on a task's process that cost nothing at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct Hardening {
    /// User to run as; `None` keeps the image's own.
    pub user: Option<String>,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// Size of the writable tmpfs at /tmp in MiB; 0: none.
    pub tmpfs_mb: u32,
    /// Drop every capability (then add back `cap_add`).
    pub drop_all_caps: bool,
    /// Capabilities kept when all others are dropped.
    pub cap_add: Vec<String>,
    /// Most processes in the container; 0: no limit.
    pub pids_limit: i64,
    /// `no-new-privileges`: setuid binaries and file capabilities grant nothing.
    pub no_new_privileges: bool,
}

impl Hardening {
    /// Nothing restricted (what Docker does by default).
    pub fn off() -> Hardening {
        Hardening {
            user: None,
            read_only: false,
            tmpfs_mb: 0,
            drop_all_caps: false,
            cap_add: Vec::new(),
            pids_limit: 0,
            no_new_privileges: false,
        }
    }
}

/// What [`prepare`] set up for tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The network's gateway: where the worker listener must listen (`bridge`/`isolated`).
    pub gateway: Option<IpAddr>,
    /// `NetworkMode` of task containers.
    pub network_mode: String,
}

impl Containment {
    /// The runtime's behaviour before containment existed: the host's network, nothing
    /// hardened. For callers that exercise the runtime itself (the conformance suite).
    pub fn legacy() -> Containment {
        Containment {
            network: TaskNetwork::Host,
            network_name: "host".into(),
            netns: TaskNetns::Own,
            hardening: Hardening::off(),
        }
    }

    /// Name of the container holding the shared namespace.
    pub fn sandbox(&self) -> String {
        format!("{}-ns", self.network_name)
    }

    /// Whether tasks join one sandbox's namespace.
    pub fn shares_netns(&self) -> bool {
        self.netns == TaskNetns::Shared && self.network != TaskNetwork::Host
    }

    /// Whether a task can reach the handler to report (every level but `none`).
    pub fn reports(&self) -> bool {
        self.network != TaskNetwork::None
    }

    /// One line for the start-up log: what tasks can reach.
    pub fn describe(&self) -> String {
        let ns = if self.shares_netns() {
            format!(
                ", one namespace shared by all tasks (sandbox {})",
                self.sandbox()
            )
        } else {
            String::new()
        };
        match self.network {
            TaskNetwork::Bridge => format!(
                "tasks run on Docker network {} (outbound allowed; not the host's loopback){ns}",
                self.network_name
            ),
            TaskNetwork::Isolated => format!(
                "tasks run on internal Docker network {} (no outbound; only the worker listener){ns}",
                self.network_name
            ),
            TaskNetwork::None => format!(
                "tasks have no network{ns}: workers cannot report; outcomes come from exit codes"
            ),
            TaskNetwork::Host => "tasks run on the HOST network (--task-network host): every task \
                can reach this API and everything else on the host's loopback"
                .to_string(),
        }
    }

    /// Puts the hardening and the network into a task's create body; a task without a network
    /// loses its callback URL and token (it could not use them).
    pub fn apply(&self, body: &mut ContainerCreateBody, network_mode: &str) {
        let h = &self.hardening;
        if !self.reports() {
            if let Some(env) = body.env.as_mut() {
                env.retain(|kv| !REPORT_ENV.iter().any(|k| kv.starts_with(&format!("{k}="))));
            }
        }
        body.user = h.user.clone();
        let host = body.host_config.get_or_insert_with(HostConfig::default);
        host.network_mode = Some(network_mode.to_string());
        host.cap_drop = h.drop_all_caps.then(|| vec!["ALL".to_string()]);
        host.cap_add = (!h.cap_add.is_empty()).then(|| h.cap_add.clone());
        host.security_opt = h
            .no_new_privileges
            .then(|| vec!["no-new-privileges:true".to_string()]);
        host.pids_limit = (h.pids_limit > 0).then_some(h.pids_limit);
        host.readonly_rootfs = h.read_only.then_some(true);
        host.tmpfs = (h.tmpfs_mb > 0).then(|| {
            let opts = format!("rw,nosuid,nodev,size={}m,mode=1777", h.tmpfs_mb);
            HashMap::from([("/tmp".to_string(), opts)])
        });
    }
}

/// Makes sure what tasks need exists: the network (`bridge`/`isolated`) and the sandbox
/// holding the shared namespace. Idempotent, and serialised within the process so handlers
/// started side by side (tests) do not create the same network twice (Docker allows duplicate
/// network names).
pub async fn prepare(docker: &Docker, c: &Containment) -> Result<Prepared, RuntimeError> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    let net = match c.network {
        TaskNetwork::Host => {
            return Ok(Prepared {
                gateway: None,
                network_mode: "host".into(),
            })
        }
        TaskNetwork::None => None,
        TaskNetwork::Bridge | TaskNetwork::Isolated => {
            Some(ensure_network(docker, &c.network_name, c.network == TaskNetwork::Isolated).await?)
        }
    };
    let attach = net.as_ref().map_or("none".to_string(), |n| n.id.clone());
    let network_mode = if c.shares_netns() {
        ensure_sandbox(docker, c, &attach).await?;
        format!("container:{}", c.sandbox())
    } else {
        attach
    };
    Ok(Prepared {
        gateway: net.map(|n| n.gateway),
        network_mode,
    })
}

/// A network found or made.
struct Net {
    /// Its id (names may be duplicated; ids are not).
    id: String,
    /// Its IPv4 gateway: the host's address on it.
    gateway: IpAddr,
}

/// Finds the network `name` (the oldest, if there are several) or creates it.
async fn ensure_network(docker: &Docker, name: &str, internal: bool) -> Result<Net, RuntimeError> {
    if let Some(net) = find_network(docker, name, internal).await? {
        return Ok(net);
    }
    let level = if internal { "isolated" } else { "bridge" };
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        internal: Some(internal),
        labels: Some(HashMap::from([(NETWORK_LABEL.to_string(), level.into())])),
        // Tasks on the network cannot reach each other (with --task-netns own).
        options: Some(HashMap::from([(
            "com.docker.network.bridge.enable_icc".to_string(),
            "false".to_string(),
        )])),
        ..Default::default()
    };
    if let Err(e) = docker.create_network(request).await {
        // 409: made meanwhile by another process; anything else is real.
        if super::docker::status_of(&e) != Some(409) {
            return Err(super::docker::map_err(e));
        }
    }
    tracing::info!(network = name, internal, "created the task network");
    find_network(docker, name, internal).await?.ok_or_else(|| {
        // Removed again at once by someone else: the next create tries again.
        RuntimeError::unavailable(format!("network {name} was created but cannot be found"))
    })
}

/// The network called exactly `name`, checked to be what the level needs.
async fn find_network(
    docker: &Docker,
    name: &str,
    internal: bool,
) -> Result<Option<Net>, RuntimeError> {
    let filters = HashMap::from([("name", vec![name.to_string()])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let mut found: Vec<_> = docker
        .list_networks(Some(options))
        .await
        .map_err(super::docker::map_err)?
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .collect();
    found.sort_by(|a, b| a.created.cmp(&b.created));
    let Some(n) = found.into_iter().next() else {
        return Ok(None);
    };
    if n.internal.unwrap_or(false) != internal {
        let want = if internal { "internal" } else { "not internal" };
        return Err(RuntimeError::rejected(format!(
            "Docker network {name} exists but is not what this level needs ({want}); remove it or pick another --task-network-name"
        )));
    }
    let gateway = n
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.gateway?.parse::<IpAddr>().ok())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| {
            RuntimeError::rejected(format!("Docker network {name} has no IPv4 gateway"))
        })?;
    Ok(Some(Net {
        id: n.id.unwrap_or_default(),
        gateway,
    }))
}

/// Makes sure the sandbox holding the shared namespace runs, attached to `attach` (a network
/// id, or `none`). A sandbox that cannot start (its network was removed and made again) is
/// replaced.
async fn ensure_sandbox(
    docker: &Docker,
    c: &Containment,
    attach: &str,
) -> Result<(), RuntimeError> {
    let name = c.sandbox();
    let image = image::ensure_pause_image(docker)
        .await
        .map_err(|e| RuntimeError::Rejected {
            message: "cannot build the network sandbox's image".into(),
            source: Some(e.into()),
        })?;
    for _ in 0..3 {
        match docker.inspect_container(&name, None).await {
            Ok(info) if info.state.as_ref().and_then(|s| s.running) == Some(true) => return Ok(()),
            Ok(_) => match docker.start_container(&name, None).await {
                Ok(()) => return Ok(()),
                Err(e) if super::docker::status_of(&e) == Some(304) => return Ok(()),
                Err(e) => {
                    tracing::warn!(sandbox = %name, error = %e, "the sandbox cannot start; replacing it");
                    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
                    let _ = docker.remove_container(&name, Some(rm)).await;
                }
            },
            Err(e) if super::docker::status_of(&e) == Some(404) => {
                let options = CreateContainerOptionsBuilder::new().name(&name).build();
                match docker
                    .create_container(Some(options), sandbox_body(c, image, attach))
                    .await
                {
                    // Made here or by someone else meanwhile: the next round starts it.
                    Ok(_) => tracing::info!(sandbox = %name, "created the task network sandbox"),
                    Err(e) if super::docker::status_of(&e) == Some(409) => {}
                    Err(e) => return Err(super::docker::map_err(e)),
                }
            }
            Err(e) => return Err(super::docker::map_err(e)),
        }
    }
    Err(RuntimeError::rejected(format!(
        "the network sandbox {name} does not stay running; see `docker logs {name}`"
    )))
}

/// The sandbox: the waiting program, as hardened as a task and smaller, restarted with the
/// daemon, stopped with SIGKILL (as PID 1 without handlers it ignores SIGTERM).
fn sandbox_body(c: &Containment, image: &str, attach: &str) -> ContainerCreateBody {
    let level = format!("{:?}", c.network).to_ascii_lowercase();
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(HashMap::from([(NETWORK_LABEL.to_string(), level)])),
        user: Some("65534:65534".into()),
        stop_signal: Some("SIGKILL".into()),
        host_config: Some(HostConfig {
            network_mode: Some(attach.to_string()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: Some(SANDBOX_MEMORY),
            memory_swap: Some(SANDBOX_MEMORY),
            pids_limit: Some(SANDBOX_PIDS),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardened(network: TaskNetwork) -> Containment {
        Containment {
            network,
            network_name: "eda-tasks".into(),
            netns: TaskNetns::Shared,
            hardening: Hardening {
                user: Some("65534:65534".into()),
                read_only: true,
                tmpfs_mb: 64,
                drop_all_caps: true,
                cap_add: vec!["NET_BIND_SERVICE".into()],
                pids_limit: 256,
                no_new_privileges: true,
            },
        }
    }

    fn body() -> ContainerCreateBody {
        ContainerCreateBody {
            env: Some(vec![
                "MESSAGE=m".into(),
                "CALLBACK_URL=http://x".into(),
                "TASK_TOKEN=t".into(),
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn hardening_goes_into_the_create_body() {
        let c = hardened(TaskNetwork::Bridge);
        let mut b = body();
        c.apply(&mut b, "container:eda-tasks-ns");
        let h = b.host_config.unwrap();
        assert_eq!(b.user.as_deref(), Some("65534:65534"));
        assert_eq!(h.network_mode.as_deref(), Some("container:eda-tasks-ns"));
        assert_eq!(h.cap_drop.unwrap(), ["ALL"]);
        assert_eq!(h.cap_add.unwrap(), ["NET_BIND_SERVICE"]);
        assert_eq!(h.security_opt.unwrap(), ["no-new-privileges:true"]);
        assert_eq!(h.pids_limit, Some(256));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(
            h.tmpfs.unwrap()["/tmp"],
            "rw,nosuid,nodev,size=64m,mode=1777"
        );
        assert_eq!(
            b.env.unwrap().len(),
            3,
            "a task with a network keeps its callback"
        );
    }

    #[test]
    fn without_a_network_a_task_gets_no_callback_and_no_token() {
        let mut b = body();
        hardened(TaskNetwork::None).apply(&mut b, "container:eda-tasks-none-ns");
        assert_eq!(b.env.unwrap(), ["MESSAGE=m"]);
    }

    #[test]
    fn legacy_changes_nothing_but_the_host_network() {
        let mut b = body();
        Containment::legacy().apply(&mut b, "host");
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert_eq!(
            (
                h.cap_drop,
                h.security_opt,
                h.pids_limit,
                h.readonly_rootfs,
                h.tmpfs
            ),
            (None, None, None, None, None)
        );
        assert_eq!(b.user, None);
    }

    #[test]
    fn host_and_own_namespaces_need_no_sandbox() {
        assert!(hardened(TaskNetwork::Bridge).shares_netns());
        assert!(!hardened(TaskNetwork::Host).shares_netns());
        let mut own = hardened(TaskNetwork::Isolated);
        own.netns = TaskNetns::Own;
        assert!(!own.shares_netns());
        assert!(hardened(TaskNetwork::Host).describe().contains("HOST"));
    }
}
