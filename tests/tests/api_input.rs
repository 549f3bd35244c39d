//! Bad input gets a clear 4xx naming the problem (and the limit), and nothing is stored.

use e2e::{start_local, Api, TempDir};
use model::limits;

async fn count(api: &Api) -> u64 {
    let page = api.get("/api/tasks?limit=1000").await;
    page["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_nothing_is_stored() {
    let dir = TempDir::new("input");
    let running = start_local(&dir.0, &["--runtime", "process"]).await;
    let api = Api::new(&running);
    let big = "x".repeat(limits::MAX_WORK_BYTES + 1);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let many: Vec<_> = (0..=limits::MAX_BATCH)
        .map(|_| serde_json::json!({"work": "w"}))
        .collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "empty work",
            br#"{"work": ""}"#.to_vec(),
            400,
            "invalid_work",
            "empty",
        ),
        (
            "blank work",
            br#"{"work": " \t\n "}"#.to_vec(),
            400,
            "invalid_work",
            "whitespace",
        ),
        (
            "too large",
            serde_json::json!({"work": big}).to_string().into_bytes(),
            413,
            "work_too_large",
            "65536",
        ),
        (
            "invalid json",
            b"{\"work\": ".to_vec(),
            400,
            "invalid_json",
            "invalid JSON",
        ),
        (
            "unknown field",
            br#"{"work": "a", "colour": "red"}"#.to_vec(),
            400,
            "invalid_body",
            "unknown field",
        ),
        (
            "not utf-8",
            b"{\"work\": \"\xff\xfe\"}".to_vec(),
            400,
            "invalid_utf8",
            "UTF-8",
        ),
        (
            "nul byte",
            br#"{"work": "a\u0000b"}"#.to_vec(),
            400,
            "invalid_work",
            "NUL",
        ),
        ("deep nesting", deep.into_bytes(), 400, "too_deep", "32"),
        (
            "empty batch",
            b"[]".to_vec(),
            400,
            "empty_batch",
            "no items",
        ),
        (
            "batch too large",
            serde_json::to_vec(&many).unwrap(),
            413,
            "batch_too_large",
            "1000",
        ),
        (
            "zero count",
            br#"{"work": "a", "count": 0}"#.to_vec(),
            400,
            "invalid_count",
            "at least 1",
        ),
        (
            "bad attempts",
            br#"{"work": "a", "max_attempts": 99}"#.to_vec(),
            400,
            "invalid_attempts",
            "1..=10",
        ),
        (
            "wrong type",
            br#"{"work": 5}"#.to_vec(),
            400,
            "invalid_body",
            "invalid type",
        ),
        (
            "one bad item spoils the batch",
            br#"[{"work": "ok"}, {"work": ""}]"#.to_vec(),
            400,
            "invalid_work",
            "item 1",
        ),
    ];
    for (name, body, status, code, words) in cases {
        let (got, v) = api.post_raw("/api/work", body).await;
        assert_eq!(got, status, "{name}: {v}");
        assert_eq!(v["code"], code, "{name}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains(words),
            "{name}: message {msg:?} should mention {words:?}"
        );
    }
    let huge = vec![b' '; limits::MAX_BODY_BYTES + 10];
    let (got, v) = api.post_raw("/api/work", huge).await;
    assert_eq!(
        (got, v["code"].as_str()),
        (413, Some("body_too_large")),
        "{v}"
    );
    assert_eq!(count(&api).await, 0, "nothing may be stored from bad input");

    for (path, status) in [
        ("/api/tasks/NOT-valid", 400),
        ("/api/tasks/absent", 404),
        ("/api/tasks?state=Running", 400),
        ("/api/tasks?limit=0", 400),
        ("/api/tasks?cursor=zz", 400),
        ("/api/tasks?offset=10000001", 400),
        ("/api/tasks?offset=-1", 400),
        ("/api/tasks?bogus=1", 400),
        ("/api/nothing-here", 404),
    ] {
        let r = api
            .http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["code"].is_string() && v["message"].is_string(),
            "{path}: {v}"
        );
        if path.ends_with("=10000001") {
            assert_eq!(v["code"], "invalid_offset", "{v}");
            assert!(v["message"].as_str().unwrap().contains("MAX_OFFSET"), "{v}");
        }
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_route_needs_the_tasks_own_token() {
    let dir = TempDir::new("token");
    let running = start_local(&dir.0, &["--runtime", "process"]).await;
    let api = Api::new(&running);
    let t = api.submit(serde_json::json!({"work": "w"})).await;
    let url = format!("{}/api/tasks/{}/state", api.base, t.id);
    let body = r#"{"state":"Done"}"#;
    let none = api.http.post(&url).body(body).send().await.unwrap();
    assert_eq!(none.status().as_u16(), 401);
    let wrong = api
        .http
        .post(&url)
        .bearer_auth("0".repeat(64))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    assert_ne!(api.task(&t.id).await.state, model::TaskState::Done);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_bind_needs_an_api_key_and_the_key_is_enforced() {
    let dir = TempDir::new("key");
    let argv: Vec<String> = ["handler", "local", "--bind", "0.0.0.0:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let args = handler::config::local_args(&argv).unwrap();
    let err = args.settings().unwrap_err().to_string();
    assert!(err.contains("requires --api-key"), "{err}");

    let running = start_local(&dir.0, &["--runtime", "process", "--api-key", "sesame"]).await;
    let api = Api::new(&running);
    let r = api
        .http
        .get(format!("{}/api/tasks", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let ok = api
        .http
        .get(format!("{}/api/tasks", api.base))
        .bearer_auth("sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let ok = api
        .http
        .get(format!("{}/api/tasks", api.base))
        .header("x-api-key", "sesame")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origins() {
    let dir = TempDir::new("cors");
    let site = "https://dashboard.example";
    let running = start_local(&dir.0, &["--runtime", "process", "--cors-origin", site]).await;
    let api = Api::new(&running);
    let preflight = |origin: &'static str| {
        api.http
            .request(reqwest::Method::OPTIONS, format!("{}/api/work", api.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-api-key")
            .send()
    };
    let ok = preflight(site).await.unwrap();
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        site
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let get = api
        .http
        .get(format!("{}/api/tasks", api.base))
        .header("origin", site)
        .send()
        .await
        .unwrap();
    assert_eq!(
        get.headers().get("access-control-allow-origin").unwrap(),
        site
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shape_rule_has_its_4xx_and_nothing_is_stored() {
    let dir = TempDir::new("shape-input");
    let running = start_local(
        &dir.0,
        &[
            "--runtime",
            "process",
            "--allowed-image",
            "mine:1",
            "--min-cpu",
            "0.25",
            "--max-cpu",
            "2",
            "--min-memory-mb",
            "64",
            "--max-memory-mb",
            "4096",
        ],
    )
    .await;
    let api = Api::new(&running);
    let nine: serde_json::Map<_, _> = (0..=limits::MAX_LABELS)
        .map(|i| (format!("l{i}"), serde_json::json!("v")))
        .collect();
    let cases = [
        (
            "priority",
            serde_json::json!({"priority": 1001}),
            "invalid_priority",
            "MAX_PRIORITY",
        ),
        (
            "both times",
            serde_json::json!({"delay_secs": 5, "not_before": "2026-01-01T00:00:00Z"}),
            "invalid_schedule",
            "not both",
        ),
        (
            "far delay",
            serde_json::json!({"delay_secs": limits::MAX_DELAY_SECS + 1}),
            "invalid_schedule",
            "MAX_DELAY_SECS",
        ),
        (
            "bad time",
            serde_json::json!({"not_before": "next tuesday"}),
            "invalid_schedule",
            "RFC 3339",
        ),
        (
            "far time",
            serde_json::json!({"not_before": "2999-01-01T00:00:00Z"}),
            "invalid_schedule",
            "MAX_DELAY_SECS",
        ),
        (
            "key",
            serde_json::json!({"key": "Not Valid"}),
            "invalid_key",
            "MAX_KEY_LEN",
        ),
        (
            "long key",
            serde_json::json!({"key": "k".repeat(limits::MAX_KEY_LEN + 1)}),
            "invalid_key",
            "MAX_KEY_LEN",
        ),
        (
            "many labels",
            serde_json::json!({"labels": nine}),
            "invalid_labels",
            "MAX_LABELS",
        ),
        (
            "label name",
            serde_json::json!({"labels": {"Team": "x"}}),
            "invalid_labels",
            "MAX_LABEL_NAME",
        ),
        (
            "label value",
            serde_json::json!({"labels": {"team": "a\nb"}}),
            "invalid_labels",
            "MAX_LABEL_VALUE",
        ),
        (
            "image",
            serde_json::json!({"image": "evil:latest"}),
            "image_not_allowed",
            "--allowed-image",
        ),
        (
            "cpu",
            serde_json::json!({"cpu": 8.0}),
            "invalid_cpu",
            "--max-cpu",
        ),
        (
            "memory",
            serde_json::json!({"memory_mb": 16}),
            "invalid_memory",
            "--min-memory-mb",
        ),
    ];
    for (name, mut item, code, words) in cases {
        item["work"] = "true".into();
        // Alone, and spoiling a batch whose first item is fine: nothing of it is stored.
        let batch = serde_json::json!([{"work": "fine"}, item.clone()]);
        for body in [item.clone(), batch] {
            let (got, v) = api.post_raw("/api/work", body.to_string()).await;
            assert_eq!((got, v["code"].as_str()), (400, Some(code)), "{name}: {v}");
            let msg = v["message"].as_str().unwrap();
            assert!(
                msg.contains(words),
                "{name}: {msg:?} should mention {words:?}"
            );
        }
    }
    assert_eq!(count(&api).await, 0, "nothing may be stored from bad input");
    // The same fields, valid, are kept with the task.
    let t = api
        .submit(
            serde_json::json!({"work": "true", "priority": -3, "delay_secs": 600,
            "key": "a.b_c-1", "image": "mine:1", "cpu": 0.5, "memory_mb": 256,
            "labels": {"team": "blue"}}),
        )
        .await;
    assert_eq!((t.priority, t.key.as_deref()), (-3, Some("a.b_c-1")));
    assert_eq!(t.image.as_deref(), Some("mine:1"));
    assert_eq!((t.resources.cpu, t.resources.memory_mb), (0.5, 256));
    assert_eq!(t.labels["team"], "blue");
    assert!(t.not_before_ms.unwrap() >= t.created_at_ms + 600_000);
    running.stop().await;
}
