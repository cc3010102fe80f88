//! The engine's metrics: every name, and the consumer of a run's events that records them through the `metrics` facade.
//!
//! The engine records; it installs nothing. With no recorder installed
//! (a library user, `orch run`) every record is a no-op; `orch serve`
//! installs a Prometheus recorder and serves it at `/metrics` (the names,
//! types, labels and meanings are listed in docs/server.md).
//!
//! A run's [`Event`]s reach the engine's sink synchronously, on the thread
//! that emits them, a few per step: `RunMetrics` counts them in atomics of
//! the run's own (an uncontended addition each: no registry lookup, no lock,
//! no allocation), and only attempt durations go to a histogram at once.
//! The counts are folded into the recorder's counters, and the ready and
//! running gauges are set from the runs going on, by [`publish`] (the
//! server calls it before each scrape) and when a run ends; a run that ends
//! leaves the gauges, so a missed event cannot leave them wrong past its run.

use crate::OrchestrationEngine;
use metrics::{Counter, Histogram, Unit};
use orch_tasks::Event;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use orch_tasks::telemetry::STORE_CALL_SECONDS;

/// Counter: runs started in this process (sub-workflow runs too).
pub const RUNS_STARTED: &str = "orch_runs_started_total";
/// Counter: runs ended, labelled `status` (`completed`, `failed`, `cancelled`).
pub const RUNS_FINISHED: &str = "orch_runs_finished_total";
/// Gauge: runs going on in this process.
pub const RUNS_RUNNING: &str = "orch_runs_running";
/// Histogram, seconds: how long runs took, labelled `status`.
pub const RUN_SECONDS: &str = "orch_run_duration_seconds";
/// Counter: attempts started.
pub const ATTEMPTS_STARTED: &str = "orch_attempts_started_total";
/// Counter: attempts ended, labelled `status` (`succeeded`, `failed`, `cancelled`).
pub const ATTEMPTS_FINISHED: &str = "orch_attempts_finished_total";
/// Histogram, seconds: how long attempts took, labelled `status`
/// (`succeeded`, `failed`; a cancelled attempt's time is not known).
pub const ATTEMPT_SECONDS: &str = "orch_attempt_duration_seconds";
/// Counter: steps that reached a final state, labelled `status`
/// (`completed`, `cached`, `failed`, `skipped`, `cancelled`).
pub const STEPS_FINISHED: &str = "orch_steps_finished_total";
/// Gauge: steps ready to start and waiting for a slot (the ready queues).
pub const STEPS_READY: &str = "orch_steps_ready";
/// Gauge: steps with an attempt running.
pub const STEPS_RUNNING: &str = "orch_steps_running";
/// Gauge: the workers the store has records of, labelled `state`
/// (`running`, `stopping`, `lost`); set by [`record_workers`].
pub const WORKERS: &str = "orch_workers";

/// Histogram buckets (seconds) for run and attempt durations: 100 µs to an hour.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Histogram buckets (seconds) for store calls: 50 µs to 2.5 s.
pub const STORE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];

/// The worker states [`WORKERS`] always reports (0 when none is in it).
const WORKER_STATES: [&str; 3] = ["running", "stopping", "lost"];

