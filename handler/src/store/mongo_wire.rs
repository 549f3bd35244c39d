//! Talking to a MongoDB server (or Cosmos DB for MongoDB): the connection string, retries while
//! Cosmos throttles, and the store errors of the driver's errors (kept as their source), with
//! an incompatible server's error turned into words a user can act on. Used by
//! [`super::mongo`] and [`super::mongo_counts`].

use super::StoreError;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

/// Cosmos DB's "request rate is large" error code.
const THROTTLED: i32 = 16500;
/// Attempts of one operation while throttled.
const THROTTLE_ATTEMPTS: u32 = 8;

/// Adds `retryWrites=false` unless the URI already says (Cosmos DB refuses retryable writes).
pub fn normalize_uri(uri: &str) -> String {
    let lower = uri.to_ascii_lowercase();
    if lower.contains("retrywrites=") {
        return uri.to_string();
    }
    if uri.contains('?') {
        let sep = if uri.ends_with('?') || uri.ends_with('&') {
            ""
        } else {
            "&"
        };
        return format!("{uri}{sep}retryWrites=false");
    }
    let hosts_start = uri.find("://").map(|i| i + 3).unwrap_or(0);
    if uri[hosts_start..].contains('/') {
        format!("{uri}?retryWrites=false")
    } else {
        format!("{uri}/?retryWrites=false")
    }
}

/// Error codes carried by a driver error (command, write and bulk write errors).
pub(crate) fn codes(e: &mongodb::error::Error) -> Vec<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Command(c) => vec![c.code],
        ErrorKind::Write(WriteFailure::WriteError(w)) => vec![w.code],
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => vec![w.code],
        ErrorKind::InsertMany(m) => m
            .write_errors
            .iter()
            .flatten()
            .map(|w| w.code)
            .chain(m.write_concern_error.iter().map(|w| w.code))
            .collect(),
        _ => Vec::new(),
    }
}

/// True when Cosmos throttled the request (error 16500, or its "TooManyRequests" text).
pub fn is_throttled(e: &mongodb::error::Error) -> bool {
    codes(e).contains(&THROTTLED) || e.to_string().contains("TooManyRequests")
}

