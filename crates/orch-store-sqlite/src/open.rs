//! Opening a database: options and `sqlite://` URLs, writable and
//! read-only connections, and the file's identity (to notice it being
//! replaced).

use crate::SqliteStore;
use crate::error::{sql_err, store_err};
use crate::schema::{SCHEMA_VERSION, migrate};
use orch_model::{OrchestrationError, Result};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to open a database (in a URL: `sqlite://PATH?mode=ro&max_page_count=N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Open with `SQLITE_OPEN_READ_ONLY`: no file is created, no migration
    /// runs, nothing is written; every write fails. A missing or empty file
    /// reads as an empty store; one at an older schema version is refused
    /// (it needs a migration, which only a writing open applies).
    pub read_only: bool,
    /// At most this many pages (`PRAGMA max_page_count`; pages are 4 KiB):
    /// a write that would grow the database beyond fails as a full disk does.
    pub max_page_count: Option<u64>,
}

impl SqliteOptions {
    /// These options, read-only.
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// An open connection and what the store thread knows about it.
pub(crate) struct Conn {
    pub(crate) conn: Connection,
    /// Opened read-only (or a stand-in for a missing database).
    pub(crate) read_only: bool,
    /// The device and inode of the database file, to notice it being
    /// deleted or replaced (`None`: not a writable file).
    pub(crate) file: Option<(u64, u64)>,
}

/// The device and inode `path` names now.
pub(crate) fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// Opens a database as `options` say.
pub(crate) fn connect(path: &Path, options: SqliteOptions) -> Result<Conn> {
    let conn = connect_as(path, options)?;
    // More statements are prepared and kept than rusqlite's default of 16.
    conn.conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn connect_as(path: &Path, options: SqliteOptions) -> Result<Conn> {
    if options.read_only {
        return connect_read_only(path);
    }
    let conn = connect_writable(path)?;
    if let Some(n) = options.max_page_count {
        conn.pragma_update(None, "max_page_count", n)
            .map_err(sql_err)?;
    }
    let file =
        file_id(path).map_err(|e| store_err(&format!("cannot inspect {}", path.display()), e))?;
    Ok(Conn {
        conn,
        read_only: false,
        file: Some(file),
    })
}

/// `path` as an SQLite URI filename (`file:` plus the path, with the
/// characters a URI gives a meaning to escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(char::from(*b)),
        }
    }
    out
}

/// Whether the database at `path` has a write-ahead log with content.
fn has_log(path: &Path) -> bool {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    std::fs::metadata(&log).is_ok_and(|m| m.len() > 0)
}

/// Opens a database read-only: no file is created, no migration runs,
/// nothing is written. A missing or empty database is an empty store (an
/// in-memory stand-in with the schema, refusing writes).
fn connect_read_only(path: &Path) -> Result<Conn> {
    let empty = || -> Result<Conn> {
        let conn = Connection::open_in_memory().map_err(sql_err)?;
        migrate(&conn)?;
        conn.execute_batch("PRAGMA query_only = 1")
            .map_err(sql_err)?;
        Ok(Conn {
            conn,
            read_only: true,
            file: None,
        })
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return empty(),
        Ok(m) if m.len() == 0 => return empty(),
        _ => {}
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let check = |conn: &Connection| -> rusqlite::Result<u32> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    };
    let opened =
        Connection::open_with_flags(uri_path(path), flags).and_then(|c| check(&c).map(|v| (c, v)));
    let (conn, version) = match opened {
        Ok(x) => x,
        // A WAL database closed cleanly has no -wal and -shm files, and a
        // reader cannot create them in a read-only directory (SQLite says
        // "cannot open" or "readonly"): read the file as it is
        // (`immutable`: nobody without write access can be writing it).
        // Not when a log with content is there: `immutable` would ignore
        // it and show an older state without a word.
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
            ) && !has_log(path) =>
        {
            let uri = format!("{}?immutable=1", uri_path(path));
            let c = Connection::open_with_flags(&uri, flags)
                .map_err(|e| store_err(&format!("cannot open {} read-only", path.display()), e))?;
            let v = check(&c)
                .map_err(|e| store_err(&format!("cannot open {} read-only", path.display()), e))?;
            (c, v)
        }
        Err(e) if has_log(path) => {
            return Err(store_err(
                &format!("cannot open {} read-only", path.display()),
                format!(
                    "{e}: its write-ahead log ({}-wal) holds changes not yet in the file, and reading them needs a -shm file this process cannot create or update; let someone with write access to the directory fold the log into the file (`sqlite3 {} 'PRAGMA wal_checkpoint(TRUNCATE)'`), or read it where this process can write",
                    path.display(),
                    path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(store_err(
                &format!("cannot open {} read-only", path.display()),
                e,
            ));
        }
    };
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_err)?;
    conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;")
        .map_err(sql_err)?;
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(sql_err)?;
        if tables == 0 {
            return empty();
        }
    }
    if version < SCHEMA_VERSION {
        return Err(store_err(
            "schema",
            format!(
                "the database {} is at schema version {version}, and this orch reads version {SCHEMA_VERSION}; \
                 it needs a migration, which a command that only reads (opening it read-only) does not apply. \
                 Any command that writes to the store (`orch run`, `orch cache clear`) upgrades it, given write access",
                path.display()
            ),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(store_err(
            "schema",
            format!(
                "the database is at schema version {version}, newer than this orch's {SCHEMA_VERSION}; use a newer orch"
            ),
        ));
    }
    Ok(Conn {
        conn,
        read_only: true,
        file: None,
    })
}

/// Opens (creating it owner-only if needed) and migrates a database.
fn connect_writable(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| store_err(&format!("cannot create {}", dir.display()), e))?;
    }
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .or_else(|e| {
                // Another process created it first: fine.
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    std::fs::File::open(path)
                } else {
                    Err(e)
                }
            })
            .map_err(|e| store_err(&format!("cannot create {}", path.display()), e))?;
    }
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456; PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = 8192;",
    )
    .map_err(sql_err)?;
    migrate(&conn)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens `path` (creating it with owner-only permissions, and its
    /// directory), migrates it to the current schema, and starts the thread.
    ///
    /// # Errors
    /// `Store` when the file cannot be created or opened, or a migration fails.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with options (read-only: see [`SqliteOptions`]).
    ///
    /// # Errors
    /// As [`SqliteStore::open`]; read-only, `Store` for a database that
    /// needs a migration.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        let conn = connect(path, options)?;
        Self::start(path, options, Some(conn))
    }

    /// Like [`SqliteStore::open`], but touches nothing until the first call:
    /// the file is created and migrated then (and a failure to do so is
    /// that call's error). Commands that never use the store leave no file.
    ///
    /// # Errors
    /// `Store` when the thread cannot start.
    pub fn open_lazy(path: &Path) -> Result<Self> {
        Self::open_lazy_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open_lazy`] with options.
    ///
    /// # Errors
    /// `Store` when the thread cannot start.
    pub fn open_lazy_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        Self::start(path, options, None)
    }

    /// Opens the store a `sqlite://PATH` URL names.
    ///
    /// # Errors
    /// `InvalidParameters` for another scheme; as [`SqliteStore::open`].
    pub fn open_url(url: &str) -> Result<Self> {
        let (path, options) = Self::parse_url(url)?;
        Self::open_with(&path, options)
    }

    /// [`SqliteStore::open_lazy`] for a `sqlite://PATH` URL.
    ///
    /// # Errors
    /// `InvalidParameters` for another scheme.
    pub fn open_url_lazy(url: &str) -> Result<Self> {
        let (path, options) = Self::parse_url(url)?;
        Self::open_lazy_with(&path, options)
    }

    /// The path and options of a `sqlite://PATH[?OPTION&...]` URL. Options:
    /// `mode=ro` (read-only) or `mode=rw` (the default), `max_page_count=N`.
    ///
    /// # Errors
    /// `InvalidParameters` for another scheme, no path, or an unknown or
    /// malformed option.
    pub fn parse_url(url: &str) -> Result<(PathBuf, SqliteOptions)> {
        let rest = url.strip_prefix("sqlite://").ok_or_else(|| {
            OrchestrationError::invalid_parameters(format!(
                "`{url}` is not a sqlite:// URL; write sqlite://PATH, e.g. sqlite://.orch/orch.db"
            ))
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(OrchestrationError::invalid_parameters(
                "sqlite:// needs a path, e.g. sqlite://.orch/orch.db",
            ));
        }
        let mut options = SqliteOptions::default();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let bad = |why: &str| {
                OrchestrationError::invalid_parameters(format!(
                    "store URL `{url}`: option `{pair}` {why}; the options are mode=ro, mode=rw and max_page_count=N"
                ))
            };
            match pair.split_once('=') {
                Some(("mode", "ro")) => options.read_only = true,
                Some(("mode", "rw")) => options.read_only = false,
                Some(("mode", _)) => return Err(bad("is not ro or rw")),
                Some(("max_page_count", n)) => {
                    options.max_page_count = Some(
                        n.parse()
                            .ok()
                            .filter(|&n: &u64| n > 0)
                            .ok_or_else(|| bad("needs a whole number of pages above 0"))?,
                    );
                }
                _ => return Err(bad("is not known")),
            }
        }
        Ok((PathBuf::from(path), options))
    }

    /// How the store was opened.
    pub fn options(&self) -> SqliteOptions {
        self.options
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
