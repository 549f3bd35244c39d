//! What is wrong when the SQLite database cannot be written: full, read-only, gone or failing
//! ([`StorageProblem`]), told from SQLite's and the OS's errors and checked against the data
//! directory itself, with the error kept as the source.

use super::{StorageProblem, StoreError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The database file, its directory, and which file it was when opened.
#[derive(Debug)]
pub(crate) struct Place {
    /// The data directory.
    pub(crate) dir: PathBuf,
    /// The database file.
    pub(crate) file: PathBuf,
    /// `(device, inode)` of the database file at open: another pair (or none) means it was
    /// removed or replaced since, and SQLite would be writing into an unlinked file.
    pub(crate) id: (u64, u64),
}

impl Place {
    /// Whether the database file at its path is still the one opened.
    pub(crate) fn unmoved(&self) -> bool {
        std::fs::metadata(&self.file).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }

    /// `e` with the directory filled in and its problem checked against the directory itself
    /// (SQLite reports a read-only mount or a removed directory as a generic I/O error).
    pub(crate) fn locate(&self, e: StoreError) -> StoreError {
        let StoreError::Storage {
            problem, source, ..
        } = e
        else {
            return e;
        };
        StoreError::Storage {
            dir: self.dir.clone(),
            problem: self.diagnose(problem),
            source,
        }
    }

    /// What is wrong here, given what the failed call suggested.
    fn diagnose(&self, suggested: StorageProblem) -> StorageProblem {
        if !self.unmoved() {
            return StorageProblem::Gone;
        }
        diagnose_dir(&self.dir, suggested)
    }

    /// A storage error for the I/O error `e` (of an fsync, say).
    pub(crate) fn io_error(&self, e: std::io::Error) -> StoreError {
        let problem = self.diagnose(io_problem(&e).unwrap_or(StorageProblem::Failing));
        StoreError::Storage {
            dir: self.dir.clone(),
            problem,
            source: Arc::new(e),
        }
    }
}

/// What is wrong with `dir`, given what a failed call suggested: a full disk is believed; else
/// creating a file there tells a removed directory or a read-only one from another failure.
pub(crate) fn diagnose_dir(dir: &Path, suggested: StorageProblem) -> StorageProblem {
    if suggested == StorageProblem::Full {
        return suggested;
    }
    let probe = dir.join(".eda-write-probe");
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            suggested
        }
        Err(e) => io_problem(&e).unwrap_or(suggested),
    }
}

/// The storage problem an I/O error names, if any.
fn io_problem(e: &std::io::Error) -> Option<StorageProblem> {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => Some(StorageProblem::Full),
        K::ReadOnlyFilesystem | K::PermissionDenied => Some(StorageProblem::ReadOnly),
        K::NotFound => Some(StorageProblem::Gone),
        _ => None,
    }
}

/// The storage problem a SQLite error names, if any (codes from
/// <https://www.sqlite.org/rescode.html>).
fn sqlite_problem(e: &rusqlite::Error) -> Option<StorageProblem> {
    use rusqlite::ErrorCode as C;
    /// `SQLITE_READONLY_DBMOVED`: the database file was unlinked or renamed since it was opened.
    const READONLY_DBMOVED: std::ffi::c_int = 1032;
    let rusqlite::Error::SqliteFailure(f, _) = e else {
        return None;
    };
    match f.code {
        C::DiskFull => Some(StorageProblem::Full),
        C::ReadOnly if f.extended_code == READONLY_DBMOVED => Some(StorageProblem::Gone),
        C::ReadOnly => Some(StorageProblem::ReadOnly),
        C::SystemIoFailure | C::CannotOpen => Some(StorageProblem::Failing),
        _ => None,
    }
}

/// A store error for the SQLite error `e`: [`StoreError::Storage`] when it says the disk is
/// full, read-only or failing (the directory is filled in by [`Db::write`] / [`Db::read`]), else
/// [`StoreError::Sqlite`]; either way `e` is kept as the source.
pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    match sqlite_problem(&e) {
        Some(problem) => StoreError::Storage {
            dir: PathBuf::new(),
            problem,
            source: Arc::new(e),
        },
        None => StoreError::Sqlite(Arc::new(e)),
    }
}

/// A storage error for an I/O error at open (the directory is filled in by the caller).
pub(crate) fn backend_io(e: std::io::Error) -> StoreError {
    StoreError::Storage {
        dir: PathBuf::new(),
        problem: io_problem(&e).unwrap_or(StorageProblem::Failing),
        source: Arc::new(e),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_errors_name_the_storage_problem() {
        // Primary codes and SQLITE_READONLY_DBMOVED (8 | 4 << 8), https://www.sqlite.org/rescode.html
        let cases = [
            (13, Some(StorageProblem::Full)),
            (8, Some(StorageProblem::ReadOnly)),
            (8 | (4 << 8), Some(StorageProblem::Gone)),
            (10, Some(StorageProblem::Failing)),
            (19, None), // SQLITE_CONSTRAINT: not about storage
        ];
        for (code, want) in cases {
            assert_eq!(sqlite_problem(&sqlite_error(code)), want, "code {code}");
        }
        let e = backend(sqlite_error(13));
        assert!(matches!(
            e,
            StoreError::Storage {
                problem: StorageProblem::Full,
                ..
            }
        ));
        // The cause is kept, not flattened.
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("database or disk is full"), "{cause}");
    }

    #[test]
    fn a_removed_directory_is_gone_and_a_present_one_keeps_the_suggestion() {
        let dir = std::env::temp_dir().join(format!("eda-diagnose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            diagnose_dir(&dir, StorageProblem::Failing),
            StorageProblem::Failing
        );
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(
            diagnose_dir(&dir, StorageProblem::Failing),
            StorageProblem::Gone
        );
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(io_problem(&full), Some(StorageProblem::Full));
    }
}
