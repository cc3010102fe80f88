//! Real `orch` processes sharing a schema of their own on the test server:
//! the binary, worker processes, `orch` commands, and what the tests read
//! from the store.
#![allow(dead_code)]

use crate::common::{Schema, server_url};
use orch_model::store::{RunRecord, StoredEvent, TaskRecord};
use orch_model::{RunId, Store};
use orch_store_postgres::{PostgresOptions, PostgresStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The lease of every worker of these tests (renewed every third of it).
pub const LEASE: Duration = Duration::from_secs(2);

/// Against hangs only: what a test waits for at most.
pub const PATIENCE: Duration = Duration::from_secs(180);

/// One test at a time: each starts several processes, and some measure
/// how soon something happens (a reclaim, a cancel) on a 2-core machine.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `orch` binary of this build: `target/PROFILE/orch` beside this test's
/// `target/PROFILE/deps/`, built once with `$CARGO build -p orch-cli --bin
/// orch` (same profile and target directory) when it is not there (e.g.
/// `cargo test -p orch-store-postgres` alone).
pub fn orch_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/PROFILE/deps");
        let bin = profile_dir.join("orch");
        if bin.is_file() {
            return bin;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let target_dir = profile_dir.parent().expect("target/PROFILE");
        let mut cmd = Command::new(&cargo);
        cmd.args(["build", "-p", "orch-cli", "--bin", "orch", "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
        }
        let status = cmd.status().unwrap_or_else(|e| {
            panic!(
                "{} is missing and `{} build -p orch-cli --bin orch` could not start ({e}); build it first",
                bin.display(),
                cargo.to_string_lossy()
            )
        });
        assert!(
            status.success() && bin.is_file(),
            "{} is missing and `{} build -p orch-cli --bin orch` failed ({status}); build it first (`cargo build -p orch-cli --bin orch`)",
            bin.display(),
            cargo.to_string_lossy()
        );
        bin
    })
}

/// Waits until `cond` holds, checking every 10 ms, for up to `limit`
/// (a guard against hangs, never a measure).
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// Sends `signal` (`KILL`, `STOP`, ...) to `pid`.
pub fn send(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// A test's schema, directory, store URL, and a store to read it with.
pub struct Fixture {
    /// Where the test's files and steps work (removed at the end).
    pub dir: PathBuf,
    /// The store's URL for `orch`: this schema, and the schema's name as
    /// `application_name`, so that the test can find its connections.
    pub url: String,
    /// The test's own store on the schema.
    pub store: PostgresStore,
    rt: tokio::runtime::Runtime,
    /// Last, so that the schema is dropped after the store is closed.
    pub schema: Schema,
}

impl Fixture {
    /// A fresh schema and directory.
    pub fn new() -> Self {
        let schema = Schema::new();
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}schema={0}&application_name={0}", schema.name);
        let store = PostgresStore::connect_with(
            PostgresOptions::parse_url(&url).expect("the test store's URL"),
        )
        .expect("open the test store");
        let dir = std::env::temp_dir().join(&schema.name);
        std::fs::create_dir_all(dir.join("pids")).expect("the test's directory");
        Self {
            dir,
            url,
            store,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            schema,
        }
    }

    /// `orch ARGS` in the test's directory, with a home of its own there and
    /// nothing from the environment.
    pub fn orch(&self) -> Command {
        let mut c = Command::new(orch_bin());
        c.current_dir(&self.dir)
            .env("ORCH_HOME", self.dir.join(".orch"))
            .env_remove("ORCH_CONFIG")
            .env_remove("ORCH_STORE_URL")
            .env_remove("CODOMYRMEX_ORCHESTRATION_DIR");
        c
    }

    /// Runs `orch ARGS --store URL` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.orch()
            .args(args)
            .args(["--store", &self.url])
            .stdin(Stdio::null())
            .output()
            .expect("orch runs")
    }

    /// Writes a file of the test's directory.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).expect("write a test file");
    }

    /// Reads a file of the test's directory ("" when it is missing).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// `orch run FILE --detach`: the submitted run's id.
    pub fn submit(&self, file: &str) -> RunId {
        let out = self.run(&["run", file, "--detach"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "orch run --detach: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text.trim()
            .parse()
            .expect("orch run --detach prints the run's id")
    }

    /// `orch worker` with id `id`, the test's lease, polling every 50 ms
    /// (plus `extra`); its standard error goes to `ID.log`.
    pub fn worker(&self, id: &str, extra: &[&str]) -> WorkerProc {
        self.worker_leased(id, LEASE, extra)
    }

    /// An `orch worker` as [`Fixture::worker`] starts one, with claims
    /// leased for `lease`.
    pub fn worker_leased(&self, id: &str, lease: Duration, extra: &[&str]) -> WorkerProc {
        let log = self.dir.join(format!("{id}.log"));
        let lease = format!("{}ms", lease.as_millis());
        let child = self
            .orch()
            .args(["worker", "--store", &self.url, "--id", id])
            .args(["--lease", &lease, "--poll", "50ms", "--grace", "5s"])
            .arg("--work-dir")
            .arg(&self.dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the worker's log"))
            .spawn()
            .expect("orch worker starts");
        WorkerProc {
            child,
            id: id.to_owned(),
            log,
        }
    }

    /// A store call, tried again while it fails (connections may be cut on
    /// purpose) for up to [`PATIENCE`].
    pub fn call<'a, T, F: Future<Output = orch_model::Result<T>> + 'a>(
        &'a self,
        what: &str,
        mut f: impl FnMut(&'a PostgresStore) -> F,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.rt.block_on(f(&self.store)) {
                Ok(v) => return v,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{what}: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// The run's record.
    pub fn run_record(&self, run: RunId) -> RunRecord {
        self.call("get_run", |s| s.get_run(run))
            .expect("the run is in the store")
    }

    /// Every run of the schema.
    pub fn runs(&self) -> Vec<RunRecord> {
        self.call("list_runs", |s| s.list_runs())
    }

    /// The run's tasks, in index order.
    pub fn tasks(&self, run: RunId) -> Vec<TaskRecord> {
        self.call("tasks", |s| s.tasks(run))
    }

    /// The run's events.
    pub fn events(&self, run: RunId) -> Vec<StoredEvent> {
        self.call("events", |s| s.events(run, 0))
    }

    /// Waits for the run to end and returns its record.
    pub fn wait_end(&self, run: RunId) -> RunRecord {
        let mut rec = None;
        wait_for(&format!("run {run} to end"), PATIENCE, || {
            let r = self.run_record(run);
            let done = r.status != orch_model::WorkflowStatus::Running;
            rec = Some(r);
            done
        });
        rec.expect("a record")
    }

    /// Ends every connection of this test's processes (and of its own
    /// store) on the server, as a restart of the server would; returns how
    /// many it ended.
    pub fn terminate_connections(&self) -> usize {
        let app = self.schema.name.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test server");
                let driver = tokio::spawn(conn);
                let rows = client
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&app],
                    )
                    .await
                    .expect("pg_terminate_backend");
                drop(client);
                let _ = driver.await;
                rows.iter().filter(|r| r.get::<_, bool>(0)).count()
            })
        })
        .join()
        .expect("the SQL thread")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An `orch worker` process (killed at the end if still alive).
