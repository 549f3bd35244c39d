//! The shape of a task beyond its work: priority, schedule, concurrency key, image, size and
//! labels. Pure checks shared by the API (`POST /api/work`), the queue envelope path (messages
//! other producers drop on the queue obey the same rules) and the CLI.
//!
//! Every refusal is a [`ShapeError`] with a stable code naming the rule (`invalid_priority`,
//! `image_not_allowed`, ...) and a message naming the limit, as the other input errors do.

use crate::api::{Envelope, WorkItem};
use crate::limits;
use crate::task::Resources;
use std::collections::BTreeMap;

/// What the handler's configuration allows (images, sizes). Resolved once from the flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// The handler's worker image: always allowed.
    pub worker_image: String,
    /// Other images a task may ask for (exact references).
    pub allowed_images: Vec<String>,
    /// CPU cores a task may ask for, inclusive.
    pub cpu: (f64, f64),
    /// Memory in MiB a task may ask for, inclusive.
    pub memory_mb: (u32, u32),
}

/// The caps on waiting (`Pending`) tasks behind backpressure; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCaps {
    /// Most waiting tasks in all (`--max-queued`).
    pub max_queued: u64,
    /// Most waiting tasks of one concurrency key (`--max-queued-per-key`).
    pub max_queued_per_key: u64,
}

/// A rule broken: the code names the rule, the message the value and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShapeError {
    /// Stable, machine-readable (`invalid_priority`, `invalid_schedule`, `invalid_key`,
    /// `invalid_labels`, `image_not_allowed`, `invalid_cpu`, `invalid_memory`).
    pub code: &'static str,
    /// What is wrong and which limit.
    pub message: String,
}

fn refuse<T>(code: &'static str, message: String) -> Result<T, ShapeError> {
    Err(ShapeError { code, message })
}

/// The checked shape of a work item, ready to be set on its tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// See `Task::priority`.
    pub priority: i32,
    /// See `Task::not_before_ms`.
    pub not_before_ms: Option<i64>,
    /// See `Task::key`.
    pub key: Option<String>,
    /// The image when not the worker image.
    pub image: Option<String>,
    /// CPU and memory of each container.
    pub resources: Resources,
    /// See `Task::labels`.
    pub labels: BTreeMap<String, String>,
}

/// Checks an API work item against the rules; `defaults` is the handler's container size and
/// `now_ms` the acceptance time (`delay_secs` counts from it).
pub fn of_item(
    item: &WorkItem,
    bounds: &Bounds,
    defaults: Resources,
    now_ms: i64,
) -> Result<Shape, ShapeError> {
    let priority = item.priority.unwrap_or(0);
    check_priority(priority)?;
    let not_before_ms = match (&item.not_before, item.delay_secs) {
        (Some(_), Some(_)) => {
            return refuse(
                "invalid_schedule",
                "give not_before or delay_secs, not both".into(),
            )
        }
        (Some(at), None) => {
            let Some(at_ms) = parse_rfc3339_ms(at) else {
                return refuse(
                    "invalid_schedule",
                    format!(
                        "not_before {at:?} is not an RFC 3339 time (e.g. 2026-01-02T03:04:05Z)"
                    ),
                );
            };
            check_not_before(at_ms, now_ms)?;
            Some(at_ms)
        }
        (None, Some(secs)) => {
            if secs > limits::MAX_DELAY_SECS {
                return refuse(
                    "invalid_schedule",
                    format!(
                        "delay_secs is {secs}; the limit is {} (MAX_DELAY_SECS, 7 days)",
                        limits::MAX_DELAY_SECS
                    ),
                );
            }
            (secs > 0).then(|| now_ms + secs as i64 * 1000)
        }
        (None, None) => None,
    };
    if let Some(key) = &item.key {
        check_key(key)?;
    }
    check_labels(&item.labels)?;
    let image = item.image.clone().filter(|i| *i != bounds.worker_image);
    if let Some(i) = &image {
        check_image(i, bounds)?;
    }
    let resources = Resources {
        cpu: item.cpu.unwrap_or(defaults.cpu),
        memory_mb: item.memory_mb.unwrap_or(defaults.memory_mb),
    };
    if item.cpu.is_some() {
        check_cpu(resources.cpu, bounds)?;
    }
    if item.memory_mb.is_some() {
        check_memory(resources.memory_mb, bounds)?;
    }
    Ok(Shape {
        priority,
        not_before_ms,
        key: item.key.clone(),
        image,
        resources,
        labels: item.labels.clone(),
    })
}

