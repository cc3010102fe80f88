//! Stores by URL: a registry of schemes, each opened by a backend.
//!
//! `memory://` is always there; `sqlite://PATH` comes with the `sqlite`
//! Cargo feature (on by default), `postgres://...` and `postgresql://...`
//! with the `postgres` feature; a store written outside the workspace is
//! registered under a scheme of its own ([`StoreRegistry::register`], then
//! [`crate::EngineBuilder::stores`]) or handed to the engine as it is
//! ([`crate::EngineBuilder::store`]).

#[allow(clippy::wildcard_imports)]
use super::*;

/// How a store is opened: read-only or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// For a command that only reads: no file created, no migration, no
    /// write, no write lock taken.
    pub read_only: bool,
}

/// Opens a store of one scheme from its whole URL.
pub type StoreOpener =
    Arc<dyn Fn(&str, OpenOptions) -> Result<Arc<dyn Store>, OrchestrationError> + Send + Sync>;

/// The schemes stores are opened by (`memory`, `sqlite`, ...).
#[derive(Clone)]
pub struct StoreRegistry {
    schemes: BTreeMap<String, StoreOpener>,
}

impl std::fmt::Debug for StoreRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreRegistry")
            .field("schemes", &self.schemes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for StoreRegistry {
    /// `memory://`, `sqlite://PATH` when the `sqlite` feature is on, and
    /// `postgres://...` (or `postgresql://...`) when the `postgres` one is.
    fn default() -> Self {
        let mut r = Self::empty();
        r.register(
            "memory",
            Arc::new(|_url: &str, _o: OpenOptions| {
                Ok(Arc::new(orch_tasks::MemoryStore::new()) as Arc<dyn Store>)
            }),
        );
        #[cfg(feature = "sqlite")]
        r.register(
            "sqlite",
            Arc::new(|url: &str, o: OpenOptions| {
                let (path, mut options) = orch_store_sqlite::SqliteStore::parse_url(url)?;
                options.read_only |= o.read_only;
                // Opened on first use: commands that never touch runs create no database.
                Ok(Arc::new(orch_store_sqlite::SqliteStore::open_lazy_with(
                    &path, options,
                )?) as Arc<dyn Store>)
            }),
        );
        #[cfg(feature = "postgres")]
        for scheme in ["postgres", "postgresql"] {
            r.register(
                scheme,
                Arc::new(|url: &str, o: OpenOptions| {
                    let mut options = orch_store_postgres::PostgresOptions::parse_url(url)?;
                    options.read_only |= o.read_only;
                    Ok(
                        Arc::new(orch_store_postgres::PostgresStore::connect_with(options)?)
                            as Arc<dyn Store>,
                    )
                }),
            );
        }
        r
    }
}

impl StoreRegistry {
    /// A registry with no scheme at all.
    pub fn empty() -> Self {
        Self {
            schemes: BTreeMap::new(),
        }
    }

    /// Opens URLs `SCHEME://...` with `opener` (replacing what the scheme had).
    pub fn register(&mut self, scheme: &str, opener: StoreOpener) {
        self.schemes.insert(scheme.to_owned(), opener);
    }

    /// The schemes it opens.
    pub fn schemes(&self) -> impl Iterator<Item = &str> {
        self.schemes.keys().map(String::as_str)
    }

    /// Opens the store `url` names.
    ///
    /// # Errors
    /// `Unsupported` for a scheme it does not know (the message lists those
    /// it does); the backend's error when the store cannot be opened.
    pub fn open(
        &self,
        url: &str,
        options: OpenOptions,
    ) -> Result<Arc<dyn Store>, OrchestrationError> {
        // `memory` alone is accepted for `memory://`, as before.
        let scheme = url.split_once("://").map_or(url, |(s, _)| s);
        match self.schemes.get(scheme) {
            Some(open) => open(url, options),
            None => Err(OrchestrationError::Unsupported {
                message: format!(
                    "store `{url}`: no backend for `{scheme}://` in this build; known: {}{}",
                    self.schemes()
                        .map(|s| format!("{s}://"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if scheme == "postgres" || scheme == "postgresql" {
                        " (this build has no PostgreSQL store: build orch-engine with its `postgres` feature)"
                    } else {
                        ""
                    }
                ),
            }),
        }
    }
}

/// Opens a store by URL with the default registry: `memory://` (in this
/// process only) or `sqlite://PATH` (durable; created with owner-only
/// permissions), with options after `?`: `mode=ro` (read-only),
/// `max_page_count=N` (see `orch_store_sqlite::SqliteOptions`).
///
/// # Errors
/// `Unsupported` for another scheme; `InvalidParameters` for an unknown
/// option; the store's error when it cannot be opened.
pub fn open_store(url: &str) -> Result<Arc<dyn Store>, OrchestrationError> {
    StoreRegistry::default().open(url, OpenOptions::default())
}

/// [`open_store`] for a command that only reads: an SQLite database is
/// opened read-only (no file created, no migration, no write, no write
/// lock taken), so a database in a read-only file or directory can be read.
///
/// # Errors
/// As [`open_store`].
pub fn open_store_read_only(url: &str) -> Result<Arc<dyn Store>, OrchestrationError> {
    StoreRegistry::default().open(url, OpenOptions { read_only: true })
}
