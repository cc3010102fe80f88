//! The SQLite store's side of a journaled run, without the scheduler: how
//! long `create_run`, the turns of `start_tasks` + `finish_and_append`
//! and `finish_run` take for the workloads of SPEC §10.
//!
//! `cargo bench -p orch-store-sqlite --bench journal -- [W1|W2|W3] [N] [BATCH] [--split|--fused]`
//! (default: W3 1,000,000, then W1 and W3 at 100,000 with batches of 1,024,
//! then W2 at 100,000, one task a turn). Each case uses a fresh database
//! file. A turn is what a journaled run commits: the finish of a batch
//! with its events, and the start of the next batch (what the finish
//! released): `--split` makes that two requests and two commits
//! (`finish_and_append`, `start_tasks`), `--fused` one (`finish_and_start`).

use chrono::Utc;
use orch_model::store::StoredEvent;
use orch_model::{
    Finished, Format, Limits, NewRun, NewTask, RunId, Store, TaskOutcome, TaskPriority, TaskResult,
    WorkflowStatus, load_workflow,
};
use orch_store_sqlite::SqliteStore;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The dependencies of each task of a workload (W3 as `benches/` builds it:
/// 100 layers, each task depending on 2 random tasks of the layer before).
fn dependencies(w: &str, n: usize) -> Vec<Vec<u32>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    match w {
        "W1" => vec![Vec::new(); n],
        "W2" => (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i as u32 - 1] })
            .collect(),
        _ => {
            let width = (n / 100).max(1);
            (0..n)
                .map(|i| {
                    let layer = i / width;
                    if layer == 0 {
                        return Vec::new();
                    }
                    let prev = ((layer - 1) * width) as u64;
                    let a = prev + next() % width as u64;
                    let mut b = prev + next() % width as u64;
                    if b == a && width > 1 {
                        b = prev + (b - prev + 1) % width as u64;
                    }
                    if a == b {
                        vec![a as u32]
                    } else {
                        vec![a as u32, b as u32]
                    }
                })
                .collect()
        }
    }
}

/// The run as the scheduler hands it to the store: the definition as the
/// JSON text of the validated workflow.
fn new_run(w: &str, deps: &[Vec<u32>]) -> NewRun {
    let mut text = String::from("{\"name\": \"bench\", \"steps\": [");
    for (i, ds) in deps.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(
            text,
            "\n{{\"name\": \"t{i}\", \"module\": \"core\", \"action\": \"noop\", \"dependencies\": ["
        );
        for (k, d) in ds.iter().enumerate() {
            if k > 0 {
                text.push_str(", ");
            }
            let _ = write!(text, "\"t{d}\"");
        }
        text.push_str("]}");
    }
    text.push_str("\n]}\n");
    let wf = load_workflow(&text, Format::Json, &Limits::default(), None).expect("valid");
    let definition = serde_json::to_string(&json!({
        "workflow": wf.workflow(),
        "work_dir": "/tmp",
        "project_path": null,
    }))
    .expect("json");
    NewRun {
        id: RunId::new(),
        workflow: w.into(),
        definition,
        params: Default::default(),
        tasks: deps
            .iter()
            .enumerate()
            .map(|(i, d)| NewTask {
                name: format!("t{i}"),
                deps: d.clone(),
                priority: TaskPriority::Normal,
                needs: Default::default(),
                spec: None,
            })
            .collect(),
        parent: None,
        owner: None,
        max_parallel: None,
    }
}

