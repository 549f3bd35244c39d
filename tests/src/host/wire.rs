//! The custom-handler wire format, ported from azure-functions-host (Azure/azure-functions-host,
//! the commit the search mirror holds, 2024-10). Each rule names the file it comes from; the
//! host's own unit tests are the fixtures in `functions_host.rs`.
//!
//! Request (`ScriptInvocationContextExtensions.ToHttpScriptInvocationContext`,
//! `src/WebJobs.Script/Workers/MessageExtensions/ScriptInvocationContextExtensions.cs`):
//! `{"Data": {input name: value}, "Metadata": {binding data key: value}}`, every value through
//! `GetHttpScriptInvocationContextValue` ([`encode`]), except an HTTP request, which becomes
//! `GetRequestAsJObject` ([`HttpRequestData::to_data`]); binding data whose value is the
//! HTTP request, or whose key ends with "trigger", is left out of `Metadata`.
//!
//! Response (`DefaultHttpWorkerService.ProcessDefaultInvocationRequest`,
//! `src/WebJobs.Script/Workers/Http/DefaultHttpWorkerService.cs`): a non-2xx status fails the
//! invocation (`EnsureSuccessStatusCode`, before `Logs` are read); otherwise the body is read as
//! `HttpScriptInvocationResult` (`Outputs`, `Logs`, `ReturnValue`; Newtonsoft matches names
//! case-insensitively), and each output binding of function.json takes its value through
//! `HttpScriptInvocationResultExtensions.GetOutputValue`
//! (`src/WebJobs.Script/Workers/Http/HttpScriptInvocationResultExtensions.cs`).

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A value the host holds before encoding it (the .NET types the rules tell apart).
#[derive(Debug, Clone, PartialEq)]
pub enum HostValue {
    /// `string` (and any other non-POCO value `JObject.FromObject` refuses).
    Text(String),
    /// `int`/`long`.
    Number(i64),
    /// `DateTime`, already in the ISO 8601 form the JSON formatter writes.
    Date(String),
    /// A POCO or dictionary (`JObject.FromObject` succeeds).
    Object(Value),
    /// `byte[]`.
    Bytes(Vec<u8>),
}

/// `GetHttpScriptInvocationContextValue(value, dataType)`: `byte[]` is base64 unless the
/// dataType is binary (then the formatter writes the array, which Json.NET also writes as
/// base64); `DateTime` is re-parsed and written as a date; a POCO is an object; anything else
/// is `JsonConvert.SerializeObject(value)`, a JSON text inside the JSON string.
pub fn encode(v: &HostValue) -> Value {
    match v {
        HostValue::Bytes(b) => Value::String(base64(b)),
        HostValue::Date(d) => Value::String(d.clone()),
        HostValue::Object(o) => o.clone(),
        HostValue::Text(s) => Value::String(serde_json::to_string(s).expect("a string")),
        HostValue::Number(n) => Value::String(n.to_string()),
    }
}

/// One invocation request being built.
#[derive(Debug, Default)]
pub struct Invocation {
    data: Map<String, Value>,
    metadata: Map<String, Value>,
}

impl Invocation {
    /// An input (trigger or input binding) named `name`.
    pub fn input(mut self, name: &str, v: &HostValue) -> Self {
        self.data.insert(name.into(), encode(v));
        self
    }

    /// The HTTP trigger's request (`GetRequestAsJObject`).
    pub fn http_input(mut self, name: &str, req: &HttpRequestData) -> Self {
        self.data.insert(name.into(), req.to_data());
        self
    }

    /// A binding data entry: skipped when its key ends with "trigger" (the value is in Data).
    pub fn binding_data(mut self, key: &str, v: &HostValue) -> Self {
        if !key.to_ascii_lowercase().ends_with("trigger") {
            self.metadata.insert(key.into(), encode(v));
        }
        self
    }