/// Turns the engine's run metrics on, and describes every metric to the
/// installed recorder (its `# HELP` text and unit). Until it is called the
/// runs' event consumer records nothing (an event then costs one load), so
/// a program without a recorder pays nothing; the binary calls it once,
/// after installing the recorder (`orch serve`).
pub fn init() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    RECORDING.store(true, Ordering::Relaxed);
    describe_counter!(RUNS_STARTED, "Runs started (sub-workflow runs too)");
    describe_counter!(RUNS_FINISHED, "Runs ended, by status");
    describe_gauge!(RUNS_RUNNING, "Runs going on in this process");
    describe_histogram!(RUN_SECONDS, Unit::Seconds, "How long runs took, by status");
    describe_counter!(ATTEMPTS_STARTED, "Attempts started");
    describe_counter!(ATTEMPTS_FINISHED, "Attempts ended, by status");
    describe_histogram!(
        ATTEMPT_SECONDS,
        Unit::Seconds,
        "How long attempts took, by status"
    );
    describe_counter!(
        STEPS_FINISHED,
        "Steps that reached a final state, by status"
    );
    describe_gauge!(STEPS_READY, "Steps ready to start, waiting for a slot");
    describe_gauge!(STEPS_RUNNING, "Steps with an attempt running");
    describe_gauge!(WORKERS, "Workers recorded in the store, by state");
    describe_histogram!(
        STORE_CALL_SECONDS,
        Unit::Seconds,
        "How long the scheduler's store calls took, by method"
    );
}

/// Sets [`WORKERS`] from the store's worker records (one store read; the
/// server calls it before each scrape of `/metrics`). A store that keeps no
/// records reports none.
///
/// # Errors
/// The store's; the gauge is then left as it was.
pub async fn record_workers(
    engine: &OrchestrationEngine,
) -> Result<(), orch_model::OrchestrationError> {
    let workers = engine.workers().await?;
    let mut counts: Vec<(&str, usize)> = WORKER_STATES.iter().map(|s| (*s, 0)).collect();
    for w in &workers {
        // A state this version does not know is not reported.
        if let Some((_, n)) = counts.iter_mut().find(|(s, _)| *s == w.state()) {
            *n += 1;
        }
    }
    for (state, n) in counts {
        metrics::gauge!(WORKERS, "state" => state).set(n as f64);
    }
    Ok(())
}

/// Folds the counts of the runs going on into the recorder (their counters)
/// and sets the ready and running gauges from them. The server calls it
/// before each scrape of `/metrics`; a run's counts are also folded in when
/// it ends. A program with an exporter of its own calls it before each
/// export.
pub fn publish() {
    let live: Vec<Arc<Counts>> = lock_live().clone();
    for c in &live {
        c.fold();
    }
    let (ready, running) = steps_now(&live);
    metrics::gauge!(STEPS_READY).set(ready as f64);
    metrics::gauge!(STEPS_RUNNING).set(running as f64);
}

/// The steps ready and running in `runs`; a run's share below zero (an end
/// whose start was not seen) counts as none.
fn steps_now(runs: &[Arc<Counts>]) -> (i64, i64) {
    runs.iter().fold((0, 0), |(r, n), c| {
        (
            r + c.ready.load(Ordering::Relaxed).max(0),
            n + c.running.load(Ordering::Relaxed).max(0),
        )
    })
}

/// Whether [`init`] was called: the runs' consumer records only then.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// The runs going on (their [`Counts`]), for [`publish`].
static LIVE: Mutex<Vec<Arc<Counts>>> = Mutex::new(Vec::new());

fn lock_live() -> std::sync::MutexGuard<'static, Vec<Arc<Counts>>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const ATTEMPT_STATUSES: [&str; 3] = ["succeeded", "failed", "cancelled"];
const STEP_STATUSES: [&str; 5] = ["completed", "cached", "failed", "skipped", "cancelled"];
const SUCCEEDED: usize = 0;
const FAILED: usize = 1;
const CANCELLED: usize = 2;

/// What one run counted since its counts were last folded into the
/// recorder, and its steps ready and running now: plain atomic additions
/// on the event's thread, no registry lookup, no compare-and-swap.
#[derive(Debug, Default)]
struct Counts {
    attempts_started: AtomicU64,
    /// By [`ATTEMPT_STATUSES`].
    attempts_finished: [AtomicU64; 3],
    /// By [`STEP_STATUSES`].
    steps_finished: [AtomicU64; 5],
    ready: AtomicI64,
    running: AtomicI64,
}

