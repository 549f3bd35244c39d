//! The phase clock on the dashboard, in a real headless Chromium against local mode: the details
//! panel's waterfall draws exactly the attempt's phases the API returns, and the header's
//! figures (p50/p95 of accepted -> InProgress and of run time, throughput, cost) are those of
//! `GET /api/summary`.
//!
//! Needs Chromium + chromedriver (skipped outside CI when missing, mandatory in CI) and the
//! built dashboard (`cargo xtask test` builds it first). Tasks run on the process runtime as
//! shell commands.

use e2e::browser::{chromium_available, dashboard_dir, Browser};
use e2e::{eventually, need, start_local, Api, TempDir};
use model::{Summary, TaskState};
use serde_json::{json, Value};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// `p50/p95` in ms as the page's `data-value` writes it.
fn pair(p: &model::Percentiles) -> String {
    let ms = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    format!("{}/{}", ms(p.p50_ms), ms(p.p95_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waterfall_and_the_header_figures_match_the_api() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let data = TempDir::new("browser-phases");
    let dir = dashboard_dir().display().to_string();
    let mut flags = vec!["--runtime", "process", "--dashboard-dir", &dir];
    let worker_args: Vec<String> = e2e::shell_worker_args()
        .into_iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect();
    flags.extend(worker_args.iter().map(String::as_str));
    let local = start_local(&data.0, &flags).await;
    let api = Api::new(&local);

    let mut ids = Vec::new();
    for work in ["echo one", "sleep 0.3; echo two", "echo three >&2"] {
        ids.push(api.submit(json!({ "work": work })).await.id);
    }
    let mut last = None;
    for id in &ids {
        last = Some(api.wait_state(id, TaskState::Done, LIMIT).await);
    }
    let id = last.unwrap().id;
    // The clock is complete once the reconciler removed the container.
    let task = eventually(LIMIT, "the last phase (removed)", || async {
        let t = api.task(&id).await;
        let done = t.clock(t.attempt)?.at(model::Phase::Removed).is_some();
        done.then_some(t)
    })
    .await;
    let clock = task.clock(task.attempt).unwrap().clone();
    let want: Vec<Value> = clock
        .marks
        .iter()
        .map(|m| {
            json!([
                m.phase.as_str(),
                m.at_ms.to_string(),
                clock.duration_ms(m.phase).unwrap_or(0).to_string()
            ])
        })
        .collect();
    for phase in [
        "queued",
        "dequeued",
        "asked",
        "started",
        "first_report",
        "first_output",
        "exited",
        "finished",
        "logs_captured",
        "removed",
    ] {
        assert!(
            want.iter().any(|w| w[0] == phase),
            "{phase} is on the clock: {want:?}"
        );
    }

    let b = Browser::start(1280, 900).await;
    b.client
        .goto(&format!("{}/#task={id}", local.url()))
        .await
        .unwrap();
    let rows = b
        .until(
            LIMIT,
            "the waterfall with every phase",
            &format!(
                "const rows = [...document.querySelectorAll('.details .waterfall .wf-row')];
                 return rows.length === {} ? rows.map(r => [r.dataset.phase, r.dataset.at, r.dataset.took]) : null;",
                want.len()
            ),
        )
        .await;
    assert_eq!(
        rows,
        Value::Array(want),
        "the waterfall draws the API's clock"
    );
    // Each bar is drawn (a rect with a width) and labelled for people.
    let drawn = b
        .js(
            "return [...document.querySelectorAll('.details .waterfall .wf-row')].every(r =>
               r.querySelector('rect').getAttribute('width') > 0 && r.querySelector('.wf-label').textContent.length > 0)",
            vec![],
        )
        .await;
    assert_eq!(drawn, json!(true));
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    b.js(
        "document.querySelector('.details .waterfall').scrollIntoView(); return true",
        vec![],
    )
    .await;
    b.screenshot(&shots.join("phases.png")).await;

    // The header's figures are the summary's, over the same recent tasks.
    let figures =
        "const v = n => document.querySelector(`.figures [data-figure='${n}']`)?.dataset.value;
        return [v('to-in-progress'), v('run'), v('throughput'), v('cost')];";
    eventually(
        LIMIT,
        "the header figures to match /api/summary",
        || async {
            let s: Summary =
                serde_json::from_value(api.get("/api/summary?recent=500").await).unwrap();
            let page = b.js(figures, vec![]).await;
            let want = json!([
                pair(&s.to_in_progress),
                pair(&s.run),
                s.finished_per_minute.to_string(),
                s.cost.to_string()
            ]);
            (s.tasks == 3 && s.run.n == 3 && page == want).then_some(())
        },
    )
    .await;
    b.close().await;
    local.stop().await;
}
