//! The hand-over to a container that was started before its task existed: an Azure Container
//! Instances standby pool keeps container groups running from a container group profile, and
//! claiming one for a task passes the task's inputs through the container's config map, which
//! ACI mounts as one file per key under `/mnt/configmap/<container>/` without restarting it
//! (MicrosoftDocs/azure-compute-docs `articles/container-instances/container-instances-config-map.md`,
//! "ConfigMaps in Linux containers").
//!
//! Everything the worker of a cold container gets from its command and environment travels as
//! one JSON value under one key ([`ASSIGNMENT_KEY`]), so the worker waits for one file and never
//! sees half an assignment.

use serde::{Deserialize, Serialize};

/// The config map key holding the [`Assignment`].
pub const ASSIGNMENT_KEY: &str = "EDA_ASSIGNMENT";

/// The environment variable naming the directory where the config map appears; set by the
/// container group profile (`infra/main.bicep`: `/mnt/configmap/<container>`). A worker started
/// with it waits for its assignment instead of running at once.
pub const CONFIGMAP_DIR_ENV: &str = "EDA_CONFIGMAP_DIR";

/// A task's inputs for a worker that is already running: exactly what a cold container of the
/// task gets as its command's arguments and its environment (secrets included).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The worker's arguments (after the entrypoint).
    pub args: Vec<String>,
    /// The worker's environment: `MESSAGE`, `TASK_ID`, `CALLBACK_URL`, `TASK_TOKEN`, ...
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Assignment {
    /// Names only: the values hold the message and the task's token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Assignment")
            .field("args", &self.args.len())
            .field("env", &names)
            .finish()
    }
}
