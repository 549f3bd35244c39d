//! What a container leaves behind, in one place for the worker, every runtime, the stores and
//! the reconciler: the tail of its output ([`Tail`], [`tail`], [`Logs::last`]) and how its
//! end reads for a person ([`killed_by_signal`], [`describe_exit`]).
//!
//! Output is kept from the end (the last lines say how the work ended) and cut on a character
//! boundary, so a tail is always valid UTF-8 and `truncated` says whether anything was lost.

use crate::api::Logs;

/// The last at most `max` bytes of `text`, starting on a character boundary (so possibly a few
/// bytes fewer).
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl Logs {
    /// These logs with at most `max` bytes of text, the newest kept (cut on a character
    /// boundary); `truncated` when anything was cut here or before. The stores' cap of
    /// `MAX_LOG_BYTES` is this with that limit.
    pub fn last(self, max: usize) -> Logs {
        let kept = tail(&self.text, max);
        if kept.len() == self.text.len() {
            return self;
        }
        Logs {
            text: kept.to_string(),
            truncated: true,
        }
    }
}

/// The newest at most `max` bytes of an output that arrives in chunks (a log stream, a file's
/// end), cut anywhere; [`Tail::into_logs`] turns them into text.
#[derive(Debug, Clone)]
pub struct Tail {
    /// The bytes kept, at most `max`.
    buf: Vec<u8>,
    /// The most bytes kept.
    max: usize,
    /// Whether earlier bytes were dropped (here, or before they reached this tail).
    cut: bool,
}

impl Tail {
    /// An empty tail keeping at most `max` bytes.
    pub fn new(max: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            max,
            cut: false,
        }
    }

    /// Appends `chunk`, dropping the oldest bytes beyond `max`.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > self.max {
            let cut = self.buf.len() - self.max;
            self.buf.drain(..cut);
            self.cut = true;
        }
    }

    /// Records that bytes before the first chunk were never seen (a file read from an offset).
    pub fn mark_cut(&mut self) {
        self.cut = true;
    }

    /// The kept bytes as text: a character cut at the start is dropped, invalid sequences
    /// become U+FFFD.
    pub fn into_logs(self) -> Logs {
        // Skip continuation bytes (0b10xx_xxxx) at the start: at most 3 of one character.
        let start = self
            .buf
            .iter()
            .take(4)
            .position(|b| (*b as i8) >= -0x40)
            .unwrap_or(0);
        Logs {
            text: String::from_utf8_lossy(&self.buf[start..]).into_owned(),
            truncated: self.cut,
        }
    }
}

/// The exit code of a process ended by `signal`: 128 + its number, as shells and container
/// engines report it.
pub fn signal_exit_code(signal: i32) -> i64 {
    128 + i64::from(signal)
}

/// The signal an exit code stands for (129..=192: 128 + a Linux signal number), if any.
pub fn signal_of(exit_code: i64) -> Option<i64> {
    (129..=128 + 64)
        .contains(&exit_code)
        .then_some(exit_code - 128)
}

/// How a death by `signal` reads: `killed by signal 9`. The runtimes put it in a container's
/// detail, the worker in its failure reason; the conformance suite looks for these words.
pub fn killed_by_signal(signal: i64) -> String {
    format!("killed by signal {signal}")
}

/// A person's reason for a container that ended with `code` without reporting its end: OOM,
/// SIGKILL, another signal, or a plain exit code, then the runtime's own `detail` in
/// parentheses.
pub fn describe_exit(code: i64, oom_killed: bool, detail: Option<&str>) -> String {
    let mut s = if oom_killed {
        format!("killed by the kernel's OOM killer (memory limit), exit code {code}")
    } else if code == 137 {
        "killed (SIGKILL), exit code 137".to_string()
    } else if let Some(sig) = signal_of(code).filter(|s| *s < 32) {
        format!("{}, exit code {code}", killed_by_signal(sig))
    } else {
        format!("exited with code {code} without reporting")
    };
    if let Some(d) = detail.filter(|d| !d.is_empty()) {
        s.push_str(&format!(" ({d})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_cut_on_char_boundaries() {
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("abc", 0), "");
    }

    #[test]
    fn the_last_bytes_of_logs_are_kept_and_the_cut_is_said() {
        let logs = |t: &str, truncated| Logs {
            text: t.into(),
            truncated,
        };
        assert_eq!(logs("abcdef", false).last(3), logs("def", true));
        assert_eq!(logs("abc", false).last(3), logs("abc", false));
        assert_eq!(logs("abc", true).last(9), logs("abc", true));
        assert_eq!(logs("aé", false).last(1), logs("", true));
    }

    #[test]
    fn a_chunked_tail_keeps_the_end_and_whole_characters() {
        let mut t = Tail::new(4);
        t.push(b"abc");
        assert!(!t.clone().into_logs().truncated);
        t.push("éf".as_bytes());
        assert_eq!(
            t.clone().into_logs(),
            Logs {
                text: "céf".into(),
                truncated: true
            }
        );
        t.push(b"g");
        assert_eq!(t.clone().into_logs().text, "éfg");
        let mut two = Tail::new(2);
        two.push("xé".as_bytes());
        assert_eq!(two.into_logs().text, "é");
        let mut cut = Tail::new(2);
        cut.push("é!".as_bytes());
        assert_eq!(cut.into_logs().text, "!");
        let mut file = Tail::new(10);
        file.mark_cut();
        file.push(b"end");
        assert_eq!(
            file.into_logs(),
            Logs {
                text: "end".into(),
                truncated: true
            }
        );
    }

    #[test]
    fn signals_read_as_signals() {
        assert_eq!(signal_exit_code(9), 137);
        assert_eq!(signal_of(137), Some(9));
        assert_eq!(
            (signal_of(128), signal_of(193), signal_of(3)),
            (None, None, None)
        );
        assert_eq!(killed_by_signal(15), "killed by signal 15");
    }

    #[test]
    fn exits_are_described_for_people() {
        assert_eq!(
            describe_exit(137, true, None),
            "killed by the kernel's OOM killer (memory limit), exit code 137"
        );
        assert_eq!(
            describe_exit(137, false, None),
            "killed (SIGKILL), exit code 137"
        );
        assert_eq!(
            describe_exit(143, false, Some("killed by signal 15")),
            "killed by signal 15, exit code 143 (killed by signal 15)"
        );
        assert_eq!(
            describe_exit(3, false, Some("")),
            "exited with code 3 without reporting"
        );
        assert_eq!(
            describe_exit(1, false, Some("Error")),
            "exited with code 1 without reporting (Error)"
        );
    }
}
