//! Running a validated workflow: the dependency-counting scheduler with a priority ready queue.
//!
//! One coordinator owns all state (flat arrays indexed by step). Each step
//! that starts runs as its own tokio task, which performs the attempts
//! (timeouts, retries with backoff) and reports one outcome back. Finishing a
//! step costs O(its dependents): their counters drop, and a step whose counter
//! reaches zero is released (trigger rule, `when`, `${...}` resolution) into
//! the ready queue, which starts steps by priority, FIFO within a priority.
//!
//! One concept per file: `options` (what a run is given and reports),
//! `preflight` (checks before anything runs), `queue` (the ready queue),
//! `state` (per-step arrays, release and completion), `coordinator` (the
//! main loop), `journal` (the run kept in a store), `attempt` (a step's
//! attempts), `identity` (which process drives a run), `grace` (how a run
//! stops: the cancel grace of the steps that run after a stop), `shown` (a
//! step's stored record as what shows a run shows it).

mod attempt;
mod coordinator;
mod fanout;
mod grace;
mod identity;
mod journal;
mod options;
mod preflight;
mod queue;
mod shown;
mod state;

pub use coordinator::{drive, run_workflow};
pub use fanout::items_run_id;
pub(crate) use fanout::{Gathered, gathered, items_workflow};
pub use grace::DEFAULT_CANCEL_GRACE;
pub(crate) use grace::stopped_by_timeout;
pub use identity::{owner_alive, process_identity};
pub use options::{RunOptions, RunReport, StepReport};
pub use preflight::prepare;
pub use shown::{Shown, gathered_note};
