//! The operator's search (`GET /api/tasks?q=...&from=...&to=...`, the dashboard's search box and
//! the bulk actions' `all_matching`): the query language, parsed here by one pure function
//! ([`Search::parse`]) so the API, the stores and the dashboard agree on what a query means.
//!
//! # Syntax
//!
//! `q` is words separated by spaces; a word with a qualifier narrows by a field, any other word
//! (or a `"quoted phrase"`) must occur in the task's work, case-insensitively, as a substring.
//! Every part must hold (AND).
//!
//! - `id:<prefix>`: the task id starts with the prefix.
//! - `key:<key>`: the task's concurrency key is exactly this.
//! - `label:<name>=<value>`: the task carries this label with this value; `label:<name>`: with
//!   any value.
//! - `state:<names>`: a comma-separated list of state names, or `active`, `finished`, `failed`.
//!
//! The time range is on `created_at_ms` and comes as separate parameters (`from`, inclusive;
//! `to`, exclusive), each ms since the epoch or an RFC 3339 time (`2026-12-03T10:00:00Z`).

use crate::limits::{MAX_QUERY_BYTES, MAX_SEARCH_TERMS};
use crate::state::TaskState;
use serde::{Deserialize, Serialize};

/// What a query asks for: every part must hold. The default matches every task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search {
    /// Substrings of the work, lower-cased (each must occur; compared case-insensitively).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<String>,
    /// The id starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// The concurrency key is exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Labels the task must carry: name, and the value if one was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, Option<String>)>,
    /// Only these states (from `state:`); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<TaskState>,
    /// Created at or after this (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// Created before this (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

/// Why a query was refused (the API answers 400 `invalid_query` with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// `q` is longer than [`MAX_QUERY_BYTES`].
    #[error("q is {0} bytes; the limit is {MAX_QUERY_BYTES} (MAX_QUERY_BYTES)")]
    TooLong(usize),
    /// More parts than [`MAX_SEARCH_TERMS`].
    #[error("q has {0} parts; the limit is {MAX_SEARCH_TERMS} (MAX_SEARCH_TERMS)")]
    TooManyTerms(usize),
    /// A qualifier this language does not have.
    #[error("unknown qualifier {0:?}: use id:, key:, label:, state: (or quote the text)")]
    UnknownQualifier(String),
    /// A qualifier without a value (`id:`).
    #[error("{0}: needs a value")]
    Empty(&'static str),
    /// The same single-valued qualifier twice.
    #[error("{0}: given twice")]
    Twice(&'static str),
    /// An id prefix with characters no id has.
    #[error("id:{0:?}: ids have only a-z, 0-9 and -")]
    BadId(String),
    /// A label name outside `[a-z0-9_]`.
    #[error("label:{0:?}: label names have only a-z, 0-9 and _")]
    BadLabel(String),
    /// A state name that does not exist.
    #[error("state:{0:?}: not a state (use a state name, active, finished or failed)")]
    BadState(String),
    /// A quote was opened and not closed.
    #[error("q has an unclosed quote")]
    Unclosed,
    /// A time that is neither ms since the epoch nor RFC 3339.
    #[error(
        "{which}={value:?}: not ms since the epoch nor an RFC 3339 time (2026-12-03T10:00:00Z)"
    )]
    BadTime {
        /// `from` or `to`.
        which: &'static str,
        /// What was given.
        value: String,
    },
    /// `from` is not before `to`.
    #[error("from ({from}) must be before to ({to})")]
    EmptyRange {
        /// ms since the epoch.
        from: i64,
        /// ms since the epoch.
        to: i64,
    },
}

impl Search {
    /// Parses `q` and the time range (`from`, `to`: ms since the epoch or RFC 3339). Pure: no
    /// store, no clock.
    pub fn parse(q: &str, from: Option<&str>, to: Option<&str>) -> Result<Search, SearchError> {
        if q.len() > MAX_QUERY_BYTES {
            return Err(SearchError::TooLong(q.len()));
        }
        let words = split(q)?;
        if words.len() > MAX_SEARCH_TERMS {
            return Err(SearchError::TooManyTerms(words.len()));
        }
        let mut s = Search::default();
        for (word, quoted) in words {
            match word.split_once(':').filter(|_| !quoted) {
                Some((qual, value)) => s.qualifier(qual, value)?,
                None => s.text.push(word.to_lowercase()),
            }
        }
        s.from_ms = from.map(|v| parse_time("from", v)).transpose()?;
        s.to_ms = to.map(|v| parse_time("to", v)).transpose()?;
        if let (Some(from), Some(to)) = (s.from_ms, s.to_ms) {
            if from >= to {
                return Err(SearchError::EmptyRange { from, to });
            }
        }
        Ok(s)
    }

