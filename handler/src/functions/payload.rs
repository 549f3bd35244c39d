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
        enqueued_at_ms: enqueued_at_ms(&inv.metadata),
    })
}

/// When Service Bus enqueued the message (ms since the epoch), from the trigger metadata; `None`
/// when the host sent neither name or an unreadable value (the run then gets no `ENQUEUED_AT`;
/// a missing time is no reason to refuse work).
///
/// The Service Bus extension (azure-sdk-for-net
/// `sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/Triggers/ServiceBusTriggerBindingStrategy.cs`,
/// `AddBindingData`) puts two names in the binding data: `EnqueuedTimeUtc`
/// (`value.EnqueuedTime.DateTime`, "for backcompat": a `DateTime` holding the UTC clock time,
/// kind unspecified) and `EnqueuedTime` (the `DateTimeOffset`). The host turns a `DateTime` into
/// `DateTime.Parse(value.ToString())` and a `DateTimeOffset` likewise
/// (`ScriptInvocationContextExtensions.GetHttpScriptInvocationContextValue`), then writes the
/// invocation with `JsonMediaTypeFormatter` (Json.NET, ISO 8601 dates): so `EnqueuedTimeUtc`
/// arrives as `"2026-11-30T10:00:00"` (no zone: it is UTC by the extension's own name, and
/// `ToString()` dropped the fraction) and `EnqueuedTime` as `"2026-11-30T10:00:00+00:00"`.
/// Both are read; a time without a zone is UTC.
fn enqueued_at_ms(m: &Map<String, Value>) -> Option<i64> {
    ["EnqueuedTimeUtc", "EnqueuedTime"]
        .iter()
        .filter_map(|k| meta(m, k))
        .find_map(|v| host_time_ms(&decode(v).into_text()))
}

/// An ISO 8601 date-time as Json.NET writes one (`2026-11-30T10:00:00`, with an optional
/// fraction and an optional `Z` or `+hh:mm`/`-hh:mm`; no zone means UTC) as ms since the epoch.
pub fn host_time_ms(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    // The zone: `Z`, `+hh:mm`, `-hh:mm`, or none (UTC).
    let (clock, offset_min) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (hh, mm) = z[1..].split_once(':')?;
        (
            c,
            sign * (hh.parse::<i64>().ok()? * 60 + mm.parse::<i64>().ok()?),
        )
    } else {
        (time, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mi, ss) = (t.next()??, t.next()??, t.next()??);
    let valid = (1..=12).contains(&m)
        && (1..=31).contains(&day)
        && hh < 24
        && mi < 60
        && ss < 61
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm, as in `tests/src/host/wire.rs`).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + hh * 3600 + mi * 60 + ss - offset_min * 60;
    Some(secs * 1000 + ms)
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
    fn the_enqueued_time_is_read_as_the_host_writes_it() {
        // 2026-11-30T10:00:00Z.
        const AT: i64 = 1_796_032_800_000;
        // `EnqueuedTimeUtc`: a DateTime of kind unspecified after `DateTime.Parse(ToString())`,
        // written by Json.NET without a zone (module docs of `enqueued_at_ms`).
        assert_eq!(host_time_ms("2026-11-30T10:00:00"), Some(AT));
        assert_eq!(host_time_ms("2026-11-30T10:00:00Z"), Some(AT));
        // `EnqueuedTime`: the DateTimeOffset, with its (zero) offset.
        assert_eq!(host_time_ms("2026-11-30T10:00:00+00:00"), Some(AT));
        assert_eq!(host_time_ms("2026-11-30T11:30:00+01:30"), Some(AT));
        assert_eq!(host_time_ms("2026-11-30T08:00:00-02:00"), Some(AT));
        assert_eq!(host_time_ms("2026-11-30T10:00:00.25Z"), Some(AT + 250));
        assert_eq!(host_time_ms("1970-01-01T00:00:00"), Some(0));
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00",
            "2026-11-30T25:00:00",
            "2026-11-30",
        ] {
            assert_eq!(host_time_ms(bad), None, "{bad}");
        }
        let with = |meta: Value| {
            let i = inv(json!({"Data": {"message": serialize_object("x")},
                "Metadata": meta}));
            delivery(&i, "message").unwrap().enqueued_at_ms
        };
        let base = json!({"MessageId": serialize_object("m"), "DeliveryCount": "1"});
        let mut both = base.clone();
        both["EnqueuedTimeUtc"] = json!("2026-11-30T10:00:00");
        both["EnqueuedTime"] = json!("2026-11-30T10:00:00+00:00");
        assert_eq!(with(both), Some(AT));
        let mut only_offset = base.clone();
        only_offset["enqueuedTime"] = json!("2026-11-30T10:00:00+00:00");
        assert_eq!(
            with(only_offset),
            Some(AT),
            "names are matched ignoring case"
        );
        let mut unreadable = base.clone();
        unreadable["EnqueuedTimeUtc"] = json!("soon");
        assert_eq!(
            with(unreadable),
            None,
            "no time, but the message is still delivered"
        );
        assert_eq!(with(base), None);
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
