//! The Azure settings of `handler functions` and `handler check`.

use super::env;
use clap::Args;
use std::path::PathBuf;

/// Azure-only settings of `handler functions` (docs/AZURE.md lists them with the app settings
/// the Bicep template writes). Endpoints are flags so tests can point them at local stand-ins.
#[derive(Debug, Clone, Args)]
pub struct AzureArgs {
    /// Base URL workers call back, e.g. `https://<app>.azurewebsites.net`.
    /// Default: `https://$WEBSITE_HOSTNAME` (App Service sets it).
    #[arg(long, env = "EDA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Host name App Service gives the Function App (set by the platform).
    #[arg(long, env = "WEBSITE_HOSTNAME", hide = true)]
    pub website_hostname: Option<String>,
    /// API key required on /api routes (the HTTP functions are anonymous; see docs/AZURE.md).
    #[arg(long, env = "EDA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Subscription that holds the container groups (required with `--runtime aci`).
    #[arg(
        long,
        env = "EDA_SUBSCRIPTION_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub subscription_id: String,
    /// Resource group the container groups are created in.
    #[arg(
        long,
        env = "EDA_RESOURCE_GROUP",
        default_value = "",
        hide_default_value = true
    )]
    pub resource_group: String,
    /// Azure region of the container groups, e.g. `westeurope`.
    #[arg(
        long,
        env = "EDA_LOCATION",
        default_value = "",
        hide_default_value = true
    )]
    pub location: String,
    /// Registry server of the worker image, e.g. `myacr.azurecr.io` (none: a public image).
    #[arg(long, env = "EDA_REGISTRY_SERVER")]
    pub registry_server: Option<String>,
    /// Resource id of the user-assigned identity that has AcrPull on the registry; the
    /// container groups pull with it (no registry password anywhere).
    #[arg(long, env = "EDA_REGISTRY_IDENTITY")]
    pub registry_identity: Option<String>,
    /// Path of the worker inside the image: ACI's `command` replaces the entrypoint, so worker
    /// arguments are passed as `[entrypoint, args...]`.
    #[arg(long, env = "EDA_ACI_ENTRYPOINT", default_value = "/worker")]
    pub aci_entrypoint: String,
    /// Azure Resource Manager base URL (also serves Azure Monitor metrics).
    #[arg(
        long,
        env = "EDA_ARM_ENDPOINT",
        default_value = "https://management.azure.com"
    )]
    pub arm_endpoint: String,
    /// Audience of the managed-identity token for ARM.
    #[arg(
        long,
        env = "EDA_ARM_RESOURCE",
        default_value = "https://management.azure.com/"
    )]
    pub arm_resource: String,
    /// `IDENTITY_ENDPOINT`, the managed-identity token endpoint App Service sets when an identity
    /// is assigned. Environment only, not a flag: `azure_identity` reads the variable itself
    /// (runtime/aci.rs explains), so a flag could disagree with what it uses. Read here only to
    /// refuse to start with a clear message when it is missing.
    #[arg(skip = env("IDENTITY_ENDPOINT"))]
    pub identity_endpoint: Option<String>,
    /// Whether `IDENTITY_HEADER` (the per-process secret for the identity endpoint) is set; the
    /// value itself is only ever read by `azure_identity`, so no struct of ours holds it.
    #[arg(skip = env("IDENTITY_HEADER").is_some())]
    pub identity_header_set: bool,
    /// Seconds a new task may stay `Pending` (first attempt, no retry scheduled) before the
    /// `ReconcileTimer` sends its envelope again, in case the Functions host never delivered the
    /// `HttpApi` output binding; at most once per period per task. 0 turns it off.
    /// Defaults to 120 s: set it above the longest time a message waits in the queue.
    #[arg(long, env = "EDA_PENDING_RESEND_SECS", default_value_t = 120)]
    pub pending_resend_secs: u64,
    /// Milliseconds between polls of a container group's creation (ARM long-running operation).
    #[arg(long, env = "EDA_ACI_POLL_MS", default_value_t = 2000)]
    pub aci_poll_ms: u64,
    /// Seconds to wait for a container group's creation before leaving it to the reconciler.
    #[arg(long, env = "EDA_ACI_CREATE_WAIT_SECS", default_value_t = 300)]
    pub aci_create_wait_secs: u64,
    /// Resource id of an ACI standby pool (`Microsoft.StandbyPool/standbyContainerGroupPools`)
    /// to claim ready container groups from (warm starts; `infra/main.bicep` makes one when
    /// `standbyPoolSize` > 0). Needs `--aci-group-profile`. Tasks that do not fit the profile's
    /// image and resources, and claims ARM refuses, start cold.
    #[arg(long, env = "EDA_ACI_STANDBY_POOL", requires = "aci_group_profile")]
    pub aci_standby_pool: Option<String>,
    /// Resource id of the container group profile the standby pool runs
    /// (`Microsoft.ContainerInstance/containerGroupProfiles`).
    #[arg(long, env = "EDA_ACI_GROUP_PROFILE")]
    pub aci_group_profile: Option<String>,
    /// Revision of that profile the pool was made from.
    #[arg(long, env = "EDA_ACI_GROUP_PROFILE_REVISION", default_value_t = 1)]
    pub aci_group_profile_revision: i32,
    /// MongoDB / Cosmos DB for MongoDB connection string (`retryWrites=false` is added for
    /// Cosmos); required with `--store mongo`.
    #[arg(
        long,
        env = "EDA_MONGO_URI",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub mongo_uri: String,
    /// Database name.
    #[arg(long, env = "EDA_MONGO_DB", default_value = "eda")]
    pub mongo_db: String,
    /// Tasks collection; logs and metrics go to `<name>_logs` and `<name>_metrics`.
    #[arg(long, env = "EDA_MONGO_COLLECTION", default_value = "tasks")]
    pub mongo_collection: String,
    /// Folder of the built dashboard to serve instead of the embedded one.
    #[arg(long, env = "EDA_DASHBOARD_DIR")]
    pub dashboard_dir: Option<PathBuf>,
    /// Service Bus queue the functions read and write (used by function.json as `%EDA_QUEUE_NAME%`;
    /// logged at start so a misrouted deployment is visible).
    #[arg(long, env = "EDA_QUEUE_NAME", default_value = "work")]
    pub queue_name: String,
}
