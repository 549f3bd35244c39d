//! A test harness that plays the Azure Functions host for the custom handler, since the host
//! itself cannot be installed here (Core Tools downloads its binaries at install time).
//!
//! Everything it does is ported from azure-functions-host's source (cited per rule in
//! [`wire`] and [`app`]) or from Microsoft's Service Bus and Functions documentation ([`bus`]):
//!
//! - it loads `host.json` and every `function.json` from the deployment zip ([`app`]) and
//!   resolves `%Setting%` expressions from the app settings;
//! - it starts the handler as `HttpWorkerProcess` does and waits for it as `IsWorkerReady`
//!   does ([`app::start_handler`]); with `instances` > 1 it plays that many scaled-out
//!   instances of the app (one handler process each, sharing the queues and the settings),
//!   handing each invocation to the next instance in turn;
//! - HTTP: a front end on port 0 routes requests to HTTP-triggered functions by route template
//!   (`extensions.http.routePrefix` + `route`) and method; a function with only an `http`
//!   output and `enableForwardingHttpRequest` gets the request forwarded as it is
//!   (`DefaultHttpWorkerService.ProcessHttpInAndOutInvocationRequest`); any other gets an
//!   invocation whose `res` output becomes the response;
//! - Service Bus: each queue named by a binding is a peek-lock [`bus::Queue`] with
//!   `MaxDeliveryCount`; the trigger's messages are dispatched at most
//!   `extensions.serviceBus.maxConcurrentCalls` at once, completed when the invocation
//!   succeeds, abandoned when it fails; output bindings send to the queue they name;
//! - Timer: the trigger fires on its (resolved) NCRONTAB schedule, one invocation at a time.
//!
//! Every invocation is recorded ([`Record`]) with the `Logs` the handler returned.

pub mod app;
pub mod bus;
pub mod wire;

use actix_web::{web, HttpRequest, HttpResponse};
use app::{FunctionApp, HandlerProcess};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use wire::{HostValue, HttpRequestData, Invocation, InvocationResult, Output};

/// One invocation the host made.
#[derive(Debug, Clone)]
pub struct Record {
    /// The function invoked.
    pub function: String,
    /// `Ok` with what the host read, or the failure.
    pub result: Result<InvocationResult, String>,
}

/// The host, running.
pub struct Host {
    /// The Function App it loaded.
    pub app: FunctionApp,
    /// The app settings, as the handlers' environment.
    pub settings: BTreeMap<String, String>,
    /// The first instance's handler.
    pub handler: HandlerProcess,
    /// The other instances' handlers.
    pub others: Vec<HandlerProcess>,
    /// Queues by name.
    pub queues: BTreeMap<String, Arc<bus::Queue>>,
    /// `http://127.0.0.1:<port>` of the public front end.
    pub front_url: String,
    /// Every invocation made, in order.
    pub records: Arc<Mutex<Vec<Record>>>,
    _front: actix_web::dev::ServerHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Shared by the front end, the dispatcher and the timer.
struct Ctx {
    app: FunctionApp,
    settings: BTreeMap<String, String>,
    /// Each instance's handler port; invocations go round-robin.
    ports: Vec<u16>,
    next: std::sync::atomic::AtomicUsize,
    queues: BTreeMap<String, Arc<bus::Queue>>,
    records: Arc<Mutex<Vec<Record>>>,
    http: reqwest::Client,
}

impl Ctx {
    /// The next instance's port.
    fn port(&self) -> u16 {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ports[i % self.ports.len()]
    }
}

impl Host {
    /// Loads the app from `zip` into `root`, starts the handler with `settings`, the front end
    /// (bound before the handler starts, so `settings` may name its URL: pass the listener),
    /// the Service Bus dispatchers and the timers.
    pub async fn start(
        zip: &std::path::Path,
        root: &std::path::Path,
        mut settings: BTreeMap<String, String>,
        front: std::net::TcpListener,
        max_delivery_count: u32,
        instances: usize,
    ) -> Host {
        let app = FunctionApp::load(zip, root);
        let front_addr = front.local_addr().unwrap();
        settings
            .entry("WEBSITE_HOSTNAME".into())
            .or_insert_with(|| front_addr.to_string());
        let mut queues = BTreeMap::new();
        for f in &app.functions {
            for b in &f.bindings {
                if let Some(q) = b.prop("queueName", &settings) {
                    assert!(!q.contains('%'), "{}: unresolved queueName {q}", f.name);
                    queues
                        .entry(q.clone())
                        .or_insert_with(|| Arc::new(bus::Queue::new(&q, max_delivery_count)));
                }
            }
        }
        let handler = app::start_handler(&app, &settings).await;
        let mut others = Vec::new();
        for _ in 1..instances {
            others.push(app::start_handler(&app, &settings).await);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let ctx = Arc::new(Ctx {
            app: FunctionApp {
                host_json: app.host_json.clone(),
                functions: app.functions.clone(),
                root: app.root.clone(),
                entries: app.entries.clone(),
            },
            settings: settings.clone(),
            ports: std::iter::once(handler.port)
                .chain(others.iter().map(|h| h.port))
                .collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
            queues: queues.clone(),
            records: records.clone(),
            http: http.clone(),
        });
        let data = web::Data::new(ctx.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .default_service(web::to(front_end))
        })
        .workers(2)
        .disable_signals()
        .listen(front)
        .unwrap()
        .run();
        let front_handle = server.handle();
        let mut tasks = vec![tokio::spawn(async move {
            let _ = server.await;
        })];
        for f in &app.functions {
            match f.trigger().kind.as_str() {
                "serviceBusTrigger" => tasks.push(tokio::spawn(dispatch(ctx.clone(), f.clone()))),
                "timerTrigger" => tasks.push(tokio::spawn(timer(ctx.clone(), f.clone()))),
                _ => {}
            }
        }
        Host {
            app,
            settings,
            handler,
            others,
            queues,
            front_url: format!("http://{front_addr}"),
            records,
            _front: front_handle,
            tasks,
        }
    }

