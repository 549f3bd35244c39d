//! Completion webhooks end to end (issue 12, item 5), against a real HTTP receiver on a
//! loopback port that checks every request on its own: the HMAC-SHA256 signature (with the
//! `hmac` crate here, not the handler's code) and the CloudEvents 1.0 attributes.
//!
//! The handler runs local mode on the process runtime (no Docker needed); each test has its own
//! handler, data dir and receiver. CloudEvents sources, as cited in
//! `handler/src/webhooks/cloudevent.rs`: github.com/cloudevents/spec v1.0.2
//! `cloudevents/spec.md` (required `id`, `source`, `specversion` "1.0", `type`; `subject`,
//! `time` RFC 3339, `datacontenttype`), `cloudevents/formats/json-format.md` section 3 (members
//! at the top level, JSON data inline in `data`), `cloudevents/bindings/http-protocol-binding.md`
//! 3.2 (structured mode: `Content-Type: application/cloudevents+json`).

use actix_web::{web, HttpRequest, HttpResponse};
use e2e::{eventually, start_local, Api, TempDir};
use handler::local::Running;
use hmac::{Hmac, KeyInit, Mac};
use model::webhook::{Deliveries, Delivery, DeliveryStatus};
use model::{TaskId, TaskState::*};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(60);
const SECRET: &str = "test-webhook-secret";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    content_type: String,
    signature: String,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the receiver does, per path: `/ok` 204; `/flaky` 503 twice, then 204; `/reject` 400;
/// `/hang` answers only when the test releases it.
#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    flaky: AtomicUsize,
    answered: AtomicUsize,
    hanging: AtomicUsize,
    most_hanging: AtomicUsize,
    release: CancellationToken,
}

async fn receive(req: HttpRequest, body: web::Bytes, st: web::Data<Arc<State>>) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    st.seen.lock().unwrap().push(Seen {
        path: req.path().to_string(),
        content_type: header("content-type"),
        signature: header("x-eda-signature"),
        body: body.to_vec(),
    });
    let answer = match req.path() {
        "/hang" => {
            let now = st.hanging.fetch_add(1, Ordering::SeqCst) + 1;
            st.most_hanging.fetch_max(now, Ordering::SeqCst);
            // Counted down however the request ends: released, or dropped when the handler
            // gave up and closed the connection.
            let _left = Left(&st.hanging);
            st.release.cancelled().await;
            HttpResponse::NoContent().finish()
        }
        "/flaky" if st.flaky.fetch_add(1, Ordering::SeqCst) < 2 => {
            HttpResponse::ServiceUnavailable().finish()
        }
        "/reject" => HttpResponse::BadRequest().body("no thanks"),
        _ => HttpResponse::NoContent().finish(),
    };
    st.answered.fetch_add(1, Ordering::SeqCst);
    answer
}

/// Counts a hanging request down when dropped.
struct Left<'a>(&'a AtomicUsize);

impl Drop for Left<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A receiver on a loopback port (0: any free one).
struct Receiver {
    port: u16,
    state: Arc<State>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let state = Arc::new(State::default());
        let data = web::Data::new(state.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", port))
        .expect("the receiver binds");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            port,
            state,
            server: handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        let all = self.state.seen.lock().unwrap();
        all.iter().filter(|s| s.path == path).cloned().collect()
    }

    async fn stop(self) {
        self.state.release.cancel();
        self.server.stop(false).await;
    }
}

/// Checks the signature with the `hmac` crate: `sha256=<hex of HMAC-SHA256(SECRET, body)>`.
fn signed(s: &Seen) -> bool {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&s.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.signature == format!("sha256={hex}")
}

/// Local mode on the process runtime with the shell worker and these extra flags.
async fn handler(dir: &TempDir, extra: &[String]) -> Running {
    let mut flags = vec!["--runtime".to_string(), "process".into()];
    flags.extend(
        e2e::shell_worker_args()
            .iter()
            .map(|a| format!("--worker-arg={a}")),
    );
    flags.extend(extra.iter().cloned());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    start_local(&dir.0, &flags).await
}

fn webhook_flags(urls: &[String], more: &[&str]) -> Vec<String> {
    let mut f = Vec::new();
    for u in urls {
        f.push(format!("--webhook-url={u}"));
    }
    f.push(format!("--webhook-secret={SECRET}"));
    f.extend(more.iter().map(|s| s.to_string()));
    f
}

