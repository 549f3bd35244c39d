//! Capturing an ACI container's log while it runs, so the record outlives what ACI keeps.
//!
//! # Why
//!
//! ACI's logs API (`Containers_ListLogs`, azure-rest-api-specs
//! `specification/containerinstance/resource-manager/Microsoft.ContainerInstance/stable/2025-09-01/containerInstance.json`)
//! answers the last `tail` lines, and without `tail` "all available logs ... up to 4mb": the
//! source itself cuts. A container that printed more than that between two reads, or whose log
//! the platform no longer holds once the group stopped, would lose lines silently if the log
//! were read only after exit. So the runtime reads the log while the container runs and merges
//! each answer into a [`Capture`], and the task's `truncated` flag says when lines were lost.
//!
//! # How the answers are merged
//!
//! Every read asks for `timestamps=true` (same spec: "adds a timestamp at the beginning of
//! every line"), so each line carries the time it was written. A new answer overlaps the
//! capture when its first line is not newer than the newest line captured: lines up to that
//! point are skipped (counting lines that share the newest timestamp), the rest appended. When
//! the answer was *full* (as many lines as asked for, or the 4 MB the API returns at most) and
//! does not overlap, lines between the two reads may be gone: the capture is marked truncated.
//! Lines whose timestamp cannot be read keep the previous line's time (a line continued).
//! The capture keeps the newest [`limits::MAX_LOG_BYTES`] and is marked truncated when it
//! drops older ones.

use model::limits;
use model::output::tail;
use std::time::Instant;

/// Most bytes one logs answer carries (the spec's "up to 4mb").
pub const SOURCE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What was captured of one container's log so far.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The captured lines, timestamps removed, each ending in `\n`.
    pub text: String,
    /// Lines were lost: by the source (a full answer that did not overlap) or by our own cap.
    pub truncated: bool,
    /// Timestamp (unix nanoseconds) of the newest captured line and how many captured lines
    /// carry exactly that timestamp, to skip them when the next answer repeats them.
    newest: Option<(i128, usize)>,
    /// Answers merged so far.
    pub reads: u32,
    /// When the log was last read (the runtime reads a running container's log at most once
    /// per its poll interval).
    pub read_at: Option<Instant>,
}

/// One line of an answer: its time (unix nanoseconds) and its text without the timestamp.
fn split_line(line: &str) -> Option<(i128, &str)> {
    let (ts, rest) = line.split_once(' ').unwrap_or((line, ""));
    let at = azure_core::date::parse_rfc3339(ts).ok()?;
    Some((at.unix_timestamp_nanos(), rest))
}

impl Capture {
    /// Merges one answer of the logs API (read with `tail = asked` and `timestamps=true`).
    pub fn merge(&mut self, content: &str, asked: usize) {
        self.reads += 1;
        let lines: Vec<&str> = content.lines().collect();
        let full = lines.len() >= asked || content.len() + 1024 >= SOURCE_MAX_BYTES;
        let mut parsed = Vec::with_capacity(lines.len());
        let mut last_at = None;
        for line in &lines {
            match split_line(line) {
                Some((at, text)) => {
                    last_at = Some(at);
                    parsed.push((at, text));
                }
                // A line without a readable timestamp continues the previous one's time.
                None => parsed.push((last_at.unwrap_or(i128::MIN), line)),
            }
        }
        if last_at.is_none() && !parsed.is_empty() {
            // No timestamps at all: the answer is a snapshot; keep the longer one.
            self.replace_with_snapshot(content, full);
            return;
        }
        self.append_new(&parsed, full);
    }

