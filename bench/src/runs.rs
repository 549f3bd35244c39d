//! The four benchmarks. Each starts its own handler (fresh data dir, free port), measures, and
//! adds rows (ours vs a baseline measured in the same run) and raw numbers to the report.

use crate::docker;
use crate::load::{self, Request};
use crate::proc::{mib, Handler};
use crate::sse::{self, Stamped};
use crate::stats::{ms, Report, Row, Summary};
use crate::Ctx;
use anyhow::{bail, Context};
use model::{SubmitResponse, TaskId, TaskPage, TaskState};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// Tag of the worker image the benchmarks make the handler build (and the baselines run).
pub const IMAGE: &str = "eda-bench-worker:latest";

/// Machine, date and command, for the top of the report.
pub fn machine() -> String {
    let sh = |c: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(c)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "- date: {}\n- machine: {} ({} cores), {} RAM, kernel {}\n- Docker Engine {}\n- command: `cargo run --release -p bench -- {}`\n",
        sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        sh("nproc"),
        sh("free -h | awk '/Mem:/{print $2}'"),
        sh("uname -r"),
        sh("docker version -f '{{.Server.Version}}' 2>/dev/null"),
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    )
}

pub(crate) fn docker_flags(ctx: &Ctx, concurrency: usize) -> Vec<String> {
    vec![
        "--runtime".into(),
        "docker".into(),
        "--image".into(),
        IMAGE.into(),
        "--worker-bin".into(),
        ctx.worker.display().to_string(),
        "--worker-arg=--seconds".into(),
        "--worker-arg=0".into(),
        "--concurrency".into(),
        concurrency.to_string(),
    ]
}

fn process_flags(ctx: &Ctx, concurrency: usize, seconds: u64) -> Vec<String> {
    vec![
        "--runtime".into(),
        "process".into(),
        "--worker-bin".into(),
        ctx.worker.display().to_string(),
        "--worker-arg=--seconds".into(),
        format!("--worker-arg={seconds}"),
        "--concurrency".into(),
        concurrency.to_string(),
    ]
}

/// `POST /api/work`; returns the tasks it made.
pub(crate) async fn submit(
    http: &reqwest::Client,
    base: &str,
    body: serde_json::Value,
) -> anyhow::Result<Vec<TaskId>> {
    let r = http
        .post(format!("{base}/api/work"))
        .json(&body)
        .send()
        .await?;
    if r.status().as_u16() != 202 {
        bail!("submit answered {}: {}", r.status(), r.text().await?);
    }
    Ok(r.json::<SubmitResponse>()
        .await?
        .tasks
        .into_iter()
        .map(|t| t.id)
        .collect())
}

/// The next frame of task `id` reaching `state` (or any terminal state, which is an error
/// unless it is `state`).
pub(crate) async fn frame_of(
    rx: &mut UnboundedReceiver<Stamped>,
    id: &TaskId,
    state: TaskState,
) -> anyhow::Result<Instant> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (at, task) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .with_context(|| format!("task {id} did not reach {state} within 60 s"))?
            .context("the event stream ended")?;
        if &task.id != id {
            continue;
        }
        if task.state == state {
            return Ok(at);
        }
        if task.state.is_terminal() {
            bail!(
                "task {id} ended {} ({}) before {state}",
                task.state,
                task.reason.unwrap_or_default()
            );
        }
    }
}