impl Counts {
    /// Adds what was counted since the last fold to the recorder's counters
    /// (every series registered, so each shows from the first scrape).
    fn fold(&self) {
        let take = |a: &AtomicU64, c: Counter| c.increment(a.swap(0, Ordering::Relaxed));
        take(&self.attempts_started, metrics::counter!(ATTEMPTS_STARTED));
        for (a, s) in self.attempts_finished.iter().zip(ATTEMPT_STATUSES) {
            take(a, metrics::counter!(ATTEMPTS_FINISHED, "status" => s));
        }
        for (a, s) in self.steps_finished.iter().zip(STEP_STATUSES) {
            take(a, metrics::counter!(STEPS_FINISHED, "status" => s));
        }
    }

    fn add(a: &AtomicI64, delta: i64) {
        a.fetch_add(delta, Ordering::Relaxed);
    }

    fn count(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// The consumer of one run's events (and those of the sub-workflow runs it
/// starts) that records the step and attempt metrics. Counters and gauges
/// are counted in the run's [`Counts`] and folded into the recorder by
/// [`publish`] and when the run ends; attempt durations go to histogram
/// handles registered once, in the recorder current when it is made.
pub(crate) struct RunMetrics {
    counts: Arc<Counts>,
    /// By attempt status: succeeded, failed.
    attempt_seconds: [Histogram; 2],
}

impl std::fmt::Debug for RunMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunMetrics")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl RunMetrics {
    /// A run's consumer, among the runs [`publish`] looks at.
    pub(crate) fn new() -> Self {
        let seconds = |s: &'static str| metrics::histogram!(ATTEMPT_SECONDS, "status" => s);
        let counts = Arc::new(Counts::default());
        lock_live().push(counts.clone());
        Self {
            counts,
            attempt_seconds: [seconds("succeeded"), seconds("failed")],
        }
    }

    /// Takes one event of the run (or of a sub-workflow run of it).
    pub(crate) fn event(&self, e: &Event) {
        if !RECORDING.load(Ordering::Relaxed) {
            return;
        }
        let c = &*self.counts;
        match e {
            Event::RunStarted { .. } => {
                metrics::counter!(RUNS_STARTED).increment(1);
                metrics::gauge!(RUNS_RUNNING).increment(1.0);
            }
            Event::RunFinished {
                status, duration, ..
            } => {
                let s = status.as_str();
                metrics::counter!(RUNS_FINISHED, "status" => s).increment(1);
                metrics::histogram!(RUN_SECONDS, "status" => s).record(*duration);
                metrics::gauge!(RUNS_RUNNING).decrement(1.0);
            }
            Event::TaskReady { .. } => Counts::add(&c.ready, 1),
            Event::TaskStarted { .. } => {
                Counts::count(&c.attempts_started);
                Counts::add(&c.ready, -1);
                Counts::add(&c.running, 1);
            }
            Event::TaskRetrying { duration, .. } => {
                // The attempt failed; the step waits for its next one.
                Counts::count(&c.attempts_finished[FAILED]);
                self.attempt_seconds[FAILED].record(*duration);
                Counts::add(&c.running, -1);
                Counts::add(&c.ready, 1);
            }
            Event::TaskSucceeded { duration, .. } => {
                Counts::count(&c.attempts_finished[SUCCEEDED]);
                self.attempt_seconds[SUCCEEDED].record(*duration);
                Counts::count(&c.steps_finished[0]);
                Counts::add(&c.running, -1);
            }
            Event::TaskCached { .. } => {
                Counts::count(&c.steps_finished[1]);
                Counts::add(&c.ready, -1);
            }
            Event::TaskFailed {
                attempts, duration, ..
            } => {
                Counts::count(&c.steps_finished[2]);
                if *attempts > 0 {
                    Counts::count(&c.attempts_finished[FAILED]);
                    self.attempt_seconds[FAILED].record(*duration);
                    Counts::add(&c.running, -1);
                }
            }
            Event::TaskSkipped { .. } => Counts::count(&c.steps_finished[3]),
            Event::TaskCancelled { attempts, .. } => {
                Counts::count(&c.steps_finished[4]);
                if *attempts > 0 {
                    Counts::count(&c.attempts_finished[CANCELLED]);
                    Counts::add(&c.running, -1);
                } else {
                    // Never started: it was ready (or still waiting for its
                    // dependencies: the share may then dip below zero, read as 0).
                    Counts::add(&c.ready, -1);
                }
            }
            _ => {}
        }
    }
}

impl Drop for RunMetrics {
    /// The run ended: its counts go to the recorder, and it leaves the
    /// runs whose ready and running steps [`publish`] adds up.
    fn drop(&mut self) {
        self.counts.fold();
        lock_live().retain(|c| !Arc::ptr_eq(c, &self.counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use orch_model::{RunId, WorkflowStatus};
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// The runs going on are one list for the process (`LIVE`), which
    /// `publish` folds: the tests that make runs take turns, so that one
    /// test's publish does not fold another's counts away.
    static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        TURNS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every metric of a snapshot as `name{label=value}` -> its value
    /// (counters and gauges as numbers, histograms as their samples).
    fn values(s: &Snapshotter) -> BTreeMap<String, Vec<f64>> {
        s.snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| {
                let key = k.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let name = if labels.is_empty() {
                    key.name().to_owned()
                } else {
                    format!("{}{{{}}}", key.name(), labels.join(","))
                };
                let v = match v {
                    DebugValue::Counter(n) => vec![n as f64],
                    DebugValue::Gauge(g) => vec![g.into_inner()],
                    DebugValue::Histogram(h) => h.into_iter().map(|x| x.into_inner()).collect(),
                };
                (name, v)
            })
            .collect()
    }

    fn ready(task: u32) -> Event {
        Event::TaskReady {
            task,
            name: "s".into(),
        }
    }

    fn started(task: u32, attempt: u32) -> Event {
        Event::TaskStarted {
            task,
            name: "s".into(),
            attempt,
        }
    }

    #[test]
    fn a_run_is_counted_by_status_and_its_gauges_end_at_zero() {
        let _turn = turn();
        RECORDING.store(true, Ordering::Relaxed);
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let ms = Duration::from_millis;
        let run_id = RunId::new();
        metrics::with_local_recorder(&recorder, || {
            let m = RunMetrics::new();
            m.event(&Event::RunStarted { run_id, total: 6 });
            for t in 0..4 {
                m.event(&ready(t));
            }
            // Step 0 succeeds at its first attempt.
            m.event(&started(0, 1));
            m.event(&Event::TaskSucceeded {
                task: 0,
                name: "a".into(),
                attempts: 1,
                duration: ms(10),
            });
            // Step 1 fails, is retried, and fails for good.
            m.event(&started(1, 1));
            m.event(&Event::TaskRetrying {
                task: 1,
                name: "b".into(),
                attempt: 1,
                delay: ms(1),
                message: "x".into(),
                duration: ms(5),
            });
            m.event(&started(1, 2));
            m.event(&Event::TaskFailed {
                task: 1,
                name: "b".into(),
                attempts: 2,
                error_type: "E".into(),
                message: "x".into(),
                duration: ms(7),
            });
            // Step 2 comes from the cache; step 4 is skipped without being ready.
            m.event(&Event::TaskCached {
                task: 2,
                name: "c".into(),
            });
            m.event(&Event::TaskSkipped {
                task: 4,
                name: "e".into(),
                reason: "when".into(),
            });
            // Step 3 is running when the run is cancelled; step 5 never became ready.
            m.event(&started(3, 1));
            m.event(&Event::TaskCancelled {
                task: 3,
                name: "d".into(),
                attempts: 1,
            });
            m.event(&Event::TaskCancelled {
                task: 5,
                name: "f".into(),
                attempts: 0,
            });
            m.event(&Event::RunFinished {
                run_id,
                status: WorkflowStatus::Cancelled,
                duration: ms(30),
            });
            // Every step that was ready started or ended: nothing waits or runs.
            assert_eq!(steps_now(std::slice::from_ref(&m.counts)), (0, 0));
        });
        let v = values(&snap);
        let one = |k: &str| v.get(k).cloned().unwrap_or_else(|| panic!("{k}: {v:#?}"));
        assert_eq!(one(RUNS_STARTED), [1.0]);
        assert_eq!(one("orch_runs_finished_total{status=cancelled}"), [1.0]);
        assert_eq!(one("orch_run_duration_seconds{status=cancelled}"), [0.03]);
        assert_eq!(one(RUNS_RUNNING), [0.0]);
        assert_eq!(one(ATTEMPTS_STARTED), [4.0]);
        assert_eq!(one("orch_attempts_finished_total{status=succeeded}"), [1.0]);
        assert_eq!(one("orch_attempts_finished_total{status=failed}"), [2.0]);
        assert_eq!(one("orch_attempts_finished_total{status=cancelled}"), [1.0]);
        assert_eq!(
            one("orch_attempt_duration_seconds{status=succeeded}"),
            [0.01]
        );
        assert_eq!(
            one("orch_attempt_duration_seconds{status=failed}"),
            [0.005, 0.007]
        );
        for (status, n) in [
            ("completed", 1.0),
            ("cached", 1.0),
            ("failed", 1.0),
            ("skipped", 1.0),
            ("cancelled", 2.0),
        ] {
            assert_eq!(
                one(&format!("orch_steps_finished_total{{status={status}}}")),
                [n],
                "{status}"
            );
        }
        // Counts, not gauges: those are set by `publish`.
        assert!(!v.contains_key(STEPS_READY), "{v:#?}");
    }

    #[test]
    fn gauges_add_up_the_runs_going_on_and_a_run_leaves_when_it_ends() {
        let _turn = turn();
        RECORDING.store(true, Ordering::Relaxed);
        let a = RunMetrics::new();
        for t in 0..3 {
            a.event(&ready(t));
        }
        a.event(&started(0, 1));
        // Another run that saw an end without its start: it counts as none.
        let b = RunMetrics::new();
        b.event(&ready(0));
        b.event(&Event::TaskSucceeded {
            task: 7,
            name: "x".into(),
            attempts: 1,
            duration: Duration::ZERO,
        });
        assert_eq!(steps_now(&[a.counts.clone(), b.counts.clone()]), (3, 1));
        // Runs going on are the ones `publish` looks at, until they end.
        let live = |m: &RunMetrics| lock_live().iter().any(|c| Arc::ptr_eq(c, &m.counts));
        assert!(live(&a) && live(&b));
        let kept = a.counts.clone();
        drop(a);
        assert!(!lock_live().iter().any(|c| Arc::ptr_eq(c, &kept)));
        assert!(live(&b));
    }

    #[test]
    fn publish_folds_the_counts_in_and_sets_the_gauges() {
        let _turn = turn();
        RECORDING.store(true, Ordering::Relaxed);
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let m = RunMetrics::new();
        m.event(&ready(0));
        m.event(&started(0, 1));
        metrics::with_local_recorder(&recorder, publish);
        let v = values(&snap);
        // Other tests' runs may be going on too: at least this one's.
        assert!(v[ATTEMPTS_STARTED][0] >= 1.0, "{v:#?}");
        assert!(v[STEPS_RUNNING][0] >= 1.0, "{v:#?}");
        assert!(
            v.contains_key("orch_steps_finished_total{status=cached}"),
            "every series shows: {v:#?}"
        );
        // What was folded in is not folded in twice.
        assert_eq!(m.counts.attempts_started.load(Ordering::Relaxed), 0);
    }
}
