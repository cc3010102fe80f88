//! The `orch` binary as a user runs it: W1/W2/W3 at 100,000 steps and W3 at
//! 1,000,000, each run in a fresh process with a fresh `ORCH_HOME` and its
//! output sent to files, with default flags (the default SQLite store), with
//! `--store memory://`, and with `--json`; wall time and peak resident
//! memory of the `orch` process, beside the library's time for the same
//! workflow (read, validated and run in this process with the same kind of
//! store). The table of docs/benchmarks.md, "The binary as the user runs it".
//!
//! `cli-report [--quick] [--orch PATH] [--no-library]`: `--quick` runs the
//! three workloads at 10,000 steps only; `--orch` names the binary (default:
//! the `orch` next to this executable, `target/release/orch`, which
//! `cargo build --release -p orch-cli` builds).
//!
//! Peak memory is the child's `ru_maxrss`: each `orch` is started by a
//! fresh copy of this program (`--measure`), whose only child it is, and
//! which reads `getrusage(RUSAGE_CHILDREN)` after waiting for it.

use orch_benches::Workload;
use orch_model::{Format, Limits, load_workflow};
use orch_tasks::ActionRegistry;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// How `orch run` is invoked in a row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Default flags: the default SQLite store in `ORCH_HOME`.
    Default,
    /// `--store memory://`.
    Memory,
    /// Default flags and `--json`.
    Json,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Default => "default (SQLite)",
            Mode::Memory => "`--store memory://`",
            Mode::Json => "`--json` (SQLite)",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Default => &[],
            Mode::Memory => &["--store", "memory://"],
            Mode::Json => &["--json"],
        }
    }
}

/// What one `orch` run took.
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: f64,
    peak_kib: u64,
    code: i32,
}

/// `--measure DIR ORCH ARGS...`: runs `ORCH ARGS...` in `DIR` with
/// `ORCH_HOME=DIR/home`, standard output and error to `DIR/stdout` and
/// `DIR/stderr`; prints `WALL_SECONDS PEAK_KIB EXIT_CODE`.
fn measure_mode(args: &[String]) -> Result<(), String> {
    let [dir, orch, rest @ ..] = args else {
        return Err("--measure DIR ORCH ARGS...".into());
    };
    let dir = Path::new(dir);
    let file = |name: &str| {
        std::fs::File::create(dir.join(name)).map_err(|e| format!("{}: {e}", dir.display()))
    };
    let mut cmd = Command::new(orch);
    cmd.args(rest)
        .current_dir(dir)
        .env("ORCH_HOME", dir.join("home"))
        .stdin(Stdio::null())
        .stdout(file("stdout")?)
        .stderr(file("stderr")?);
    for var in [
        "ORCH_CONFIG",
        "ORCH_STORE_URL",
        "ORCH_MAX_WORKERS",
        "CODOMYRMEX_ORCHESTRATION_DIR",
        "CODOMYRMEX_MAX_WORKERS",
        "CODOMYRMEX_RESOURCE_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    let t = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {orch}: {e}"))?;
    let wall = t.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_err(|e| format!("getrusage: {e}"))?;
    // Linux reports ru_maxrss in KiB.
    println!("{wall} {} {}", usage.max_rss(), status.code().unwrap_or(-1));
    Ok(())
}