    /// True when the query narrows nothing (every task matches).
    pub fn is_empty(&self) -> bool {
        *self == Search::default()
    }

    /// Whether `task` matches: the definition every store must agree with (the memory store
    /// uses it as is).
    pub fn matches(&self, task: &crate::Task) -> bool {
        let work = task.work.to_lowercase();
        self.text.iter().all(|t| work.contains(t.as_str()))
            && self
                .id_prefix
                .as_ref()
                .is_none_or(|p| task.id.as_str().starts_with(p.as_str()))
            && self.key.as_ref().is_none_or(|k| task_key(task) == Some(k))
            && self.labels.iter().all(|(n, v)| match task_label(task, n) {
                Some(have) => v.as_ref().is_none_or(|v| v == have),
                None => false,
            })
            && (self.states.is_empty() || self.states.contains(&task.state))
            && self.from_ms.is_none_or(|f| task.created_at_ms >= f)
            && self.to_ms.is_none_or(|t| task.created_at_ms < t)
    }

    fn qualifier(&mut self, qual: &str, value: &str) -> Result<(), SearchError> {
        match qual {
            "id" => {
                let ok = value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    return Err(SearchError::BadId(value.into()));
                }
                set_once(&mut self.id_prefix, "id", value)
            }
            "key" => set_once(&mut self.key, "key", value),
            "label" => {
                let (name, v) = match value.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (value, None),
                };
                let ok = name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if name.is_empty() {
                    return Err(SearchError::Empty("label"));
                }
                if !ok {
                    return Err(SearchError::BadLabel(name.into()));
                }
                self.labels.push((name.to_string(), v));
                Ok(())
            }
            "state" => {
                if value.is_empty() {
                    return Err(SearchError::Empty("state"));
                }
                self.states.extend(parse_state_list(value)?);
                Ok(())
            }
            other => Err(SearchError::UnknownQualifier(other.into())),
        }
    }
}

/// The task's concurrency key.
fn task_key(task: &crate::Task) -> Option<&String> {
    task.key.as_ref()
}

/// The value of the task's label `name`.
fn task_label<'a>(task: &'a crate::Task, name: &str) -> Option<&'a String> {
    task.labels.get(name)
}

fn set_once(
    slot: &mut Option<String>,
    which: &'static str,
    value: &str,
) -> Result<(), SearchError> {
    if value.is_empty() {
        return Err(SearchError::Empty(which));
    }
    if slot.is_some() {
        return Err(SearchError::Twice(which));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// `Done,Failed`, or a group (`active`, `finished`, `failed`), as states.
pub fn parse_state_list(raw: &str) -> Result<Vec<TaskState>, SearchError> {
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "active" => out.extend(TaskState::matching(|s| !s.is_terminal())),
            "finished" => out.extend(TaskState::matching(TaskState::is_terminal)),
            "failed" => out.extend(TaskState::matching(TaskState::is_failure)),
            name => out.push(
                name.parse()
                    .map_err(|_| SearchError::BadState(name.into()))?,
            ),
        }
    }
    Ok(out)
}