    /// The `sys` binding data every invocation has (`SystemBindingData`: `MethodName`,
    /// `UtcNow`, `RandGuid`), a POCO.
    pub fn sys(self, function: &str) -> Self {
        let sys = json!({
            "MethodName": function,
            "UtcNow": iso_now(),
            "RandGuid": format!("{:032x}", rand_u128()),
        });
        self.binding_data("sys", &HostValue::Object(sys))
    }

    /// The JSON body the host POSTs.
    pub fn body(self) -> Value {
        json!({"Data": self.data, "Metadata": self.metadata})
    }
}

/// The parts of an `HttpRequest` that `GetRequestAsJObject` reads.
#[derive(Debug, Clone, Default)]
pub struct HttpRequestData {
    /// `https` or `http`, host, path and query string: `Url`.
    pub url: String,
    /// `Method`, as sent.
    pub method: String,
    /// `Query`: `GetQueryCollectionAsDictionary`, one string per key (repeated keys joined
    /// with `,` by `StringValues.ToString`).
    pub query: Vec<(String, String)>,
    /// `Headers`: `JObject.FromObject(request.Headers)`; each value is a `StringValues`,
    /// written as an array of strings.
    pub headers: Vec<(String, Vec<String>)>,
    /// `Params`: the route data (`{*path}` and friends).
    pub params: Vec<(String, String)>,
    /// The body; `Body` is set only when `ContentLength > 0`.
    pub body: Vec<u8>,
    /// The request's content type, which decides text vs bytes.
    pub content_type: Option<String>,
}

impl HttpRequestData {
    /// `GetRequestAsJObject` (`src/WebJobs.Script/Extensions/HttpRequestExtensions.cs`).
    pub fn to_data(&self) -> Value {
        let mut o = Map::new();
        o.insert("Url".into(), json!(self.url));
        o.insert("Method".into(), json!(self.method));
        let query: Map<String, Value> = self
            .query
            .iter()
            .fold(BTreeMap::<String, Vec<String>>::new(), |mut m, (k, v)| {
                m.entry(k.clone()).or_default().push(v.clone());
                m
            })
            .into_iter()
            .map(|(k, v)| (k, json!(v.join(","))))
            .collect();
        o.insert("Query".into(), Value::Object(query));
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        o.insert("Headers".into(), Value::Object(headers));
        let params: Map<String, Value> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        o.insert("Params".into(), Value::Object(params));
        // Anonymous requests carry one unauthenticated identity; its shape is not read here.
        o.insert("Identities".into(), json!([]));
        if !self.body.is_empty() {
            let binary = self.content_type.as_deref().is_some_and(|c| {
                let c = c.to_ascii_lowercase();
                c.starts_with("application/octet-stream") || c.starts_with("multipart/")
            });
            let body = if binary {
                json!(base64(&self.body))
            } else {
                json!(String::from_utf8_lossy(&self.body))
            };
            o.insert("Body".into(), body);
        }
        Value::Object(o)
    }
}

/// The host's reading of an HTTP output binding (`GetHttpOutputBindingResponse`, then
/// `HttpBinding.CreateResult` and `RawScriptResult`, `src/WebJobs.Script/Binding/Http/`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOut {
    /// `statusCode` (or `status`), parsed as an integer; 200 when absent.
    pub status: u16,
    /// Headers; `content-type` sets the response's content type.
    pub headers: Vec<(String, String)>,
    /// The body: a string as it is, anything else as JSON.
    pub body: Vec<u8>,
}

/// One output binding's value after the host read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An `http` output binding.
    Http(HttpOut),
    /// A collector output binding (`serviceBus`, `queue`, ...): one body per message.
    Messages(Vec<Vec<u8>>),
}

/// A custom handler's answer as the host reads it.
#[derive(Debug, Clone, Default)]
pub struct InvocationResult {
    /// By output binding name.
    pub outputs: BTreeMap<String, Output>,
    /// `Logs`, written by the host to the invocation's logger.
    pub logs: Vec<String>,
    /// `ReturnValue` (`ToScriptInvocationResult` keeps it; it is bound to `$return` when
    /// function.json has one, else an object's properties act as outputs; ours send `null`).
    pub return_value: Option<Value>,
}

