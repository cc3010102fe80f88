//! Errors of the store: SQLite's mapped to `OrchestrationError` (a full disk
//! and I/O failures are `Io`; busy and locked are retryable).

use orch_model::store::store_error;
use orch_model::{EntityKind, OrchestrationError, RunId};
use std::path::Path;

/// The backend's name in its errors and messages.
pub(crate) const BACKEND: &str = "sqlite";

/// A failure of the store: `Store`, naming the backend, what it was doing
/// and the source error.
pub(crate) fn store_err(what: &str, e: impl std::fmt::Display) -> OrchestrationError {
    store_error(BACKEND, what, e, false)
}

pub(crate) fn sql_err(e: rusqlite::Error) -> OrchestrationError {
    match e.sqlite_error_code() {
        // SQLite reports ENOSPC as SQLITE_FULL, like a reached max_page_count.
        Some(rusqlite::ErrorCode::DiskFull) => OrchestrationError::Io {
            message: format!(
                "the store's database is full (the disk is full, or the database reached its size limit): sqlite: {e}; free some space, then resume the run with `orch resume RUN`"
            ),
        },
        Some(rusqlite::ErrorCode::SystemIoFailure) => OrchestrationError::Io {
            message: format!("the store's database could not be read or written: sqlite: {e}"),
        },
        Some(rusqlite::ErrorCode::ReadOnly) => store_error(
            BACKEND,
            "",
            format!(
                "{e}: the database was opened read-only (a command that only reads), or its file or directory is not writable"
            ),
            false,
        ),
        code => store_error(
            BACKEND,
            "",
            e,
            matches!(
                code,
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
        ),
    }
}

pub(crate) fn not_found(run: RunId) -> OrchestrationError {
    OrchestrationError::not_found(EntityKind::Run, run.to_string())
}

pub(crate) fn invalid(message: String) -> OrchestrationError {
    OrchestrationError::InvalidState { message }
}

/// The error of a store whose database file is no longer the one it opened.
pub(crate) fn lost(path: &Path, now: std::io::Result<(u64, u64)>) -> OrchestrationError {
    let what = match now {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was deleted",
        Err(_) => "can no longer be found",
        Ok(_) => "was replaced by another file",
    };
    OrchestrationError::Io {
        message: format!(
            "the store's database {} {what} while orch was using it: what it recorded there is lost, and nothing more can be recorded, so the run stops here (start it again with `orch run`)",
            path.display()
        ),
    }
}