/// The words of `q` and whether each was quoted; a quoted phrase keeps its spaces.
fn split(q: &str) -> Result<Vec<(String, bool)>, SearchError> {
    let mut out = Vec::new();
    let mut rest = q.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let end = after.find('"').ok_or(SearchError::Unclosed)?;
            if end > 0 {
                out.push((after[..end].to_string(), true));
            }
            rest = &after[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push((rest[..end].to_string(), false));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

/// ms since the epoch, or an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
pub fn parse_time(which: &'static str, v: &str) -> Result<i64, SearchError> {
    let bad = || SearchError::BadTime {
        which,
        value: v.into(),
    };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    crate::shape::parse_rfc3339_ms(v).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Result<Search, SearchError> {
        Search::parse(q, None, None)
    }

    #[test]
    fn words_are_lower_cased_substrings_and_quotes_keep_spaces() {
        let s = p(r#"  Render "Big Frame"  id:ab-1 "#).unwrap();
        assert_eq!(s.text, ["render", "big frame"]);
        assert_eq!(s.id_prefix.as_deref(), Some("ab-1"));
        assert!(p("").unwrap().is_empty());
        assert!(p("   ").unwrap().is_empty());
        // A quoted word with a colon is text, not a qualifier.
        assert_eq!(p(r#""a:b""#).unwrap().text, ["a:b"]);
    }

    #[test]
    fn qualifiers() {
        let s = p("key:tenant-7 label:env=prod label:gpu state:failed").unwrap();
        assert_eq!(s.key.as_deref(), Some("tenant-7"));
        assert_eq!(
            s.labels,
            [
                ("env".to_string(), Some("prod".to_string())),
                ("gpu".into(), None)
            ]
        );
        assert_eq!(
            s.states,
            TaskState::matching(TaskState::is_failure).collect::<Vec<_>>()
        );
        assert_eq!(
            p("state:Done,Pending").unwrap().states,
            [TaskState::Done, TaskState::Pending]
        );
        // A label value may hold '=' and ':'.
        assert_eq!(
            p("label:url=a=b:c").unwrap().labels[0].1.as_deref(),
            Some("a=b:c")
        );
    }

    #[test]
    fn invalid_queries_name_the_problem() {
        assert_eq!(
            p("foo:bar"),
            Err(SearchError::UnknownQualifier("foo".into()))
        );
        assert_eq!(p("id:"), Err(SearchError::Empty("id")));
        assert_eq!(p("key:a key:b"), Err(SearchError::Twice("key")));
        assert_eq!(p("id:AB"), Err(SearchError::BadId("AB".into())));
        assert_eq!(p("label:Env=x"), Err(SearchError::BadLabel("Env".into())));
        assert_eq!(p("label:=x"), Err(SearchError::Empty("label")));
        assert_eq!(
            p("state:Running"),
            Err(SearchError::BadState("Running".into()))
        );
        assert_eq!(p("\"open"), Err(SearchError::Unclosed));
        let long = "x".repeat(MAX_QUERY_BYTES + 1);
        assert!(p(&long)
            .unwrap_err()
            .to_string()
            .contains("MAX_QUERY_BYTES"));
        let many = vec!["w"; MAX_SEARCH_TERMS + 1].join(" ");
        assert!(p(&many)
            .unwrap_err()
            .to_string()
            .contains("MAX_SEARCH_TERMS"));
    }

    #[test]
    fn times_are_ms_or_rfc3339() {
        let t = |v| parse_time("from", v);
        assert_eq!(t("1764756000000"), Ok(1_764_756_000_000));
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("2026-12-03T10:00:00Z"), Ok(1_796_292_000_000));
        assert_eq!(t("2026-12-03T10:00:00.5Z"), Ok(1_796_292_000_500));
        assert_eq!(t("2026-12-03T12:00:00+02:00"), Ok(1_796_292_000_000));
        assert_eq!(t("2000-02-29T00:00:00-00:30"), Ok(951_784_200_000));
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-12-03T10:00:00",
            "2026-12-03",
        ] {
            assert!(matches!(t(bad), Err(SearchError::BadTime { .. })), "{bad}");
        }
        let s = Search::parse("", Some("10"), Some("20")).unwrap();
        assert_eq!((s.from_ms, s.to_ms), (Some(10), Some(20)));
        assert_eq!(
            Search::parse("", Some("20"), Some("20")),
            Err(SearchError::EmptyRange { from: 20, to: 20 })
        );
    }

    #[test]
    fn matches_is_the_definition() {
        let r = crate::Resources {
            cpu: 1.0,
            memory_mb: 128,
        };
        let t = crate::Task::new(
            crate::TaskId::parse("abc-1").unwrap(),
            "Render Frame 7".into(),
            r,
            1,
            60,
            1_000,
        );
        assert!(p("frame").unwrap().matches(&t));
        assert!(p("RENDER fra id:abc").unwrap().matches(&t));
        assert!(!p("frame 8").unwrap().matches(&t));
        assert!(!p("id:abd").unwrap().matches(&t));
        assert!(p("state:Pending").unwrap().matches(&t));
        assert!(!p("state:finished").unwrap().matches(&t));
        assert!(Search::parse("", Some("1000"), Some("1001"))
            .unwrap()
            .matches(&t));
        assert!(!Search::parse("", Some("1001"), None).unwrap().matches(&t));
        assert!(!Search::parse("", None, Some("1000")).unwrap().matches(&t));
        let mut t = t;
        t.key = Some("tenant-7".into());
        t.labels.insert("env".into(), "prod".into());
        assert!(p("key:tenant-7 label:env label:env=prod")
            .unwrap()
            .matches(&t));
        assert!(!p("key:tenant-8").unwrap().matches(&t));
        assert!(!p("label:env=dev").unwrap().matches(&t));
        assert!(!p("label:gpu").unwrap().matches(&t));
    }
}
