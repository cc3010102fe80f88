//! The store under stress, through the real binary: two `orch resume` of one
//! run, read-only commands on a database they cannot (or must not) write, a
//! full disk, a database deleted mid-run, and `orch runs list` over large
//! results.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `orch` in `dir`, with its home and its store (`DIR/orch.db`) beside the test's files.
fn orch(dir: &Path) -> Command {
    orch_with(dir, &format!("sqlite://{}", dir.join("orch.db").display()))
}

fn orch_with(dir: &Path, store: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    c.current_dir(dir)
        .env("ORCH_HOME", dir.join("home"))
        .env("ORCH_STORE_URL", store)
        .env_remove("ORCH_CONFIG")
        .env_remove("CODOMYRMEX_ORCHESTRATION_DIR");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: stdout {}\nstderr {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Runs the workflow `wf` with `cmd`, checks that it exits 1, and returns its stderr.
fn run_fails(mut cmd: Command, wf: &Path) -> String {
    let out = cmd
        .args(["run", wf.to_str().expect("utf8")])
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout {}\nstderr {err}",
        text(&out.stdout)
    );
    err
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p
}

fn runs(dir: &Path, store: &str) -> Vec<Value> {
    let out = orch_with(dir, store)
        .args(["runs", "list", "--json"])
        .output()
        .expect("runs list");
    ok(&out, "runs list");
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Two `orch resume` of one interrupted run, started together, ten times:
/// the interrupted step runs exactly once in all (each execution appends a
/// line to the ledger); one resume finishes the run, the other runs nothing
/// and says why (exit 2).
#[test]
fn two_resumes_of_one_run_execute_it_once() {
    for trial in 0..10 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let ledger = d.join("ledger.txt");
        let marker = d.join("killed");
        // The first execution kills its own orch (the step's parent) before
        // it records anything: the run is left interrupted. Executions after
        // that append to the ledger.
        let wf = write(
            d,
            "w.yaml",
            &format!(
                "name: once\nsteps:\n  - name: step\n    module: shell\n    action: script\n    parameters:\n      script: 'if [ ! -e \"$MARK\" ]; then : > \"$MARK\"; kill -9 $PPID; exit 0; fi; echo ran >> \"$LEDGER\"; sleep 0.3'\n      env: {{ MARK: \"{}\", LEDGER: \"{}\" }}\n  - name: after\n    module: core\n    action: noop\n    dependencies: [step]\n",
                marker.display(),
                ledger.display()
            ),
        );
        let first = orch(d)
            .args(["run", wf.to_str().expect("utf8")])
            .output()
            .expect("run");
        assert_ne!(first.status.code(), Some(0), "the first orch was killed");
        let store = format!("sqlite://{}", d.join("orch.db").display());
        let listed = runs(d, &store);
        assert_eq!(listed.len(), 1, "trial {trial}: {listed:?}");
        assert_eq!(listed[0]["status"], "interrupted", "trial {trial}");
        let id = listed[0]["run_id"].as_str().expect("id").to_owned();
        let spawn = || {
            orch(d)
                .args(["resume", &id])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn resume")
        };
        let (a, b) = (spawn(), spawn());
        let outs = [
            a.wait_with_output().expect("resume a"),
            b.wait_with_output().expect("resume b"),
        ];
        let ran = std::fs::read_to_string(&ledger).unwrap_or_default();
        assert_eq!(
            ran.lines().count(),
            1,
            "trial {trial}: the step ran {} times; resumes said:\n{}\n{}",
            ran.lines().count(),
            text(&outs[0].stderr),
            text(&outs[1].stderr)
        );
        let mut codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
        codes.sort();
        assert_eq!(
            codes,
            vec![Some(0), Some(2)],
            "trial {trial}: one resume finishes the run, the other refuses: {}\n{}",
            text(&outs[0].stderr),
            text(&outs[1].stderr)
        );
        let loser = outs
            .iter()
            .find(|o| o.status.code() == Some(2))
            .expect("loser");
        let said = text(&loser.stderr);
        assert!(
            said.contains("already being resumed")
                || said.contains("is still running")
                || said.contains("already ended"),
            "trial {trial}: the loser says why: {said}"
        );
        assert_eq!(runs(d, &store)[0]["status"], "completed", "trial {trial}");
    }
}

/// A database with one run whose step printed `hello`, no process using it.
fn recorded(d: &Path) -> String {
    let wf = write(
        d,
        "hello.yaml",
        "name: hello\nsteps:\n  - name: greet\n    module: shell\n    action: script\n    parameters:\n      script: echo hello\n",
    );
    let out = orch(d)
        .args(["run", wf.to_str().expect("utf8")])
        .output()
        .expect("run");
    ok(&out, "orch run");
    format!("sqlite://{}", d.join("orch.db").display())
}

/// The commands that only read, each with what its output must contain.
const READERS: &[(&[&str], &str)] = &[
    (&["runs", "list", "--json"], "\"workflow\": \"hello\""),
    (&["runs", "show", "last", "--json"], "\"greet\""),
    (&["logs", "last", "greet"], "hello"),
    (&["cache", "list"], "cached result"),
];

/// Runs each of [`READERS`] with `reader`: it must succeed and print what it should.
fn check_readers(reader: impl Fn(&[&str]) -> Output) {
    for (args, want) in READERS {
        let out = reader(args);
        ok(&out, &args.join(" "));
        assert!(
            text(&out.stdout).contains(want),
            "{}: {}",
            args.join(" "),
            text(&out.stdout)
        );
    }
}

fn snapshot(p: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let m = std::fs::metadata(p).expect("meta");
    (
        std::fs::read(p).expect("read"),
        m.modified().expect("mtime"),
    )
}

/// The commands that only read neither need nor take the write lock: with
/// another process in the middle of a write transaction, they answer (a
/// command that opened the database for writing waited for the lock, then
/// failed with "database is locked"), and the database file is unchanged.
/// This is what fails as root too, where file permissions stop nothing.
#[test]
fn read_only_commands_need_no_write_lock_and_write_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let store = recorded(d);
    let db = d.join("orch.db");
    let health_before = orch_with(d, &store)
        .arg("health")
        .output()
        .expect("health")
        .status
        .code();
    let holder = rusqlite::Connection::open(&db).expect("open");
    holder
        .execute_batch("BEGIN IMMEDIATE; UPDATE runs SET workflow = workflow;")
        .expect("hold the write lock");
    let before = snapshot(&db);
    check_readers(|args| orch_with(d, &store).args(args).output().expect("orch"));
    let out = orch_with(d, &store).arg("status").output().expect("status");
    ok(&out, "status");
    let health = orch_with(d, &store).arg("health").output().expect("health");
    assert_eq!(
        health.status.code(),
        health_before,
        "health as without the lock"
    );
    assert!(
        !text(&health.stderr).contains("sqlite"),
        "{}",
        text(&health.stderr)
    );
    assert!(
        before == snapshot(&db),
        "a command that only reads changed the database file"
    );
    holder.execute_batch("ROLLBACK").expect("release");
}

