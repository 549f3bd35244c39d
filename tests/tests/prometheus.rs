//! `GET /metrics` scraped by a real Prometheus (Debian's `prometheus` package), read back through
//! Prometheus' own HTTP query API: what an operator's dashboards and alerts would see.
//!
//! Needs the `prometheus` binary (skipped outside CI when missing, mandatory in CI: `.ci/run`
//! installs it). Tasks run on the process runtime as shell commands. Prometheus behaviour used
//! here, from its documentation (prometheus.io/docs): the scrape config's `authorization` block
//! sends `Authorization: <type> <credentials>` ("configuration/configuration/#scrape_config");
//! `GET /api/v1/query?query=` answers `{"status":"success","data":{"resultType":"vector",
//! "result":[{"metric":{..},"value":[<time>,"<value as string>"]}]}}` ("querying/api/");
//! `GET /-/ready` answers 200 once it serves ("operating/management_api/").

use e2e::{eventually, need, start_local, TempDir};
use handler::local::Running;
use model::{Task, TaskState};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Prometheus starts, scrapes every second, and the tasks run in well under this.
const LIMIT: Duration = Duration::from_secs(60);
/// The API key the handler requires; Prometheus sends it as a bearer token.
const KEY: &str = "prometheus-test-key";

/// A Prometheus server of this test: its own config and storage in a temp dir, on a free
/// loopback port; killed (and waited for) on drop, so nothing is left running.
struct Prometheus {
    child: Child,
    url: String,
    /// Holds the config and the TSDB; removed after the child is gone.
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) every second, with `KEY` as bearer.
    fn start(target: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(&config, scrape_config(target)).unwrap();
        let port = e2e::free_port();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Its log, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until it answers `/-/ready`.
    async fn ready(&self, http: &reqwest::Client) {
        let url = format!("{}/-/ready", self.url);
        eventually(LIMIT, "prometheus to be ready", || async {
            let r = http.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }

    /// The value of the single series `query` selects now, if there is exactly one.
    async fn value(&self, http: &reqwest::Client, query: &str) -> Option<f64> {
        let url = format!("{}/api/v1/query", self.url);
        let r = http
            .get(&url)
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: Value = r.json().await.ok()?;
        assert_eq!(body["status"], "success", "{query}: {body}");
        let result = body["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Polls until `query` reads `want`; panics with the last reading and Prometheus' log.
    async fn until(&self, http: &reqwest::Client, query: &str, want: f64) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let got = self.value(http, query).await;
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{query}: wanted {want}, last read {got:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scrape_config(target: &str) -> String {
    format!(
        "global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: eda
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: {KEY}
    static_configs:
      - targets: ['{target}']
"
    )
}

fn prometheus_installed() -> bool {
    Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Local mode on the process runtime, tasks as shell commands, behind [`KEY`].
async fn handler(data: &Path) -> Running {
    let mut flags = vec!["--runtime", "process", "--api-key", KEY];
    let worker_args: Vec<String> = e2e::shell_worker_args()
        .into_iter()
        .map(|a| format!("--worker-arg={a}"))
        .collect();
    flags.extend(worker_args.iter().map(String::as_str));
    start_local(data, &flags).await
}

/// Submits `n` tasks and waits until every one is `Done`.
async fn run_tasks(http: &reqwest::Client, base: &str, n: usize) -> Vec<Task> {
    let body = json!({"work": "echo scraped", "count": n});
    let r = http
        .post(format!("{base}/api/work"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let accepted: Value = r.json().await.unwrap();
    let ids: Vec<String> = accepted["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let mut done = Vec::new();
    for id in ids {
        let t = eventually(LIMIT, &format!("task {id} Done"), || async {
            let r = http
                .get(format!("{base}/api/tasks/{id}"))
                .bearer_auth(KEY)
                .send()
                .await
                .ok()?;
            let t: Task = r.json().await.ok()?;
            assert!(
                !t.state.is_terminal() || t.state == TaskState::Done,
                "{t:?}"
            );
            (t.state == TaskState::Done).then_some(t)
        })
        .await;
        done.push(t);
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_tasks_phases_and_gauges() {
    if !need("prometheus (Debian package)", prometheus_installed()) {
        return;
    }
    let data = TempDir::new("prom-handler");
    let local = handler(&data.0).await;
    let http = reqwest::Client::new();
    let base = local.url();

    // Same auth rules as the API: no key, no metrics.
    let open = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(open.status().as_u16(), 401);
    let own = http
        .get(format!("{base}/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status().as_u16(), 200);
    assert!(own.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));

    let prom = Prometheus::start(&local.addr.to_string());
    prom.ready(&http).await;
    prom.until(&http, "up{job=\"eda\"}", 1.0).await;

    let n = 3;
    let tasks = run_tasks(&http, &base, n).await;
    for t in &tasks {
        // The worker timed its work's first output and exit and sent them in its final report.
        let c = t.clock(t.attempt).expect("the attempt's clock");
        let (out, exit) = (c.at(model::Phase::FirstOutput), c.at(model::Phase::Exited));
        assert!(out.is_some() && exit >= out, "{c:?}");
    }
    let n = n as f64;
    prom.until(&http, "eda_tasks{state=\"Done\"}", n).await;
    prom.until(&http, "eda_tasks{state=\"Pending\"}", 0.0).await;
    for phase in [
        "dequeued",
        "asked",
        "started",
        "first_report",
        "first_output",
        "exited",
        "finished",
    ] {
        let q = format!("eda_phase_duration_seconds_count{{phase=\"{phase}\"}}");
        prom.until(&http, &q, n).await;
    }
    // The reconciler removes every container; then no slot is held and the queue is empty.
    prom.until(
        &http,
        "eda_phase_duration_seconds_count{phase=\"removed\"}",
        n,
    )
    .await;
    prom.until(&http, "eda_slots_in_use", 0.0).await;
    prom.until(&http, "eda_queue_depth", 0.0).await;
    prom.until(&http, "eda_dead_letters_total", 0.0).await;
    prom.until(&http, "eda_redeliveries_found_container_total", 0.0)
        .await;
    prom.until(&http, "eda_pool_size", 0.0).await;

    // The histogram's sum is the tasks' own "asked -> started" times, as their clocks say.
    let want: f64 = tasks
        .iter()
        .map(|t| {
            let c = t.clock(t.attempt).expect("the attempt's clock");
            c.duration_ms(model::Phase::Started)
                .expect("started is marked") as f64
                / 1000.0
        })
        .sum();
    let sum = prom
        .value(&http, "eda_phase_duration_seconds_sum{phase=\"started\"}")
        .await
        .expect("the sum series");
    assert!((sum - want).abs() < 1e-6, "sum {sum} vs the clocks' {want}");
    drop(prom);
    local.stop().await;
}
