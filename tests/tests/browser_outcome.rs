//! The details panel's result and webhook deliveries (issue 12, items 4 and 5) in a real
//! headless Chromium against the real handler (process runtime; skipped outside CI when
//! Chromium is missing, mandatory in CI). Needs the built dashboard (`cargo xtask dashboard`).
//!
//! Two webhook URLs: a receiver on a loopback port that accepts (204), and a port where
//! nothing listens (every attempt refused), so the panel shows one delivered and one failed
//! delivery with its error. The result contains markup, which must show as text.

use actix_web::{web, HttpResponse};
use e2e::browser::{chromium_available, dashboard_dir, Browser};
use e2e::{need, TempDir};
use fantoccini::Locator;
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_details_panel_shows_the_result_and_each_webhook_delivery() {
    if !need("chromium + chromedriver", chromium_available()) {
        return;
    }
    let receiver = actix_web::HttpServer::new(|| {
        actix_web::App::new()
            .default_service(web::to(|| async { HttpResponse::NoContent().finish() }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let ok = format!("http://127.0.0.1:{}/ok", receiver.addrs()[0].port());
    let receiver = receiver.run();
    let receiver_handle = receiver.handle();
    tokio::spawn(receiver);
    let refused = format!("http://127.0.0.1:{}/nobody", e2e::free_port());

    let data = TempDir::new("browser-outcome");
    let mut argv: Vec<String> = [
        "handler",
        "local",
        "--bind",
        "127.0.0.1:0",
        "--runtime",
        "process",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend([
        "--data-dir".into(),
        data.0.display().to_string(),
        "--worker-bin".into(),
        e2e::worker_bin().display().to_string(),
        "--dashboard-dir".into(),
        dashboard_dir().display().to_string(),
        format!("--webhook-url={ok}"),
        format!("--webhook-url={refused}"),
        "--webhook-max-attempts=2".into(),
        "--webhook-backoff-ms=50".into(),
    ]);
    argv.extend(
        e2e::shell_worker_args()
            .iter()
            .map(|a| format!("--worker-arg={a}")),
    );
    let args = handler::config::local_args(&argv).expect("valid local flags");
    let local = handler::local::start(args)
        .await
        .expect("local mode starts");
    let api = e2e::Api::new(&local);
    let t = api
        .submit(json!({"work": r#"printf '<b>42</b>' > "$RESULT_PATH""#, "max_attempts": 1}))
        .await;
    api.wait_state(&t.id, model::TaskState::Done, LIMIT).await;

    let b = Browser::start(1280, 900).await;
    b.client
        .goto(&format!("{}/#task={}", local.url(), t.id))
        .await
        .unwrap();
    let tile = format!("button.tile[data-id='{}']", t.id);
    b.until(
        LIMIT,
        "the task's tile",
        &format!("return document.querySelector(\"{tile}\") !== null"),
    )
    .await;
    b.client
        .find(Locator::Css(&tile))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = b
        .until(
            LIMIT,
            "the result in the details panel",
            "const r = document.querySelector('.details .result'); return r ? r.textContent : null;",
        )
        .await;
    assert_eq!(shown, json!("<b>42</b>"), "the result, as text");
    assert_eq!(
        b.js(
            "return document.querySelectorAll('.details .result b').length",
            vec![]
        )
        .await,
        json!(0),
        "no element made from the result's text"
    );
    let rows = b
        .until(
            LIMIT,
            "one delivered and one failed delivery",
            "const d = document.querySelector('.details .webhooks li.wh-delivered');
             const f = document.querySelector('.details .webhooks li.wh-failed');
             const e = f && f.querySelector('.wh-error');
             return d && e ? [d.textContent, f.textContent, e.textContent] : null;",
        )
        .await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    assert!(
        rows[0].contains("done") && rows[0].contains(&ok) && rows[0].contains("1 attempt"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains(&refused) && rows[1].contains("2 attempts"),
        "{rows:?}"
    );
    assert!(!rows[2].is_empty(), "the last error is shown: {rows:?}");
    b.close().await;
    local.stop().await;
    receiver_handle.stop(false).await;
}