async fn deliveries(api: &Api, id: &TaskId) -> Vec<Delivery> {
    let v = api.get(&format!("/api/tasks/{id}/webhooks")).await;
    serde_json::from_value::<Deliveries>(v).unwrap().deliveries
}

/// Waits until every delivery of task `id` is no longer pending and there are `n` of them.
async fn settled(api: &Api, id: &TaskId, n: usize) -> Vec<Delivery> {
    eventually(LONG, &format!("{n} settled deliveries of {id}"), || async {
        let d = deliveries(api, id).await;
        let done = d.len() == n && d.iter().all(|d| d.status != DeliveryStatus::Pending);
        done.then_some(d)
    })
    .await
}

/// The CloudEvents attributes every event must have, and this one's type and subject.
fn check_cloudevent(s: &Seen, kind: &str, subject: &TaskId) -> serde_json::Value {
    assert_eq!(s.content_type, "application/cloudevents+json");
    assert!(signed(s), "the signature checks out: {}", s.signature);
    let v = s.json();
    assert_eq!(v["specversion"], "1.0");
    assert!(!v["id"].as_str().unwrap().is_empty());
    assert!(v["source"].as_str().unwrap().ends_with("/api/tasks"), "{v}");
    assert_eq!(v["type"], format!("com.event-driven-aci.task.{kind}"));
    assert_eq!(v["subject"], subject.as_str());
    assert_eq!(v["datacontenttype"], "application/json");
    let time = v["time"].as_str().unwrap();
    // RFC 3339 in UTC: 2026-12-03T09:44:31.123Z
    assert!(
        time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
        "{time}"
    );
    assert_eq!(v["data"]["id"], subject.as_str());
    assert!(v["data"].get("transitions").is_none(), "no timeline: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_sends_one_signed_cloudevent_with_its_result() {
    let rx = Receiver::start(0);
    let dir = TempDir::new("wh-done");
    let running = handler(&dir, &webhook_flags(&[rx.url("/ok")], &[])).await;
    let api = Api::new(&running);
    let ok = api
        .submit(
            serde_json::json!({"work": r#"echo 'the answer' > "$RESULT_PATH""#, "max_attempts": 1}),
        )
        .await;
    let bad = api
        .submit(serde_json::json!({"work": "exit 3", "max_attempts": 1}))
        .await;
    api.wait_state(&ok.id, Done, LONG).await;
    api.wait_state(&bad.id, Failed, LONG).await;
    let d = settled(&api, &ok.id, 1).await;
    assert_eq!(d[0].status, DeliveryStatus::Delivered);
    assert_eq!(d[0].attempts.len(), 1);
    assert_eq!(d[0].attempts[0].status, Some(204));
    settled(&api, &bad.id, 1).await;

    let seen = rx.seen("/ok");
    assert_eq!(seen.len(), 2, "one event per finished task, nothing else");
    let of = |id: &TaskId| {
        seen.iter()
            .find(|s| s.json()["subject"] == id.as_str())
            .unwrap()
            .clone()
    };
    let v = check_cloudevent(&of(&ok.id), "done", &ok.id);
    assert_eq!(
        v["id"],
        d[0].event_id.as_str(),
        "the API names the event sent"
    );
    assert_eq!(v["data"]["state"], "Done");
    assert_eq!(v["data"]["result"]["text"], "the answer\n");
    let v = check_cloudevent(&of(&bad.id), "failed", &bad.id);
    assert_eq!(v["data"]["exit_code"], 3);

    // Clearing finished tasks forgets their deliveries too.
    let cleared = api
        .http
        .delete(format!("{}/api/tasks?state=finished", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status().as_u16(), 200);
    let hooks = running.app.tasks().webhooks().unwrap();
    assert!(hooks.deliveries(&ok.id).await.unwrap().is_empty());
    running.stop().await;
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_sends_one_event_per_state_change_in_order() {
    let rx = Receiver::start(0);
    let dir = TempDir::new("wh-all");
    let flags = webhook_flags(&[rx.url("/ok")], &["--webhook-events=all"]);
    let running = handler(&dir, &flags).await;
    let api = Api::new(&running);
    let t = api
        .submit(serde_json::json!({"work": "echo hi", "max_attempts": 1}))
        .await;
    let done = api.wait_state(&t.id, Done, LONG).await;
    // Every move after the task was accepted: Provisioning, InProgress, Done.
    let moves: Vec<_> = done.transitions[1..].iter().map(|t| t.state).collect();
    assert_eq!(moves, [Provisioning, InProgress, Done]);
    settled(&api, &t.id, moves.len()).await;
    let seen = rx.seen("/ok");
    assert_eq!(seen.len(), moves.len(), "one event per state change");
    let kinds = ["changed", "changed", "done"];
    let mut ids = std::collections::HashSet::new();
    for (i, (s, kind)) in seen.iter().zip(kinds).enumerate() {
        let v = check_cloudevent(s, kind, &t.id);
        assert_eq!(v["data"]["state"], moves[i].as_str(), "arrived in order");
        assert_eq!(v["sequence"], (i + 2).to_string());
        assert!(
            ids.insert(v["id"].as_str().unwrap().to_string()),
            "ids unique"
        );
    }
    running.stop().await;
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_every_attempt_visible_and_a_4xx_is_final() {
    let rx = Receiver::start(0);
    let dir = TempDir::new("wh-retry");
    let urls = [rx.url("/flaky"), rx.url("/reject")];
    let running = handler(&dir, &webhook_flags(&urls, &["--webhook-backoff-ms=50"])).await;
    let api = Api::new(&running);
    let t = api
        .submit(serde_json::json!({"work": "true", "max_attempts": 1}))
        .await;
    api.wait_state(&t.id, Done, LONG).await;
    let d = settled(&api, &t.id, 2).await;
    let flaky = d.iter().find(|d| d.url.ends_with("/flaky")).unwrap();
    assert_eq!(flaky.status, DeliveryStatus::Delivered);
    let statuses: Vec<_> = flaky.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(204)], "{flaky:#?}");
    assert!(flaky.attempts[0].error.as_deref().unwrap().contains("503"));
    let reject = d.iter().find(|d| d.url.ends_with("/reject")).unwrap();
    assert_eq!(reject.status, DeliveryStatus::Failed);
    assert_eq!(reject.attempts.len(), 1, "a 400 is not retried");
    assert_eq!(reject.attempts[0].status, Some(400));

    // A retry sends the same bytes: the same CloudEvent id, the same signature.
    let sent = rx.seen("/flaky");
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|s| s.body == sent[0].body && signed(s)));
    assert_eq!(
        rx.seen("/reject")[0].body,
        sent[0].body,
        "one event for both URLs"
    );
    running.stop().await;
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_never_holds_tasks_back() {
    let rx = Receiver::start(0);
    let dir = TempDir::new("wh-hang");
    let flags = webhook_flags(
        &[rx.url("/hang")],
        &[
            "--webhook-timeout-secs=1",
            "--webhook-max-attempts=2",
            "--webhook-backoff-ms=50",
        ],
    );
    let running = handler(&dir, &flags).await;
    let api = Api::new(&running);
    let mut ids = Vec::new();
    for i in 0..12 {
        let t = api
            .submit(serde_json::json!({"work": format!("echo {i}"), "max_attempts": 1}))
            .await;
        ids.push(t.id);
    }
    for id in &ids {
        api.wait_state(id, Done, LONG).await;
    }
    // Counting, not timing: every task finished while the receiver has not answered once.
    assert_eq!(
        rx.state.answered.load(Ordering::SeqCst),
        0,
        "all tasks Done before any webhook request was answered"
    );
    let most = rx.state.most_hanging.load(Ordering::SeqCst);
    assert!(
        (1..=handler::webhooks::PER_URL).contains(&most),
        "at most {} requests in flight to one URL, saw {most}",
        handler::webhooks::PER_URL
    );
    let d = settled(&api, &ids[0], 1).await;
    assert_eq!(d[0].status, DeliveryStatus::Failed, "{d:#?}");
    assert_eq!(d[0].attempts.len(), 2);
    for a in &d[0].attempts {
        assert_eq!(a.status, None);
        assert!(a.error.as_deref().unwrap().contains("timed out"), "{a:?}");
    }
    running.stop().await;
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_event_is_sent_after_a_restart() {
    // Nothing listens on the receiver's port until the handler has been stopped.
    let port = e2e::free_port();
    let url = format!("http://127.0.0.1:{port}/ok");
    let dir = TempDir::new("wh-restart");
    let flags = webhook_flags(
        std::slice::from_ref(&url),
        &["--webhook-backoff-ms=200", "--webhook-max-attempts=50"],
    );
    let first = handler(&dir, &flags).await;
    let api = Api::new(&first);
    let t = api
        .submit(serde_json::json!({"work": "echo 'kept' > \"$RESULT_PATH\"", "max_attempts": 1}))
        .await;
    api.wait_state(&t.id, Done, LONG).await;
    eventually(LONG, "a refused attempt", || async {
        let d = deliveries(&api, &t.id).await;
        d.first().filter(|d| !d.attempts.is_empty()).map(|_| ())
    })
    .await;
    first.stop().await;

    let rx = Receiver::start(port);
    let restarted_ms = handler::clock::now_ms();
    let second = handler(&dir, &flags).await;
    let api = Api::new(&second);
    let d = settled(&api, &t.id, 1).await;
    assert_eq!(d[0].status, DeliveryStatus::Delivered, "{d:#?}");
    let last = d[0].attempts.last().unwrap();
    assert_eq!(last.status, Some(204));
    assert!(
        last.at_ms >= restarted_ms,
        "delivered by the restarted handler"
    );
    assert!(
        d[0].attempts[0].error.is_some(),
        "the first try was refused"
    );
    let seen = rx.seen("/ok");
    assert_eq!(seen.len(), 1);
    let v = check_cloudevent(&seen[0], "done", &t.id);
    assert_eq!(v["data"]["result"]["text"], "kept\n");
    second.stop().await;
    rx.stop().await;
}

/// Functions mode's `ReconcileTimer` runs one dispatch pass (`Webhooks::drive`), so deliveries
/// progress even when nothing runs between invocations: here no background dispatcher runs at
/// all, and recording a change sends nothing by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_timer_pass_delivers_without_a_background_dispatcher() {
    use handler::config::{WebhookEvents, WebhookSettings};
    use handler::webhooks::{outbox::MemoryOutbox, Webhooks};
    use model::{Event, Rates, Resources, Task};
    let rx = Receiver::start(0);
    let settings = WebhookSettings {
        urls: vec![rx.url("/ok")],
        secret: Some(SECRET.into()),
        events: WebhookEvents::Terminal,
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        backoff: Duration::from_millis(50),
    };
    let source = "https://app.example/api/tasks".to_string();
    let w = Webhooks::new(settings, source, Arc::new(MemoryOutbox::default())).unwrap();
    let now = handler::clock::now_ms();
    let r = Resources {
        cpu: 1.0,
        memory_mb: 64,
    };
    let id = TaskId::parse("timer-pass").unwrap();
    let mut task = Task::new(id.clone(), "w".into(), r, 1, 60, now);
    let result = model::TaskResult {
        text: "from the timer".into(),
        truncated: false,
        bytes: 14,
    };
    let events = [
        Event::Provision {
            attempt: 1,
            container: "c".into(),
            token_hash: "h".into(),
        },
        Event::Started { attempt: 1 },
        Event::Succeeded {
            attempt: 1,
            exit_code: 0,
            reason: None,
            result: Some(result),
        },
    ];
    for e in &events {
        task = task.apply(e, now, &Rates::default()).unwrap();
        w.applied(e, &task, now).await;
    }
    assert!(rx.seen("/ok").is_empty(), "recording sends nothing");
    assert_eq!(
        w.drive(Duration::from_secs(10)).await,
        1,
        "one delivery tried"
    );
    let seen = rx.seen("/ok");
    assert_eq!(seen.len(), 1);
    let v = check_cloudevent(&seen[0], "done", &id);
    assert_eq!(v["source"], "https://app.example/api/tasks");
    assert_eq!(v["data"]["result"]["text"], "from the timer");
    let d = w.deliveries(&id).await.unwrap();
    assert_eq!(d[0].status, DeliveryStatus::Delivered);
    assert_eq!(
        w.drive(Duration::from_secs(1)).await,
        0,
        "nothing left to send"
    );
    rx.stop().await;
}
