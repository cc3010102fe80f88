//! SIGINT, SIGTERM and SIGHUP during `orch run`, `orch project run` and
//! `orch resume`: the run is interrupted, not cancelled.
//!
//! On the first of them orch starts no new step process, stops driving the
//! run where it is (what was committed stays committed; the steps that were
//! running stay `running` in the store), stops every process it started
//! (SIGTERM to the steps' process groups and to every process marked as
//! started by this orch, up to the grace period, then SIGKILL; a second
//! signal skips the grace period), prints how to resume, and exits with 128
//! plus the signal's number (130, 143, 129). Once orch has exited the run
//! shows as `interrupted`: `orch resume RUN` re-runs the steps that were
//! running and continues, `orch cancel RUN` marks it cancelled.
//!
//! A run submitted to the store's workers (`orch run` on a `postgres://`
//! store) is not this process's to interrupt: a signal only stops following
//! it, and orch says how to follow or cancel it (same exit code).

use crate::exit;
use orch_model::OrchestrationError;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// A signal that interrupts a run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    name: &'static str,
    number: u8,
}

impl Received {
    /// The exit code: 128 plus the signal's number.
    pub(crate) fn exit_code(self) -> u8 {
        exit::SIGNAL_BASE + self.number
    }
}

/// The interrupting signals, listened to from when a run starts.
#[derive(Debug)]
pub(crate) struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Listens to SIGINT, SIGTERM and SIGHUP (inside a runtime). `None`, with
    /// a note, when the system refuses: the signals then act as by default.
    pub(crate) fn install() -> Option<Self> {
        let listen = || -> std::io::Result<Self> {
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        };
        match listen() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "orch: note: cannot listen to signals ({e}); SIGINT, SIGTERM and SIGHUP will end orch at once"
                );
                None
            }
        }
    }

    async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.int.recv() => Received { name: "SIGINT", number: 2 },
            _ = self.term.recv() => Received { name: "SIGTERM", number: 15 },
            _ = self.hup.recv() => Received { name: "SIGHUP", number: 1 },
        }
    }
}

/// Drives `run` as a task of the runtime (as the engine drives a run) until
/// it ends, or until a signal arrives: then interrupts it as the module says
/// and returns the signal. A `submitted` run (the store's workers run it;
/// this process only follows it) is left to its workers: only the
/// following stops.
pub(crate) async fn run_until_signal<T: Send + 'static>(
    run: impl Future<Output = Result<T, OrchestrationError>> + Send + 'static,
    signals: Option<Signals>,
    grace: Duration,
    submitted: bool,
) -> Result<Result<T, OrchestrationError>, Received> {
    let joined = |r: Result<Result<T, OrchestrationError>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| {
            Err(OrchestrationError::TaskExecution {
                message: format!("the run's task ended abnormally: {e}"),
            })
        })
    };
    let mut task = tokio::spawn(run);
    let Some(mut signals) = signals else {
        return Ok(joined(task.await));
    };
    let received = tokio::select! {
        r = &mut task => return Ok(joined(r)),
        s = signals.recv() => s,
    };
    if submitted {
        // Nothing of the run is in this process: it goes on on the workers.
        task.abort();
        let _ = task.await;
        return Err(received);
    }
    eprintln!(
        "orch: {}: stopping the running steps (up to {grace:?}; a second signal kills them at once)",
        received.name
    );
    // No step process starts from now on; then the run stops where it is.
    tokio::task::block_in_place(orch_engine::process::begin_exit);
    task.abort();
    let _ = task.await;
    orch_engine::process::terminate_owned(grace, async {
        signals.recv().await;
    })
    .await;
    Err(received)
}

/// Says what became of the interrupted run and returns the exit code.
pub(crate) fn report(
    received: Received,
    run_id: orch_model::RunId,
    recorded: bool,
    json_out: bool,
) -> u8 {
    if json_out {
        println!(
            "{}",
            serde_json::json!({
                "run_id": run_id,
                "status": if recorded { "interrupted" } else { "not_recorded" },
                "success": false,
                "signal": received.name,
            })
        );
    }
    if recorded {
        eprintln!(
            "orch: run {run_id} interrupted by {}; `orch resume {run_id}` re-runs its interrupted steps and continues, `orch cancel {run_id}` marks it cancelled",
            received.name
        );
    } else {
        eprintln!(
            "orch: interrupted by {} before the run was recorded; nothing ran",
            received.name
        );
    }
    received.exit_code()
}

/// Says that following a submitted run stopped while the run goes on on the
/// store's workers, how to follow or cancel it, and returns the exit code.
pub(crate) fn report_submitted(
    received: Received,
    run_id: orch_model::RunId,
    json_out: bool,
) -> u8 {
    if json_out {
        println!(
            "{}",
            serde_json::json!({
                "run_id": run_id,
                "status": "running",
                "success": false,
                "signal": received.name,
            })
        );
    }
    eprintln!(
        "orch: {}: stopped following run {run_id}; it goes on on the workers: `orch runs show {run_id}` shows its progress, `orch cancel {run_id}` stops it",
        received.name
    );
    received.exit_code()
}
