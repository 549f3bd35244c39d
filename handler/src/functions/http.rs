//! `HttpApi`: an HTTP request the Functions host hands over as invocation data (`req`), answered
//! by the very same actix routes as local mode ([`api::routes`]), in-process, without a socket
//! and without actix's test utilities.
//!
//! How, with actix-web 4's public service API (github:actix/actix-web, read at 4dc9f1d):
//! - the routes are an `actix_web::App` turned into a service the way the server itself does
//!   it: `into_factory().new_service(AppConfig::default())` (`ServiceFactory`, `AppConfig` from
//!   `actix_web::dev`; the same call `actix-web/src/test/test_utils.rs::try_init_service`
//!   wraps; `IntoServiceFactory` is actix-service's). Services are not `Send`, so it is built once per server worker thread
//!   ([`ApiService`], app data of the invocation server, which builds its `App` per thread);
//! - the request is an `actix_http::Request` made from a `Message<RequestHead>`
//!   (`actix-http/src/requests/request.rs`, `impl From<Message<RequestHead>> for Request`, what
//!   the HTTP/1 decoder does) with the invocation's method, URI, headers and body;
//! - the invocation's app (its own Service Bus outbox, `super::outbox`) travels in the
//!   request's extensions and is made the routes' `web::Data<Arc<App>>` by a middleware with
//!   `ServiceRequest::add_data_container` (`actix-web/src/service.rs`), so each request sees
//!   the app of its own invocation and nothing is keyed by thread or pointer.

use crate::api;
use crate::app::App;
use crate::functions::payload::{HttpCall, HttpResult};
use actix_service::IntoServiceFactory;
use actix_web::body::BoxBody;
use actix_web::dev::{
    AppConfig, Extensions, Service, ServiceFactory, ServiceRequest, ServiceResponse,
};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri};
use actix_web::{web, HttpMessage};
use futures::future::LocalBoxFuture;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// Errors of one replayed request.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The invocation's request cannot be an HTTP request (method, URI or a header).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The routes could not be built (actix reported an initialisation error).
    #[error("the API service could not be built")]
    Init,
    /// The routes failed (not an HTTP error answer: those are answers).
    #[error(transparent)]
    Service(#[from] actix_web::Error),
}

/// Calls the API service with one request.
type Call = Rc<
    dyn Fn(
        actix_http::Request,
    ) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>,
>;

/// The API routes as a service of this worker thread, built at its first request.
#[derive(Default)]
pub struct ApiService {
    /// Set once, by the first `HttpApi` invocation this thread serves.
    call: tokio::sync::OnceCell<Call>,
}

/// The invocation's app, carried in the request's extensions to [`scope`].
#[derive(Clone)]
struct Scoped(Arc<App>);

