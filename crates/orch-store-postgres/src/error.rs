//! The driver's errors as `OrchestrationError`s: each names the backend,
//! the operation and the query, and the server's message (with its SQLSTATE,
//! detail and hint); connection failures, serialization failures and
//! deadlocks are retryable.

use crate::options::source_text;
use orch_model::store::store_error;
use orch_model::{EntityKind, OrchestrationError, RunId};
use tokio_postgres::error::SqlState;

/// The backend's name in its errors and messages.
pub(crate) const BACKEND: &str = "postgres";

/// A failure of the store that is not the driver's.
pub(crate) fn store_err(what: &str, e: impl std::fmt::Display) -> OrchestrationError {
    store_error(BACKEND, what, e, false)
}

/// The driver's error `e` of `what` (an operation and its query).
pub(crate) fn db_err(what: &str, e: &tokio_postgres::Error) -> OrchestrationError {
    store_error(BACKEND, what, describe(e), retryable(e))
}

/// `map_err(db(what))`.
pub(crate) fn db(what: &'static str) -> impl Fn(tokio_postgres::Error) -> OrchestrationError {
    move |e| db_err(what, &e)
}

/// The pool's error getting a connection for `what`.
pub(crate) fn pool_err(what: &str, e: &deadpool_postgres::PoolError) -> OrchestrationError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => store_error(
            BACKEND,
            &format!("{what}: cannot get a connection"),
            describe(e),
            retryable(e),
        ),
        PoolError::Timeout(t) => store_error(
            BACKEND,
            &format!("{what}: cannot get a connection"),
            format!("timed out ({t:?}); is the server overloaded or unreachable?"),
            true,
        ),
        other => store_error(
            BACKEND,
            &format!("{what}: cannot get a connection"),
            other,
            false,
        ),
    }
}

/// The server's message with its code, detail and hint; or the driver's
/// error with its sources (`error connecting to server: Connection refused`).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({}): {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                s.push_str("; ");
                s.push_str(d);
            }
            if let Some(h) = db.hint() {
                s.push_str("; hint: ");
                s.push_str(h);
            }
            s
        }
        None => format!("{e}{}", source_text(e)),
    }
}

/// Whether trying again may help: the connection failed or closed, the
/// server is starting or shutting down, or the transaction lost a race
/// (serialization failure, deadlock).
pub(crate) fn retryable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57P")
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::LOCK_NOT_AVAILABLE
        }
        // No SQLSTATE: the connection itself failed (I/O, closed, timeout),
        // unless the driver could not convert a value.
        None => {
            e.is_closed()
                || source_is_io(e)
                || e.to_string().starts_with("error connecting")
                || e.to_string().starts_with("timeout")
        }
    }
}

fn source_is_io(e: &tokio_postgres::Error) -> bool {
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        if s.is::<std::io::Error>() {
            return true;
        }
        next = s.source();
    }
    false
}

pub(crate) fn not_found(run: RunId) -> OrchestrationError {
    OrchestrationError::not_found(EntityKind::Run, run.to_string())
}

pub(crate) fn invalid(message: String) -> OrchestrationError {
    OrchestrationError::InvalidState { message }
}
