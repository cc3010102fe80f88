//! Opening the store from the command line: commands that only read open
//! it read-only (on PostgreSQL no schema, table or migration is created),
//! a store nothing was written to yet reads as empty, as a missing SQLite
//! file does; a store that cannot be reached is exit 1 (an I/O failure),
//! a store URL that is wrong is exit 2 (invalid input), for every command.
//!
//! The PostgreSQL tests need the test server (`ORCH_TEST_POSTGRES_URL`, or
//! postgres://postgres@127.0.0.1:5432/test) and create and drop a database
//! of their own.

use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// `orch ARGS` in `dir` (its home `DIR/home`) on the store `store`: exit
/// code, stdout, stderr.
fn orch(dir: &Path, store: &str, args: &[&str]) -> (i32, String, String) {
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_orch"))
        .current_dir(dir)
        .env("ORCH_HOME", dir.join("home"))
        .env("ORCH_STORE_URL", store)
        .env_remove("ORCH_CONFIG")
        .env_remove("CODOMYRMEX_ORCHESTRATION_DIR")
        .args(args)
        .write_stdin(Vec::<u8>::new())
        // A command that waits (for a worker, a client) fails the test, not hangs it.
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("runs orch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory with `hello.yaml`, a workflow of one step.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hello.yaml"),
        "name: hello\nsteps:\n  - name: greet\n    module: core\n    action: noop\n",
    )
    .expect("write the workflow");
    dir
}

/// The commands that only read the store.
const READING: &[&[&str]] = &[
    &["runs", "list"],
    &["runs", "list", "--json"],
    &["runs", "show", "last"],
    &["logs", "last", "greet"],
    &["cache", "list"],
    &["status"],
    &["status", "--json"],
    &["health"],
    &["schedule", "list"],
    &["templates"],
    &["project", "list"],
    &["project", "status", "ghost"],
    &["graph", "ai-analysis"],
];

/// The test server's URL.
fn server_url() -> String {
    std::env::var("ORCH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs `sql` on the database `url` names, returning the first column of
/// each row as text.
fn sql(url: &str, sql: &str) -> Vec<String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
            let driver = tokio::spawn(conn);
            let rows = client
                .simple_query(&sql)
                .await
                .expect("run SQL")
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or_default().to_owned())
                    }
                    _ => None,
                })
                .collect();
            drop(client);
            let _ = driver.await;
            rows
        })
    })
    .join()
    .expect("the SQL thread")
}

/// A database of its own on the test server, dropped on drop.
struct Database {
    name: String,
}

impl Database {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "orch_cli_store_open_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // Each on its own: CREATE DATABASE cannot run in a transaction.
        sql(
            &server_url(),
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        sql(&server_url(), &format!("CREATE DATABASE {name}"));
        Self { name }
    }

    /// The URL of this database, with `?query` when not empty.
    fn url(&self, query: &str) -> String {
        let server = server_url();
        let base = server.split('?').next().unwrap_or_default();
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        if query.is_empty() {
            format!("{base}/{}", self.name)
        } else {
            format!("{base}/{}?{query}", self.name)
        }
    }

