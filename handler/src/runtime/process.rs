//! Process runtime (placeholder until the runtimes branch lands).
use std::path::PathBuf;

/// Child-process runtime.
pub struct ProcessRuntime;

impl ProcessRuntime {
    /// A runtime running `worker_bin`, logging to `logs_dir`.
    pub fn new(_worker_bin: PathBuf, _logs_dir: PathBuf) -> ProcessRuntime {
        ProcessRuntime
    }
}

#[async_trait::async_trait]
impl super::ContainerRuntime for ProcessRuntime {
    fn kind(&self) -> &'static str {
        "process"
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
