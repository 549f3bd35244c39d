//! The warm pool benchmarks (issue 11, `bench warm`): a handler with `--warm N` against the
//! cold Engine API create + start and against the same handler without a pool, all in one run.
//!
//! 1. Latency: sequential tasks, accepted -> `InProgress` frame, interleaved round by round with
//!    the Engine API baseline (create + start of the worker image until the start call returns)
//!    and a cold handler. Before each warm sample the pool is full and ready (its workers asked
//!    for work): the figure is a claim's, not a refill's.
//! 2. Burst: `burst` trivial tasks in one request, concurrency 8, with the pool, then without,
//!    then `xargs -P8 docker run`.
//! 3. Where the warm time goes: the Docker rename on the claim path, timed alone.

use crate::docker;
use crate::proc::Handler;
use crate::runs::{all_terminal, docker_flags, frame_of, submit, IMAGE};
use crate::sse;
use crate::stats::{ms, Report, Row, Summary};
use crate::Ctx;
use anyhow::{bail, Context};
use model::{TaskId, TaskState};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The flags of a handler with a pool of `ctx.warm`.
fn warm_flags(ctx: &Ctx, concurrency: usize) -> Vec<String> {
    let mut flags = docker_flags(ctx, concurrency);
    flags.extend(["--warm".to_string(), ctx.warm.to_string()]);
    flags
}

