//! The dashboard in a real headless Chromium, against the real handler in local mode.
//!
//! Needs Chromium + chromedriver (skipped outside CI when missing, mandatory in CI) and the
//! built dashboard (`cargo xtask test` builds it first). Workers run each message as a shell
//! command (`exit 3` fails with exit code 3). The happy path runs on Docker when an engine
//! answers (always in CI); the other scenarios use the process runtime, which is faster.

use e2e::browser::{bundle_size, chromium_available, dashboard_dir, Browser};
use e2e::{docker_available, need, TempDir};
use handler::local::Running;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Generous: containers start, run a couple of seconds of work and report.
const LIMIT: Duration = Duration::from_secs(60);

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
}

/// Local mode serving the built dashboard, with extra flags, on a free port chosen here (so a
/// restart can take the same port again).
async fn handler(data: &TempDir, flags: &[String]) -> Running {
    let port = e2e::free_port();
    handler_on(port, data, flags).await
}

/// [`handler`] on a given port (to restart one where the page expects it).
async fn handler_on(port: u16, data: &TempDir, flags: &[String]) -> Running {
    let mut argv: Vec<String> = [
        "handler",
        "local",
        "--sweep-ms",
        "200",
        "--retry-backoff-ms",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend([
        "--bind".to_string(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_string(),
        data.0.display().to_string(),
        "--worker-bin".to_string(),
        e2e::worker_bin().display().to_string(),
        "--dashboard-dir".to_string(),
        dashboard_dir().display().to_string(),
    ]);
    argv.extend(flags.iter().cloned());
    let args = handler::config::local_args(&argv).expect("valid local flags");
    handler::local::start(args)
        .await
        .expect("local mode starts")
}

/// Flags for a worker that runs each message as a shell command (`sh -c 'eval "$MESSAGE"'`).
fn shell_flags(runtime: &str, image: Option<&str>) -> Vec<String> {
    let mut flags = vec!["--runtime".to_string(), runtime.to_string()];
    if let Some(image) = image {
        flags.extend(["--image".to_string(), image.to_string()]);
    }
    for arg in e2e::shell_worker_args() {
        flags.push(format!("--worker-arg={arg}"));
    }
    flags
}

/// Docker with the test image (worker + busybox) when an engine answers, else processes.
async fn happy_path_flags() -> Vec<String> {
    if docker_available() {
        let image = e2e::test_image().await;
        shell_flags("docker", Some(&image))
    } else {
        eprintln!("no Docker Engine: the happy path runs on the process runtime");
        shell_flags("process", None)
    }
}

/// Records every state each tile shows, with its note line, from the moment it is called.
const RECORD_STATES: &str = r#"
window.__seen = {};
const note = (t) => {
  const id = t.dataset.id;
  const n = t.querySelector('.tile-note');
  (window.__seen[id] = window.__seen[id] || []).push([t.dataset.state, n ? n.textContent : '']);
};
new MutationObserver((ms) => {
  for (const m of ms) {
    if (m.type === 'attributes' && m.target.matches('button.tile')) note(m.target);
    for (const a of m.addedNodes) if (a.nodeType === 1 && a.matches('button.tile')) note(a);
  }
}).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
return true;
"#;

/// Types into the work input and presses Enter.
async fn add_work(b: &Browser, text: &str) {
    use fantoccini::key::Key;
    let input = b
        .client
        .find(fantoccini::Locator::Css("input#work"))
        .await
        .expect("the work input");
    input.clear().await.unwrap();
    input
        .send_keys(&format!("{text}{}", char::from(Key::Enter)))
        .await
        .unwrap();
}

/// The id of the newest tile whose work is exactly `work`.
async fn tile_id(b: &Browser, work: &str) -> String {
    let script = format!(
        "const t = [...document.querySelectorAll('button.tile')].find(t => t.querySelector('.tile-work').textContent === {});
         return t ? t.dataset.id : null;",
        json!(work)
    );
    b.until(LIMIT, &format!("a tile for {work:?}"), &script)
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until tile `id` shows `state`; returns its background colour. On timeout, shows what
/// the API says about the task next to what the page shows.
async fn wait_tile(b: &Browser, local: &Running, id: &str, state: &str) -> String {
    let script = format!(
        "const t = document.querySelector('button.tile[data-id=\"{id}\"]');
         return t && t.dataset.state === '{state}' ? getComputedStyle(t).backgroundColor : null;"
    );
    if let Some(colour) = b.poll(LIMIT, &script).await {
        return colour.as_str().unwrap().to_string();
    }
    let api = e2e::Api::new(local);
    let task = api.get(&format!("/api/tasks/{id}")).await;
    let page = b.js("return document.body.innerText", vec![]).await;
    panic!("tile {id} did not become {state} within {LIMIT:?}\nAPI: {task:#}\npage: {page}");
}

const YELLOW: &str = "rgb(255, 246, 207)";
const BLUE: &str = "rgb(219, 232, 255)";
const GREEN: &str = "rgb(216, 243, 223)";
const RED: &str = "rgb(255, 223, 223)";
const GREY: &str = "rgb(236, 239, 242)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_goes_yellow_blue_green_with_charts_output_and_survives_a_reload() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let data = TempDir::new("browser-happy");
    let flags = happy_path_flags().await;
    let local = handler(&data, &flags).await;
    let b = Browser::start(1280, 860).await;
    b.client.goto(&local.url()).await.unwrap();
    b.until(
        LIMIT,
        "the app to mount",
        "return document.querySelector('input#work') !== null",
    )
    .await;
    b.js(RECORD_STATES, vec![]).await;

    let work = "echo hello from the browser; timeout 3 yes >/dev/null; echo bye";
    add_work(&b, work).await;
    let id = tile_id(&b, work).await;
    let green = wait_tile(&b, &local, &id, "Done").await;
    assert_eq!(green, GREEN, "a done tile is green");

    let seen = b.js(&format!("return window.__seen['{id}']"), vec![]).await;
    let seen: Vec<(String, String)> = serde_json::from_value(seen).unwrap();
    eprintln!("tile {id} showed {seen:?}");
    assert!(
        matches!(seen.first(), Some((s, _)) if s == "Pending" || s == "Provisioning"),
        "the tile appeared yellow (pending): {seen:?}"
    );
    let container = format!("eda-{id}-1");
    assert!(
        seen.iter()
            .any(|(s, note)| s == "InProgress" && *note == container),
        "the tile turned blue with its container's name {container}: {seen:?}"
    );
    assert_eq!(seen.last().map(|s| s.0.as_str()), Some("Done"));
    let step = |s: &str| {
        ["Pending", "Provisioning", "InProgress", "Done"]
            .iter()
            .position(|x| *x == s)
    };
    let steps: Vec<_> = seen.iter().map(|(s, _)| step(s)).collect();
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "the tile never went backwards: {seen:?}"
    );

    // The colours of the other states, from the same stylesheet.
    let colours = b
        .js(
            "const t = document.createElement('button'); document.body.append(t);
             const c = (cls) => { t.className = 'tile ' + cls; return getComputedStyle(t).backgroundColor; };
             const r = [c('st-pending'), c('st-inprogress'), c('st-failed')]; t.remove(); return r;",
            vec![],
        )
        .await;
    assert_eq!(colours, json!([YELLOW, BLUE, RED]));

    // Screen readers heard about it.
    let said = b
        .js(
            "return document.querySelector('[aria-live]').textContent",
            vec![],
        )
        .await;
    assert!(
        said.as_str().unwrap().contains("is Done"),
        "aria-live: {said}"
    );

    // Details, opened from the keyboard (tiles are buttons): a chart with points and the output.
    b.client
        .find(fantoccini::Locator::Css(&format!(
            "button.tile[data-id='{id}']"
        )))
        .await
        .unwrap()
        .send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
        .await
        .unwrap();
    let points = b
        .until(
            LIMIT,
            "a CPU chart with at least 2 points",
            "const p = document.querySelector('.details .chart polyline');
             const n = p ? p.getAttribute('points').trim().split(/\\s+/).filter(Boolean).length : 0;
             return n >= 2 ? n : null;",
        )
        .await;
    let output = b
        .until(
            LIMIT,
            "the task's output",
            "const l = document.querySelector('.details .logs');
             const t = l ? l.textContent : '';
             return t && t !== 'loading…' && t !== '(no output yet)' ? t : null;",
        )
        .await;
    eprintln!(
        "details: chart points {points}, output {:?}",
        output.as_str().unwrap_or_default()
    );
    let timeline = b
        .js(
            "return document.querySelectorAll('.details .timeline li').length",
            vec![],
        )
        .await;
    assert!(
        timeline.as_u64().unwrap() >= 4,
        "timeline Pending..Done: {timeline}"
    );
    b.screenshot(&screenshots().join("details.png")).await;

    // Esc closes the details and gives the focus back to the tile; a reload keeps the board.
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(&char::from(fantoccini::key::Key::Escape).to_string())
        .await
        .unwrap();
    b.until(
        LIMIT,
        "the details to close",
        "return document.querySelector('.details') === null",
    )
    .await;
    let focused = b
        .js("return document.activeElement.dataset.id", vec![])
        .await;
    assert_eq!(focused, json!(id), "the focus is back on the tile");
    b.client.refresh().await.unwrap();
    let after = wait_tile(&b, &local, &id, "Done").await;
    assert_eq!(
        after, GREEN,
        "after a reload the tile is still there and green"
    );

    // The handler restarts: the page says so, polls, reconnects and reloads the board.
    let port = local.addr.port();
    local.stop().await;
    b.until(
        LIMIT,
        "the page to notice the handler is gone",
        "return document.querySelector('.link-down') !== null",
    )
    .await;
    let local = handler_on(port, &data, &flags).await;
    b.until(
        LIMIT,
        "the stream to come back",
        "return document.querySelector('.link-live') !== null",
    )
    .await;
    add_work(&b, "echo after the restart").await;
    let again = tile_id(&b, "echo after the restart").await;
    wait_tile(&b, &local, &again, "Done").await;
    wait_tile(&b, &local, &id, "Done").await;

    b.close().await;
    local.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_show_red_with_exit_codes_and_messages_render_as_text() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let data = TempDir::new("browser-fail");
    let local = handler(&data, &shell_flags("process", None)).await;
    let b = Browser::start(1280, 860).await;
    b.client.goto(&local.url()).await.unwrap();
    b.until(
        LIMIT,
        "the app to mount",
        "return document.querySelector('input#work') !== null",
    )
    .await;
    b.js(
        "window.__alerted = false; window.alert = () => { window.__alerted = true; }; return true",
        vec![],
    )
    .await;

    add_work(&b, "exit 3").await;
    let failed = tile_id(&b, "exit 3").await;
    let red = wait_tile(&b, &local, &failed, "Failed").await;
    assert_eq!(red, RED, "a failed tile is red");
    let note = b
        .js(&format!("return document.querySelector('button.tile[data-id=\"{failed}\"] .tile-note').textContent"), vec![])
        .await;
    assert_eq!(note, json!("exit 3"), "the tile shows the exit code");

    let evil = "<img src=x onerror=alert(1)>";
    add_work(&b, &format!("echo '{evil}'")).await;
    let injected = tile_id(&b, &format!("echo '{evil}'")).await;
    wait_tile(&b, &local, &injected, "Done").await;
    let images = b
        .js("return document.querySelectorAll('img').length", vec![])
        .await;
    assert_eq!(
        images,
        json!(0),
        "no <img> element was created from task text"
    );

    // Details of the injection task: its output (the same text) is text too.
    b.client
        .find(fantoccini::Locator::Css(&format!(
            "button.tile[data-id='{injected}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let logs = b
        .until(LIMIT, "the output of the echo", "const l = document.querySelector('.details .logs'); return l && l.textContent.includes('<img') ? l.textContent : null;")
        .await;
    assert!(logs.as_str().unwrap().contains(evil), "{logs}");
    assert_eq!(
        b.js("return document.querySelectorAll('img').length", vec![])
            .await,
        json!(0)
    );
    assert_eq!(b.js("return window.__alerted", vec![]).await, json!(false));

    // The failed task's details: exit code, and its reason on hover.
    b.client
        .find(fantoccini::Locator::Css(&format!(
            "button.tile[data-id='{failed}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.until(LIMIT, "exit code 3 in the details", "const e = document.querySelector('.details .exit-code'); return e && e.textContent === '3';")
        .await;

    // Many at once: one per line, two copies each.
    b.js(
        "document.querySelector('input#multi').click(); return true",
        vec![],
    )
    .await;
    b.until(
        LIMIT,
        "the multi-line box",
        "return document.querySelector('textarea#work') !== null",
    )
    .await;
    b.js(
        "const t = document.querySelector('textarea#work'); t.value = 'echo one\\necho two\\nsleep 30';
         t.dispatchEvent(new Event('input', {bubbles: true}));
         const c = document.querySelector('input#count'); c.value = '2';
         c.dispatchEvent(new Event('input', {bubbles: true}));
         document.querySelector('button#add').click(); return true",
        vec![],
    )
    .await;
    b.until(
        LIMIT,
        "8 tiles",
        "return document.querySelectorAll('button.tile').length === 8",
    )
    .await;

    // An API error is shown in the page: work over the size limit.
    b.js(
        "const t = document.querySelector('textarea#work'); t.value = 'x'.repeat(70000);
         t.dispatchEvent(new Event('input', {bubbles: true}));
         document.querySelector('button#add').click(); return true",
        vec![],
    )
    .await;
    let error = b
        .until(
            LIMIT,
            "an error banner",
            "const e = document.querySelector('.errors .error'); return e ? e.textContent : null;",
        )
        .await;
    eprintln!("error banner: {error}");
    b.js(
        "const t = document.querySelector('textarea#work'); t.value = 'echo three';
         t.dispatchEvent(new Event('input', {bubbles: true})); return true",
        vec![],
    )
    .await;

    b.until(
        LIMIT,
        "the echo copies done",
        "return document.querySelectorAll('button.tile.st-done').length >= 5",
    )
    .await;

    // Cancel a running task from its details (grey), then retry it.
    let sleeper = b
        .until(LIMIT, "a running sleep", "const t = [...document.querySelectorAll('button.tile.st-inprogress')].find(t => t.textContent.includes('sleep 30')); return t ? t.dataset.id : null;")
        .await;
    let sleeper = sleeper.as_str().unwrap().to_string();
    b.js(
        &format!(
            "document.querySelector('button.tile[data-id=\"{sleeper}\"]').click(); return true"
        ),
        vec![],
    )
    .await;
    let button = |label: &str| {
        format!("[...document.querySelectorAll('.details .actions button')].find(b => b.textContent === '{label}')")
    };
    b.until(
        LIMIT,
        "the Cancel button",
        &format!("const b = {}; return b && !b.disabled;", button("Cancel")),
    )
    .await;
    b.js(
        &format!("{}.click(); return true", button("Cancel")),
        vec![],
    )
    .await;
    let grey = wait_tile(&b, &local, &sleeper, "Cancelled").await;
    assert_eq!(grey, GREY, "a cancelled tile is grey");
    // The counts follow, even though the Cancel answer reached the tile before its event did.
    b.until(
        LIMIT,
        "the Cancelled count",
        "const n = document.querySelector('.counts .chip[data-state=Cancelled] .n'); return n && n.textContent === '1';",
    )
    .await;
    // The board screenshot: green, red, blue and grey tiles and the error banner.
    b.js(
        "document.querySelector('.details .close').click(); return true",
        vec![],
    )
    .await;
    b.until(
        LIMIT,
        "the timeline redrawn at its new width",
        "const c = document.querySelector('canvas.board-timeline');
         return c && Math.abs(c.width - c.clientWidth * Math.max(1, devicePixelRatio)) <= 1;",
    )
    .await;
    b.screenshot(&screenshots().join("board.png")).await;
    b.js(
        &format!(
            "document.querySelector('button.tile[data-id=\"{sleeper}\"]').click(); return true"
        ),
        vec![],
    )
    .await;
    b.until(
        LIMIT,
        "the Retry button",
        &format!("const b = {}; return b && !b.disabled;", button("Retry")),
    )
    .await;
    b.js(&format!("{}.click(); return true", button("Retry")), vec![])
        .await;
    b.until(LIMIT, "the retried task to leave Cancelled", &format!("const t = document.querySelector('button.tile[data-id=\"{sleeper}\"]'); return t && t.dataset.state !== 'Cancelled';")).await;
    b.js(
        "document.querySelector('.details .close').click(); return true",
        vec![],
    )
    .await;

    // Filter by state: only the red tiles stay visible.
    b.js(
        "document.querySelector('.counts .chip[data-state=Failed]').click(); return true",
        vec![],
    )
    .await;
    let shown = b
        .until(LIMIT, "the filter", "const v = [...document.querySelectorAll('button.tile')].filter(t => t.offsetParent !== null); return v.length && v.every(t => t.dataset.state === 'Failed') ? v.length : null;")
        .await;
    assert_eq!(shown, json!(1), "one failed task");
    b.js(
        "document.querySelector('.counts .chip:not([data-state])').click(); return true",
        vec![],
    )
    .await;

    // Clear finished: the done and failed tiles go, the others stay.
    b.js(
        "document.querySelector('button#clear').click(); return true",
        vec![],
    )
    .await;
    b.until(LIMIT, "finished tiles cleared", "return document.querySelectorAll('button.tile.st-done, button.tile.st-failed').length === 0 && document.querySelectorAll('button.tile').length > 0").await;

    // Phone width: still readable (no horizontal scrolling).
    b.client.set_window_size(390, 844).await.unwrap();
    let overflow = b
        .js(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "no horizontal scroll at phone width: {overflow}"
    );
    b.screenshot(&screenshots().join("phone.png")).await;

    b.close().await;
    local.stop().await;
}

/// The works of the tiles in the page, in page order.
const TILE_WORKS: &str =
    "return [...document.querySelectorAll('button.tile .tile-work')].map(w => w.textContent)";

/// Picks a point on the timeline near row 10 (whole client pixels, as a pointer gives) and the
/// row it falls in, computed from the canvas's geometry: bars fill its height but the 16 px axis.
const TIMELINE_POINT: &str = "const c = document.querySelector('canvas.board-timeline');
    const r = c.getBoundingClientRect(); const rows = Number(c.dataset.rows);
    const rowH = (r.height - 16) / rows; const x = Math.round(r.left + r.width * 0.9);
    const y = Math.ceil(r.top + rowH * 10); const row = Math.floor((y - r.top) / rowH);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tiles_virtualised_in_submission_order_with_a_timeline() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let (raw, gz) = bundle_size();
    println!(
        "dashboard bundle (JS + WASM): {:.1} KiB raw, {:.1} KiB gzip",
        raw as f64 / 1024.0,
        gz as f64 / 1024.0
    );
    assert!(
        gz <= 300 * 1024,
        "the bundle is over the 300 KiB gzip budget"
    );
    let data = TempDir::new("browser-1000");
    let local = handler(&data, &shell_flags("process", None)).await;
    let api = e2e::Api::new(&local);
    let b = Browser::start(1280, 860).await;
    b.client.goto(&local.url()).await.unwrap();
    b.until(
        LIMIT,
        "the app to mount",
        "return document.querySelector('input#work') !== null",
    )
    .await;

    // One batch of 1,000 distinct works: `true 0` .. `true 999`.
    let batch: Vec<_> = (0..1000)
        .map(|i| json!({ "work": format!("true {i}") }))
        .collect();
    let start = Instant::now();
    let (status, body) = api
        .post_raw("/api/work", serde_json::Value::from(batch).to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    b.until(
        LIMIT,
        "the first tiles of the batch",
        "const w = document.querySelector('button.tile .tile-work'); return w && w.textContent === 'true 0';",
    )
    .await;
    println!(
        "first tiles visible {} ms after the batch was accepted",
        start.elapsed().as_millis()
    );
    // Order: within the batch, the order it was submitted.
    let works = b.js(TILE_WORKS, vec![]).await;
    let works: Vec<String> = serde_json::from_value(works).unwrap();
    let want: Vec<String> = (0..works.len()).map(|i| format!("true {i}")).collect();
    assert_eq!(works, want, "tiles in submission order");
    // Virtualised: the total is the whole board's, the elements only what is near the screen.
    assert_eq!(
        b.js(
            "return document.querySelector('.scroller').dataset.total",
            vec![]
        )
        .await,
        json!("1000")
    );
    let tiles = works.len();
    assert!(
        (20..=300).contains(&tiles),
        "{tiles} tile elements for 1,000 tasks: only the rows near the screen are rendered"
    );

    b.until(
        Duration::from_secs(300),
        "1,000 done in the counts",
        "const n = document.querySelector('.counts .chip[data-state=Done] .n'); return n && n.textContent === '1000';",
    )
    .await;
    println!(
        "1,000 tasks done (live counts) {} ms after the batch was accepted",
        start.elapsed().as_millis()
    );
    b.until(
        LIMIT,
        "the visible tiles to turn green",
        "const t = [...document.querySelectorAll('button.tile')]; return t.length > 0 && t.every(t => t.dataset.state === 'Done');",
    )
    .await;

    // A newer batch goes on top, itself in submission order; the older one follows.
    let newer: Vec<_> = ["b first", "b second", "b third"]
        .iter()
        .map(|w| json!({ "work": format!("true {w}") }))
        .collect();
    let (status, _) = api
        .post_raw("/api/work", serde_json::Value::from(newer).to_string())
        .await;
    assert_eq!(status, 202);
    let top = b
        .until(
            LIMIT,
            "the newer batch on top",
            "const w = [...document.querySelectorAll('button.tile .tile-work')].map(w => w.textContent); return w[0] === 'true b first' ? w.slice(0, 5) : null;",
        )
        .await;
    assert_eq!(
        top,
        json!([
            "true b first",
            "true b second",
            "true b third",
            "true 0",
            "true 1"
        ])
    );

    // Scrolling to the end loads the last tiles, still with a bounded element count.
    b.js(
        "const s = document.querySelector('.scroller'); s.scrollTop = s.scrollHeight; return true",
        vec![],
    )
    .await;
    let last = b
        .until(
            LIMIT,
            "the last tile after scrolling to the end",
            "const w = [...document.querySelectorAll('button.tile .tile-work')].map(w => w.textContent); return w[w.length - 1] === 'true 999' ? w.length : null;",
        )
        .await;
    assert!(
        last.as_u64().unwrap() <= 300,
        "{last} tiles at the end of the board"
    );

    // The timeline: one row per task of the last five minutes (the window is asked by time,
    // `active_since`), at most the newest 500, the oldest first in submission order; a finished
    // run is drawn green; hovering names the task, clicking opens its details.
    let rows = b
        .until(
            LIMIT,
            "the timeline's rows",
            "const c = document.querySelector('canvas.board-timeline'); return c && c.dataset.rows === '500' ? 500 : null;",
        )
        .await;
    assert_eq!(rows, json!(500));
    b.until(
        LIMIT,
        "a green run drawn on the timeline",
        &format!(
            "{TIMELINE_POINT} const ctx = c.getContext('2d'); const k = c.width / r.width;
             const line = ctx.getImageData(0, Math.floor((y - r.top) * k), c.width, 1).data;
             const near = (i, v) => Math.abs(line[i] - v) <= 8;
             for (let i = 0; i < line.length; i += 4)
               if (line[i + 3] > 0 && near(i, 0x1a) && near(i + 1, 0x7f) && near(i + 2, 0x37)) return true;
             return false;"
        ),
    )
    .await;
    // The rows as the page orders them: the window's tasks, oldest accepted first, a batch in
    // submission order (a stable sort of the newest-first list by acceptance time).
    let page: model::TaskPage =
        serde_json::from_value(api.get("/api/tasks?limit=500&active_since=0").await).unwrap();
    let mut rows = page.tasks;
    rows.sort_by_key(|t| t.created_at_ms);
    assert_eq!(
        rows[0].work, "true 0",
        "the first row is the first submitted"
    );
    let hovered = b
        .until(
            LIMIT,
            "the timeline's hover text",
            &format!(
                "{TIMELINE_POINT} c.dispatchEvent(new MouseEvent('mousemove', {{clientX: x, clientY: y, bubbles: true}}));
                 const t = document.querySelector('.timeline-tip'); return t && !t.hidden ? [row, t.textContent] : null;"
            ),
        )
        .await;
    let (row, tip) = (
        hovered[0].as_u64().unwrap() as usize,
        hovered[1].as_str().unwrap(),
    );
    let task = &rows[row];
    assert!(
        tip.contains(task.id.as_str()) && tip.contains(&task.work) && tip.contains("Done"),
        "row {row}: {tip}"
    );
    let row = b
        .js(
            &format!(
                "{TIMELINE_POINT} c.dispatchEvent(new MouseEvent('click', {{clientX: x, clientY: y, bubbles: true}})); return row;"
            ),
            vec![],
        )
        .await;
    let task = &rows[row.as_u64().unwrap() as usize];
    b.until(
        LIMIT,
        "the details of the clicked bar",
        &format!(
            "const d = document.querySelector('#details-title code'); return d && d.textContent === '{}';",
            task.id
        ),
    )
    .await;
    b.until(
        LIMIT,
        "the timeline redrawn at its new width",
        "const c = document.querySelector('canvas.board-timeline');
         return c && Math.abs(c.width - c.clientWidth * Math.max(1, devicePixelRatio)) <= 1;",
    )
    .await;
    b.screenshot(&screenshots().join("timeline.png")).await;
    b.close().await;
    local.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_the_page_asks_for_it_and_polls() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let data = TempDir::new("browser-key");
    let mut flags = shell_flags("process", None);
    flags.extend(["--api-key".to_string(), "sesame".to_string()]);
    let local = handler(&data, &flags).await;
    let b = Browser::start(1280, 860).await;
    b.client.goto(&local.url()).await.unwrap();
    b.until(
        LIMIT,
        "the key prompt",
        "const f = document.querySelector('form.key'); return f && !f.hidden;",
    )
    .await;
    let input = b
        .client
        .find(fantoccini::Locator::Css("input#api-key"))
        .await
        .unwrap();
    input
        .send_keys(&format!(
            "sesame{}",
            char::from(fantoccini::key::Key::Enter)
        ))
        .await
        .unwrap();
    b.until(
        LIMIT,
        "the prompt to go",
        "return document.querySelector('form.key').hidden",
    )
    .await;
    add_work(&b, "echo keyed").await;
    let id = tile_id(&b, "echo keyed").await;
    // The event stream needs the key too (EventSource cannot send it): polling keeps it live.
    wait_tile(&b, &local, &id, "Done").await;
    b.close().await;
    local.stop().await;
}
