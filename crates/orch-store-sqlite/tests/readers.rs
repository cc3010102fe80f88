//! Short reads (a run's record, its cancel flag) through the pool of
//! read-only connections: they do not wait for a writer, they see every
//! commit made before them, and they keep the store's answers about rows
//! that cannot be read and files that are gone.

mod common;

use common::{rt, run};
use orch_model::{RunId, Store, WorkflowStatus};
use orch_store_sqlite::SqliteStore;
use std::time::{Duration, Instant};

#[test]
fn a_run_is_read_while_another_connection_holds_the_write_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let s = SqliteStore::open(&path).expect("open");
    let rt = rt();
    let id = RunId::new();
    rt.block_on(s.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    // Another connection writes and has not committed: the store's own
    // connection would wait for its lock (up to the 10 s busy timeout).
    let holder = rusqlite::Connection::open(&path).expect("open");
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE runs SET workflow = 'changed';")
        .expect("lock");
    let t = Instant::now();
    let r = rt.block_on(s.get_run(id)).expect("read").expect("the run");
    let cancel = rt.block_on(s.cancel_requested(id)).expect("flag");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the reads waited {:?} for the writer",
        t.elapsed()
    );
    // The committed state, not the other connection's uncommitted change.
    assert_eq!(r.workflow, "w");
    assert!(!cancel);
    assert_eq!(r.tasks.total(), 1);
    holder.execute_batch("ROLLBACK").expect("rollback");
}

#[test]
fn reads_see_every_commit_made_before_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let (a, b) = (
        SqliteStore::open(&path).expect("open a"),
        SqliteStore::open(&path).expect("open b"),
    );
    let rt = rt();
    let id = RunId::new();
    assert!(rt.block_on(b.get_run(id)).expect("read").is_none());
    rt.block_on(a.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    for (store, name) in [(&a, "a"), (&b, "b")] {
        let r = rt.block_on(store.get_run(id)).expect("read");
        assert_eq!(
            r.map(|r| r.status),
            Some(WorkflowStatus::Running),
            "store {name}"
        );
    }
    rt.block_on(a.request_cancel(id)).expect("cancel");
    rt.block_on(a.finish_run(id, WorkflowStatus::Cancelled, chrono::Utc::now()))
        .expect("finish");
    for (store, name) in [(&a, "a"), (&b, "b")] {
        let r = rt
            .block_on(store.get_run(id))
            .expect("read")
            .expect("the run");
        assert_eq!(r.status, WorkflowStatus::Cancelled, "store {name}");
        assert!(r.cancel_requested, "store {name}");
        assert!(
            rt.block_on(store.cancel_requested(id)).expect("flag"),
            "store {name}"
        );
    }
}

#[test]
fn a_run_that_cannot_be_read_is_still_set_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let s = SqliteStore::open(&path).expect("open");
    let rt = rt();
    let (bad, good) = (RunId::new(), RunId::new());
    for id in [bad, good] {
        rt.block_on(s.create_run(run(id), chrono::Utc::now()))
            .expect("create");
    }
    // A read through the pool first, so that its connections are open.
    assert!(rt.block_on(s.get_run(good)).expect("read").is_some());
    rusqlite::Connection::open(&path)
        .expect("open")
        .execute(
            "UPDATE runs SET params = 'not json' WHERE id = ?1",
            [bad.to_string()],
        )
        .expect("spoil");
    let err = rt.block_on(s.get_run(bad)).expect_err("unreadable");
    assert!(err.to_string().contains("quarantined"), "{err}");
    let problems = rt.block_on(s.problems()).expect("problems");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&bad.to_string()), "{problems:?}");
    assert!(rt.block_on(s.get_run(good)).expect("read").is_some());
}

