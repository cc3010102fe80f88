//! The SQLite store passes the conformance suite; migrations; unreadable rows; owner-only files.

mod common;

use common::{rt, run};
use orch_model::{NewRun, Store};
use orch_store_sqlite::{MIGRATIONS, SCHEMA_VERSION, SqliteStore};

/// A fresh store in a directory of its own (kept as long as the store).
fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("orch.db")).expect("open");
    (dir, store)
}

/// The conformance suite, one test per check.
mod conformance {
    orch_model::store_conformance_tests!(super::fresh());
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
fn runs_of_schema_7_have_no_parent_after_the_migration_and_new_runs_keep_theirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v7.db");
    let old = orch_model::RunId::new();
    {
        // Version 7: runs without a parent column.
        let c = rusqlite::Connection::open(&path).expect("open");
        for m in &MIGRATIONS[..7] {
            c.execute_batch(m).expect("migration");
        }
        c.execute_batch("PRAGMA user_version = 7").expect("version");
        c.execute(
            "INSERT INTO runs (id, ord, workflow, status, created_at, params, definition)
             VALUES (?1, 1, 'old', 'completed', 0, '{}', '{}')",
            [old.to_string()],
        )
        .expect("row");
    }
    let s = SqliteStore::open(&path).expect("migrated");
    let child = orch_model::RunId::new();
    rt().block_on(s.create_run(
        NewRun {
            parent: Some(old),
            ..run(child)
        },
        chrono::Utc::now(),
    ))
    .expect("create");
    let listed: Vec<_> = rt()
        .block_on(s.list_runs())
        .expect("list")
        .iter()
        .map(|r| (r.id, r.parent))
        .collect();
    assert_eq!(listed, vec![(child, Some(old)), (old, None)]);
    drop(s);
    // Read back from the file by a new store.
    let s = SqliteStore::open(&path).expect("reopen");
    let r = rt()
        .block_on(s.get_run(child))
        .expect("get")
        .expect("the run");
    assert_eq!(r.parent, Some(old), "the parent is stored in the file");
}

#[test]
fn a_run_in_progress_under_schema_2_goes_on_after_the_migration() {
    use orch_model::{Finished, TaskOutcome, TaskResult, TaskStatus, WorkflowStatus};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v2.db");
    let id = orch_model::RunId::new();
    {
        // Version 2: dependents one row per edge, no counter of open tasks.
        // `a` done, `b` and `c` wait for it, `d` waits for `b` and `c`.
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(MIGRATIONS[0]).expect("v1");
        c.execute_batch(MIGRATIONS[1]).expect("v2");
        c.execute_batch("PRAGMA user_version = 2").expect("version");
        c.execute(
            "INSERT INTO runs (id, ord, workflow, status, created_at, params, definition)
             VALUES (?1, 1, 'old', 'running', 0, '{}', '{}')",
            [id.to_string()],
        )
        .expect("run");
        for (idx, name, status, remaining) in [
            (0, "a", "completed", 0),
            (1, "b", "ready", 0),
            (2, "c", "ready", 0),
            (3, "d", "pending", 2),
        ] {
            c.execute(
                "INSERT INTO tasks (run, idx, name, status, attempt, remaining, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 2)",
                rusqlite::params![
                    id.to_string(),
                    idx,
                    name,
                    status,
                    u32::from(idx == 0),
                    remaining
                ],
            )
            .expect("task");
        }
        for (idx, dependent) in [(0, 1), (0, 2), (1, 3), (2, 3)] {
            c.execute(
                "INSERT INTO dependents (run, idx, dependent) VALUES (?1, ?2, ?3)",
                rusqlite::params![id.to_string(), idx, dependent],
            )
            .expect("edge");
        }
    }
    let s = SqliteStore::open(&path).expect("migrated");
    let now = chrono::Utc::now();
    let done = |index: u32, attempt: u32| Finished {
        index,
        attempt,
        retries: 0,
        outcome: TaskOutcome::Succeeded {
            result: TaskResult::ok(serde_json::json!(index)),
        },
    };
    let statuses = |s: &SqliteStore| {
        rt().block_on(s.tasks(id))
            .expect("tasks")
            .iter()
            .map(|t| t.status)
            .collect::<Vec<_>>()
    };
    let attempts = rt()
        .block_on(s.start_tasks(id, &[1, 2], "w", std::time::Duration::from_secs(60), now))
        .expect("start b and c");
    assert_eq!(attempts, vec![1, 1]);
    rt().block_on(s.finish_tasks(id, vec![done(1, 1)], now))
        .expect("finish b");
    // `d` still waits for `c`: its counter went from 2 to 1.
    assert_eq!(statuses(&s)[3], TaskStatus::Pending);
    rt().block_on(s.finish_tasks(id, vec![done(2, 1)], now))
        .expect("finish c");
    assert_eq!(
        statuses(&s)[3],
        TaskStatus::Ready,
        "the edges moved with the migration"
    );
    rt().block_on(s.start_tasks(id, &[3], "w", std::time::Duration::from_secs(60), now))
        .expect("start d");
    rt().block_on(s.finish_tasks(id, vec![done(3, 1)], now))
        .expect("finish d");
    let r = rt().block_on(s.get_run(id)).expect("get").expect("the run");
    assert_eq!(
        r.status,
        WorkflowStatus::Completed,
        "the open tasks were counted"
    );
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
