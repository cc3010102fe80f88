//! What the scheduler itself records through the `metrics` facade: the time its journal's store calls take.
//!
//! Everything else about a run (runs, attempts, ready and running steps) is
//! counted by consumers of the run's [`Event`](crate::Event)s (orch-engine's
//! `metrics` module), not here. A journaled run calls its store once per turn
//! (every step started and ended in the turn in one call), so this is one
//! record per turn, not per step. With no recorder installed a record costs a
//! few nanoseconds; the binary installs one (`orch serve`).

use std::future::Future;
use std::time::Instant;

/// Histogram, seconds: the time a store call of the scheduler's journal
/// took, labelled `op` with the [`Store`](orch_model::Store) method:
/// `create_run`, `start_tasks`, `start_and_finish`, `finish_run`.
pub const STORE_CALL_SECONDS: &str = "orch_store_call_duration_seconds";

/// Awaits `call`, a store call of method `op`, and records how long it took
/// (whether it succeeded or not).
pub(crate) async fn timed<T>(op: &'static str, call: impl Future<Output = T>) -> T {
    let t0 = Instant::now();
    let out = call.await;
    metrics::histogram!(STORE_CALL_SECONDS, "op" => op).record(t0.elapsed());
    out
}
