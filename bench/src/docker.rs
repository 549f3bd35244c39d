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
/// Without `attach_output`: create + start, timed until the start call returns (the API's floor:
/// the process may not have run yet).
pub async fn engine_first_output(
    docker: &Docker,
    image: &str,
    args: &[&str],
    name: &str,
    attach_output: bool,
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
    if !attach_output {
        docker.start_container(name, None).await?;
        let elapsed = t0.elapsed();
        let rm = RemoveContainerOptionsBuilder::new().force(true).build();
        docker.remove_container(name, Some(rm)).await?;
        return Ok(elapsed);
    }
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

/// Task ids (`eda.task` label) of every container of this system on the engine; other
/// handlers on the machine may have some, so callers look for their own tasks.
pub fn tasks_with_containers() -> anyhow::Result<Vec<String>> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=eda.managed",
            "--format",
            "{{.Label \"eda.task\"}}",
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Removes `image` so the handler builds it afresh from the current worker binary (an existing
/// image that is not the default tag is used as it is).
pub fn remove_image(image: &str) {
    let _ = Command::new("docker")
        .args(["rmi", "-f", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
