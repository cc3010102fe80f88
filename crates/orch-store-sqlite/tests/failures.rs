//! The SQLite store when things go wrong: read-only opening, a full
//! database, a database deleted or replaced while in use, URL options, and
//! take-overs of one run from two connections at once.

mod common;

use common::{rt, run};
use orch_model::store::TakeOver;
use orch_model::{OrchestrationError, RunId, Store};
use orch_store_sqlite::{MIGRATIONS, SqliteOptions, SqliteStore};
use std::path::Path;

/// A database with one run, closed.
fn with_one_run(path: &Path) -> RunId {
    let id = RunId::new();
    let s = SqliteStore::open(path).expect("open");
    rt().block_on(s.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    id
}

fn ro() -> SqliteOptions {
    SqliteOptions::default().read_only()
}

#[test]
fn a_read_only_store_reads_without_the_write_lock_and_refuses_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let id = with_one_run(&path);
    // Another connection is in the middle of a write transaction.
    let holder = rusqlite::Connection::open(&path).expect("open");
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE runs SET workflow = workflow;")
        .expect("lock");
    let before = std::fs::read(&path).expect("read");
    let s = SqliteStore::open_with(&path, ro()).expect("open read-only");
    let rt = rt();
    let runs = rt.block_on(s.list_runs()).expect("list");
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(runs[0].tasks.total(), 1);
    assert!(rt.block_on(s.get_run(id)).expect("get").is_some());
    assert_eq!(rt.block_on(s.tasks(id)).expect("tasks").len(), 1);
    assert!(rt.block_on(s.cache_list()).expect("cache").is_empty());
    let err = rt
        .block_on(s.cache_clear())
        .expect_err("a read-only store refuses writes");
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(s);
    assert!(
        before == std::fs::read(&path).expect("read"),
        "the file is unchanged"
    );
    holder.execute_batch("ROLLBACK").expect("release");
}

#[test]
fn a_missing_database_opened_read_only_is_empty_and_not_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("none/orch.db");
    let s = SqliteStore::open_url(&format!("sqlite://{}?mode=ro", path.display()))
        .expect("open read-only");
    assert!(s.options().read_only);
    assert!(rt().block_on(s.list_runs()).expect("list").is_empty());
    assert!(!path.exists(), "nothing is created");
    assert!(!path.parent().expect("dir").exists(), "nor its directory");
}

#[test]
fn a_database_that_needs_a_migration_opened_read_only_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(MIGRATIONS[0]).expect("v1");
        c.execute_batch("PRAGMA user_version = 1").expect("version");
    }
    let err = SqliteStore::open_with(&path, ro()).expect_err("needs a migration");
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 1") && msg.contains("needs a migration"),
        "{msg}"
    );
    let version: u32 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 1, "not migrated");
}

#[test]
fn a_full_database_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?max_page_count=30",
        dir.path().join("small.db").display()
    );
    let s = SqliteStore::open_url(&url).expect("open");
    assert_eq!(s.options().max_page_count, Some(30));
    let rt = rt();
    let entry = orch_model::store::CacheEntry {
        key: "k".into(),
        value: serde_json::Value::String("x".repeat(400_000)),
        created_at: chrono::Utc::now(),
    };
    let err = rt
        .block_on(s.cache_put(entry))
        .expect_err("does not fit in 30 pages");
    assert!(
        matches!(&err, OrchestrationError::Io { message } if message.contains("full")),
        "{err:?}"
    );
    // The store goes on: what fits is written.
    let id = RunId::new();
    rt.block_on(s.create_run(run(id), chrono::Utc::now()))
        .expect("a small write fits");
}

#[test]
fn a_database_deleted_while_in_use_fails_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let s = SqliteStore::open(&path).expect("open");
    let rt = rt();
    let id = RunId::new();
    rt.block_on(s.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    std::fs::remove_file(&path).expect("delete");
    let err = rt
        .block_on(s.set_owner(id, Some("x".into())))
        .expect_err("the file is gone");
    assert!(err.to_string().contains("was deleted"), "{err}");
    let again = rt.block_on(s.list_runs()).expect_err("and stays gone");
    assert!(again.to_string().contains("was deleted"), "{again}");
    assert!(!path.exists(), "no new database is created in its place");
}

#[test]
fn a_database_replaced_while_in_use_is_noticed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let s = SqliteStore::open(&path).expect("open");
    let rt = rt();
    rt.block_on(s.create_run(run(RunId::new()), chrono::Utc::now()))
        .expect("create");
    let other = dir.path().join("other.db");
    with_one_run(&other);
    std::fs::rename(&other, &path).expect("replace");
    let err = rt.block_on(s.list_runs()).expect_err("replaced");
    assert!(err.to_string().contains("replaced"), "{err}");
}

#[test]
fn url_options_are_checked() {
    let (path, o) = SqliteStore::parse_url("sqlite://a/b.db?mode=ro&max_page_count=7").expect("ok");
    assert_eq!(
        (path.to_str(), o.read_only, o.max_page_count),
        (Some("a/b.db"), true, Some(7))
    );
    let (_, o) = SqliteStore::parse_url("sqlite://a.db").expect("ok");
    assert_eq!(o, SqliteOptions::default());
    for bad in [
        "sqlite://a.db?mode=rx",
        "sqlite://a.db?max_page_count=0",
        "sqlite://a.db?max_page_count=lots",
        "sqlite://a.db?cache=shared",
        "sqlite://?mode=ro",
    ] {
        let err = SqliteStore::parse_url(bad).expect_err(bad);
        assert!(
            matches!(err, OrchestrationError::InvalidParameters { .. }),
            "{bad}: {err:?}"
        );
    }
}

/// Two connections (as two `orch resume` processes have) take over one run
/// at once, many times: exactly one wins each time.
#[test]
fn take_overs_from_two_connections_have_one_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let id = with_one_run(&path);
    let stores = [
        SqliteStore::open(&path).expect("a"),
        SqliteStore::open(&path).expect("b"),
    ];
    let mut owner: Option<String> = None;
    for round in 0..50 {
        let barrier = std::sync::Barrier::new(2);
        let answers: Vec<TakeOver> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let (barrier, owner) = (&barrier, owner.clone());
                    scope.spawn(move || {
                        barrier.wait();
                        rt().block_on(s.take_over(id, owner.as_deref(), &format!("{round}-{k}")))
                            .expect("take over")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let won: Vec<usize> = (0..2).filter(|&k| answers[k] == TakeOver::Taken).collect();
        assert_eq!(won.len(), 1, "round {round}: {answers:?}");
        let winner = format!("{round}-{}", won[0]);
        assert_eq!(
            answers[1 - won[0]],
            TakeOver::Held {
                owner: Some(winner.clone())
            },
            "round {round}"
        );
        owner = Some(winner);
    }
}