/// The wait Cosmos asks for in a throttling message (`RetryAfterMs=123`), if any.
fn retry_after_ms(message: &str) -> Option<u64> {
    let rest = &message[message.find("RetryAfterMs=")? + "RetryAfterMs=".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Runs `op` again while Cosmos throttles it, backing off exponentially from 50 ms.
pub async fn with_retry<T, F, Fut>(mut op: F) -> Result<T, mongodb::error::Error>
where
    F: FnMut() -> Fut,
    Fut: IntoFuture<Output = Result<T, mongodb::error::Error>>,
{
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match op().into_future().await {
            Err(e) if attempt < THROTTLE_ATTEMPTS && is_throttled(&e) => {
                let asked = retry_after_ms(&e.to_string()).map(Duration::from_millis);
                tokio::time::sleep(asked.unwrap_or(backoff).max(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A driver error, kept as the source.
pub(crate) fn backend(e: mongodb::error::Error) -> StoreError {
    StoreError::Mongo(Arc::new(e))
}

/// A document the store cannot read or write as a task (or a sample).
pub(crate) fn codec(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::codec(e)
}

/// A reply that lacks what the protocol promises.
pub(crate) fn malformed(what: &str) -> StoreError {
    StoreError::codec(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        what.to_string(),
    ))
}

/// The least wire version the `mongodb` crate accepts (its `DRIVER_MIN_WIRE_VERSION`, in
/// `src/sdam/description/server.rs` of mongodb 3.x) and the server version that speaks it.
pub const DRIVER_MIN_WIRE_VERSION: i32 = 9;
/// See [`DRIVER_MIN_WIRE_VERSION`].
pub const DRIVER_MIN_SERVER_VERSION: &str = "4.4";

/// The MongoDB server release that introduced wire version `wire` (MongoDB's wire-version
/// table: 4.0 = 7, 4.2 = 8, 4.4 = 9, 5.0 = 13, 6.0 = 17, 7.0 = 21, 8.0 = 25).
pub fn server_version_of_wire(wire: i32) -> &'static str {
    match wire {
        i32::MIN..=5 => "3.4 or older",
        6 => "3.6",
        7 => "4.0",
        8 => "4.2",
        9..=12 => "4.4",
        13..=16 => "5.0",
        17..=20 => "6.0",
        21..=24 => "7.0",
        _ => "8.0 or newer",
    }
}

/// The driver's "reports wire version N, but this version of the MongoDB Rust driver requires
/// at least 9" (server selection) as a message a user can act on, or `None` for other errors.
pub fn explain_incompatible(driver_message: &str) -> Option<String> {
    let rest = driver_message.split("reports wire version ").nth(1)?;
    let wire: i32 = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let server = server_version_of_wire(wire);
    Some(format!(
        "the MongoDB server speaks wire version {wire} (MongoDB {server}; for Cosmos DB for MongoDB: \
         serverVersion {server}), but the mongodb driver needs wire version {DRIVER_MIN_WIRE_VERSION} or newer \
         (MongoDB {DRIVER_MIN_SERVER_VERSION}+): set the Cosmos account's serverVersion to 6.0 (infra/main.bicep does; \
         existing accounts: https://learn.microsoft.com/azure/cosmos-db/mongodb/upgrade-version). Driver: {driver_message}"
    ))
}

/// [`backend`], but an incompatible server gets [`explain_incompatible`]'s words.
pub(crate) fn connect_error(e: mongodb::error::Error) -> StoreError {
    match explain_incompatible(&e.to_string()) {
        Some(message) => StoreError::Incompatible {
            message,
            source: Arc::new(e),
        },
        None => backend(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_writes_is_added_only_when_absent() {
        let cases = [
            ("mongodb://h:1", "mongodb://h:1/?retryWrites=false"),
            ("mongodb://h:1/", "mongodb://h:1/?retryWrites=false"),
            ("mongodb://h/db", "mongodb://h/db?retryWrites=false"),
            (
                "mongodb://u:p@a.mongo.cosmos.azure.com:10255/?ssl=true&replicaSet=globaldb",
                "mongodb://u:p@a.mongo.cosmos.azure.com:10255/?ssl=true&replicaSet=globaldb&retryWrites=false",
            ),
            ("mongodb://h/?retrywrites=true", "mongodb://h/?retrywrites=true"),
            ("mongodb://h/?RetryWrites=false&x=1", "mongodb://h/?RetryWrites=false&x=1"),
        ];
        for (given, want) in cases {
            assert_eq!(normalize_uri(given), want, "{given}");
        }
    }

    #[test]
    fn cosmos_retry_after_is_read_from_the_message() {
        let m = "Command failed: Error=16500, RetryAfterMs=120, Details='Request rate is large'";
        assert_eq!(retry_after_ms(m), Some(120));
        assert_eq!(retry_after_ms("nothing"), None);
    }

    #[test]
    fn an_old_server_is_named_with_its_version_and_the_drivers_minimum() {
        let driver =
            "Server selection timeout: Server at 127.0.0.1:1 reports wire version 8, but this \
                      version of the MongoDB Rust driver requires at least 9 (MongoDB 4.4).";
        let text = explain_incompatible(driver).unwrap();
        assert!(text.contains("wire version 8 (MongoDB 4.2"), "{text}");
        assert!(text.contains("serverVersion 4.2"), "{text}");
        assert!(
            text.contains("wire version 9 or newer (MongoDB 4.4+)"),
            "{text}"
        );
        assert_eq!(explain_incompatible("connection refused"), None);
        assert_eq!(server_version_of_wire(17), "6.0");
        assert_eq!(server_version_of_wire(21), "7.0");
    }
}
