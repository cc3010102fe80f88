//! The engine's metrics: every name, and the consumer of a run's events that records them through the `metrics` facade.
//!
//! The engine records; it installs nothing. With no recorder installed
//! (a library user, `orch run`) every record is a no-op; `orch serve`
//! installs a Prometheus recorder and serves it at `/metrics` (the names,
//! types, labels and meanings are listed in docs/server.md).
//!
//! A run's [`Event`]s reach the engine's sink synchronously, on the thread
//! that emits them, a few per step: [`RunMetrics`] registers its handles once
//! per run (a registry lookup each), so that each event costs an atomic
//! addition or two, and never a lookup, a lock or an allocation. What it
//! added to the gauges of ready and running steps it takes back when the
//! run ends, so an event missed (a run that stopped abnormally) cannot leave
//! a gauge wrong for longer than its run.

use crate::OrchestrationEngine;
use metrics::{Counter, Gauge, Histogram, Unit};
use orch_tasks::Event;
use std::sync::atomic::{AtomicI64, Ordering};

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

/// Describes every metric to the installed recorder (its `# HELP` text and
/// unit). The binary calls it once, after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
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

/// The consumer of one run's events (and those of the sub-workflow runs it
/// starts) that records the step and attempt metrics: made once per run,
/// with its handles registered in the recorder current when it is made.
pub(crate) struct RunMetrics {
    attempts_started: Counter,
    /// By attempt status: succeeded, failed, cancelled.
    attempts_finished: [Counter; 3],
    /// By attempt status: succeeded, failed.
    attempt_seconds: [Histogram; 2],
    /// By step status: completed, cached, failed, skipped, cancelled.
    steps_finished: [Counter; 5],
    ready: Gauge,
    running: Gauge,
    /// What this run added to `ready` and `running` (never below zero).
    ready_here: AtomicI64,
    running_here: AtomicI64,
}

impl std::fmt::Debug for RunMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunMetrics")
            .field("ready", &self.ready_here.load(Ordering::Relaxed))
            .field("running", &self.running_here.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

const SUCCEEDED: usize = 0;
const FAILED: usize = 1;
const CANCELLED: usize = 2;

impl RunMetrics {
    /// Handles registered in the current recorder.
    pub(crate) fn new() -> Self {
        let attempt = |s: &'static str| metrics::counter!(ATTEMPTS_FINISHED, "status" => s);
        let seconds = |s: &'static str| metrics::histogram!(ATTEMPT_SECONDS, "status" => s);
        let step = |s: &'static str| metrics::counter!(STEPS_FINISHED, "status" => s);
        Self {
            attempts_started: metrics::counter!(ATTEMPTS_STARTED),
            attempts_finished: [
                attempt("succeeded"),
                attempt("failed"),
                attempt("cancelled"),
            ],
            attempt_seconds: [seconds("succeeded"), seconds("failed")],
            steps_finished: [
                step("completed"),
                step("cached"),
                step("failed"),
                step("skipped"),
                step("cancelled"),
            ],
            ready: metrics::gauge!(STEPS_READY),
            running: metrics::gauge!(STEPS_RUNNING),
            ready_here: AtomicI64::new(0),
            running_here: AtomicI64::new(0),
        }
    }

    /// Takes one event of the run (or of a sub-workflow run of it).
    pub(crate) fn event(&self, e: &Event) {
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
            Event::TaskReady { .. } => self.ready(1),
            Event::TaskStarted { .. } => {
                self.attempts_started.increment(1);
                self.ready(-1);
                self.running(1);
            }
            Event::TaskRetrying { duration, .. } => {
                // The attempt failed; the step waits for its next one.
                self.attempts_finished[FAILED].increment(1);
                self.attempt_seconds[FAILED].record(*duration);
                self.running(-1);
                self.ready(1);
            }
            Event::TaskSucceeded { duration, .. } => {
                self.attempts_finished[SUCCEEDED].increment(1);
                self.attempt_seconds[SUCCEEDED].record(*duration);
                self.steps_finished[0].increment(1);
                self.running(-1);
            }
            Event::TaskCached { .. } => {
                self.steps_finished[1].increment(1);
                self.ready(-1);
            }
            Event::TaskFailed {
                attempts, duration, ..
            } => {
                self.steps_finished[2].increment(1);
                if *attempts > 0 {
                    self.attempts_finished[FAILED].increment(1);
                    self.attempt_seconds[FAILED].record(*duration);
                    self.running(-1);
                }
            }
            Event::TaskSkipped { .. } => self.steps_finished[3].increment(1),
            Event::TaskCancelled { attempts, .. } => {
                self.steps_finished[4].increment(1);
                if *attempts > 0 {
                    self.attempts_finished[CANCELLED].increment(1);
                    self.running(-1);
                } else {
                    // Never started: it was ready, or still waiting for its
                    // dependencies (then nothing is taken: never below zero).
                    self.ready(-1);
                }
            }
            _ => {}
        }
    }

    fn ready(&self, delta: i64) {
        adjust(&self.ready_here, &self.ready, delta);
    }

    fn running(&self, delta: i64) {
        adjust(&self.running_here, &self.running, delta);
    }
}

impl Drop for RunMetrics {
    /// The run ended: what it still counts as ready or running is taken back.
    fn drop(&mut self) {
        adjust(&self.ready_here, &self.ready, i64::MIN);
        adjust(&self.running_here, &self.running, i64::MIN);
    }
}

/// Adds `delta` to this run's share `here` of `gauge`, never taking the
/// share below zero (an end whose start was not seen takes nothing), and
/// moves the gauge by what the share moved.
fn adjust(here: &AtomicI64, gauge: &Gauge, delta: i64) {
    let mut moved = 0;
    let _ = here.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        let next = v.saturating_add(delta).max(0);
        moved = next - v;
        Some(next)
    });
    if moved > 0 {
        gauge.increment(moved as f64);
    } else if moved < 0 {
        gauge.decrement(-moved as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use orch_model::{RunId, WorkflowStatus};
    use std::collections::BTreeMap;
    use std::time::Duration;

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
        // Every step that was ready started or ended: nothing is left waiting or running.
        assert_eq!(one(STEPS_READY), [0.0]);
        assert_eq!(one(STEPS_RUNNING), [0.0]);
    }

    #[test]
    fn gauges_follow_a_run_and_are_taken_back_when_it_ends() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let m = metrics::with_local_recorder(&recorder, RunMetrics::new);
        // An end whose start was not seen takes nothing below zero.
        m.event(&Event::TaskSucceeded {
            task: 7,
            name: "x".into(),
            attempts: 1,
            duration: Duration::ZERO,
        });
        for t in 0..3 {
            m.event(&ready(t));
        }
        m.event(&started(0, 1));
        let v = values(&snap);
        assert_eq!(v[STEPS_READY], [2.0], "{v:#?}");
        assert_eq!(v[STEPS_RUNNING], [1.0], "{v:#?}");

        // Another run's share, dropped mid-run (the run ended abnormally):
        // it gives back what it added and leaves the gauges as they were.
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let m = metrics::with_local_recorder(&recorder, RunMetrics::new);
        m.event(&ready(0));
        m.event(&ready(1));
        m.event(&started(0, 1));
        drop(m);
        let v = values(&snap);
        assert_eq!(v[STEPS_READY], [0.0], "{v:#?}");
        assert_eq!(v[STEPS_RUNNING], [0.0], "{v:#?}");
    }
}