    /// The schemas other than PostgreSQL's own, and every table in them.
    fn contents(&self) -> Vec<String> {
        sql(
            &self.url(""),
            "SELECT 'schema ' || nspname FROM pg_namespace \
             WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public') \
             UNION ALL SELECT 'table ' || schemaname || '.' || tablename FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        sql(
            &server_url(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

#[test]
fn reading_commands_create_nothing_in_postgres_and_read_a_fresh_schema_as_empty() {
    let db = Database::new();
    let dir = workdir();
    let d = dir.path();
    for schema in ["", "schema=fresh"] {
        let url = db.url(schema);
        for args in READING {
            let (code, out, err) = orch(d, &url, args);
            let expected = match args[0] {
                // No run yet, no such project: bad input, as on a new SQLite store.
                "logs" => 2,
                "runs" if args[1] == "show" => 2,
                "project" if args[1] == "status" => 2,
                _ => 0,
            };
            assert_eq!(code, expected, "{args:?} on {url}: {out}{err}");
            assert!(!err.contains("store error"), "{args:?}: {err}");
            assert_eq!(
                db.contents(),
                Vec::<String>::new(),
                "{args:?} on {url} created something"
            );
        }
        let (_, out, _) = orch(d, &url, &["runs", "list"]);
        assert!(out.contains("(no runs in"), "{out}");
        let (_, out, _) = orch(d, &url, &["runs", "list", "--json"]);
        assert_eq!(
            serde_json::from_str::<Value>(&out).ok(),
            Some(Value::Array(vec![]))
        );
        let (_, _, err) = orch(d, &url, &["runs", "show", "last"]);
        assert!(err.contains("there are no runs yet"), "{err}");
    }
    // A password in the URL is never shown (the server trusts this user,
    // whatever the password).
    let secret = db.url("password=hunter2");
    let (code, out, err) = orch(d, &secret, &["runs", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("password=***"), "{out}");
    assert!(!format!("{out}{err}").contains("hunter2"), "{out}{err}");

    // A command that writes creates the schema; then the reading ones read it.
    let url = db.url("schema=fresh");
    // (`--detach`: on PostgreSQL a run goes to the workers, and there are none.)
    let (code, out, err) = orch(d, &url, &["run", "hello.yaml", "--detach"]);
    assert_eq!(code, 0, "{out}{err}");
    let contents = db.contents();
    assert!(
        contents.contains(&"schema fresh".to_owned())
            && contents.iter().any(|c| c.starts_with("table fresh.")),
        "{contents:?}"
    );
    assert!(
        !contents.iter().any(|c| c.starts_with("table public.")),
        "{contents:?}"
    );
    let (code, out, err) = orch(d, &url, &["runs", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let runs: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    let (code, out, err) = orch(d, &url, &["runs", "show", "last"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("greet"), "{out}");
    // The other schema of the database is still untouched.
    assert!(
        !db.contents().contains(&"schema public".to_owned()),
        "{:?}",
        db.contents()
    );
}

#[test]
fn a_missing_postgres_database_is_an_io_failure_not_an_empty_store() {
    let db = Database::new();
    let dir = workdir();
    let missing = db
        .url("")
        .replace(&db.name, &format!("{}_missing", db.name));
    for args in [&["runs", "list"][..], &["status"], &["run", "hello.yaml"]] {
        let (code, out, err) = orch(dir.path(), &missing, args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

/// A `postgres://` URL at a local port nothing listens on, tried once.
fn unreachable_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("postgres://postgres@127.0.0.1:{port}/x?connect_attempts=1")
}

/// Every command that opens the store.
const OPENING: &[&[&str]] = &[
    &["run", "hello.yaml"],
    &["run", "hello.yaml", "--detach"],
    &["resume", "last"],
    &["retry", "last"],
    &["cancel", "last"],
    &["runs", "list"],
    &["runs", "show", "last"],
    &["logs", "last", "greet"],
    &["cache", "list"],
    &["cache", "clear"],
    &["status"],
    &["health"],
    &["schedule", "list"],
    &["schedule", "pause", "hello"],
    &[
        "backfill",
        "hello",
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2025-01-02T00:00:00Z",
    ],
    &["templates"],
    &["project", "list"],
    &["graph", "ai-analysis"],
    &["worker"],
    &["mcp"],
    &["serve", "--bind", "127.0.0.1:0"],
];

#[test]
fn a_store_that_cannot_be_reached_is_exit_1_for_every_command() {
    let dir = workdir();
    let url = unreachable_url();
    for args in OPENING {
        let (code, out, err) = orch(dir.path(), &url, args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains("cannot connect"), "{args:?}: {err}");
    }
}

#[test]
fn a_wrong_store_url_is_exit_2_for_every_command() {
    let dir = workdir();
    for url in [
        "nosuch://x",
        "postgres://postgres@127.0.0.1:5432/x?bogus=1",
        "sqlite:///tmp/x.db?mode=sideways",
    ] {
        for args in OPENING {
            let (code, out, err) = orch(dir.path(), url, args);
            assert_eq!(code, 2, "{url} {args:?}: {out}{err}");
            assert_eq!(err.lines().count(), 1, "{url} {args:?}: {err}");
        }
    }
}