/// An output binding of function.json: its name, type and dataType.
#[derive(Debug, Clone)]
pub struct OutBinding {
    /// The binding's `name`.
    pub name: String,
    /// Its `type`, e.g. `serviceBus`.
    pub kind: String,
    /// `dataType: binary`.
    pub binary: bool,
}

/// Reads a handler's answer (module docs). `Err` is a failed invocation, with the host's reason.
pub fn read_result(
    status: u16,
    body: &[u8],
    outs: &[OutBinding],
) -> Result<InvocationResult, String> {
    if !(200..300).contains(&status) {
        return Err(format!(
            "Response status code does not indicate success: {status}"
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "Invalid HttpResponseMessage: {e}: {}",
            String::from_utf8_lossy(body)
        )
    })?;
    let field = |name: &str| {
        v.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })
    };
    let outputs = field("Outputs").unwrap_or(Value::Null);
    let mut result = InvocationResult {
        logs: match field("Logs") {
            Some(Value::Array(a)) => a.iter().map(to_string).collect(),
            _ => Vec::new(),
        },
        ..InvocationResult::default()
    };
    result.return_value = field("ReturnValue").filter(|v| !v.is_null());
    // `WorkerFunctionInvoker.HandleOutputDictionary` (src/WebJobs.Script/Description/Workers/
    // WorkerFunctionInvoker.cs): without a `$return` binding, an object returned as
    // `ReturnValue` supplies outputs by property name, over `Outputs`.
    let has_return = outs.iter().any(|b| b.name == "$return");
    let returned = match (&result.return_value, has_return) {
        (Some(Value::Object(o)), false) => o.clone(),
        _ => Map::new(),
    };
    for b in outs.iter().filter(|b| b.name != "$return") {
        let value = returned
            .get(&b.name)
            .or_else(|| outputs.get(&b.name))
            .filter(|v| !v.is_null());
        if b.kind == "http" {
            // GetHttpOutputBindingResponse: an absent value gives an empty response object.
            let out = match value {
                Some(v) => http_output(v)?,
                None => HttpOut {
                    status: 200,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
            };
            result.outputs.insert(b.name.clone(), Output::Http(out));
        } else if let Some(v) = value {
            let messages = read_as_enumerable(&binding_value(b.binary, v));
            result
                .outputs
                .insert(b.name.clone(), Output::Messages(messages));
        }
    }
    Ok(result)
}

/// `Value.ToString()` of a Json.NET token as the host uses it: strings bare, the rest as JSON.
fn to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `JsonConvert.DeserializeObject<HttpOutputBindingResponse>(value.ToString())`, then
/// `HttpBinding.ParseResponseObject`: status and headers apply only when the object has a
/// body; a status is an int or a string holding one.
pub fn http_output(v: &Value) -> Result<HttpOut, String> {
    let text = to_string(v);
    let o: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        format!("Failed while trying to Deserialize to httpOutputBindingResponse: {e}")
    })?;
    let get = |k: &str| {
        o.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let Some(body) = get("body").filter(|b| !b.is_null()) else {
        // Not a response object: the whole value is the content, status 200.
        return Ok(HttpOut {
            status: 200,
            headers: Vec::new(),
            body: text.into_bytes(),
        });
    };
    let status = match get("statusCode").or_else(|| get("status")) {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(200);
    let headers = match get("headers") {
        Some(Value::Object(h)) => h.iter().map(|(k, v)| (k.clone(), to_string(v))).collect(),
        _ => Vec::new(),
    };
    Ok(HttpOut {
        status,
        headers,
        body: to_string(&body).into_bytes(),
    })
}

/// A value the host holds after `GetBindingValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// Any JSON value but a base64 string.
    Json(Value),
    /// Bytes (from a base64 string, or a binary binding).
    Bytes(Vec<u8>),
}