/// Checks an envelope found on the queue (ours, or another producer's) against the same rules.
/// A `not_before_ms` in the past is fine here (the message waited); only one too far ahead of
/// `now_ms` is refused.
pub fn check_envelope(env: &Envelope, bounds: &Bounds, now_ms: i64) -> Result<(), ShapeError> {
    check_priority(env.priority)?;
    if let Some(at) = env.not_before_ms {
        if at - now_ms > limits::MAX_DELAY_SECS as i64 * 1000 {
            return refuse(
                "invalid_schedule",
                format!(
                    "not_before_ms is more than MAX_DELAY_SECS ({} s, 7 days) ahead",
                    limits::MAX_DELAY_SECS
                ),
            );
        }
    }
    if let Some(key) = &env.key {
        check_key(key)?;
    }
    check_labels(&env.labels)?;
    if let Some(i) = env.image.as_ref().filter(|i| **i != bounds.worker_image) {
        check_image(i, bounds)?;
    }
    if let Some(cpu) = env.cpu {
        check_cpu(cpu, bounds)?;
    }
    if let Some(mb) = env.memory_mb {
        check_memory(mb, bounds)?;
    }
    Ok(())
}

/// Priority within `MIN_PRIORITY..=MAX_PRIORITY`.
pub fn check_priority(p: i32) -> Result<(), ShapeError> {
    if !(limits::MIN_PRIORITY..=limits::MAX_PRIORITY).contains(&p) {
        return refuse(
            "invalid_priority",
            format!(
                "priority is {p}; it must be {}..={} (MIN_PRIORITY..=MAX_PRIORITY)",
                limits::MIN_PRIORITY,
                limits::MAX_PRIORITY
            ),
        );
    }
    Ok(())
}

/// A `not_before` time: at most `MAX_DELAY_SECS` ahead (a time in the past means "now").
pub fn check_not_before(at_ms: i64, now_ms: i64) -> Result<(), ShapeError> {
    if at_ms - now_ms > limits::MAX_DELAY_SECS as i64 * 1000 {
        return refuse(
            "invalid_schedule",
            format!(
                "not_before is more than {} s ahead (MAX_DELAY_SECS, 7 days)",
                limits::MAX_DELAY_SECS
            ),
        );
    }
    Ok(())
}

/// A concurrency key: 1..=`MAX_KEY_LEN` characters from a-z, 0-9, '.', '_' and '-'.
pub fn check_key(key: &str) -> Result<(), ShapeError> {
    let ok = !key.is_empty()
        && key.len() <= limits::MAX_KEY_LEN
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !ok {
        return refuse(
            "invalid_key",
            format!(
                "key must be 1..={} characters from a-z, 0-9, '.', '_' and '-' (MAX_KEY_LEN)",
                limits::MAX_KEY_LEN
            ),
        );
    }
    Ok(())
}

/// Labels: at most `MAX_LABELS`; names 1..=`MAX_LABEL_NAME` of a-z, 0-9, '_'; values
/// 1..=`MAX_LABEL_VALUE` bytes of printable text (no control characters).
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ShapeError> {
    if labels.len() > limits::MAX_LABELS {
        return refuse(
            "invalid_labels",
            format!(
                "{} labels; the limit is {} (MAX_LABELS)",
                labels.len(),
                limits::MAX_LABELS
            ),
        );
    }
    for (name, value) in labels {
        let name_ok = !name.is_empty()
            && name.len() <= limits::MAX_LABEL_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return refuse(
                "invalid_labels",
                format!(
                    "label name {name:?} must be 1..={} characters from a-z, 0-9 and '_' (MAX_LABEL_NAME)",
                    limits::MAX_LABEL_NAME
                ),
            );
        }
        if value.is_empty()
            || value.len() > limits::MAX_LABEL_VALUE
            || value.chars().any(char::is_control)
        {
            return refuse(
                "invalid_labels",
                format!(
                    "label {name}: the value must be 1..={} bytes of printable text (MAX_LABEL_VALUE)",
                    limits::MAX_LABEL_VALUE
                ),
            );
        }
    }
    Ok(())
}

