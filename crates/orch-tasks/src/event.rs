//! The closed set of events a run emits, and their consumers.
//!
//! A run has one stream of events. The scheduler emits each step's change
//! once, at one place (its state's `record`), and the consumers see the same
//! events in the same order: first the run's journal (the store), which
//! turns each final state into a record committed at the end of the turn
//! (dependents are released only after that commit: the commit barrier),
//! then the run's [`EventSink`] (the workflow manager's progress, the
//! engine's counters, metrics and engine events, the run handle's channel,
//! which the CLI prints). Attempt-level events (an attempt started, a retry)
//! are emitted by the executor where the attempt runs.

use orch_model::CompactString;
use orch_model::{OnConflict, RunId, TaskStatus, WorkflowStatus};
use std::time::Duration;

/// Something that happened in a run. Steps are named by their index in the
/// workflow and by name.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The run started.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// How many steps it has.
        total: usize,
    },
    /// The run waits, before its first step, for a slot of its workflow's
    /// concurrency key: every slot is held by other runs. Told once, by the
    /// engine (not by the scheduler: the run has not started), for what
    /// shows the run to tell its user (`orch run` prints it as a notice).
    RunWaiting {
        /// The run.
        run_id: RunId,
        /// The rendered key.
        key: String,
        /// How many runs of the key may run at once.
        limit: u32,
        /// The runs that hold its slots (their ids).
        holders: Vec<String>,
        /// What the run does about it: `queue` waits; `cancel_running`
        /// asked the holders to stop and waits for them to end.
        on_conflict: OnConflict,
    },
    /// A step's dependencies are done and its parameters resolved; it waits for a slot.
    TaskReady {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
    },
    /// An attempt started.
    TaskStarted {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// The step succeeded.
    TaskSucceeded {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// Attempts it took.
        attempts: u32,
        /// Time of the last attempt.
        duration: Duration,
    },
    /// The step failed for good (retries exhausted, or not retryable).
    TaskFailed {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// Attempts it took.
        attempts: u32,
        /// The kind of failure.
        error_type: String,
        /// What went wrong.
        message: String,
        /// Time of the last attempt (zero when none ran: `attempts` is 0).
        duration: Duration,
    },
    /// An attempt failed and another one follows after `delay`.
    TaskRetrying {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// Why the attempt failed.
        message: String,
        /// How long the failed attempt took.
        duration: Duration,
    },
    /// The step will not run.
    TaskSkipped {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// Why.
        reason: String,
    },
    /// The step was cancelled.
    TaskCancelled {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
        /// Attempts it made in this run before it was stopped; 0 when it
        /// never started.
        attempts: u32,
    },
    /// The step's result came from the cache (emitted once result caching is
    /// implemented; it is part of the contract now so consumers handle it).
    TaskCached {
        /// Step index.
        task: u32,
        /// Step name.
        name: CompactString,
    },
    /// The run ended.
    RunFinished {
        /// The run.
        run_id: RunId,
        /// How it ended: completed, failed or cancelled.
        status: WorkflowStatus,
        /// How long it took.
        duration: Duration,
    },
}

impl Event {
    /// The step the event is about, if any.
    pub fn task(&self) -> Option<u32> {
        match self {
            Event::TaskReady { task, .. }
            | Event::TaskStarted { task, .. }
            | Event::TaskSucceeded { task, .. }
            | Event::TaskFailed { task, .. }
            | Event::TaskRetrying { task, .. }
            | Event::TaskSkipped { task, .. }
            | Event::TaskCancelled { task, .. }
            | Event::TaskCached { task, .. } => Some(*task),
            Event::RunStarted { .. } | Event::RunWaiting { .. } | Event::RunFinished { .. } => None,
        }
    }

    /// The state a step is in after this event, if it is about a step.
    pub fn task_status(&self) -> Option<TaskStatus> {
        match self {
            Event::TaskReady { .. } | Event::TaskRetrying { .. } => Some(TaskStatus::Ready),
            Event::TaskStarted { .. } => Some(TaskStatus::Running),
            Event::TaskSucceeded { .. } | Event::TaskCached { .. } => Some(TaskStatus::Completed),
            Event::TaskFailed { .. } => Some(TaskStatus::Failed),
            Event::TaskSkipped { .. } => Some(TaskStatus::Skipped),
            Event::TaskCancelled { .. } => Some(TaskStatus::Cancelled),
            Event::RunStarted { .. } | Event::RunWaiting { .. } | Event::RunFinished { .. } => None,
        }
    }
}

/// A consumer of a run's events (the one stream of a run: the workflow
/// manager's progress, the engine's counters and events, a printer's
/// channel). The scheduler and the executor call it synchronously, in the
/// order the events happen, on the thread that emits them, with the id of
/// the run: it must be quick (count, or hand the event to a channel).
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Takes one event of run `run`.
    fn event(&self, run: RunId, event: Event);
}

/// A channel of events is a sink (the run's id is dropped).
impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn event(&self, _run: RunId, event: Event) {
        // A receiver that went away only stops listening.
        let _ = self.send(event);
    }
}

/// A channel of events with their run's id is a sink.
impl EventSink for tokio::sync::mpsc::UnboundedSender<(RunId, Event)> {
    fn event(&self, run: RunId, event: Event) {
        let _ = self.send((run, event));
    }
}

/// Several sinks, each given every event, in order.
pub struct Fanout(pub Vec<std::sync::Arc<dyn EventSink>>);

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fanout({} sinks)", self.0.len())
    }
}

impl EventSink for Fanout {
    fn event(&self, run: RunId, event: Event) {
        if let Some((last, first)) = self.0.split_last() {
            for s in first {
                s.event(run, event.clone());
            }
            last.event(run, event);
        }
    }
}

/// Where one run's events go: its sink, with the run's id.
#[derive(Clone)]
pub struct Emitter {
    run: RunId,
    sink: std::sync::Arc<dyn EventSink>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// Run `run`'s events, to `sink`.
    pub fn new(run: RunId, sink: std::sync::Arc<dyn EventSink>) -> Self {
        Self { run, sink }
    }

    /// Hands one event to the sink.
    pub fn send(&self, event: Event) {
        self.sink.event(self.run, event);
    }
}
