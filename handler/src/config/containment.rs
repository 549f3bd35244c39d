//! The flags of task containment (local mode, Docker runtime): network, namespaces, sandbox
//! and hardening. Resolved into a [`Containment`] by [`ContainmentArgs::containment`].

use super::{ConfigError, Containment, Hardening};
use clap::{Args, ValueEnum};

/// How a task container reaches the network (local mode, Docker runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskNetwork {
    /// A Docker bridge network of the handler's own (`eda-tasks`): outbound access, no way to
    /// the host's loopback; the handler answers tasks only on its worker listener.
    Bridge,
    /// The same on an internal network (`eda-tasks-isolated`): the worker listener and nothing
    /// outside the host.
    Isolated,
    /// No network at all: the worker cannot report, the outcome comes from the exit code.
    None,
    /// The host's network (opt-in, warned about): tasks reach everything on the host's
    /// loopback, this API included.
    Host,
}

/// Whether tasks share one network namespace or get one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskNetns {
    /// All tasks join one namespace held by a tiny sandbox container: starts cost what host
    /// networking costs, but tasks can reach each other's listening ports.
    Shared,
    /// One namespace per task (Docker's default): tasks cannot reach each other; each start
    /// pays for a new namespace and veth pair (~300 ms on Docker 20.10 here).
    Own,
}

/// How task containers are contained (local mode, Docker runtime). README "Security" explains
/// each; the defaults are the hardened ones, a worker that needs more says so here.
#[derive(Debug, Clone, Args)]
pub struct ContainmentArgs {
    /// Network of task containers: bridge, isolated (no outbound), none (no network), host
    /// (opt-in: tasks can reach this API and all of the host's loopback).
    #[arg(long, env = "EDA_TASK_NETWORK", value_enum, default_value_t = TaskNetwork::Bridge)]
    pub task_network: TaskNetwork,
    /// Docker network the handler creates (when missing) and keeps for tasks; its sandbox
    /// container is `<name>-ns`. Default: `eda-tasks`, `eda-tasks-isolated` or `eda-tasks-none`.
    #[arg(long, env = "EDA_TASK_NETWORK_NAME")]
    pub task_network_name: Option<String>,
    /// One shared network namespace for all tasks (fast starts), or one each.
    #[arg(long, env = "EDA_TASK_NETNS", value_enum, default_value_t = TaskNetns::Shared)]
    pub task_netns: TaskNetns,
    /// Port of the worker listener on the task network's gateway. Default: the API's port
    /// (set it when --bind is a wildcard address, which already holds that port everywhere).
    #[arg(long, env = "EDA_TASK_PORT")]
    pub task_port: Option<u16>,
    /// User tasks run as (`uid[:gid]` or a name the image knows); `image` keeps the image's own
    /// USER (often root).
    #[arg(long, env = "EDA_TASK_USER", default_value = "65534:65534")]
    pub task_user: String,
    /// Read-only root filesystem for tasks (a tmpfs at /tmp stays writable).
    #[arg(long, env = "EDA_TASK_READ_ONLY", default_value_t = true, action = clap::ArgAction::Set)]
    pub task_read_only: bool,
    /// Size of the writable tmpfs at /tmp in MiB (0: none).
    #[arg(long, env = "EDA_TASK_TMPFS_MB", default_value_t = 64)]
    pub task_tmpfs_mb: u32,
    /// Capabilities tasks keep (e.g. NET_BIND_SERVICE); all others are dropped. Repeat or
    /// comma-separate. None by default.
    #[arg(long = "task-cap-add", env = "EDA_TASK_CAP_ADD", value_delimiter = ',')]
    pub task_cap_add: Vec<String>,
    /// Most processes (and threads) in one task container (0: no limit).
    #[arg(long, env = "EDA_TASK_PIDS_LIMIT", default_value_t = 256)]
    pub task_pids_limit: i64,
    /// Forbid gaining privileges (setuid binaries, file capabilities) inside tasks.
    #[arg(long, env = "EDA_TASK_NO_NEW_PRIVILEGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub task_no_new_privileges: bool,
}

impl ContainmentArgs {
    /// Checks the flags and resolves them into what the Docker runtime applies.
    pub fn resolve(&self) -> Result<Containment, ConfigError> {
        let bad = |m: String| Err(ConfigError::OutOfRange(m));
        let name = self.task_network_name.clone().unwrap_or_else(|| {
            match self.task_network {
                TaskNetwork::Isolated => "eda-tasks-isolated",
                TaskNetwork::None => "eda-tasks-none",
                _ => "eda-tasks",
            }
            .to_string()
        });
        if !docker_name_ok(&name) {
            return bad(format!(
                "--task-network-name `{name}`: 1..=60 of a-z, A-Z, 0-9, '_', '.', '-', starting with a letter or digit"
            ));
        }
        let user = match self.task_user.as_str() {
            "image" => None,
            u if !u.is_empty()
                && u.len() <= 64
                && u.split(':').count() <= 2
                && u.split(':').all(docker_name_ok) =>
            {
                Some(u.to_string())
            }
            u => {
                return bad(format!(
                    "--task-user `{u}`: expected uid[:gid], a user name, or `image`"
                ))
            }
        };
        let mut caps = Vec::new();
        for c in self
            .task_cap_add
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
        {
            let c = c.to_ascii_uppercase();
            let c = c.strip_prefix("CAP_").unwrap_or(&c);
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') || c == "ALL"
            {
                return bad(format!(
                    "--task-cap-add `{c}`: a capability name such as NET_BIND_SERVICE (not ALL)"
                ));
            }
            caps.push(c.to_string());
        }
        if self.task_pids_limit < 0 {
            return bad("--task-pids-limit must be >= 0 (0: no limit)".into());
        }
        if self.task_tmpfs_mb > 65_536 {
            return bad("--task-tmpfs-mb must be 0..=65536".into());
        }
        Ok(Containment {
            network: self.task_network,
            network_name: name,
            // The sandbox's program is x86-64 machine code (`image::pause_program`).
            netns: if cfg!(target_arch = "x86_64") {
                self.task_netns
            } else {
                TaskNetns::Own
            },
            hardening: Hardening {
                user,
                read_only: self.task_read_only,
                tmpfs_mb: self.task_tmpfs_mb,
                drop_all_caps: true,
                cap_add: caps,
                pids_limit: self.task_pids_limit,
                no_new_privileges: self.task_no_new_privileges,
            },
        })
    }
}

/// A Docker object name we accept: 1..=60 of `[a-zA-Z0-9_.-]`, starting alphanumeric.
fn docker_name_ok(s: &str) -> bool {
    (1..=60).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}
