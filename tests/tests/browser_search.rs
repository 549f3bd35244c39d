//! The dashboard's search box, tile selection and bulk bar in a real headless Chromium, against
//! the real handler in local mode (process runtime, each message run by `sh -c`).
//!
//! Needs Chromium + chromedriver (skipped outside CI when missing, mandatory in CI) and the
//! built dashboard (`cargo xtask dashboard`).

use e2e::browser::{chromium_available, dashboard_dir, Browser};
use e2e::{need, Api, TempDir};
use model::TaskState::{Cancelled, InProgress, Pending};
use model::{Task, TaskState};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// A word no other test's work holds.
fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bs{:x}", nanos % 0xffff_ffff_ffff)
}

async fn submit_all(api: &Api, works: Vec<String>) -> Vec<Task> {
    let body: Vec<_> = works.into_iter().map(|w| json!({"work": w})).collect();
    let (status, v) = api
        .post_raw("/api/work", serde_json::Value::from(body).to_string())
        .await;
    assert_eq!(status, 202, "{v}");
    serde_json::from_value(v["tasks"].clone()).unwrap()
}

/// Types `text` into the search box and presses Enter.
async fn search(b: &Browser, text: &str) {
    use fantoccini::key::Key;
    let input = b
        .client
        .find(fantoccini::Locator::Css("input#search"))
        .await
        .expect("the search box");
    input.clear().await.unwrap();
    input
        .send_keys(&format!("{text}{}", char::from(Key::Enter)))
        .await
        .unwrap();
}

/// Waits until the board shows exactly the tiles `ids` (in any order) and its total says so.
async fn board_shows(b: &Browser, ids: &[&Task]) {
    let want: Vec<String> = ids.iter().map(|t| t.id.to_string()).collect();
    let script = format!(
        "const want = {}; const got = [...document.querySelectorAll('button.tile')].map(t => t.dataset.id);
         const total = document.querySelector('.scroller').dataset.total;
         return got.length === want.length && want.every(w => got.includes(w)) && total === String(want.length);",
        json!(want)
    );
    b.until(LIMIT, &format!("the board to show just {want:?}"), &script)
        .await;
}

/// Clicks tile `id` with a modifier (`ctrlKey` or `shiftKey`), as a person's click does.
async fn click(b: &Browser, id: &str, modifier: &str) {
    let script = format!(
        "const t = document.querySelector('button.tile[data-id=\"{id}\"]');
         if (!t) return false;
         t.dispatchEvent(new MouseEvent('click', {{ bubbles: true, cancelable: true, {modifier}: true }}));
         return true;"
    );
    assert_eq!(
        b.js(&script, vec![]).await,
        json!(true),
        "tile {id} on the board"
    );
}