/// Runs `orch run FILE FLAGS` through a `--measure` child, in a fresh
/// directory below `work`.
fn measure(orch: &Path, work: &Path, def: &Path, mode: Mode) -> Result<Measured, String> {
    let dir = work.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("--measure")
        .arg(&dir)
        .arg(orch)
        .arg("run")
        .arg(def)
        .args(mode.flags())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let parsed = (|| {
        Some(Measured {
            wall: it.next()?.parse().ok()?,
            peak_kib: it.next()?.parse().ok()?,
            code: it.next()?.parse().ok()?,
        })
    })();
    let m = parsed.ok_or_else(|| {
        format!(
            "the measuring child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if m.code != 0 {
        let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        eprintln!(
            "note: orch exited {} ({mode:?}); the end of its standard error:\n{}",
            m.code,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    if mode == Mode::Json {
        // The document must be complete: it parses.
        let stdout = std::fs::read(dir.join("stdout")).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&stdout)
            .map_err(|e| format!("orch run --json wrote no JSON document: {e}"))?;
        assert!(v["steps"].is_array(), "the report's steps");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(m)
}

/// The library's time for the same job: read and validate the definition,
/// then run it journaled through a fresh store of the same kind (the CLI
/// journals to `memory://` too), with room for every ready step.
fn library_secs(
    rt: &tokio::runtime::Runtime,
    text: &str,
    mode: Mode,
    work: &Path,
    registry: &ActionRegistry,
) -> f64 {
    let db = work.join(format!("library-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let store: std::sync::Arc<dyn orch_model::Store> = match mode {
        Mode::Memory => std::sync::Arc::new(orch_tasks::MemoryStore::new()),
        Mode::Default | Mode::Json => {
            std::sync::Arc::new(orch_store_sqlite::SqliteStore::open(&db).expect("a SQLite store"))
        }
    };
    let t = Instant::now();
    let wf = load_workflow(text, Format::Json, &Limits::default(), None).expect("valid");
    let report = orch_benches::run_orch_stored(rt, &wf, registry, store);
    let secs = t.elapsed().as_secs_f64();
    assert!(report.succeeded());
    drop(report);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    secs
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--measure") {
        if let Err(e) = measure_mode(&args[1..]) {
            eprintln!("cli-report: {e}");
            std::process::exit(2);
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let library = !args.iter().any(|a| a == "--no-library");
    let orch = match args.iter().position(|a| a == "--orch") {
        Some(i) => match args.get(i + 1) {
            Some(p) => PathBuf::from(p),
            None => {
                eprintln!("cli-report: --orch needs the path of the orch binary");
                std::process::exit(2);
            }
        },
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("orch")))
            .unwrap_or_else(|| PathBuf::from("orch")),
    };
    if !orch.is_file() {
        eprintln!(
            "cli-report: no orch binary at {}; build it with `cargo build --release -p orch-cli`, or pass --orch PATH",
            orch.display()
        );
        std::process::exit(2);
    }
    let rows: Vec<(Workload, usize)> = if quick {
        vec![
            (Workload::Wide, 10_000),
            (Workload::Chain, 10_000),
            (Workload::Layered, 10_000),
        ]
    } else {
        vec![
            (Workload::Wide, 100_000),
            (Workload::Chain, 100_000),
            (Workload::Layered, 100_000),
            (Workload::Layered, 1_000_000),
        ]
    };
    let work = std::env::temp_dir().join(format!("orch-cli-report-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("cli-report: {}: {e}", work.display());
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = ActionRegistry::with_builtins();
    println!(
        "| workload | steps | `orch run` | wall s | steps/s | peak RSS MiB | library s (same store) | binary / library |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for (w, n) in rows {
        let text = w.definition_json(n);
        let def = work.join(format!("{}-{n}.json", w.label()));
        std::fs::write(&def, &text).expect("write the definition");
        let mut sqlite_library = None;
        for mode in [Mode::Default, Mode::Memory, Mode::Json] {
            let m = match measure(&orch, &work, &def, mode) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("cli-report: {} {n} {mode:?}: {e}", w.label());
                    failed = true;
                    continue;
                }
            };
            failed |= m.code != 0;
            let (lib, ratio) = if library {
                // `--json` changes nothing in the library's run: the
                // SQLite figure serves both rows.
                let l = match (mode, sqlite_library) {
                    (Mode::Json, Some(l)) => l,
                    _ => library_secs(&rt, &text, mode, &work, &registry),
                };
                if mode == Mode::Default {
                    sqlite_library = Some(l);
                }
                (format!("{l:.2}"), format!("{:.1}x", m.wall / l))
            } else {
                ("-".to_owned(), "-".to_owned())
            };
            println!(
                "| {} | {n} | {} | {:.2}{} | {:.0} | {:.0} | {lib} | {ratio} |",
                w.label(),
                mode.label(),
                m.wall,
                if m.code == 0 {
                    String::new()
                } else {
                    format!(" (exit {})", m.code)
                },
                n as f64 / m.wall,
                m.peak_kib as f64 / 1024.0,
            );
        }
        let _ = std::fs::remove_file(&def);
    }
    let _ = std::fs::remove_dir_all(&work);
    if failed {
        std::process::exit(1);
    }
}
