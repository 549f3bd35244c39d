//! The custom-handler invocation payloads, exactly as azure-functions-host builds and reads them
//! (its source is the reference; docs/AZURE.md "Conformance: Functions host" lists each rule
//! with the test that covers it).
//!
//! The host POSTs `{"Data": {...}, "Metadata": {...}}` to `/{FunctionName}` and reads
//! `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}` back. Every value it puts in `Data`
//! (except an HTTP request) and in `Metadata` goes through
//! `ScriptInvocationContextExtensions.GetHttpScriptInvocationContextValue`
//! (azure-functions-host `src/WebJobs.Script/Workers/MessageExtensions/ScriptInvocationContextExtensions.cs`):
//!
//! - `byte[]`: base64 text, unless the binding's `dataType` is `binary`;
//! - a POCO (anything `JObject.FromObject` accepts): a JSON object;
//! - anything else, strings and numbers included: `JsonConvert.SerializeObject(value)`, i.e. a
//!   JSON *text* inside a JSON string. A Service Bus message `hello` arrives as `"\"hello\""`
//!   (the host's unit test `GetHttpScriptInvocationContextValueTest_String` asserts exactly
//!   that), and `DeliveryCount` 2 as `"2"`.
//!
//! [`decode`] undoes that once. The HTTP request is the exception: `GetRequestAsJObject`
//! (`src/WebJobs.Script/Extensions/HttpRequestExtensions.cs`) makes it a plain object with
//! `Url`, `Method`, `Query`, `Headers` (arrays of values), `Params`, `Identities` and `Body` (the
//! body as text). Pure translation, no I/O, so every shape is unit-tested here with the host's
//! own fixtures.

use crate::spawn::Delivery;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Errors reading an invocation.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The body is not an invocation request.
    #[error("invocation body: {0}")]
    Body(String),
    /// The trigger binding's data is missing.
    #[error("the invocation has no `{0}` in Data")]
    MissingBinding(String),
    /// A metadata field is missing or malformed.
    #[error("the invocation metadata has no usable `{0}`")]
    Metadata(&'static str),
    /// The HTTP trigger data is malformed.
    #[error("http trigger data: {0}")]
    Http(String),
}

/// What the Functions host sends to `/{FunctionName}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct InvocationRequest {
    /// Trigger and input binding data, by binding name.
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    /// Trigger metadata (Service Bus: `MessageId`, `DeliveryCount`, ...; `sys`).
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

/// What the handler answers: output binding values, log lines for the host, a return value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationResponse {
    /// Output binding values, by binding name (`res`, `message`, ...).
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Lines the host writes to its invocation log (Application Insights).
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// The function's `$return` value; unused here.
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

impl InvocationResponse {
    /// An answer with one log line.
    pub fn log(line: impl Into<String>) -> InvocationResponse {
        InvocationResponse {
            logs: vec![line.into()],
            ..InvocationResponse::default()
        }
    }

    /// Sets the Service Bus output binding `binding` to `messages` (nothing when empty: an
    /// absent output sends nothing, an empty array is not needed).
    pub fn with_messages(mut self, binding: &str, messages: Vec<String>) -> Self {
        if !messages.is_empty() {
            let list = messages.into_iter().map(Value::String).collect();
            self.outputs.insert(binding.to_string(), Value::Array(list));
        }
        self
    }
}

/// Looks up a metadata key ignoring case (the host uses PascalCase; tools differ).
fn meta<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A value as text: strings as they are, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A `Data` or `Metadata` value with the host's encoding undone.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A string (the host sent `JsonConvert.SerializeObject(string)`), or text the host passed
    /// through unencoded (a `DateTime` written by the formatter, base64 of a `byte[]`).
    Text(String),
    /// A POCO the host turned into an object, or a number/bool it serialised.
    Json(Value),
}

impl Decoded {
    /// The value as text: a string as it is, JSON as compact JSON.
    pub fn into_text(self) -> String {
        match self {
            Decoded::Text(s) => s,
            Decoded::Json(v) => v.to_string(),
        }
    }
}

/// Undoes `GetHttpScriptInvocationContextValue` (module docs) for one value: a JSON string is
/// parsed once more (`"\"stringTest\""` is the string `stringTest`, `"2"` the number 2); a
/// string that is not JSON was not encoded by `SerializeObject` (a date, base64) and is kept.
pub fn decode(v: &Value) -> Decoded {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => Decoded::Text(inner),
            Ok(other) => Decoded::Json(other),
            Err(_) => Decoded::Text(s.clone()),
        },
        other => Decoded::Json(other.clone()),
    }
}