    /// The queue named `name`.
    pub fn queue(&self, name: &str) -> &Arc<bus::Queue> {
        &self.queues[name]
    }

    /// Invocations of `function` so far.
    pub fn records_of(&self, function: &str) -> Vec<Record> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.function == function)
            .cloned()
            .collect()
    }
}

/// POSTs an invocation to `/{FunctionName}` (`ProcessDefaultInvocationRequest`), with the
/// headers `AddHeaders` sets, and reads the answer; records it.
async fn invoke(ctx: &Ctx, f: &app::Function, inv: Invocation) -> Result<InvocationResult, String> {
    let r = ctx
        .http
        .post(format!("http://127.0.0.1:{}/{}", ctx.port(), f.name))
        .header(
            "X-Azure-Functions-InvocationId",
            format!("{:x}", wire::rand_u128()),
        )
        .header("X-Azure-Functions-HostVersion", "4.0.0-harness")
        .header("User-Agent", "Azure-Functions-Host/4.0.0-harness")
        .json(&inv.sys(&f.name).body())
        .send()
        .await;
    let result = match r {
        Err(e) => Err(format!("sending the invocation: {e}")),
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap_or_default();
            wire::read_result(status, &body, &f.outputs())
        }
    };
    if let Ok(res) = &result {
        apply_messages(ctx, f, res);
    }
    ctx.records.lock().unwrap().push(Record {
        function: f.name.clone(),
        result: result.clone(),
    });
    result
}

/// Sends the messages of every collector output binding to the queue it names.
fn apply_messages(ctx: &Ctx, f: &app::Function, res: &InvocationResult) {
    for b in f.bindings.iter().filter(|b| b.direction == "out") {
        let Some(Output::Messages(msgs)) = res.outputs.get(&b.name) else {
            continue;
        };
        let q = b
            .prop("queueName", &ctx.settings)
            .unwrap_or_else(|| panic!("{}: output {} has no queueName", f.name, b.name));
        for m in msgs {
            ctx.queues[&q].send(None, m.clone());
        }
    }
}

