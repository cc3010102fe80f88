//! The SQLite store passes the conformance suite; migrations; unreadable rows; owner-only files.

use orch_model::{NewRun, NewTask, Store, TaskPriority};
use orch_store_sqlite::{MIGRATIONS, SCHEMA_VERSION, SqliteStore};
use std::sync::atomic::{AtomicU32, Ordering};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_conformance_suite_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = AtomicU32::new(0);
    rt().block_on(orch_model::testkit::conformance(|| {
        let i = n.fetch_add(1, Ordering::Relaxed);
        SqliteStore::open(&dir.path().join(format!("s{i}.db"))).expect("open")
    }));
}

fn run(id: orch_model::RunId) -> NewRun {
    NewRun {
        id,
        workflow: "w".into(),
        definition: serde_json::json!({"name": "w"}),
        params: serde_json::Map::new(),
        tasks: vec![NewTask {
            name: "a".into(),
            deps: vec![],
            priority: TaskPriority::Normal,
        }],
    }
}

#[test]
fn the_database_file_is_owner_only_and_survives_reopening() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/orch.db");
    let id = orch_model::RunId::new();
    {
        let s = SqliteStore::open(&path).expect("open");
        rt().block_on(s.create_run(run(id), chrono::Utc::now()))
            .expect("create");
    }
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "owner-only");
    let s = SqliteStore::open_url(&format!("sqlite://{}", path.display())).expect("reopen");
    assert!(rt().block_on(s.get_run(id)).expect("get").is_some());
    assert!(SqliteStore::open_url("postgres://x").is_err());
}

#[test]
fn an_older_schema_is_migrated_and_keeps_its_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        // A database as version 1 wrote it, with one run.
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(MIGRATIONS[0]).expect("v1");
        c.execute_batch("PRAGMA user_version = 1").expect("version");
        c.execute(
            "INSERT INTO runs (id, ord, workflow, status, created_at, params, definition)
             VALUES ('01a20c00-0000-7000-8000-000000000001', 1, 'old', 'completed', 0, '{}', '{}')",
            [],
        )
        .expect("row");
    }
    let s = SqliteStore::open(&path).expect("migrated");
    let runs = rt().block_on(s.list_runs()).expect("list");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].workflow.as_str(),
            runs[0].owner.as_deref(),
            runs[0].cancel_requested
        ),
        ("old", None, false)
    );
    drop(s);
    let c = rusqlite::Connection::open(&path).expect("open");
    let v: u32 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 5))
            .expect("version");
    }
    let e = SqliteStore::open(&path).expect_err("newer");
    assert!(e.to_string().contains("newer than this orch"), "{e}");
}

#[test]
fn an_unreadable_row_is_set_aside_and_other_runs_stay_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.db");
    let (good, bad) = (orch_model::RunId::new(), orch_model::RunId::new());
    {
        let s = SqliteStore::open(&path).expect("open");
        rt().block_on(async {
            s.create_run(run(good), chrono::Utc::now())
                .await
                .expect("good");
            s.create_run(run(bad), chrono::Utc::now())
                .await
                .expect("bad");
        });
    }
    {
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute(
            "UPDATE runs SET params = '{not json' WHERE id = ?1",
            [bad.to_string()],
        )
        .expect("corrupt");
    }
    let s = SqliteStore::open(&path).expect("open");
    rt().block_on(async {
        let runs = s.list_runs().await.expect("list");
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![good]);
        let problems = s.problems().await.expect("problems");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(&bad.to_string()) && problems[0].contains("bad params JSON"),
            "{}",
            problems[0]
        );
        let e = s.get_run(bad).await.expect_err("quarantined");
        assert!(e.to_string().contains("quarantined"), "{e}");
        assert!(s.get_run(good).await.expect("good").is_some());
        assert_eq!(s.tasks(good).await.expect("tasks").len(), 1);
    });
}