/// The Service Bus delivery in a `serviceBusTrigger` invocation whose trigger binding is named
/// `binding`. The body is `Data.<binding>` decoded once ([`decode`]): the function.json sets
/// `"dataType": "string"`, so the host binds the message body as a string and sends it
/// `SerializeObject`-encoded; a POCO (object) is taken as its JSON. The message id and the
/// delivery count come from the trigger metadata (binding data the Service Bus extension
/// provides, encoded the same way).
pub fn delivery(inv: &InvocationRequest, binding: &str) -> Result<Delivery, PayloadError> {
    let body = meta(&inv.data, binding)
        .map(|v| decode(v).into_text())
        .ok_or_else(|| PayloadError::MissingBinding(binding.to_string()))?;
    let message_id = meta(&inv.metadata, "MessageId")
        .map(|v| decode(v).into_text())
        .filter(|s| !s.is_empty())
        .ok_or(PayloadError::Metadata("MessageId"))?;
    let delivery_count = match meta(&inv.metadata, "DeliveryCount").map(decode) {
        Some(Decoded::Json(Value::Number(n))) => n.as_u64(),
        Some(Decoded::Text(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or(PayloadError::Metadata("DeliveryCount"))?;
    Ok(Delivery {
        message_id,
        body,
        delivery_count: u32::try_from(delivery_count).unwrap_or(u32::MAX),
        enqueued_at_ms: None,
    })
}

/// The HTTP request in an `httpTrigger` invocation (binding `req`), when it is not forwarded.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query of the original URL, e.g. `/api/tasks?state=active`.
    pub path_and_query: String,
    /// Request headers (one value each; repeated headers are joined with `, `).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// Reads the `req` binding: `{Url, Method, Query, Headers, Params, Body}`.
pub fn http_call(inv: &InvocationRequest, binding: &str) -> Result<HttpCall, PayloadError> {
    let req = meta(&inv.data, binding)
        .ok_or_else(|| PayloadError::MissingBinding(binding.to_string()))?;
    let req = match req {
        Value::String(s) => {
            serde_json::from_str(s).map_err(|e| PayloadError::Http(e.to_string()))?
        }
        v => v.clone(),
    };
    let obj = req
        .as_object()
        .ok_or_else(|| PayloadError::Http("`req` is not an object".into()))?;
    let url = meta(obj, "Url")
        .and_then(Value::as_str)
        .ok_or_else(|| PayloadError::Http("no Url".into()))?;
    let parsed = reqwest::Url::parse(url)
        .or_else(|_| reqwest::Url::parse("http://localhost")?.join(url))
        .map_err(|e| PayloadError::Http(format!("Url {url:?}: {e}")))?;
    let mut path_and_query = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let method = meta(obj, "Method")
        .and_then(Value::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    Ok(HttpCall {
        method,
        path_and_query,
        headers: headers(meta(obj, "Headers")),
        body: match meta(obj, "Body") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => text(v).into_bytes(),
        },
    })
}

/// Header values may come as `"v"` or `["v1", "v2"]`.
fn headers(v: Option<&Value>) -> Vec<(String, String)> {
    let Some(Value::Object(m)) = v else {
        return Vec::new();
    };
    m.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
                other => text(other),
            };
            (k.clone(), value)
        })
        .collect()
}

