//! The shape of a task (priority, key, labels, not-before, image, size) in the dashboard's
//! details panel, in a real headless Chromium against the real handler (process runtime).
//!
//! Needs Chromium + chromedriver (skipped outside CI when missing, mandatory in CI) and the built
//! dashboard (`cargo xtask dashboard`).

use e2e::browser::{chromium_available, dashboard_dir, Browser};
use e2e::{need, start_local, Api, TempDir};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_details_panel_shows_the_tasks_shape() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let data = TempDir::new("browser-shape");
    let dashboard = dashboard_dir().display().to_string();
    let local = start_local(
        &data.0,
        &["--runtime", "process", "--dashboard-dir", &dashboard],
    )
    .await;
    let api = Api::new(&local);
    // Scheduled an hour ahead: it stays Pending while the page looks at it.
    let t = api
        .submit(serde_json::json!({
            "work": "true", "priority": 9, "key": "tenant-b", "delay_secs": 3600,
            "cpu": 0.5, "memory_mb": 256, "labels": {"team": "blue", "run": "7"}
        }))
        .await;
    let b = Browser::start(1280, 860).await;
    b.client.goto(&local.url()).await.unwrap();
    let tile = format!("button.tile[data-id='{}']", t.id);
    b.until(
        LIMIT,
        "the shaped task's tile",
        &format!("return document.querySelector(\"{tile}\") !== null"),
    )
    .await;
    b.js(
        &format!("document.querySelector(\"{tile}\").click(); return true"),
        vec![],
    )
    .await;
    let shown = b
        .until(
            LIMIT,
            "the shape rows in the details",
            "const rows = document.querySelectorAll('.details dl.shape dd');
             return rows.length ? Object.fromEntries([...rows].map(d => [d.dataset.shape, d.textContent])) : null;",
        )
        .await;
    println!("details show {shown}");
    assert_eq!(shown["Priority"], "9");
    assert_eq!(shown["Key"], "tenant-b");
    assert_eq!(shown["Labels"], "run=7, team=blue");
    assert_eq!(
        shown["Not before"],
        model::shape::format_rfc3339_ms(t.not_before_ms.unwrap()).as_str()
    );
    assert_eq!(shown["Image"], "worker image");
    assert_eq!(shown["Size"], "0.5 CPU, 256 MiB");
    b.close().await;
    local.stop().await;
}