/// Whether this process runs as root (file permissions stop nothing then).
fn is_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let p = write(dir, ".uid", "");
    std::fs::metadata(p).expect("meta").uid() == 0
}

/// How to run `orch` as a user that file permissions apply to: as root,
/// through `setpriv` as `nobody` (65534) when it is there.
fn unprivileged(dir: &Path) -> Option<Vec<String>> {
    if !is_root(dir) {
        return Some(Vec::new());
    }
    let prefix: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let works = Command::new(&prefix[0])
        .args(&prefix[1..])
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    works.then_some(prefix)
}

/// A copy of the database, read-only, in a read-only directory can be
/// listed, shown and read, and nothing is written. Run as a user that the
/// permissions apply to (as root: as `nobody`, through `setpriv`); where
/// that is impossible, as root, the lock test above is the one that fails
/// without read-only opening, and this one checks that nothing is written.
#[test]
fn a_read_only_database_can_be_listed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    recorded(d);
    let set = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    // Everything in the file itself (nothing left in its write-ahead log), then a copy.
    rusqlite::Connection::open(d.join("orch.db"))
        .expect("open")
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    let ro = d.join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::copy(d.join("orch.db"), ro.join("orch.db")).expect("copy");
    set(&ro.join("orch.db"), 0o444);
    set(&ro, 0o555);
    // Another user must be able to reach the files (tempdirs are owner-only).
    set(d, 0o755);
    let prefix = unprivileged(d);
    let store = format!("sqlite://{}", ro.join("orch.db").display());
    let before = snapshot(&ro.join("orch.db"));
    let reader = |args: &[&str]| -> Output {
        let mut c = match prefix.as_deref() {
            Some([first, rest @ ..]) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_orch"));
                c
            }
            _ => Command::new(env!("CARGO_BIN_EXE_orch")),
        };
        c.current_dir(d)
            .env("ORCH_HOME", d.join("home-ro"))
            .env("ORCH_STORE_URL", &store)
            .env_remove("ORCH_CONFIG")
            .env_remove("CODOMYRMEX_ORCHESTRATION_DIR")
            .args(args)
            .output()
            .expect("orch")
    };
    check_readers(reader);
    // A command that writes fails, and says why.
    let out = reader(&["cache", "clear"]);
    if prefix.is_some() {
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("readonly"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(
        before == snapshot(&ro.join("orch.db")),
        "the file is unchanged"
    );
    for e in std::fs::read_dir(&ro).expect("ls") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        // Only root, whom the directory does not stop, gets SQLite's
        // shared-memory index and an empty log beside it, as every reader.
        let allowed = name == "orch.db"
            || (prefix.is_none()
                && (name == "orch.db-shm"
                    || (name == "orch.db-wal" && e.metadata().expect("meta").len() == 0)));
        assert!(allowed, "`{name}` was written beside a read-only database");
    }
    set(&ro, 0o755);
    set(&ro.join("orch.db"), 0o644);
}

