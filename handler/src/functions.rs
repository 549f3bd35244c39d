//! Azure Functions custom-handler adapter (placeholder until the azure branch lands).
use crate::config::FunctionsArgs;

/// Runs as a custom handler.
pub async fn run(_args: FunctionsArgs) -> anyhow::Result<()> {
    anyhow::bail!("functions mode is not built yet")
}