/// `GetBindingValue`: unless the binding's dataType is binary, a string that
/// `Convert.FromBase64String` accepts becomes those bytes (so a single string output that
/// happens to be valid base64, e.g. `"abcd"`, is sent as 3 bytes: our handler sends arrays).
pub fn binding_value(binary: bool, v: &Value) -> Bound {
    if !binary {
        if let Some(bytes) = v.as_str().and_then(from_base64) {
            return Bound::Bytes(bytes);
        }
    }
    Bound::Json(v.clone())
}

/// `FunctionBinding.ReadAsEnumerable` + `BindAsyncCollectorAsync` (`src/WebJobs.Script/Binding/
/// FunctionBinding.cs`): an array is one message per item; a string that is JSON is parsed (an
/// array again gives one message per item); anything else is one message. Each item is written
/// with `ToString()` (strings bare, objects as JSON).
pub fn read_as_enumerable(v: &Bound) -> Vec<Vec<u8>> {
    let items: Vec<Value> = match v {
        Bound::Bytes(b) => return vec![b.clone()],
        Bound::Json(Value::Array(a)) => a.clone(),
        Bound::Json(Value::String(s)) if is_json(s) => {
            match serde_json::from_str::<Value>(s).expect("checked") {
                Value::Array(a) => a,
                other => vec![other],
            }
        }
        Bound::Json(other) => vec![other.clone()],
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => s.clone().into_bytes(),
            Value::Object(_) | Value::Array(_) => serde_json::to_vec_pretty(i).expect("json"),
            other => other.to_string().into_bytes(),
        })
        .collect()
}

/// `Utility.IsJson`: trimmed text that starts with `{` and ends with `}`, or `[` and `]`.
fn is_json(s: &str) -> bool {
    let t = s.trim();
    (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'))
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (`Convert.ToBase64String`).
pub fn base64(b: &[u8]) -> String {
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Convert.FromBase64String`: whitespace ignored, length a multiple of 4, padding only at the
/// end; `None` where it would throw.
pub fn from_base64(s: &str) -> Option<Vec<u8>> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let pad = s.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let mut out = Vec::new();
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for &b in chunk {
            let v = match b {
                b'=' => 0,
                _ => B64.iter().position(|&c| c == b)? as u32,
            };
            n = (n << 6) | v;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    out.truncate(out.len() - pad);
    if s[..s.len() - pad].contains(&b'=') {
        return None;
    }
    Some(out)
}

/// Now as the JSON formatter writes a `DateTime` (UTC, ISO 8601).
pub fn iso_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A `DateTime` binding value as the host sends it (azure-functions-host,
/// `src/WebJobs.Script/Workers/MessageExtensions/ScriptInvocationContextExtensions.cs`,
/// `GetHttpScriptInvocationContextValue`; the metadata name `EnqueuedTimeUtc` from the Service Bus
/// extension's binding data, azure-sdk-for-net `Microsoft.Azure.WebJobs.Extensions.ServiceBus`): it makes
/// it `DateTime.Parse(value.ToString())` (the zone and the fraction are lost: the Service Bus
/// extension's `EnqueuedTimeUtc` is a UTC clock time of kind unspecified) and Json.NET writes
/// that without an offset. `iso` is a UTC time as [`iso_now`] writes it.
pub fn host_datetime(iso: &str) -> HostValue {
    let plain = iso.trim_end_matches('Z');
    HostValue::Date(plain.split('.').next().unwrap_or(plain).to_string())
}

/// A `DateTimeOffset` binding value as the host sends it (the extension's `EnqueuedTime`):
/// re-parsed the same way, written by Json.NET with its offset (`+00:00` for Service Bus).
pub fn host_datetime_offset(iso: &str) -> HostValue {
    let HostValue::Date(plain) = host_datetime(iso) else {
        unreachable!("host_datetime gives a date")
    };
    HostValue::Date(format!("{plain}+00:00"))
}

/// A random 128-bit number (message ids, lock tokens, `RandGuid`).
pub fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("randomness");
    u128::from_le_bytes(b)
}
