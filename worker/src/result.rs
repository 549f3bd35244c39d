//! The result file: the worker names a fresh file in a private directory as `RESULT_PATH` for
//! the work, and reads at most `MAX_RESULT_BYTES` of it once the work exited (sent with the
//! final report, `model::TaskResult`).
//!
//! Where it can write: task containers are `FROM scratch` images around this static binary,
//! run by Docker with a read-only root and a tmpfs at /tmp (`runtime::containment` in the
//! handler), by ACI with a writable root (no /tmp in the image: it is created), and the process
//! runtime runs the worker as a plain process on the host, where /tmp is shared by every task.
//! So the directory is `TMPDIR` (else /tmp) plus a name of its own, made with mode 0700 and
//! removed after the read; when no such directory can be made (a read-only root and no
//! tmpfs), the work gets no `RESULT_PATH` and the worker says why on stderr.

use model::limits::MAX_RESULT_BYTES;
use model::TaskResult;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The environment variable that names the result file for the work.
pub const RESULT_PATH: &str = "RESULT_PATH";

/// A private directory holding the result file; removed when dropped.
pub struct ResultFile {
    /// The directory the worker made for this run.
    dir: PathBuf,
    /// The file the work may write (not created by the worker).
    path: PathBuf,
}

impl ResultFile {
    /// A fresh directory under `base` (made if missing) for task `task`, or why not.
    pub fn create_in(base: &Path, task: &str) -> std::io::Result<ResultFile> {
        std::fs::create_dir_all(base)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("eda-result-{task}-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("result");
        Ok(ResultFile { dir, path })
    }

    /// A fresh directory under `TMPDIR` (else /tmp), or `None` with the reason printed.
    pub fn create(task: Option<&str>) -> Option<ResultFile> {
        let base = std::env::temp_dir();
        match ResultFile::create_in(&base, task.unwrap_or("task")) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "worker: no RESULT_PATH for this work: cannot make a directory in {}: {e}",
                    base.display()
                );
                None
            }
        }
    }

    /// The file to name in `RESULT_PATH`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the work wrote: at most `MAX_RESULT_BYTES` of the file's start; `None` when it
    /// wrote no file (or it cannot be read, which is printed).
    pub fn read(&self) -> Option<TaskResult> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                eprintln!("worker: cannot read the result file: {e}");
                return None;
            }
        };
        let total = file.metadata().map_or(0, |m| m.len());
        let mut head = Vec::with_capacity(MAX_RESULT_BYTES.min(total as usize));
        // One byte more than kept, so a file that grew after `metadata` still reads as cut.
        if let Err(e) = file
            .take(MAX_RESULT_BYTES as u64 + 1)
            .read_to_end(&mut head)
        {
            eprintln!("worker: cannot read the result file: {e}");
            return None;
        }
        Some(TaskResult::from_bytes(&head, total))
    }
}

impl Drop for ResultFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base folder of one test, removed when dropped.
    struct Base(PathBuf);

    impl Drop for Base {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn base(test: &str) -> Base {
        let b =
            std::env::temp_dir().join(format!("eda-worker-result-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&b).unwrap();
        Base(b)
    }

    #[test]
    fn no_file_is_no_result_and_the_directory_is_removed() {
        let b = base("none");
        let f = ResultFile::create_in(&b.0, "t-none").unwrap();
        let dir = f.dir.clone();
        assert!(dir.is_dir());
        assert_eq!(f.read(), None);
        drop(f);
        assert!(!dir.exists(), "removed after the run");
    }

    #[test]
    fn a_written_file_is_read_and_a_large_one_cut() {
        let b = base("some");
        let f = ResultFile::create_in(&b.0, "t-some").unwrap();
        std::fs::write(f.path(), "answer: 42").unwrap();
        let r = f.read().unwrap();
        assert_eq!(
            (r.text.as_str(), r.truncated, r.bytes),
            ("answer: 42", false, 10)
        );
        std::fs::write(f.path(), vec![b'z'; 3 * MAX_RESULT_BYTES]).unwrap();
        let r = f.read().unwrap();
        assert_eq!(r.text.len(), MAX_RESULT_BYTES);
        assert!(r.truncated);
        assert_eq!(r.bytes, 3 * MAX_RESULT_BYTES as u64);
    }

    #[test]
    fn a_read_only_place_gives_an_error_not_a_panic() {
        assert!(ResultFile::create_in(Path::new("/proc/no-such-dir"), "t").is_err());
    }
}