/// The Service Bus trigger of `f`: receive under a lock, invoke, complete or abandon; at most
/// `maxConcurrentCalls` (host.json; default 16 × processors, we use the file's value) at once.
async fn dispatch(ctx: Arc<Ctx>, f: app::Function) {
    let trigger = f.trigger().clone();
    let q = ctx.queues[&trigger.prop("queueName", &ctx.settings).unwrap()].clone();
    let n = ctx
        .app
        .host("extensions.serviceBus.maxConcurrentCalls")
        .and_then(|v| v.as_u64())
        .unwrap_or(16) as usize;
    let permits = Arc::new(Semaphore::new(n));
    loop {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (token, m) = q.receive().await;
        let (ctx, f, q, trigger) = (ctx.clone(), f.clone(), q.clone(), trigger.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let body = if trigger.binary() {
                HostValue::Bytes(m.body.clone())
            } else {
                HostValue::Text(String::from_utf8_lossy(&m.body).into_owned())
            };
            // Binding data the Service Bus extension provides (message metadata,
            // https://learn.microsoft.com/azure/azure-functions/functions-bindings-service-bus-trigger#message-metadata;
            // the enqueue time under both names `AddBindingData` uses, azure-sdk-for-net
            // `sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/Triggers/ServiceBusTriggerBindingStrategy.cs`).
            let inv = Invocation::default()
                .input(&trigger.name, &body)
                .binding_data("MessageId", &HostValue::Text(m.id.clone()))
                .binding_data(
                    "DeliveryCount",
                    &HostValue::Number(i64::from(m.delivery_count)),
                )
                .binding_data("SequenceNumber", &HostValue::Number(m.sequence))
                .binding_data("EnqueuedTimeUtc", &wire::host_datetime(&m.enqueued))
                .binding_data("EnqueuedTime", &wire::host_datetime_offset(&m.enqueued))
                .binding_data(
                    "ApplicationProperties",
                    &HostValue::Object(serde_json::json!({})),
                )
                .binding_data("UserProperties", &HostValue::Object(serde_json::json!({})));
            match invoke(&ctx, &f, inv).await {
                Ok(_) => q.complete(token),
                Err(_) => q.abandon(token),
            }
        });
    }
}

/// Seconds between firings of an NCRONTAB schedule of the two forms used here:
/// `*/N * * * * *` (every N seconds) and `0 */N * * * *` (every N minutes).
pub fn period(schedule: &str) -> Duration {
    let f: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(f.len(), 6, "NCRONTAB has six fields: {schedule}");
    assert!(
        f[2..].iter().all(|x| *x == "*"),
        "unsupported schedule {schedule}"
    );
    if let Some(n) = f[0].strip_prefix("*/") {
        assert_eq!(f[1], "*", "unsupported schedule {schedule}");
        return Duration::from_secs(n.parse().unwrap());
    }
    let n = f[1].strip_prefix("*/").expect("*/N seconds or minutes");
    assert_eq!(f[0], "0", "unsupported schedule {schedule}");
    Duration::from_secs(60 * n.parse::<u64>().unwrap())
}

/// The timer trigger of `f`: fires every [`period`], one invocation at a time. `Data.<name>` is
/// the `TimerInfo` POCO (`Schedule`, `ScheduleStatus`, `IsPastDue`); with `useMonitor: false`
/// there is no schedule status.
async fn timer(ctx: Arc<Ctx>, f: app::Function) {
    let trigger = f.trigger().clone();
    let schedule = trigger.prop("schedule", &ctx.settings).unwrap();
    assert!(!schedule.contains('%'), "unresolved schedule {schedule}");
    let mut tick = tokio::time::interval(period(&schedule));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // runOnStartup: false
    loop {
        tick.tick().await;
        let info = serde_json::json!({"Schedule": {"AdjustForDST": true},
            "ScheduleStatus": null, "IsPastDue": false});
        let inv = Invocation::default().input(&trigger.name, &HostValue::Object(info));
        let _ = invoke(&ctx, &f, inv).await;
    }
}

/// Matches `path` (no leading `/`) against a route template; the route values on success.
fn route_match(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let t: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut values = Vec::new();
    for (i, seg) in t.iter().enumerate() {
        if let Some(name) = seg.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
            values.push((name.to_string(), p.get(i..).unwrap_or(&[]).join("/")));
            return Some(values);
        }
        let actual = p.get(i)?;
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => values.push((name.to_string(), actual.to_string())),
            None if seg.eq_ignore_ascii_case(actual) => {}
            None => return None,
        }
    }
    (t.len() == p.len()).then_some(values)
}

/// Route values of a matched template, by name.
type RouteValues = Vec<(String, String)>;

