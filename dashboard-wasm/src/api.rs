//! Talking to the handler's HTTP API with the browser's `fetch`.
//!
//! The API's base URL comes from `<meta name="eda-api" content="...">` in `index.html`: empty
//! means "the origin that served this page", which is how the handler serves the dashboard; a
//! static copy of the folder hosted elsewhere sets it to the API's URL.
//!
//! When the API answers 401 (a handler started with `--api-key`, or the Function App in Azure),
//! the page asks for the key once; it is kept in `sessionStorage` (this tab only) and sent as
//! `x-api-key` on every call. `EventSource` cannot send it, so such a board is kept live by polling
//! where the event stream needs the key too.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestCache, RequestInit, Response};

/// Why an API call failed; shown to the person in the error banner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request did not reach the API (handler down, network, CORS).
    #[error("cannot reach the API: {0}")]
    Network(String),
    /// The API answered with an error status; `message` is its `ApiError.message`.
    #[error("{message} (HTTP {status})")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The API's own explanation, or the status text.
        message: String,
    },
    /// The API answered 2xx with a body this dashboard cannot read (version mismatch).
    #[error("unexpected answer from the API: {0}")]
    Decode(String),
}

/// Where the key is kept (`sessionStorage`: this tab only, gone when it closes).
const KEY_ITEM: &str = "eda-api-key";

thread_local! {
    /// The base URL, read once from the page: it never changes while the page lives.
    static BASE: String = read_base();
    /// The API key the person gave, if any.
    static KEY: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(stored_key());
    /// Called on a 401 answer, so the page can ask for the key.
    static ON_UNAUTHORIZED: std::cell::RefCell<Option<Box<dyn Fn()>>> = const { std::cell::RefCell::new(None) };
}

fn session() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

fn stored_key() -> Option<String> {
    session()?
        .get_item(KEY_ITEM)
        .ok()
        .flatten()
        .filter(|k| !k.is_empty())
}

/// Uses `key` for every call from now on (and for this tab's later page loads).
pub fn set_key(key: &str) {
    let key = key.trim().to_string();
    if let Some(s) = session() {
        let _ = s.set_item(KEY_ITEM, &key);
    }
    KEY.with(|k| *k.borrow_mut() = (!key.is_empty()).then_some(key));
}

/// Registers what to do when the API says 401 (ask the person for the key).
pub fn on_unauthorized(f: impl Fn() + 'static) {
    ON_UNAUTHORIZED.with(|u| *u.borrow_mut() = Some(Box::new(f)));
}

fn read_base() -> String {
    let meta = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector("meta[name=eda-api]").ok().flatten())
        .and_then(|m| m.get_attribute("content"));
    meta.unwrap_or_default()
        .trim()
        .trim_end_matches('/')
        .to_string()
}

/// The absolute or origin-relative URL of an API path such as `/api/tasks`.
pub fn url(path: &str) -> String {
    BASE.with(|b| format!("{b}{path}"))
}

fn js_text(v: &JsValue) -> String {
    v.as_string()
        .or_else(|| js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".to_string())
}

/// Sends one request and returns the body text of a 2xx answer.
async fn call(method: &str, path: &str, body: Option<String>) -> Result<String, ApiError> {
    let net = |e: JsValue| ApiError::Network(js_text(&e));
    let init = RequestInit::new();
    init.set_method(method);
    init.set_cache(RequestCache::NoStore);
    let headers = Headers::new().map_err(net)?;
    let used = KEY.with(|k| k.borrow().clone());
    if let Some(key) = &used {
        headers.set("x-api-key", key).map_err(net)?;
    }
    if let Some(body) = body {
        headers
            .set("content-type", "application/json")
            .map_err(net)?;
        init.set_body(&JsValue::from_str(&body));
    }
    init.set_headers(&headers);
    let request = Request::new_with_str_and_init(&url(path), &init).map_err(net)?;
    let window = web_sys::window().ok_or_else(|| ApiError::Network("no window".into()))?;
    let response: Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(net)?
        .unchecked_into();
    let text = JsFuture::from(response.text().map_err(net)?)
        .await
        .map_err(net)?
        .as_string()
        .unwrap_or_default();
    if response.ok() {
        return Ok(text);
    }
    // A 401 for a key that was replaced while the request was in flight says nothing.
    if response.status() == 401 && KEY.with(|k| *k.borrow() == used) {
        ON_UNAUTHORIZED.with(|u| u.borrow().as_ref().map(|f| f()));
    }
    let message = match serde_json::from_str::<model::ApiError>(&text) {
        Ok(e) => e.message,
        Err(_) if text.trim().is_empty() => response.status_text(),
        Err(_) => text.chars().take(300).collect(),
    };
    Err(ApiError::Status {
        status: response.status(),
        message,
    })
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::Decode(e.to_string()))
}

/// `GET path`, decoding the JSON answer.
pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    decode(&call("GET", path, None).await?)
}

/// `method path` with an optional JSON body, decoding the JSON answer.
pub async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, ApiError> {
    let body = body
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ApiError::Decode(e.to_string()))?;
    decode(&call(method, path, body).await?)
}

/// Percent-encodes a query value (cursors are opaque and may hold any character).
pub fn encode(value: &str) -> String {
    String::from(js_sys::encode_uri_component(value))
}
