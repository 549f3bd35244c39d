//! Benchmarks of local mode, side by side with the baselines they are judged against, measured
//! in the same run: `cargo run --release -p bench -- all` (or `overhead`, `burst`, `process`,
//! `api`, `warm`). Prints progress to stderr and the results as Markdown to stdout (and `--out`).
//!
//! # Layout
//!
//! - `proc`: the handler as a child process (start time, RSS, cleanup of its workers).
//! - `sse`: a `GET /api/events` client that timestamps each task frame.
//! - `load`: a raw HTTP/1.1 keep-alive load generator.
//! - `docker`: the baselines (Engine API, `docker run`, `xargs -P8 docker run`).
//! - `runs`: the four benchmarks.
//! - `warm`: the warm pool's latency and burst against the same handler cold and raw Docker.
//! - `stats`: percentiles and the Markdown report.

mod docker;
mod load;
mod proc;
mod runs;
mod sse;
mod stats;
mod warm;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// Benchmarks of Event-Driven ACI's local mode against raw Docker (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    /// Which benchmark.
    #[command(subcommand)]
    what: What,
    /// Cargo target dir holding (or receiving) the release handler and the musl worker.
    #[arg(long, env = "CARGO_TARGET_DIR", global = true)]
    target_dir: Option<PathBuf>,
    /// Do not build the handler and worker first (use what is in the target dir).
    #[arg(long, global = true)]
    no_build: bool,
    /// Also write the Markdown report to this file.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Sequential tasks in the overhead benchmark (and samples of each baseline).
    #[arg(long, default_value_t = 30, global = true)]
    samples: usize,
    /// Tasks in the Docker burst.
    #[arg(long, default_value_t = 500, global = true)]
    burst: usize,
    /// Tasks in the process-runtime run.
    #[arg(long, default_value_t = 1000, global = true)]
    process_tasks: usize,
    /// Seconds each load-generator run lasts.
    #[arg(long, default_value_t = 5, global = true)]
    load_secs: u64,
    /// Connections of the load generator.
    #[arg(long, default_value_t = 32, global = true)]
    connections: usize,
    /// Warm containers of the handler in the `warm` benchmark (`handler local --warm`).
    #[arg(long, default_value_t = 8, global = true)]
    warm: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum What {
    /// Every benchmark below, in this order.
    All,
    /// API accepted -> worker reports InProgress, vs Engine API create+start and `docker run`.
    Overhead,
    /// 500 tasks at concurrency 8 vs `xargs -P8 docker run --rm`.
    Burst,
    /// 1,000 trivial tasks on the process runtime.
    Process,
    /// Enqueue rate, list latency with 10,000 tasks, start-to-listening time, RSS.
    Api,
    /// The warm pool: accepted -> InProgress vs Engine API create + start and a cold handler;
    /// a burst with the pool vs cold vs `xargs -P8 docker run`.
    Warm,
}

/// What every benchmark needs.
pub struct Ctx {
    /// The release `handler` binary.
    pub handler: PathBuf,
    /// The static (musl) worker binary.
    pub worker: PathBuf,
    /// Load-generator and sample settings.
    pub samples: usize,
    /// Tasks in the burst.
    pub burst: usize,
    /// Tasks in the process run.
    pub process_tasks: usize,
    /// Seconds per load run.
    pub load_secs: u64,
    /// Load-generator connections.
    pub connections: usize,
    /// Warm containers in the `warm` benchmark.
    pub warm: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = cli
        .target_dir
        .clone()
        .unwrap_or_else(|| root.join("target"));
    if !cli.no_build {
        build(&root, &target)?;
    }
    let ctx = Ctx {
        handler: target.join("release/handler"),
        worker: target.join("x86_64-unknown-linux-musl/release/worker"),
        samples: cli.samples,
        burst: cli.burst,
        process_tasks: cli.process_tasks,
        load_secs: cli.load_secs,
        connections: cli.connections,
        warm: cli.warm,
    };
    let mut report = stats::Report::default();
    let all = cli.what == What::All;
    if matches!(
        cli.what,
        What::All | What::Overhead | What::Burst | What::Warm
    ) {
        docker::remove_image(runs::IMAGE);
    }
    if all || cli.what == What::Overhead {
        runs::overhead(&ctx, &mut report).await?;
    }
    if all || cli.what == What::Burst {
        runs::burst(&ctx, &mut report).await?;
    }
    if all || cli.what == What::Process {
        runs::process(&ctx, &mut report).await?;
    }
    if all || cli.what == What::Api {
        runs::api(&ctx, &mut report).await?;
    }
    if all || cli.what == What::Warm {
        warm::latency(&ctx, &mut report).await?;
        warm::burst(&ctx, &mut report).await?;
    }
    let md = format!("{}\n{}", runs::machine(), report.markdown());
    println!("{md}");
    if let Some(out) = &cli.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Builds the release handler and the static worker into `target`.
fn build(root: &Path, target: &Path) -> anyhow::Result<()> {
    for args in [
        &["build", "--release", "-p", "handler"][..],
        &[
            "build",
            "--release",
            "-p",
            "worker",
            "--target",
            "x86_64-unknown-linux-musl",
        ][..],
    ] {
        eprintln!("cargo {}", args.join(" "));
        let status = std::process::Command::new("cargo")
            .current_dir(root)
            .args(args)
            .env("CARGO_TARGET_DIR", target)
            .status()?;
        anyhow::ensure!(status.success(), "cargo {} failed", args.join(" "));
    }
    Ok(())
}