/// A full disk is an I/O failure: exit 1, as docs/cli.md says, with a
/// message that says the database is full (here a database capped at 40
/// pages, `max_page_count`, and a step whose output does not fit).
#[test]
fn a_full_disk_exits_1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let wf = write(
        d,
        "big.yaml",
        "name: big\nsteps:\n  - name: big\n    module: shell\n    action: script\n    parameters:\n      script: \"head -c 600000 /dev/zero | tr '\\\\0' x\"\n",
    );
    let store = format!(
        "sqlite://{}?max_page_count=40",
        d.join("small.db").display()
    );
    let err = run_fails(orch_with(d, &store), &wf);
    assert!(err.contains("full"), "{err}");
}

/// A database deleted while a run uses it: the run fails (exit 1) and says
/// so, instead of "completing" into a file nobody can read.
#[test]
fn a_database_deleted_mid_run_fails_the_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let db = d.join("orch.db");
    let wf = write(
        d,
        "vanish.yaml",
        &format!(
            "name: vanish\nsteps:\n  - name: remove\n    module: shell\n    action: script\n    parameters:\n      script: 'rm -f \"$DB\"'\n      env: {{ DB: \"{}\" }}\n  - name: after\n    module: core\n    action: noop\n    dependencies: [remove]\n",
            db.display()
        ),
    );
    let err = run_fails(orch(d), &wf);
    assert!(err.contains("was deleted"), "{err}");
    assert!(!db.exists(), "no new database was created in its place");
}

/// `orch runs list` counts each run's steps from the store's summaries: runs
/// whose steps hold large results list with the right counts (the store
/// counts states with an SQL aggregate that reads no result column: see
/// `count_tasks` in orch-store-sqlite).
#[test]
fn runs_list_counts_steps_of_runs_with_large_results() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let mut y = String::from("name: large\nsteps:\n");
    for i in 0..4 {
        y.push_str(&format!(
            "  - name: s{i}\n    module: shell\n    action: script\n    parameters:\n      script: \"head -c 500000 /dev/zero | tr '\\\\0' y\"\n"
        ));
    }
    y.push_str("  - name: bad\n    module: shell\n    action: script\n    dependencies: [s0]\n    parameters:\n      script: exit 3\n");
    y.push_str("  - name: never\n    module: core\n    action: noop\n    dependencies: [bad]\n");
    let wf = write(d, "large.yaml", &y);
    for _ in 0..2 {
        let out = orch(d)
            .args(["run", wf.to_str().expect("utf8")])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    }
    let store = format!("sqlite://{}", d.join("orch.db").display());
    let listed = runs(d, &store);
    assert_eq!(listed.len(), 2);
    for r in &listed {
        assert_eq!(
            (r["tasks"].as_u64(), r["done"].as_u64()),
            (Some(6), Some(6)),
            "{r}"
        );
        let c = &r["counts"];
        assert_eq!(
            (
                c["completed"].as_u64(),
                c["failed"].as_u64(),
                c["skipped"].as_u64()
            ),
            (Some(4), Some(1), Some(1)),
            "{r}"
        );
    }
    let out = orch_with(d, &store)
        .args(["runs", "list"])
        .output()
        .expect("list");
    ok(&out, "runs list");
    assert!(text(&out.stdout).contains("6/6"), "{}", text(&out.stdout));
}