/// An image other than the worker image: printable ASCII without spaces, at most
/// `MAX_IMAGE_LEN`, and on the allow-list.
pub fn check_image(image: &str, bounds: &Bounds) -> Result<(), ShapeError> {
    if image.is_empty()
        || image.len() > limits::MAX_IMAGE_LEN
        || !image.bytes().all(|b| b.is_ascii_graphic())
    {
        return refuse(
            "invalid_image",
            format!(
                "image must be 1..={} printable ASCII characters without spaces (MAX_IMAGE_LEN)",
                limits::MAX_IMAGE_LEN
            ),
        );
    }
    if image != bounds.worker_image && !bounds.allowed_images.iter().any(|a| a == image) {
        return refuse(
            "image_not_allowed",
            format!(
                "image {image:?} is not on the handler's allow-list (--allowed-image); allowed: {}",
                std::iter::once(&bounds.worker_image)
                    .chain(&bounds.allowed_images)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    Ok(())
}

/// CPU cores within the configured bounds (`--min-cpu`, `--max-cpu`).
pub fn check_cpu(cpu: f64, bounds: &Bounds) -> Result<(), ShapeError> {
    let (lo, hi) = bounds.cpu;
    if !(cpu.is_finite() && cpu >= lo && cpu <= hi) {
        return refuse(
            "invalid_cpu",
            format!("cpu is {cpu}; it must be {lo}..={hi} (--min-cpu, --max-cpu)"),
        );
    }
    Ok(())
}

/// Memory within the configured bounds (`--min-memory-mb`, `--max-memory-mb`).
pub fn check_memory(mb: u32, bounds: &Bounds) -> Result<(), ShapeError> {
    let (lo, hi) = bounds.memory_mb;
    if !(lo..=hi).contains(&mb) {
        return refuse(
            "invalid_memory",
            format!("memory_mb is {mb}; it must be {lo}..={hi} (--min-memory-mb, --max-memory-mb)"),
        );
    }
    Ok(())
}

/// The environment variable a label is passed as: `LABEL_` and its name upper-cased.
pub fn label_var(name: &str) -> String {
    format!("LABEL_{}", name.to_ascii_uppercase())
}

/// Days since the epoch of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 time (`2026-01-02T03:04:05Z`, fractions and `+hh:mm` offsets accepted)
/// into ms since the epoch. Hand-written: the model crate has no date dependency.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        ms = format!("{:0<3}", &frac[..digits.min(3)])
            .parse::<i64>()
            .ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (
                rest[1..3].parse::<i64>().ok()?,
                rest[4..6].parse::<i64>().ok()?,
            );
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Formats ms since the epoch as RFC 3339 UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            worker_image: "eda-worker:latest".into(),
            allowed_images: vec!["mine:1".into()],
            cpu: (0.25, 2.0),
            memory_mb: (64, 4096),
        }
    }

    const DEFAULTS: Resources = Resources {
        cpu: 1.0,
        memory_mb: 1536,
    };

    fn item(json: serde_json::Value) -> WorkItem {
        let mut v = json;
        v["work"] = "x".into();
        serde_json::from_value(v).unwrap()
    }

    fn code(json: serde_json::Value) -> &'static str {
        of_item(&item(json), &bounds(), DEFAULTS, 1_000_000)
            .unwrap_err()
            .code
    }

    #[test]
    fn a_plain_item_gets_the_defaults() {
        let s = of_item(&item(serde_json::json!({})), &bounds(), DEFAULTS, 0).unwrap();
        assert_eq!(s.priority, 0);
        assert_eq!((s.not_before_ms, s.key, s.image), (None, None, None));
        assert_eq!(s.resources, DEFAULTS);
        assert!(s.labels.is_empty());
    }

    #[test]
    fn a_full_item_is_shaped() {
        let s = of_item(
            &item(
                serde_json::json!({"priority": 5, "delay_secs": 30, "key": "tenant-a.x_1",
                "image": "mine:1", "cpu": 0.5, "memory_mb": 256, "labels": {"team": "blue"}}),
            ),
            &bounds(),
            DEFAULTS,
            1_000,
        )
        .unwrap();
        assert_eq!(s.priority, 5);
        assert_eq!(s.not_before_ms, Some(31_000));
        assert_eq!(s.key.as_deref(), Some("tenant-a.x_1"));
        assert_eq!(s.image.as_deref(), Some("mine:1"));
        assert_eq!(
            s.resources,
            Resources {
                cpu: 0.5,
                memory_mb: 256
            }
        );
        assert_eq!(s.labels["team"], "blue");
        // The worker image is always allowed, and means "no image of its own".
        let w = of_item(
            &item(serde_json::json!({"image": "eda-worker:latest"})),
            &bounds(),
            DEFAULTS,
            0,
        )
        .unwrap();
        assert_eq!(w.image, None);
    }

    #[test]
    fn each_rule_has_its_code() {
        use serde_json::json;
        assert_eq!(code(json!({"priority": 1001})), "invalid_priority");
        assert_eq!(code(json!({"priority": -1001})), "invalid_priority");
        assert_eq!(
            code(json!({"delay_secs": 1, "not_before": "2026-01-01T00:00:00Z"})),
            "invalid_schedule"
        );
        assert_eq!(code(json!({"delay_secs": 604_801})), "invalid_schedule");
        assert_eq!(code(json!({"not_before": "tomorrow"})), "invalid_schedule");
        assert_eq!(
            code(json!({"not_before": "2999-01-01T00:00:00Z"})),
            "invalid_schedule"
        );
        for key in ["", "A", "a b", "ü", &"k".repeat(65)] {
            assert_eq!(code(json!({ "key": key })), "invalid_key", "{key:?}");
        }
        let nine: serde_json::Map<_, _> = (0..9).map(|i| (format!("l{i}"), json!("v"))).collect();
        assert_eq!(code(json!({ "labels": nine })), "invalid_labels");
        let long = "n".repeat(33);
        for (n, v) in [
            ("Team", "v".to_string()),
            ("a-b", "v".into()),
            (long.as_str(), "v".into()),
            ("ok", "".into()),
            ("ok", "a\nb".into()),
            ("ok", "v".repeat(129)),
        ] {
            assert_eq!(
                code(json!({ "labels": { n: v } })),
                "invalid_labels",
                "{n}={v}"
            );
        }
        assert_eq!(code(json!({"image": "other:1"})), "image_not_allowed");
        assert_eq!(code(json!({"image": "a b"})), "invalid_image");
        assert_eq!(code(json!({"cpu": 0.1})), "invalid_cpu");
        assert_eq!(code(json!({"cpu": 4.0})), "invalid_cpu");
        assert_eq!(code(json!({"memory_mb": 32})), "invalid_memory");
        assert_eq!(code(json!({"memory_mb": 8192})), "invalid_memory");
    }

    #[test]
    fn the_message_names_the_limit() {
        let e = of_item(
            &item(serde_json::json!({"priority": 5000})),
            &bounds(),
            DEFAULTS,
            0,
        )
        .unwrap_err();
        assert!(e.message.contains("MAX_PRIORITY"), "{e}");
        let e = check_image("other:1", &bounds()).unwrap_err();
        assert!(e.message.contains("--allowed-image"), "{e}");
    }

    #[test]
    fn envelopes_obey_the_same_rules() {
        let mut env: Envelope =
            serde_json::from_str(r#"{"id":"a","work":"x","priority":3,"key":"k"}"#).unwrap();
        assert!(check_envelope(&env, &bounds(), 0).is_ok());
        env.image = Some("other:1".into());
        assert_eq!(
            check_envelope(&env, &bounds(), 0).unwrap_err().code,
            "image_not_allowed"
        );
        env.image = None;
        env.memory_mb = Some(1);
        assert_eq!(
            check_envelope(&env, &bounds(), 0).unwrap_err().code,
            "invalid_memory"
        );
        env.memory_mb = None;
        env.not_before_ms = Some(8 * 24 * 3_600_000);
        assert_eq!(
            check_envelope(&env, &bounds(), 0).unwrap_err().code,
            "invalid_schedule"
        );
        env.not_before_ms = Some(-5);
        assert!(
            check_envelope(&env, &bounds(), 0).is_ok(),
            "a past time is due now"
        );
    }

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-12-03T09:45:16.5Z"),
            Some(1_796_291_116_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-03T10:45:16+01:00"),
            parse_rfc3339_ms("2026-12-03T09:45:16Z")
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01 00:00",
            "2026-01-01T00:00:00",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
        for ms in [0, 1_796_291_116_500, 951_782_400_001] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
        assert_eq!(
            format_rfc3339_ms(1_796_291_116_500),
            "2026-12-03T09:45:16.500Z"
        );
    }

    #[test]
    fn labels_become_upper_case_variables() {
        assert_eq!(label_var("team_1"), "LABEL_TEAM_1");
    }
}