pub struct WorkerProc {
    /// The process.
    pub child: Child,
    /// Its `--id`.
    pub id: String,
    log: PathBuf,
}

impl WorkerProc {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGTERM, then waits for it to exit.
    pub fn stop(&mut self) -> ExitStatus {
        send("TERM", self.pid());
        self.wait_exit()
    }

    /// Waits for it to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_for(&format!("worker {} to exit", self.id), PATIENCE, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("an exit status")
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `shell.exec` step that writes `pids/NAME` (its pid and its worker's
/// identity) when it starts, sleeps `sleep` seconds, then appends `NAME
/// TOKEN` to `ledger` and prints the same line (its result). TOKEN is
/// `$ORCH_PROCESS_TOKEN`, unique to the attempt's process: `OWNER/N`, OWNER
/// the worker process's identity (`PID:START@HOST`). The name is passed as
/// an argument, never spliced into the script.
pub fn ledger_step(name: &str, sleep: &str, deps: &[String]) -> String {
    const SCRIPT: &str = r#"echo "$$ $ORCH_OWNER" > "pids/$1"; [ "$2" = 0 ] || sleep "$2"; line="$1 $ORCH_PROCESS_TOKEN"; echo "$line" >> ledger; echo "$line""#;
    let deps = if deps.is_empty() {
        String::new()
    } else {
        format!(", dependencies: [{}]", deps.join(", "))
    };
    format!(
        "  - {{ name: {name}, module: shell, action: exec, parameters: {{ program: sh, args: ['-c', '{SCRIPT}', sh, {name}, '{sleep}'] }}{deps} }}\n"
    )
}

/// `lanes` chains of `per_lane` ledger steps (`sNNNN` depends on the step
/// `lanes` before it); `sleep(i)` gives step i's sleep.
pub fn lanes_workflow(
    lanes: usize,
    per_lane: usize,
    sleep: impl Fn(usize) -> &'static str,
) -> String {
    let mut y = String::from("name: ledger\nsteps:\n");
    for i in 0..lanes * per_lane {
        let deps: Vec<String> = if i >= lanes {
            vec![format!("s{:04}", i - lanes)]
        } else {
            Vec::new()
        };
        y.push_str(&ledger_step(&format!("s{i:04}"), sleep(i), &deps));
    }
    y
}

/// The ledger's lines, by step name: the tokens of the attempts that
/// reached their end.
pub fn ledger(f: &Fixture) -> BTreeMap<String, Vec<String>> {
    let mut by_step: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in f.read("ledger").lines() {
        let (name, token) = line.split_once(' ').expect("ledger lines are `NAME TOKEN`");
        by_step
            .entry(name.to_owned())
            .or_default()
            .push(token.to_owned());
    }
    by_step
}

/// The token a completed ledger step printed (its stored result).
pub fn result_token(t: &TaskRecord) -> String {
    let out = t
        .result
        .as_ref()
        .and_then(|r| r.data.get("stdout"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let (name, token) = out.trim().split_once(' ').unwrap_or_default();
    assert_eq!(name, t.name, "task {}'s result: {out:?}", t.name);
    token.to_owned()
}

/// The worker process identity (`PID:START@HOST`) of a token (`OWNER/N`).
pub fn owner_of(token: &str) -> &str {
    token.rsplit_once('/').map_or(token, |(o, _)| o)
}

/// `tasks_finished` events of a run: task index -> (attempt, worker) of each.
pub fn finished(events: &[StoredEvent]) -> BTreeMap<u32, Vec<(u64, String)>> {
    let mut out: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "tasks_finished") {
        let worker = e.data["worker"].as_str().unwrap_or_default().to_owned();
        for t in e.data["tasks"].as_array().into_iter().flatten() {
            let idx = t[0].as_u64().and_then(|i| u32::try_from(i).ok());
            let attempt = t[2].as_u64().unwrap_or(0);
            if let Some(idx) = idx {
                out.entry(idx).or_default().push((attempt, worker.clone()));
            }
        }
    }
    out
}