/// The resident high-water mark of this process, in MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Runs one workload through the store as a journaled run would, in turns of
/// at most `batch` ready tasks, and prints what each phase took.
async fn case(dir: &std::path::Path, w: &str, n: usize, batch: usize, fused: bool) {
    let deps = dependencies(w, n);
    let run = new_run(w, &deps);
    let id = run.id;
    let def_mib = run.definition.len() as f64 / (1024.0 * 1024.0);
    let path = dir.join(format!("{w}-{n}-{batch}-{fused}.db"));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));

    let t = Instant::now();
    store.create_run(run, Utc::now()).await.expect("create");
    let create = t.elapsed();
    store
        .set_owner(id, Some("bench".into()))
        .await
        .expect("owner");

    // The scheduler's view: remaining dependencies, a ready list.
    let mut dependents = vec![Vec::new(); n];
    let mut remaining = vec![0u32; n];
    for (i, ds) in deps.iter().enumerate() {
        remaining[i] = ds.len() as u32;
        for &d in ds {
            dependents[d as usize].push(i as u32);
        }
    }
    let mut ready: Vec<u32> = (0..n as u32)
        .filter(|&i| remaining[i as usize] == 0)
        .collect();
    let result = TaskResult::ok(json!(null));
    let (mut turns, mut in_start, mut in_finish) = (0usize, Duration::ZERO, Duration::ZERO);
    let t = Instant::now();
    let take = |ready: &mut Vec<u32>| -> Vec<u32> {
        let k = ready.len().min(batch);
        ready.drain(..k).collect()
    };
    let mut current = take(&mut ready);
    let s = Instant::now();
    let mut attempts = store
        .start_tasks(id, &current, "local", Duration::from_secs(3600), Utc::now())
        .await
        .expect("start");
    in_start += s.elapsed();
    while !current.is_empty() {
        let at = Utc::now();
        for &i in &current {
            for &d in &dependents[i as usize] {
                remaining[d as usize] -= 1;
                if remaining[d as usize] == 0 {
                    ready.push(d);
                }
            }
        }
        let next = take(&mut ready);
        let ended: Vec<_> = current
            .iter()
            .zip(&attempts)
            .map(|(i, a)| json!([i, "completed", a]))
            .collect();
        let started: Vec<_> = next.iter().map(|i| json!([i, 1])).collect();
        let one = |v: &[u32]| (v.len() == 1).then(|| v[0]);
        let events = vec![
            StoredEvent {
                seq: 0,
                at,
                kind: "tasks_finished".into(),
                task: one(&current),
                data: json!({ "tasks": ended }),
            },
            StoredEvent {
                seq: 0,
                at,
                kind: "tasks_started".into(),
                task: one(&next),
                data: json!({ "tasks": started }),
            },
        ];
        let done = current
            .iter()
            .zip(&attempts)
            .map(|(&index, &attempt)| Finished {
                index,
                attempt,
                retries: 0,
                outcome: TaskOutcome::Succeeded {
                    result: result.clone(),
                },
            })
            .collect();
        let s = Instant::now();
        let next_attempts = if fused {
            let a = store
                .finish_and_start(
                    id,
                    done,
                    events,
                    &next,
                    "local",
                    Duration::from_secs(3600),
                    at,
                )
                .await
                .expect("finish and start");
            in_finish += s.elapsed();
            a
        } else {
            store
                .finish_and_append(id, done, events, at)
                .await
                .expect("finish");
            in_finish += s.elapsed();
            let s = Instant::now();
            let a = if next.is_empty() {
                Vec::new()
            } else {
                store
                    .start_tasks(id, &next, "local", Duration::from_secs(3600), Utc::now())
                    .await
                    .expect("start")
            };
            in_start += s.elapsed();
            a
        };
        turns += 1;
        current = next;
        attempts = next_attempts;
    }
    let running = t.elapsed();
    let t = Instant::now();
    store
        .finish_run(id, WorkflowStatus::Completed, Utc::now())
        .await
        .expect("finish_run");
    store.set_owner(id, None).await.expect("owner");
    let end = t.elapsed();
    let t = Instant::now();
    drop(store);
    let close = t.elapsed();
    let total = create + running + end + close;
    println!(
        "{w} n={n} batch={batch} {} (definition {def_mib:.0} MiB): create_run {:.3} s, {turns} turns {:.3} s \
         (start {:.3} s, finish {:.3} s; {:.1} µs/turn, {:.2} µs/task), finish_run {:.3} s, close {:.3} s; \
         total {:.3} s = {:.0} tasks/s; peak RSS {:.0} MiB; db {:.0} MiB",
        if fused {
            "finish_and_start"
        } else {
            "start_tasks + finish_and_append"
        },
        create.as_secs_f64(),
        running.as_secs_f64(),
        in_start.as_secs_f64(),
        in_finish.as_secs_f64(),
        running.as_secs_f64() * 1e6 / turns as f64,
        running.as_secs_f64() * 1e6 / n as f64,
        end.as_secs_f64(),
        close.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        peak_mib(),
        std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0)),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; every other word is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(String, usize, usize)> = match args.as_slice() {
        [] => vec![
            ("W3".into(), 1_000_000, 1024),
            ("W1".into(), 100_000, 1024),
            ("W3".into(), 100_000, 1024),
            ("W2".into(), 100_000, 1),
        ],
        [w, rest @ ..] => {
            let n = rest.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
            let batch = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
            vec![(w.to_uppercase(), n, batch)]
        }
    };
    // `--split` (the scheduler's calls today: a commit for the start and
    // one for the finish of each turn) or `--fused` (`finish_and_start`:
    // one commit a turn); both by default.
    let all: Vec<String> = std::env::args().collect();
    let modes: Vec<bool> = match (
        all.iter().any(|a| a == "--split"),
        all.iter().any(|a| a == "--fused"),
    ) {
        (true, false) => vec![false],
        (false, true) => vec![true],
        _ => vec![false, true],
    };
    for (w, n, batch) in cases {
        for &fused in &modes {
            rt.block_on(case(dir.path(), &w, n, batch, fused));
        }
    }
}