/// The HTTP function for a request: templates with more literal segments win (as ASP.NET
/// routing orders them); the method must be listed in `methods`.
fn route<'a>(
    ctx: &'a Ctx,
    method: &str,
    path: &str,
) -> Option<(&'a app::Function, Vec<(String, String)>)> {
    let prefix = ctx
        .app
        .host("extensions.http.routePrefix")
        .and_then(|v| v.as_str())
        .unwrap_or("api")
        .to_string();
    let mut candidates: Vec<(usize, &app::Function, RouteValues)> = Vec::new();
    for f in &ctx.app.functions {
        let t = f.trigger();
        if t.kind != "httpTrigger" {
            continue;
        }
        let methods: Vec<String> = t.raw["methods"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        if !methods.is_empty() && !methods.contains(&method.to_ascii_lowercase()) {
            continue;
        }
        let template = format!(
            "{prefix}/{}",
            t.prop("route", &ctx.settings).unwrap_or(f.name.clone())
        );
        if let Some(values) = route_match(&template, path) {
            let literals = template
                .split('/')
                .filter(|s| !s.is_empty() && !s.starts_with('{'))
                .count();
            candidates.push((literals, f, values));
        }
    }
    candidates.sort_by_key(|(l, _, _)| std::cmp::Reverse(*l));
    candidates.into_iter().next().map(|(_, f, v)| (f, v))
}

/// The public front end: routes each request to its HTTP function.
async fn front_end(req: HttpRequest, body: web::Bytes, ctx: web::Data<Arc<Ctx>>) -> HttpResponse {
    let path = req.path().trim_start_matches('/').to_string();
    let Some((f, values)) = route(&ctx, req.method().as_str(), &path) else {
        return HttpResponse::NotFound().finish();
    };
    let forward = ctx
        .app
        .host("customHandler.enableForwardingHttpRequest")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if forward && f.http_in_and_out() {
        return forward_request(&ctx, &req, body).await;
    }
    let headers: Vec<(String, Vec<String>)> = req
        .headers()
        .keys()
        .map(|k| {
            let v = req
                .headers()
                .get_all(k)
                .filter_map(|v| v.to_str().ok())
                .map(String::from)
                .collect();
            (k.to_string(), v)
        })
        .collect();
    let query: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    let data = HttpRequestData {
        url: format!("http://{}{}", req.connection_info().host(), req.uri()),
        method: req.method().to_string(),
        query: query.clone(),
        headers: headers.clone(),
        params: values.clone(),
        body: body.to_vec(),
        content_type: req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    };
    let trigger = f.trigger().name.clone();
    let mut inv = Invocation::default()
        .http_input(&trigger, &data)
        .binding_data(
            "Headers",
            &HostValue::Object(
                serde_json::to_value(headers.into_iter().collect::<BTreeMap<_, _>>()).unwrap(),
            ),
        )
        .binding_data(
            "Query",
            &HostValue::Object(
                serde_json::to_value(query.into_iter().collect::<BTreeMap<_, _>>()).unwrap(),
            ),
        );
    for (k, v) in &values {
        inv = inv.binding_data(k, &HostValue::Text(v.clone()));
    }
    match invoke(&ctx, f, inv).await {
        Err(e) => HttpResponse::InternalServerError().body(e),
        Ok(res) => {
            let out = f
                .bindings
                .iter()
                .find(|b| b.direction == "out" && b.kind == "http")
                .and_then(|b| res.outputs.get(&b.name));
            match out {
                Some(Output::Http(h)) => {
                    let mut r = HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(h.status).unwrap(),
                    );
                    for (k, v) in &h.headers {
                        r.insert_header((k.as_str(), v.as_str()));
                    }
                    r.body(h.body.clone())
                }
                _ => HttpResponse::NoContent().finish(),
            }
        }
    }
}

/// `ProcessHttpInAndOutInvocationRequest`: the request as it is (`ToHttpRequestMessage`: the
/// path, the query, every header, the body when there is one) to the same path on the handler,
/// plus the invocation headers; the handler's response as it is.
async fn forward_request(ctx: &Ctx, req: &HttpRequest, body: web::Bytes) -> HttpResponse {
    let url = format!("http://127.0.0.1:{}{}", ctx.port(), req.uri());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut r = ctx.http.request(method, url);
    for (k, v) in req.headers() {
        if k != "host" {
            r = r.header(k.as_str(), v.as_bytes());
        }
    }
    r = r
        .header(
            "X-Azure-Functions-InvocationId",
            format!("{:x}", wire::rand_u128()),
        )
        .header("X-Azure-Functions-HostVersion", "4.0.0-harness");
    if !body.is_empty() {
        r = r.body(body.to_vec());
    }
    match r.send().await {
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
        Ok(resp) => {
            let mut out = HttpResponse::build(
                actix_web::http::StatusCode::from_u16(resp.status().as_u16()).unwrap(),
            );
            for (k, v) in resp.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    out.append_header((k.as_str(), v.as_bytes()));
                }
            }
            out.body(resp.bytes().await.unwrap_or_default())
        }
    }
}