impl ApiService {
    /// Answers `call` with the API routes, as `app` (the invocation's).
    pub async fn replay(&self, app: Arc<App>, call: HttpCall) -> Result<HttpResult, ReplayError> {
        let service = self.call.get_or_try_init(build).await?;
        let req = request(call)?;
        req.extensions_mut().insert(Scoped(app));
        let resp = service(req).await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let bytes = actix_web::body::to_bytes(resp.into_body())
            .await
            .map_err(|_| actix_web::error::ErrorInternalServerError("reading the API answer"))?;
        Ok(HttpResult {
            status_code: status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// The API routes as a service (module docs).
async fn build() -> Result<Call, ReplayError> {
    let routes = actix_web::App::new()
        .wrap_fn(|mut req: ServiceRequest, srv| {
            scope(&mut req);
            srv.call(req)
        })
        .configure(api::routes);
    let service = routes
        .into_factory()
        .new_service(AppConfig::default())
        .await
        .map_err(|()| ReplayError::Init)?;
    let service = Rc::new(service);
    let call: Call = Rc::new(move |req: actix_http::Request| {
        let service = service.clone();
        Box::pin(async move { Ok(service.call(req).await?.map_into_boxed_body()) })
    });
    Ok(call)
}

/// Makes the invocation's app the request's `web::Data<Arc<App>>`.
fn scope(req: &mut ServiceRequest) {
    let scoped = req.extensions_mut().remove::<Scoped>();
    if let Some(Scoped(app)) = scoped {
        let mut data = Extensions::new();
        data.insert(web::Data::new(app));
        req.add_data_container(Rc::new(data));
    }
}

/// The HTTP request of an invocation.
fn request(call: HttpCall) -> Result<actix_http::Request, ReplayError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ReplayError::Invalid(format!("{what}: {e}"));
    let mut head = actix_http::Message::<actix_http::RequestHead>::new();
    head.method = Method::from_bytes(call.method.as_bytes()).map_err(|e| bad("method", &e))?;
    head.uri = call
        .path_and_query
        .parse::<Uri>()
        .map_err(|e| bad("URI", &e))?;
    for (k, v) in call.headers {
        let name = HeaderName::try_from(k.as_str()).map_err(|e| bad("header name", &e))?;
        let value = HeaderValue::try_from(v.as_str()).map_err(|e| bad("header value", &e))?;
        head.headers.append(name, value);
    }
    let mut req = actix_http::Request::from(head);
    *req.payload() = actix_http::Payload::from(web::Bytes::from(call.body));
    Ok(req)
}

/// The API's answer while the store is not connected: 503 with `Retry-After`, in the API's
/// error shape.
pub fn not_ready(why: &str) -> HttpResult {
    let mut headers = BTreeMap::new();
    headers.insert("Content-Type".into(), "application/json".into());
    headers.insert("Retry-After".into(), "5".into());
    let body = model::ApiError {
        code: "store_unavailable".into(),
        message: why.to_string(),
    };
    HttpResult {
        status_code: 503,
        headers,
        body: serde_json::to_string(&body).unwrap_or_default(),
    }
}

/// The live event stream cannot pass through a buffered invocation, so `/api/events` answers
/// one `resync` frame and asks the browser's `EventSource` to reconnect in 5 s: the dashboard
/// reloads its list each time, which turns the stream into polling in Azure.
pub fn events_hint() -> HttpResult {
    let mut headers = BTreeMap::new();
    headers.insert("Content-Type".into(), "text/event-stream".into());
    headers.insert("Cache-Control".into(), "no-cache".into());
    HttpResult {
        status_code: 200,
        headers,
        body: format!("retry: 5000\n{}", crate::events::frame("resync", "{}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_hint_is_one_resync_frame_with_a_retry() {
        let h = events_hint();
        assert!(h.body.starts_with("retry: 5000\n"));
        assert!(h.body.contains("event: resync"));
        assert_eq!(h.headers["Content-Type"], "text/event-stream");
    }

    #[test]
    fn a_request_the_host_could_not_have_sent_is_refused_by_part() {
        let call = |method: &str, path: &str, header: (&str, &str)| HttpCall {
            method: method.into(),
            path_and_query: path.into(),
            headers: vec![(header.0.into(), header.1.into())],
            body: Vec::new(),
        };
        let ok = request(call("POST", "/api/work?x=1", ("x-api-key", "k"))).unwrap();
        assert_eq!(ok.head().method, Method::POST);
        assert_eq!(ok.head().uri.query(), Some("x=1"));
        assert_eq!(ok.headers().get("x-api-key").unwrap(), "k");
        for (c, named) in [
            (call("GE T", "/api", ("a", "b")), "method"),
            (call("GET", "/a b", ("a", "b")), "URI"),
            (call("GET", "/api", ("a b", "b")), "header name"),
            (call("GET", "/api", ("a", "b\n")), "header value"),
        ] {
            let e = request(c).unwrap_err().to_string();
            assert!(e.contains(named), "{e}");
        }
    }
}