/// The `res` output of a non-forwarded HTTP invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResult {
    /// The status code.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// Response headers.
    pub headers: BTreeMap<String, String>,
    /// The body as text (the API only answers JSON and text).
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inv(v: Value) -> InvocationRequest {
        serde_json::from_value(v).unwrap()
    }

    /// `JsonConvert.SerializeObject` of a string, as the host's unit test
    /// `GetHttpScriptInvocationContextValueTest_String` expects it (`"\"stringTest\""`).
    fn serialize_object(s: &str) -> Value {
        Value::String(serde_json::to_string(s).unwrap())
    }

    #[test]
    fn values_are_decoded_as_the_host_encodes_them() {
        // azure-functions-host test/WebJobs.Script.Tests/Workers/ScriptInvocationContextExtensionsTests.cs:
        // GetHttpScriptInvocationContextValueTest_String: "stringTest" -> "\"stringTest\"".
        assert_eq!(
            decode(&json!("\"stringTest\"")),
            Decoded::Text("stringTest".into())
        );
        // GetHttpScriptInvocationContextValueTest_POCO: an object with Name and Id.
        let poco = json!({"Name": "TestName", "Id": 1234});
        assert_eq!(decode(&poco), Decoded::Json(poco.clone()));
        // An int goes through SerializeObject too: "2".
        assert_eq!(decode(&json!("2")), Decoded::Json(json!(2)));
        // A DateTime is DateTime.Parse'd and written by the formatter: plain text.
        assert_eq!(
            decode(&json!("2026-11-30T10:00:00Z")),
            Decoded::Text("2026-11-30T10:00:00Z".into())
        );
        // Text that is itself JSON stays text after one decoding (our envelopes).
        let env = r#"{"id":"a","work":"x"}"#;
        assert_eq!(decode(&serialize_object(env)), Decoded::Text(env.into()));
    }

    #[test]
    fn service_bus_deliveries_are_decoded_once() {
        let envelope = r#"{"id":"a","work":"w \"quoted\""}"#;
        let i = inv(json!({"Data": {"message": serialize_object(envelope)},
            "Metadata": {"MessageId": serialize_object("m-1"), "DeliveryCount": "2",
                "EnqueuedTimeUtc": "2026-11-30T10:00:00Z", "sys": {"MethodName": "ServiceBusTrigger"}}}));
        let d = delivery(&i, "message").unwrap();
        assert_eq!(
            (d.message_id.as_str(), d.body.as_str(), d.delivery_count),
            ("m-1", envelope, 2),
            "the envelope is read as the envelope, not as its escaped text"
        );
        let plain = inv(json!({"Data": {"message": serialize_object("hello")},
            "Metadata": {"MessageId": serialize_object("m-2"), "DeliveryCount": "1"}}));
        assert_eq!(delivery(&plain, "message").unwrap().body, "hello");
        // A POCO trigger value (JObject.FromObject succeeded) is taken as its JSON.
        let object = inv(json!({"Data": {"message": {"id": "a", "work": "x"}},
            "Metadata": {"messageId": serialize_object("m-3"), "deliveryCount": 1}}));
        let d = delivery(&object, "message").unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&d.body).unwrap(),
            json!({"id": "a", "work": "x"})
        );
        assert_eq!((d.message_id.as_str(), d.delivery_count), ("m-3", 1));
        assert!(matches!(
            delivery(&inv(json!({"Data": {}, "Metadata": {}})), "message"),
            Err(PayloadError::MissingBinding(_))
        ));
        assert!(matches!(
            delivery(
                &inv(json!({"Data": {"message": "\"x\""}, "Metadata": {"MessageId": "\"m\""}})),
                "message"
            ),
            Err(PayloadError::Metadata("DeliveryCount"))
        ));
    }

    #[test]
    fn http_requests_keep_path_query_headers_and_body() {
        let i = inv(json!({"Data": {"req": {
            "Url": "https://app.azurewebsites.net/api/tasks?state=active&limit=5",
            "Method": "get", "Query": {"state": "active"},
            "Headers": {"Accept": ["application/json"], "x-api-key": "k"},
            "Params": {"path": "tasks"}, "Body": null}}, "Metadata": {}}));
        let c = http_call(&i, "req").unwrap();
        assert_eq!(c.method, "GET");
        assert_eq!(c.path_and_query, "/api/tasks?state=active&limit=5");
        assert!(c
            .headers
            .contains(&("Accept".into(), "application/json".into())));
        assert!(c.headers.contains(&("x-api-key".into(), "k".into())));
        assert!(c.body.is_empty());
        let post = inv(
            json!({"Data": {"req": {"Url": "http://localhost:7071/api/work",
            "Method": "POST", "Body": {"work": "w"}}}}),
        );
        let c = http_call(&post, "req").unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&c.body).unwrap(),
            json!({"work": "w"})
        );
    }

    #[test]
    fn responses_have_the_documented_field_names() {
        let r = InvocationResponse::log("ok").with_messages("message", vec!["a".into()]);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"Outputs": {"message": ["a"]}, "Logs": ["ok"], "ReturnValue": null})
        );
        let empty = InvocationResponse::default().with_messages("message", vec![]);
        assert!(empty.outputs.is_empty());
    }
}
