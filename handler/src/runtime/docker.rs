//! Docker Engine runtime (placeholder until the runtimes branch lands).
use super::RuntimeError;
use std::path::Path;

/// Docker Engine runtime.
pub struct DockerRuntime;

impl DockerRuntime {
    /// Connects to the local engine.
    pub async fn connect() -> Result<DockerRuntime, RuntimeError> {
        Err(RuntimeError::Unavailable("not built yet".into()))
    }
    /// Builds the worker image when missing.
    pub async fn ensure_worker_image(
        &self,
        _tag: &str,
        _worker_bin: &Path,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl super::ContainerRuntime for DockerRuntime {
    fn kind(&self) -> &'static str {
        "docker"
    }
    async fn create(
        &self,
        _: &super::ContainerSpec,
    ) -> Result<super::Created, super::RuntimeError> {
        Err(super::RuntimeError::Unavailable("placeholder".into()))
    }
    async fn status(&self, _: &str) -> Result<Option<super::ContainerStatus>, super::RuntimeError> {
        Ok(None)
    }
    async fn kill(&self, _: &str) -> Result<(), super::RuntimeError> {
        Ok(())
    }
    async fn remove(&self, _: &str) -> Result<(), super::RuntimeError> {
        Ok(())
    }
    async fn logs(&self, _: &str, _: usize) -> Result<model::Logs, super::RuntimeError> {
        Ok(model::Logs {
            text: String::new(),
            truncated: false,
        })
    }
    async fn sample(&self, _: &str) -> Result<Option<model::MetricSample>, super::RuntimeError> {
        Ok(None)
    }
    async fn list(&self) -> Result<Vec<String>, super::RuntimeError> {
        Ok(vec![])
    }
}