#[test]
fn once_the_file_is_known_gone_reads_fail_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let s = SqliteStore::open(&path).expect("open");
    let rt = rt();
    let id = RunId::new();
    rt.block_on(s.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    assert!(rt.block_on(s.get_run(id)).expect("read").is_some());
    std::fs::remove_file(&path).expect("delete");
    let err = rt
        .block_on(s.set_owner(id, Some("x".into())))
        .expect_err("the file is gone");
    assert!(err.to_string().contains("was deleted"), "{err}");
    // At once, within the time a check of the path holds for reads.
    let err = rt.block_on(s.get_run(id)).expect_err("and stays gone");
    assert!(err.to_string().contains("was deleted"), "{err}");
    let err = rt.block_on(s.cancel_requested(id)).expect_err("gone");
    assert!(err.to_string().contains("was deleted"), "{err}");
}

/// A run's brief record is kept while the database does not change: any
/// commit, by this store, another store on the file or a plain SQLite
/// connection (another process), is seen by the next read.
#[test]
fn brief_reads_see_every_commit_from_any_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let (a, b) = (
        SqliteStore::open(&path).expect("open a"),
        SqliteStore::open(&path).expect("open b"),
    );
    let rt = rt();
    let id = RunId::new();
    rt.block_on(a.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    let brief = |s: &SqliteStore| {
        rt.block_on(s.get_run_brief(id))
            .expect("read")
            .expect("the run")
    };
    for _ in 0..3 {
        // Read again and again with nothing written: the same answer.
        assert_eq!(brief(&a).status, WorkflowStatus::Running);
        assert_eq!(brief(&b).workflow, "w");
    }
    // Another store (as another orch process would).
    rt.block_on(b.request_cancel(id)).expect("cancel");
    assert!(brief(&a).cancel_requested);
    rt.block_on(b.finish_run(id, WorkflowStatus::Cancelled, chrono::Utc::now()))
        .expect("finish");
    assert_eq!(brief(&a).status, WorkflowStatus::Cancelled);
    // A plain connection to the file, outside any store.
    let other = rusqlite::Connection::open(&path).expect("open");
    other
        .execute(
            "UPDATE runs SET workflow = 'renamed' WHERE id = ?1",
            [id.to_string()],
        )
        .expect("update");
    assert_eq!(brief(&a).workflow, "renamed");
    assert_eq!(brief(&b).workflow, "renamed");
    // The same store's own write.
    other
        .execute(
            "UPDATE runs SET workflow = 'again' WHERE id = ?1",
            [id.to_string()],
        )
        .expect("update");
    rt.block_on(a.set_owner(id, Some("pid:1@here".into())))
        .expect("owner");
    let r = brief(&a);
    assert_eq!(
        (r.workflow.as_str(), r.owner.as_deref()),
        ("again", Some("pid:1@here"))
    );
    // A write not committed yet is not seen; once committed, it is.
    other
        .execute_batch("BEGIN IMMEDIATE; UPDATE runs SET workflow = 'pending';")
        .expect("begin");
    assert_eq!(brief(&a).workflow, "again");
    other.execute_batch("COMMIT").expect("commit");
    assert_eq!(brief(&a).workflow, "pending");
    // After the log is folded into the file and started again.
    other
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    other
        .execute(
            "UPDATE runs SET workflow = 'after checkpoint' WHERE id = ?1",
            [id.to_string()],
        )
        .expect("update");
    assert_eq!(brief(&a).workflow, "after checkpoint");
}

/// A deleted file's runs are not answered from what was kept.
#[test]
fn brief_reads_of_a_deleted_file_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orch.db");
    let s = SqliteStore::open(&path).expect("open");
    let rt = rt();
    let id = RunId::new();
    rt.block_on(s.create_run(run(id), chrono::Utc::now()))
        .expect("create");
    assert!(rt.block_on(s.get_run_brief(id)).expect("read").is_some());
    assert!(rt.block_on(s.get_run_brief(id)).expect("read").is_some());
    std::fs::remove_file(&path).expect("delete");
    let err = rt
        .block_on(s.set_owner(id, Some("x".into())))
        .expect_err("the file is gone");
    assert!(err.to_string().contains("was deleted"), "{err}");
    let err = rt
        .block_on(s.get_run_brief(id))
        .expect_err("and stays gone");
    assert!(err.to_string().contains("was deleted"), "{err}");
}