async fn press(b: &Browser, button: &str) {
    b.client
        .find(fantoccini::Locator::Css(button))
        .await
        .unwrap_or_else(|e| panic!("{button}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits until the bulk bar's result line contains `text`.
async fn result_says(b: &Browser, text: &str) {
    let script = format!(
        "const r = document.querySelector('#bulk-result'); return r && r.textContent.includes({});",
        json!(text)
    );
    b.until(LIMIT, &format!("the bulk result {text:?}"), &script)
        .await;
}

async fn states(api: &Api, tasks: &[Task]) -> Vec<TaskState> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(api.task(&t.id).await.state);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_narrows_the_board_and_the_bulk_bar_acts_on_the_picked_or_matching_tasks() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let data = TempDir::new("browser-search");
    let dash = dashboard_dir().display().to_string();
    let mut flags = vec![
        "--runtime".to_string(),
        "process".to_string(),
        "--concurrency".to_string(),
        "1".to_string(),
        "--dashboard-dir".to_string(),
        dash,
    ];
    flags.extend(
        e2e::shell_worker_args()
            .into_iter()
            .map(|a| format!("--worker-arg={a}")),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let local = e2e::start_local(&data.0, &flags).await;
    let api = Api::new(&local);
    let m = marker();
    // One task runs (the cap is 1) so the others wait, Pending, to be cancelled and retried.
    let blocker = api
        .submit(json!({"work": format!("sleep 60 # {m} blocker")}))
        .await;
    api.wait_state(&blocker.id, InProgress, LIMIT).await;
    let alpha = submit_all(&api, vec![format!("sleep 60 # {m} alpha"); 5]).await;
    let beta = submit_all(&api, vec![format!("sleep 60 # {m} beta"); 4]).await;
    let other = submit_all(&api, vec!["sleep 60 # unrelated".to_string(); 3]).await;

    let b = Browser::start(1280, 900).await;
    b.client.goto(&local.url()).await.unwrap();
    b.until(
        LIMIT,
        "the app to mount",
        "return document.querySelector('input#search') !== null",
    )
    .await;

    // A refused query shows the server's message and leaves the board alone.
    search(&b, "colour:red").await;
    b.until(
        LIMIT,
        "the search error in the banner",
        "const e = document.querySelector('.errors'); return e && e.textContent.includes('unknown qualifier');",
    )
    .await;

    // The search narrows the board and its counts to the matching tasks.
    search(&b, &format!("{m} ALPHA")).await;
    board_shows(&b, &alpha.iter().collect::<Vec<_>>()).await;
    let pending_chip = b
        .js(
            "return document.querySelector('.chip[data-state=Pending] .n').textContent",
            vec![],
        )
        .await;
    assert_eq!(pending_chip, json!("5"), "the counts are the matches'");

    // Ctrl-click two tiles, shift-click a third: the run between is picked too (board order
    // is submission order within a batch).
    let id = |n: usize| alpha[n].id.to_string();
    click(&b, &id(0), "ctrlKey").await;
    click(&b, &id(1), "ctrlKey").await;
    click(&b, &id(3), "shiftKey").await;
    b.until(
        LIMIT,
        "4 tiles picked",
        "return document.querySelector('#bulk-picked').textContent === '4 selected'
             && document.querySelectorAll('button.tile.picked').length === 4;",
    )
    .await;
    let details_open = b
        .js(
            "return document.querySelectorAll('button.tile[aria-pressed=true]').length",
            vec![],
        )
        .await;
    assert_eq!(details_open, json!(0), "a selection click opens no details");
    press(&b, "#bulk-cancel").await;
    result_says(&b, "cancel: 4 done").await;
    assert_eq!(
        states(&api, &alpha).await,
        [Cancelled, Cancelled, Cancelled, Cancelled, Pending]
    );

    // Retry the same four: pick them again once the tiles show Cancelled.
    b.until(
        LIMIT,
        "4 cancelled tiles",
        "return document.querySelectorAll('button.tile[data-state=Cancelled]').length === 4;",
    )
    .await;
    for n in 0..4 {
        click(&b, &id(n), "ctrlKey").await;
    }
    press(&b, "#bulk-retry").await;
    result_says(&b, "retry: 4 done").await;
    assert_eq!(states(&api, &alpha).await, [Pending; 5]);

    // "Select all matching" acts on the search's tasks only.
    search(&b, &format!("{m} beta")).await;
    board_shows(&b, &beta.iter().collect::<Vec<_>>()).await;
    press(&b, "#bulk-all").await;
    b.until(
        LIMIT,
        "all matching picked",
        "return document.querySelector('#bulk-picked').textContent === 'All 4 matching tasks';",
    )
    .await;
    press(&b, "#bulk-cancel").await;
    result_says(&b, "cancel: 4 done").await;
    assert_eq!(states(&api, &beta).await, [Cancelled; 4]);
    assert_eq!(states(&api, &alpha).await, [Pending; 5], "alpha untouched");
    assert_eq!(states(&api, &other).await, [Pending; 3], "others untouched");
    assert_eq!(api.task(&blocker.id).await.state, InProgress);

    // "Show all" ends the search.
    press(&b, "#search-clear").await;
    b.until(
        LIMIT,
        "the whole board again",
        "return document.querySelector('.scroller').dataset.total === '13';",
    )
    .await;

    b.close().await;
    let (status, r) = api
        .post_raw(
            "/api/tasks/bulk",
            json!({"action": "cancel", "all_matching": {"state": "active"}}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    local.stop().await;
}
