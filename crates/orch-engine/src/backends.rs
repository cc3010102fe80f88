//! Stores by URL.

#[allow(clippy::wildcard_imports)]
use super::*;
/// Opens a store by URL: `memory://` (in this process only) or
/// `sqlite://PATH` (durable; created with owner-only permissions), with
/// options after `?`: `mode=ro` (read-only), `max_page_count=N` (see
/// `orch_store_sqlite::SqliteOptions`).
///
/// # Errors
/// `Unsupported` for another scheme (PostgreSQL is not built yet);
/// `InvalidParameters` for an unknown option; the store's error when it
/// cannot be opened.
pub fn open_store(url: &str) -> Result<Arc<dyn Store>, OrchestrationError> {
    open_store_as(url, false)
}

/// [`open_store`] for a command that only reads: an SQLite database is
/// opened read-only (no file created, no migration, no write, no write
/// lock taken), so a database in a read-only file or directory can be read.
///
/// # Errors
/// As [`open_store`].
pub fn open_store_read_only(url: &str) -> Result<Arc<dyn Store>, OrchestrationError> {
    open_store_as(url, true)
}

pub(crate) fn open_store_as(
    url: &str,
    read_only: bool,
) -> Result<Arc<dyn Store>, OrchestrationError> {
    if url == "memory://" || url == "memory" {
        Ok(Arc::new(orch_tasks::MemoryStore::new()))
    } else if url.starts_with("sqlite://") {
        let (path, mut options) = orch_store_sqlite::SqliteStore::parse_url(url)?;
        options.read_only |= read_only;
        // Opened on first use: commands that never touch runs create no database.
        Ok(Arc::new(orch_store_sqlite::SqliteStore::open_lazy_with(
            &path, options,
        )?))
    } else {
        Err(OrchestrationError::Unsupported {
            message: format!(
                "store `{url}`: use sqlite://PATH (the default, sqlite://$ORCH_HOME/orch.db) or memory://; postgres:// is not built yet"
            ),
        })
    }
}