/// Waits until the containers of `tasks` are removed.
async fn no_containers(tasks: &[TaskId]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let ids: std::collections::HashSet<&str> = tasks.iter().map(TaskId::as_str).collect();
    while docker::tasks_with_containers()?
        .iter()
        .any(|t| ids.contains(t.as_str()))
    {
        if Instant::now() > deadline {
            bail!("containers of ours were not removed within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// 1. API accepted -> InProgress stored, vs Engine API and `docker run`, interleaved.
pub async fn overhead(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    eprintln!(
        "overhead: {} sequential tasks, interleaved with the baselines",
        ctx.samples
    );
    let h = Handler::start(&ctx.handler, "overhead", &docker_flags(ctx, 8), &[])?;
    let dk = docker::connect().await?;
    let http = reqwest::Client::new();
    let mut rx = sse::subscribe(&h.url()).await?;
    let (mut ours, mut engine, mut cli, mut floor) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let warmup = 2;
    for i in 0..ctx.samples + warmup {
        let e = docker::engine_first_output(
            &dk,
            IMAGE,
            &["--help"],
            &format!("eda-bench-baseline-{i}"),
            true,
        )
        .await?;
        let f = docker::engine_first_output(
            &dk,
            IMAGE,
            &["--help"],
            &format!("eda-bench-floor-{i}"),
            false,
        )
        .await?;
        let c = docker::cli_run(IMAGE, &["--help"])?;
        let ids = submit(
            &http,
            &h.url(),
            serde_json::json!({"work": format!("overhead {i}")}),
        )
        .await?;
        let accepted = Instant::now();
        let started = frame_of(&mut rx, &ids[0], TaskState::InProgress).await?;
        frame_of(&mut rx, &ids[0], TaskState::Done).await?;
        no_containers(&ids).await?;
        if i >= warmup {
            ours.push(started - accepted);
            engine.push(e);
            floor.push(f);
            cli.push(c);
        }
    }
    let (o, e, c) = (Summary::of(&ours), Summary::of(&engine), Summary::of(&cli));
    let f = Summary::of(&floor);
    report.note(
        "Overhead",
        format!(
            "ours (202 received -> InProgress frame on /api/events): {}",
            o.show()
        ),
    );
    report.note(
        "Overhead",
        format!(
            "Engine API create + attach + start -> first output of `{IMAGE} --help`: {}",
            e.show()
        ),
    );
    report.note("Overhead", format!("Engine API create + start, until the start call returns (no output awaited; the API's floor): {}", f.show()));
    report.note(
        "Overhead",
        format!("`docker run --rm {IMAGE} --help` (CLI exits): {}", c.show()),
    );
    let ratio = o.p50.as_secs_f64() / e.p50.as_secs_f64();
    report.row(Row {
        figure: "Overhead p50 (accepted -> InProgress)".into(),
        ours: ms(o.p50),
        baseline: format!("Engine API {}; `docker run` {}", ms(e.p50), ms(c.p50)),
        ratio: format!(
            "{ratio:.2}x Engine API; {:.2}x docker run",
            o.p50.as_secs_f64() / c.p50.as_secs_f64()
        ),
        target: "<= 1.10x Engine API".into(),
        met: ratio <= 1.10,
    });
    let ratio95 = o.p95.as_secs_f64() / e.p95.as_secs_f64();
    report.row(Row {
        figure: "Overhead p95".into(),
        ours: ms(o.p95),
        baseline: format!("Engine API {}; `docker run` {}", ms(e.p95), ms(c.p95)),
        ratio: format!("{ratio95:.2}x Engine API"),
        target: "<= 1.10x Engine API".into(),
        met: ratio95 <= 1.10,
    });
    Ok(())
}

/// Polls `GET /api/tasks?limit=1` until `n` tasks are terminal; returns when, and the counts.
pub(crate) async fn all_terminal(
    http: &reqwest::Client,
    base: &str,
    n: u64,
    limit: Duration,
) -> anyhow::Result<(Instant, TaskPage)> {
    let deadline = Instant::now() + limit;
    loop {
        let page: TaskPage = http
            .get(format!("{base}/api/tasks?limit=1"))
            .send()
            .await?
            .json()
            .await?;
        let done: u64 = page
            .counts
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        if done >= n {
            return Ok((Instant::now(), page));
        }
        if Instant::now() > deadline {
            bail!(
                "only {done} of {n} tasks finished within {limit:?}: {:?}",
                page.counts
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counts(page: &TaskPage) -> String {
    page.counts
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// 2. `burst` tasks in one request at concurrency 8 vs `xargs -P8 docker run --rm`.
pub async fn burst(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let n = ctx.burst;
    eprintln!("burst: {n} tasks at concurrency 8, then xargs -P8 docker run over {n}");
    let h = Handler::start(&ctx.handler, "burst", &docker_flags(ctx, 8), &[])?;
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let ids = submit(
        &http,
        &h.url(),
        serde_json::json!({"work": "burst", "count": n}),
    )
    .await?;
    let (end, page) = all_terminal(&http, &h.url(), n as u64, Duration::from_secs(1800)).await?;
    let ours = end - t0;
    no_containers(&ids).await?;
    let cleaned = t0.elapsed();
    drop(h);
    let xargs = docker::xargs_burst(IMAGE, "--help", n, 8)?;
    let (r_ours, r_x) = (
        n as f64 / ours.as_secs_f64(),
        n as f64 / xargs.as_secs_f64(),
    );
    report.note("Burst", format!("ours: {n} tasks submitted in one request -> all terminal in {:.2} s ({r_ours:.1} tasks/s); every container removed after {:.2} s; final counts: {}", ours.as_secs_f64(), cleaned.as_secs_f64(), counts(&page)));
    report.note(
        "Burst",
        format!(
            "`seq {n} | xargs -P8 docker run --rm {IMAGE} --help`: {:.2} s ({r_x:.1} containers/s)",
            xargs.as_secs_f64()
        ),
    );
    report.row(Row {
        figure: format!("Burst of {n}, concurrency 8 (throughput)"),
        ours: format!("{r_ours:.1} tasks/s"),
        baseline: format!("xargs -P8 docker run: {r_x:.1}/s"),
        ratio: format!("{:.2}x", r_ours / r_x),
        target: ">= 0.9x".into(),
        met: r_ours / r_x >= 0.9,
    });
    Ok(())
}

/// 3. `process_tasks` trivial tasks on the process runtime vs spawning the worker directly.
pub async fn process(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let n = ctx.process_tasks;
    eprintln!("process: {n} tasks on the process runtime");
    let h = Handler::start(&ctx.handler, "process", &process_flags(ctx, 8, 0), &[])?;
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(model::limits::MAX_BATCH);
        submit(
            &http,
            &h.url(),
            serde_json::json!({"work": "p", "count": k}),
        )
        .await?;
        left -= k;
    }
    let (end, page) = all_terminal(&http, &h.url(), n as u64, Duration::from_secs(600)).await?;
    let ours = end - t0;
    let done = page.counts.get(&TaskState::Done).copied().unwrap_or(0);
    drop(h);
    let floor = exec_floor(&ctx.worker, n, 8)?;
    let (r, rf) = (
        n as f64 / ours.as_secs_f64(),
        n as f64 / floor.as_secs_f64(),
    );
    report.note("Process runtime", format!("ours: {n} tasks (worker `--seconds 0`, concurrency 8) submitted -> all terminal in {:.2} s = {r:.0} tasks/s; counts: {}", ours.as_secs_f64(), counts(&page)));
    report.note("Process runtime", format!("floor: `xargs -P8` exec of the same worker binary (`--help`) {n} times: {:.2} s = {rf:.0}/s", floor.as_secs_f64()));
    report.row(Row {
        figure: format!("Process runtime, {n} trivial tasks"),
        ours: format!("{r:.0} tasks/s ({done} Done)"),
        baseline: format!("bare exec of the worker: {rf:.0}/s"),
        ratio: format!("{:.2}x of bare exec; {:.2}x of target", r / rf, r / 200.0),
        target: ">= 200 tasks/s".into(),
        met: r >= 200.0 && done == n as u64,
    });
    Ok(())
}

/// Wall time of `n` execs of `bin --help`, `parallel` at a time.
fn exec_floor(bin: &std::path::Path, n: usize, parallel: usize) -> anyhow::Result<Duration> {
    let script = format!(
        "seq {n} | xargs -P{parallel} -I{{}} {} --help >/dev/null",
        bin.display()
    );
    let t0 = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()?;
    anyhow::ensure!(status.success(), "exec floor failed");
    Ok(t0.elapsed())
}

/// 4. Start time, idle RSS, enqueue rate (and loaded RSS), list latency with 10,000 tasks.
pub async fn api(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("api: start-to-listening x10, idle RSS, enqueue load, list with 10,000 tasks");
    // Start to listening, and the bare exec of the same binary as its floor.
    let (mut starts, mut execs) = (Vec::new(), Vec::new());
    let mut idle = 0;
    for i in 0..10 {
        let t0 = Instant::now();
        std::process::Command::new(&ctx.handler)
            .arg("--version")
            .output()?;
        execs.push(t0.elapsed());
        let h = Handler::start(&ctx.handler, "start", &process_flags(ctx, 1, 3600), &[])?;
        starts.push(h.start_to_listening);
        if i == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            idle = h.rss()?;
        }
    }
    let (s, x) = (Summary::of(&starts), Summary::of(&execs));
    report.note(
        "API",
        format!(
            "start to listening (spawn -> first `GET /api/health` 200; fresh data dir, process runtime): {}",
            s.show()
        ),
    );
    report.note(
        "API",
        format!(
            "`handler --version` (exec + exit of the same binary): {}",
            x.show()
        ),
    );
    report.row(Row {
        figure: "Start to listening p50".into(),
        ours: ms(s.p50),
        baseline: format!("`handler --version` {}", ms(x.p50)),
        ratio: format!("{:.2}x of target", s.p50.as_secs_f64() / 0.050),
        target: "<= 50 ms".into(),
        met: s.p50 <= Duration::from_millis(50),
    });
    report.row(Row {
        figure: "Idle RSS (2 s after start)".into(),
        ours: mib(idle),
        baseline: "-".into(),
        ratio: format!("{:.2}x of target", idle as f64 / (25.0 * 1024.0 * 1024.0)),
        target: "<= 25 MB".into(),
        met: idle <= 25 * 1000 * 1000,
    });
    enqueue(ctx, report).await?;
    list(ctx, report).await
}

/// Enqueue rate against `GET /api/health` on the same server; one slot held by a sleeping
/// worker, so no task starts and the enqueue path is what is measured.
async fn enqueue(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let h = Handler::start(&ctx.handler, "enqueue", &process_flags(ctx, 1, 3600), &[])?;
    let dur = Duration::from_secs(ctx.load_secs);
    let health = Request::new("GET", "/api/health", None, 200);
    let base = load::run(h.addr, &health, ctx.connections, dur).await?;
    let pid = h.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while let Ok(r) = crate::proc::rss_of(pid) {
                peak.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let work = Request::new("POST", "/api/work", Some(r#"{"work":"echo hello"}"#), 202);
    let ours = load::run(h.addr, &work, ctx.connections, dur).await?;
    sampler.abort();
    let after = h.rss()?;
    report.note("API", format!("enqueue `POST /api/work` (one task each), {} connections, {} s: {} accepted, {} other, {:.0} req/s; latency {}", ctx.connections, ctx.load_secs, ours.ok, ours.other, ours.rate(), ours.latency.show()));
    report.note(
        "API",
        format!(
            "`GET /api/health`, same server and load: {:.0} req/s; latency {}",
            base.rate(),
            base.latency.show()
        ),
    );
    report.note(
        "API",
        format!(
            "RSS under enqueue load: peak {}, after {}",
            mib(peak.load(std::sync::atomic::Ordering::Relaxed)),
            mib(after)
        ),
    );
    report.row(Row {
        figure: "Enqueue rate".into(),
        ours: format!("{:.0} req/s", ours.rate()),
        baseline: format!("`GET /api/health` {:.0} req/s", base.rate()),
        ratio: format!(
            "{:.2}x of health; {:.2}x of target",
            ours.rate() / base.rate(),
            ours.rate() / 5000.0
        ),
        target: ">= 5,000 req/s".into(),
        met: ours.rate() >= 5000.0,
    });
    report.row(Row {
        figure: "Loaded RSS (peak during enqueue)".into(),
        ours: mib(peak.load(std::sync::atomic::Ordering::Relaxed)),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "(none)".into(),
        met: true,
    });
    Ok(())
}

/// `GET /api/tasks` (default page of 100) with 10,000 tasks stored, against `GET /api/health`.
async fn list(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let h = Handler::start(&ctx.handler, "list", &process_flags(ctx, 1, 3600), &[])?;
    let http = reqwest::Client::new();
    for _ in 0..10 {
        submit(
            &http,
            &h.url(),
            serde_json::json!({"work": "stored", "count": 1000}),
        )
        .await?;
    }
    let timed = |path: &'static str| {
        let (http, url) = (http.clone(), h.url());
        async move {
            let mut v = Vec::new();
            for _ in 0..200 {
                let t0 = Instant::now();
                let r = http.get(format!("{url}{path}")).send().await?;
                anyhow::ensure!(r.status().is_success(), "{path}: {}", r.status());
                r.bytes().await?;
                v.push(t0.elapsed());
            }
            anyhow::Ok(Summary::of(&v))
        }
    };
    let page = timed("/api/tasks").await?;
    let big = timed("/api/tasks?limit=1000").await?;
    let health = timed("/api/health").await?;
    let rss = h.rss()?;
    report.note(
        "API",
        format!(
            "`GET /api/tasks` (page of 100) with 10,000 stored: {}",
            page.show()
        ),
    );
    report.note(
        "API",
        format!(
            "`GET /api/tasks?limit=1000` with 10,000 stored: {}",
            big.show()
        ),
    );
    report.note(
        "API",
        format!(
            "`GET /api/health`, same client: {}; RSS with 10,000 tasks stored: {}",
            health.show(),
            mib(rss)
        ),
    );
    report.row(Row {
        figure: "List p50, 10,000 tasks stored".into(),
        ours: ms(page.p50),
        baseline: format!("`GET /api/health` {}", ms(health.p50)),
        ratio: format!("{:.2}x of target", page.p50.as_secs_f64() / 0.020),
        target: "<= 20 ms".into(),
        met: page.p50 <= Duration::from_millis(20),
    });
    Ok(())
}
