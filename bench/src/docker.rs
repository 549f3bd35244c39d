//! The baselines: the same worker image started by the Docker Engine API directly, and by the
//! `docker run` CLI, one at a time and as an `xargs -P8` burst.

use anyhow::{bail, Context};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Limits the handler gives each container by default (1 CPU, 1536 MiB), so the baseline's
/// container is configured like ours.
const CPU_NANOS: i64 = 1_000_000_000;
const MEMORY: i64 = 1536 * 1024 * 1024;

/// Connects to the local engine.
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await
        .context("no Docker Engine answers")?;
    docker.ping().await?;
    Ok(docker)
}

/// Engine API: create + attach + start `image` with `args` (host network and our limits),
/// timed until the first byte of output; the container is removed afterwards (not timed).
pub async fn engine_first_output(
    docker: &Docker,
    image: &str,
    args: &[&str],
    name: &str,
) -> anyhow::Result<Duration> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(args.iter().map(|s| s.to_string()).collect()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            memory: Some(MEMORY),
            memory_swap: Some(MEMORY),
            nano_cpus: Some(CPU_NANOS),
            network_mode: Some("host".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t0 = Instant::now();
    let opts = CreateContainerOptionsBuilder::new().name(name).build();
    docker.create_container(Some(opts), body).await?;
    let attach = AttachContainerOptionsBuilder::new()
        .stream(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut out = docker.attach_container(name, Some(attach)).await?.output;
    docker.start_container(name, None).await?;
    let first = out.next().await;
    let elapsed = t0.elapsed();
    drop(out);
    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
    docker.remove_container(name, Some(rm)).await?;
    match first {
        Some(Ok(_)) => Ok(elapsed),
        other => bail!("no output from {image}: {other:?}"),
    }
}

/// `docker run --rm` of `image` with `args`, timed until the CLI exits.
pub fn cli_run(image: &str, args: &[&str]) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let status = Command::new("docker")
        .args(["run", "--rm", "--network", "host", image])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let elapsed = t0.elapsed();
    if !status.success() {
        bail!("docker run {image} failed: {status}");
    }
    Ok(elapsed)
}

/// `seq n | xargs -P<parallel> -I{} docker run --rm <image> <args>`: total wall time.
pub fn xargs_burst(image: &str, args: &str, n: usize, parallel: usize) -> anyhow::Result<Duration> {
    let script = format!(
        "seq {n} | xargs -P{parallel} -I{{}} docker run --rm --network host {image} {args} >/dev/null"
    );
    let t0 = Instant::now();
    let status = Command::new("sh").arg("-c").arg(&script).status()?;
    let elapsed = t0.elapsed();
    if !status.success() {
        bail!("the xargs burst failed: {status}");
    }
    Ok(elapsed)
}

/// Number of containers with the `eda.managed` label (ours) still present.
pub fn managed_containers() -> anyhow::Result<usize> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=eda.managed"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}
