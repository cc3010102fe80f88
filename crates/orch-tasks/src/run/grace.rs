//! How a run stops after a cancel or its run timeout: at once, or first
//! through the cancel grace, in which the steps whose trigger rule runs
//! after a failure (`always`, `all_done`, `failure`, `one_failed`; which
//! includes `finally:` and `on_failure:` steps) still run.
//!
//! Those steps hold a token of their own (`State::survive`) from their
//! start, so that a cancel does not stop them; every other running step is
//! stopped by the run's token. When the stop begins, each ready step that
//! would not run after a stop is cancelled, and so is each step released
//! later in the grace whose rule does not run after a stop (its dependents
//! are then released in turn), so that the steps that do run are reached
//! through the graph as usual. When the grace ends (`cancel_grace`, 30 s
//! unless the run or the workflow says otherwise), their token is cancelled
//! too: what still runs is stopped, and nothing more starts. A run whose
//! workflow has no such step stops at once, as before, and pays nothing.
//!
//! A step stopped by the run timeout (it was running under the run's token)
//! fails with `TimeoutError`, as a step past its own timeout does, so that
//! `one_failed` and `on_failure:` steps see the run's failure.

use super::options::RunOptions;
use super::state::State;
use crate::event::Event;
use crate::executor::Outcome;
use chrono::{DateTime, Utc};
use orch_model::TaskStatus;
use orch_model::graph::DepGraph;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The cancel grace when neither the run nor its workflow sets one.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(30);

/// Where a run stands on its way to a stop.
pub(super) struct Stop {
    /// The grace steps that run after a stop get (`None`: the workflow has
    /// none; it stops at once).
    grace: Option<Duration>,
    phase: Phase,
    /// Cancels the survivors' token when the run is dropped.
    _guard: Option<DropGuard>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// The run's token fired; steps that run after a stop may, until then.
    Grace(Instant),
    Stopped,
}

impl Stop {
    /// Sets up the run's stop: when its workflow has steps that run after a
    /// stop, they get a token of their own (`st.survive`).
    pub(super) fn new(st: &mut State<'_>, opts: &RunOptions) -> Self {
        let any = st.hot.iter().any(|h| h.run_if.runs_after_stop());
        if !any {
            return Self {
                grace: None,
                phase: Phase::Running,
                _guard: None,
            };
        }
        let token = CancellationToken::new();
        st.survive = Some(token.clone());
        let grace = opts
            .cancel_grace
            .or(st.wf.workflow().cancel_grace)
            .unwrap_or(DEFAULT_CANCEL_GRACE);
        Self {
            grace: Some(grace),
            phase: Phase::Running,
            _guard: Some(token.drop_guard()),
        }
    }

    /// Whether the run is in its grace (stopping, and steps that run after a
    /// stop may still start).
    pub(super) fn in_grace(&self) -> bool {
        matches!(self.phase, Phase::Grace(_))
    }

    /// When the grace ends, while in it.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Grace(d) => Some(d),
            _ => None,
        }
    }

    /// The run's token fired (a cancel, or the run timeout): the grace
    /// begins, or, without steps that run after a stop (or with a grace of
    /// zero), the run stops at once. Called again, does nothing.
    pub(super) fn begin(&mut self, st: &mut State<'_>, dependents: &DepGraph) {
        if self.phase != Phase::Running {
            return;
        }
        let grace = match self.grace {
            Some(g) if !g.is_zero() => g,
            _ => {
                self.expire(st);
                return;
            }
        };
        self.phase = Phase::Grace(Instant::now() + grace);
        st.grace = true;
        if let Some(t) = &st.survive {
            // Immediate actions started from now on are survivors' too.
            st.ctx.cancel = t.clone();
        }
        let now = Utc::now();
        // Ready steps that do not run after a stop are cancelled; the
        // others keep their places.
        let mut keep = Vec::new();
        let mut ended = Vec::new();
        while let Some(i) = st.ready.pop() {
            if st.hot[i as usize].run_if.runs_after_stop() {
                keep.push(i);
            } else {
                st.cancel_unstarted(i, now);
                ended.push(i);
            }
        }
        for i in keep {
            let p = st.hot[i as usize].priority;
            st.ready.push(p, i);
        }
        for i in ended {
            st.done(i, dependents, true, now);
        }
        // Steps whose dependencies ended after the token fired were not
        // released then: they are now.
        for i in 0..st.status.len() as u32 {
            if st.status[i as usize] == TaskStatus::Pending
                && st.remaining[i as usize] == 0
                && st.release(i, now)
            {
                st.finish(i, dependents, true, now);
            }
        }
    }

    /// The grace is over (or there is none): the survivors' token is
    /// cancelled, and nothing more starts.
    pub(super) fn expire(&mut self, st: &mut State<'_>) {
        self.phase = Phase::Stopped;
        st.grace = false;
        if let Some(t) = &st.survive {
            t.cancel();
        }
    }

    /// A step stopped by the run timeout fails with `TimeoutError`; a
    /// survivor stopped when the grace ended stays cancelled.
    pub(super) fn timed_out(st: &State<'_>, mut out: Outcome, limit: Duration) -> Outcome {
        let survivor = st.survive.is_some() && st.hot[out.task as usize].run_if.runs_after_stop();
        if out.status == TaskStatus::Cancelled && !survivor {
            out.status = TaskStatus::Failed;
            stopped_by_timeout(&mut out.result, limit);
        }
        out
    }
}

/// Makes `result` the failure of a step stopped by its run's timeout of
/// `limit` (a run one process drives, or a worker's).
pub(crate) fn stopped_by_timeout(result: &mut orch_model::TaskResult, limit: Duration) {
    result.success = false;
    result.error_type = Some("TimeoutError".into());
    result.error_message = Some(format!(
        "stopped by the run's timeout of {}",
        orch_model::duration::format_duration(limit)
    ));
}

impl State<'_> {
    /// The token step `i`'s attempts watch: the survivors' for a step that
    /// runs after a stop, else the run's.
    pub(super) fn token_for(&self, i: u32) -> CancellationToken {
        match &self.survive {
            Some(t) if self.hot[i as usize].run_if.runs_after_stop() => t.clone(),
            _ => self.ctx.cancel.clone(),
        }
    }

    /// Step `j`, released (or ready) while the run stops, does not run after
    /// a stop: it ends `cancelled` without starting. Returns true (its
    /// dependents are to be released).
    pub(super) fn cancel_unstarted(&mut self, j: u32, now: DateTime<Utc>) -> bool {
        self.set_status(j, TaskStatus::Cancelled);
        let r = &mut self.reports[j as usize];
        r.finished_at = Some(now);
        r.note = Some("the run was stopped before it started".to_owned());
        let name = self.name(j);
        self.record(Event::TaskCancelled {
            task: j,
            name,
            attempts: 0,
        });
        true
    }
}
