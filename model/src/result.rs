//! What a task's work hands back: the text it wrote to the file named by `RESULT_PATH`,
//! bounded by [`MAX_RESULT_BYTES`], kept with the task and served by the API.
//!
//! The file's bytes are read as UTF-8; bytes that are not UTF-8 become U+FFFD (a lossy
//! conversion, not base64: results are meant to be read by people and JSON clients, and a
//! binary result belongs in the work's own storage). A file larger than the limit keeps its
//! first bytes, cut on a character boundary, and is marked `truncated`.

use crate::limits::MAX_RESULT_BYTES;
use serde::{Deserialize, Serialize};

/// A task's result, as the worker reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The result text: at most [`MAX_RESULT_BYTES`] bytes of UTF-8.
    pub text: String,
    /// True when the file held more than was kept (its first bytes are kept).
    #[serde(default)]
    pub truncated: bool,
    /// The size of the result file in bytes, as the worker found it.
    #[serde(default)]
    pub bytes: u64,
}

impl TaskResult {
    /// The result of a file of `total` bytes whose first bytes are `head` (the caller reads
    /// at most [`MAX_RESULT_BYTES`] of it): lossy UTF-8, cut to the limit on a character
    /// boundary, marked truncated when anything was left out.
    pub fn from_bytes(head: &[u8], total: u64) -> TaskResult {
        let cut = head.len() > MAX_RESULT_BYTES || total > head.len() as u64;
        let head = &head[..head.len().min(MAX_RESULT_BYTES)];
        // A character split by the cut is dropped whole, not shown as U+FFFD.
        let head = match std::str::from_utf8(head) {
            Err(e) if cut && e.error_len().is_none() => &head[..e.valid_up_to()],
            _ => head,
        };
        TaskResult {
            text: String::from_utf8_lossy(head).into_owned(),
            truncated: cut,
            bytes: total.max(head.len() as u64),
        }
        .capped()
    }

    /// This result within [`MAX_RESULT_BYTES`] (a lossy conversion can grow the text: each
    /// invalid byte becomes three), cut on a character boundary and marked when cut. The
    /// handler applies it to every report, so no stored result is larger, whatever sent it.
    pub fn capped(self) -> TaskResult {
        if self.text.len() <= MAX_RESULT_BYTES {
            return self;
        }
        TaskResult {
            text: crate::lifecycle::cut(&self.text, MAX_RESULT_BYTES),
            truncated: true,
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_text_is_kept_as_is() {
        let r = TaskResult::from_bytes(b"42\n", 3);
        assert_eq!(r.text, "42\n");
        assert!(!r.truncated);
        assert_eq!(r.bytes, 3);
    }

    #[test]
    fn a_large_file_keeps_its_first_bytes_and_is_marked() {
        let big = vec![b'x'; MAX_RESULT_BYTES];
        let r = TaskResult::from_bytes(&big, 10 * MAX_RESULT_BYTES as u64);
        assert_eq!(r.text.len(), MAX_RESULT_BYTES);
        assert!(r.truncated);
        assert_eq!(r.bytes, 10 * MAX_RESULT_BYTES as u64);
    }

    #[test]
    fn a_character_split_by_the_cut_is_dropped_whole() {
        let mut head = vec![b'a'; MAX_RESULT_BYTES - 1];
        head.extend_from_slice("é".as_bytes()); // two bytes: one past the limit
        let r = TaskResult::from_bytes(&head, head.len() as u64);
        assert_eq!(r.text.len(), MAX_RESULT_BYTES - 1);
        assert!(r.text.bytes().all(|b| b == b'a'));
        assert!(r.truncated);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_the_growth_capped() {
        let r = TaskResult::from_bytes(b"ok\xff\xfe", 4);
        assert_eq!(r.text, "ok\u{fffd}\u{fffd}");
        assert!(!r.truncated);
        let junk = vec![0xffu8; MAX_RESULT_BYTES];
        let r = TaskResult::from_bytes(&junk, junk.len() as u64);
        assert!(r.text.len() <= MAX_RESULT_BYTES, "{}", r.text.len());
        assert!(
            r.truncated,
            "the lossy text grew past the limit and was cut"
        );
    }

    #[test]
    fn an_oversized_report_is_capped() {
        let r = TaskResult {
            text: "y".repeat(MAX_RESULT_BYTES + 5),
            truncated: false,
            bytes: 0,
        }
        .capped();
        assert_eq!(r.text.len(), MAX_RESULT_BYTES);
        assert!(r.truncated);
    }
}