    /// Appends the lines of `parsed` newer than the capture; marks a gap.
    fn append_new(&mut self, parsed: &[(i128, &str)], full: bool) {
        let (newest, mut same) = self.newest.unwrap_or((i128::MIN, 0));
        let overlaps = parsed.first().is_some_and(|(at, _)| *at <= newest);
        if full && !overlaps {
            // Either the first read found more than it could return, or lines were written
            // between two reads faster than one answer holds: older lines are gone.
            self.truncated = true;
        }
        let mut skip_same = same;
        let mut top = newest;
        for (at, text) in parsed {
            if *at < newest {
                continue;
            }
            if *at == newest && skip_same > 0 {
                skip_same -= 1;
                continue;
            }
            if *at == top {
                same += 1;
            } else {
                top = *at;
                same = 1;
            }
            self.text.push_str(text);
            self.text.push('\n');
        }
        if top != i128::MIN {
            self.newest = Some((top, same));
        }
        self.cap();
    }

    fn replace_with_snapshot(&mut self, content: &str, full: bool) {
        if content.len() >= self.text.len() {
            self.text = content.to_string();
            if !self.text.is_empty() && !self.text.ends_with('\n') {
                self.text.push('\n');
            }
        }
        self.truncated |= full;
        self.cap();
    }

    /// Keeps the newest [`limits::MAX_LOG_BYTES`], cutting at a line start when one is near.
    fn cap(&mut self) {
        if self.text.len() <= limits::MAX_LOG_BYTES {
            return;
        }
        let cut = tail(&self.text, limits::MAX_LOG_BYTES);
        let cut = match cut.find('\n') {
            Some(i) if i + 1 < cut.len() => &cut[i + 1..],
            _ => cut,
        };
        self.text = cut.to_string();
        self.truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(lines: &[(u32, &str)]) -> String {
        lines
            .iter()
            .map(|(s, t)| format!("2026-12-02T10:00:{s:02}.000000000Z {t}\n"))
            .collect()
    }

    #[test]
    fn overlapping_answers_are_merged_without_repeats() {
        let mut c = Capture::default();
        c.merge(&answer(&[(1, "a"), (2, "b")]), 100);
        c.merge(&answer(&[(1, "a"), (2, "b"), (3, "c")]), 100);
        c.merge(&answer(&[(3, "c"), (4, "d")]), 100);
        assert_eq!((c.text.as_str(), c.truncated), ("a\nb\nc\nd\n", false));
    }

    #[test]
    fn lines_sharing_a_timestamp_are_counted_not_dropped() {
        let mut c = Capture::default();
        c.merge(&answer(&[(1, "a"), (1, "b")]), 100);
        c.merge(&answer(&[(1, "a"), (1, "b"), (1, "c")]), 100);
        assert_eq!(c.text, "a\nb\nc\n");
    }

    #[test]
    fn a_full_answer_that_does_not_overlap_marks_a_gap() {
        let mut c = Capture::default();
        c.merge(&answer(&[(1, "a"), (2, "b")]), 3);
        assert!(!c.truncated, "not full: nothing lost");
        c.merge(&answer(&[(5, "e"), (6, "f"), (7, "g")]), 3);
        assert_eq!((c.text.as_str(), c.truncated), ("a\nb\ne\nf\ng\n", true));
        let mut first = Capture::default();
        first.merge(&answer(&[(1, "x"), (2, "y")]), 2);
        assert!(
            first.truncated,
            "a full first answer may have cut older lines"
        );
    }

    #[test]
    fn answers_without_timestamps_are_snapshots_and_the_cap_truncates() {
        let mut c = Capture::default();
        c.merge("one\ntwo\n", 100);
        c.merge("one\ntwo\nthree", 100);
        assert_eq!((c.text.as_str(), c.truncated), ("one\ntwo\nthree\n", false));
        let big = "x".repeat(100) + "\n";
        let mut c = Capture::default();
        c.merge(&big.repeat(limits::MAX_LOG_BYTES / 100 + 10), 1_000_000);
        assert!(c.text.len() <= limits::MAX_LOG_BYTES && c.truncated);
        assert!(c.text.starts_with('x'), "cut at a line start");
    }
}