/// Waits until the pool of `base` has `n` containers whose workers asked for work.
async fn pool_ready(http: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view: serde_json::Value = http
            .get(format!("{base}/api/pool"))
            .send()
            .await?
            .json()
            .await?;
        let ready = view["containers"]
            .as_array()
            .map_or(0, |c| c.iter().filter(|c| c["state"] == "ready").count());
        if ready >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the pool of {base} has {ready} of {n} containers ready after 60 s: {view}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until no container of task `id` exists (by name: a claimed warm container keeps the
/// pool's labels, so the `eda.task` label does not find it).
async fn gone(id: &TaskId) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let filter = format!("name=eda-{id}-");
    loop {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()?;
        if out.stdout.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the container of {id} was not removed within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One task on `h`, timed from the 202 to its InProgress frame.
struct Sample {
    /// The task.
    id: TaskId,
    /// 202 received (wall clock, to compare with the handler's log).
    accepted: SystemTime,
    /// Accepted -> InProgress frame.
    took: Duration,
}

/// One task on `h`: accepted -> InProgress frame, then waits for Done and its removal.
async fn one(
    http: &reqwest::Client,
    h: &Handler,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<sse::Stamped>,
    i: usize,
) -> anyhow::Result<Sample> {
    let body = serde_json::json!({"work": format!("warm {i}")});
    let ids = submit(http, &h.url(), body).await?;
    let (accepted, wall) = (Instant::now(), SystemTime::now());
    let started = frame_of(rx, &ids[0], TaskState::InProgress).await?;
    frame_of(rx, &ids[0], TaskState::Done).await?;
    gone(&ids[0]).await?;
    Ok(Sample {
        id: ids[0].clone(),
        accepted: wall,
        took: started - accepted,
    })
}

/// Seconds since midnight (UTC) of `t`.
fn day_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        % 86_400.0
}

/// When the handler logged "claimed a warm container" for each task (seconds since midnight
/// UTC, from the log line's RFC 3339 timestamp; ANSI colours stripped).
fn claims_in(log: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for raw in log
        .lines()
        .filter(|l| l.contains("claimed a warm container"))
    {
        let line = strip_ansi(raw);
        let at = line
            .split_whitespace()
            .next()
            .and_then(|t| t.split_once('T'))
            .map(|(_, time)| time.trim_end_matches('Z'))
            .and_then(|time| {
                let mut p = time.split(':').map(|x| x.parse::<f64>().ok());
                Some(p.next()?? * 3600.0 + p.next()?? * 60.0 + p.next()??)
            });
        let task = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("task="))
            .map(str::to_string);
        if let (Some(at), Some(task)) = (at, task) {
            out.insert(task, at);
        }
    }
    out
}

/// `s` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// Splits warm samples at the claim: accepted -> claimed (queue lease, task record, claim
/// row, rename) and claimed -> InProgress frame (hand-over answer, the worker's report, its
/// store write, the SSE frame).
fn split(samples: &[Sample], log: &str) -> Option<(Summary, Summary)> {
    let claims = claims_in(log);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for s in samples {
        let claimed = *claims.get(s.id.as_str())?;
        let to_claim = Duration::from_secs_f64((claimed - day_secs(s.accepted)).max(0.0));
        before.push(to_claim);
        after.push(s.took.saturating_sub(to_claim));
    }
    Some((Summary::of(&before), Summary::of(&after)))
}

/// 1. Latency with a pool vs the Engine API's create + start and vs a cold handler.
pub async fn latency(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    eprintln!(
        "warm latency: {} sequential tasks with --warm {}, interleaved with the Engine API and a cold handler",
        ctx.samples, ctx.warm
    );
    let cold = Handler::start(&ctx.handler, "cold", &docker_flags(ctx, 8), &[])?;
    // Its claims are logged (info), to split the warm time at the claim.
    let log = [("RUST_LOG", "warn,handler::spawn=info")];
    let warm = Handler::start(&ctx.handler, "warm", &warm_flags(ctx, 8), &log)?;
    let dk = docker::connect().await?;
    let http = reqwest::Client::new();
    let mut cold_rx = sse::subscribe(&cold.url()).await?;
    let mut warm_rx = sse::subscribe(&warm.url()).await?;
    let (mut w, mut c, mut floor, mut first) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut split_samples = Vec::new();
    let warmup = 2;
    for i in 0..ctx.samples + warmup {
        let f = docker::engine_first_output(
            &dk,
            IMAGE,
            &["--help"],
            &format!("eda-bench-wfloor-{i}"),
            false,
        )
        .await?;
        let o = docker::engine_first_output(
            &dk,
            IMAGE,
            &["--help"],
            &format!("eda-bench-wout-{i}"),
            true,
        )
        .await?;
        let cs = one(&http, &cold, &mut cold_rx, i).await?;
        pool_ready(&http, &warm.url(), ctx.warm).await?;
        let ws = one(&http, &warm, &mut warm_rx, i).await?;
        if i >= warmup {
            w.push(ws.took);
            split_samples.push(ws);
            c.push(cs.took);
            floor.push(f);
            first.push(o);
        }
    }
    let (ws, cs, fs, os) = (
        Summary::of(&w),
        Summary::of(&c),
        Summary::of(&floor),
        Summary::of(&first),
    );
    let section = "Warm pool latency";
    report.note(
        section,
        format!(
            "warm (`--warm {}`, 202 received -> InProgress frame): {}",
            ctx.warm,
            ws.show()
        ),
    );
    report.note(
        section,
        format!("cold (same handler build, no pool): {}", cs.show()),
    );
    report.note(
        section,
        format!(
            "Engine API create + start, until the start call returns (the cold baseline): {}",
            fs.show()
        ),
    );
    report.note(
        section,
        format!(
            "Engine API create + attach + start -> first output: {}",
            os.show()
        ),
    );
    let log = std::fs::read_to_string(warm.log_path()).unwrap_or_default();
    match split(&split_samples, &log) {
        Some((to_claim, after)) => {
            let claim = format!(
                "of which 202 -> claimed (the handler's log): {}",
                to_claim.show()
            );
            report.note(section, claim);
            report.note(
                section,
                format!("of which claimed -> InProgress frame: {}", after.show()),
            );
        }
        None => report.note(
            section,
            "(a task had no claim in the handler's log: not every sample was warm)",
        ),
    }
    let p50 = ws.p50.as_secs_f64() / fs.p50.as_secs_f64();
    report.row(Row {
        figure: "Warm start p50 (accepted -> InProgress)".into(),
        ours: ms(ws.p50),
        baseline: format!(
            "Engine API create + start {}; cold handler {}",
            ms(fs.p50),
            ms(cs.p50)
        ),
        ratio: format!(
            "{p50:.2}x Engine API; {:.2}x cold",
            ws.p50.as_secs_f64() / cs.p50.as_secs_f64()
        ),
        target: "<= 0.2x Engine API".into(),
        met: p50 <= 0.2,
    });
    let p95 = ws.p95.as_secs_f64() / fs.p95.as_secs_f64();
    report.row(Row {
        figure: "Warm start p95".into(),
        ours: ms(ws.p95),
        baseline: format!(
            "Engine API create + start {}; cold handler {}",
            ms(fs.p95),
            ms(cs.p95)
        ),
        ratio: format!("{p95:.2}x Engine API"),
        target: "<= 0.3x Engine API".into(),
        met: p95 <= 0.3,
    });
    rename_cost(&dk, ctx, report).await
}

/// 3. The Docker rename alone (on the claim path), against a started container.
async fn rename_cost(dk: &bollard::Docker, ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    use bollard::query_parameters::RenameContainerOptionsBuilder;
    let (a, b) = ("eda-bench-rename-a", "eda-bench-rename-b");
    let body = bollard::models::ContainerCreateBody {
        image: Some(IMAGE.to_string()),
        cmd: Some(vec!["--help".into()]),
        ..Default::default()
    };
    let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
        .name(a)
        .build();
    dk.create_container(Some(opts), body).await?;
    let mut times = Vec::new();
    let mut names = (a, b);
    for _ in 0..ctx.samples {
        let t0 = Instant::now();
        let to = RenameContainerOptionsBuilder::new().name(names.1).build();
        dk.rename_container(names.0, to).await.context("rename")?;
        times.push(t0.elapsed());
        names = (names.1, names.0);
    }
    let rm = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .build();
    dk.remove_container(names.0, Some(rm)).await?;
    report.note(
        "Warm pool latency",
        format!(
            "Docker rename alone (Engine API, one container): {}",
            Summary::of(&times).show()
        ),
    );
    Ok(())
}

/// 2. A burst of `ctx.burst` trivial tasks with the pool, then cold, then `xargs -P8 docker run`.
pub async fn burst(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let n = ctx.burst;
    let http = reqwest::Client::new();
    let run = |flags: Vec<String>, tag: &'static str| {
        let http = http.clone();
        async move {
            let h = Handler::start(&ctx.handler, tag, &flags, &[])?;
            if flags.iter().any(|f| f == "--warm") {
                pool_ready(&http, &h.url(), ctx.warm).await?;
            }
            let t0 = Instant::now();
            submit(
                &http,
                &h.url(),
                serde_json::json!({"work": "burst", "count": n}),
            )
            .await?;
            let (end, page) =
                all_terminal(&http, &h.url(), n as u64, Duration::from_secs(1800)).await?;
            let done = page
                .counts
                .iter()
                .find(|(s, _)| **s == TaskState::Done)
                .map_or(0, |(_, n)| *n);
            anyhow::Ok((end - t0, done))
        }
    };
    eprintln!(
        "warm burst: {n} tasks with --warm {}, then cold, then xargs -P8 docker run",
        ctx.warm
    );
    let (warm, warm_done) = run(warm_flags(ctx, 8), "wburst").await?;
    let (cold, cold_done) = run(docker_flags(ctx, 8), "cburst").await?;
    let xargs = docker::xargs_burst(IMAGE, "--help", n, 8)?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let section = "Warm pool burst";
    report.note(section, format!("warm (`--warm {}`, concurrency 8): {n} tasks -> all terminal in {:.2} s ({:.1} tasks/s, {warm_done} Done)", ctx.warm, warm.as_secs_f64(), rate(warm)));
    report.note(
        section,
        format!(
            "cold (no pool, concurrency 8): {:.2} s ({:.1} tasks/s, {cold_done} Done)",
            cold.as_secs_f64(),
            rate(cold)
        ),
    );
    report.note(
        section,
        format!(
            "`seq {n} | xargs -P8 docker run --rm {IMAGE} --help`: {:.2} s ({:.1}/s)",
            xargs.as_secs_f64(),
            rate(xargs)
        ),
    );
    report.row(Row {
        figure: format!("Burst of {n} with --warm {} (throughput)", ctx.warm),
        ours: format!("{:.1} tasks/s", rate(warm)),
        baseline: format!(
            "cold {:.1}/s; xargs -P8 docker run {:.1}/s",
            rate(cold),
            rate(xargs)
        ),
        ratio: format!(
            "{:.2}x cold; {:.2}x xargs",
            rate(warm) / rate(cold),
            rate(warm) / rate(xargs)
        ),
        target: "(none; compare)".into(),
        met: warm_done == n as u64,
    });
    Ok(())
}
