//! A step's stored record as what shows a run shows it (`orch run`'s table
//! of a run its workers ran, `orch runs show`): the same for a run one
//! process drove and for one the workers ran.
//!
//! - A skipped step made no attempt and has no start. A worker claims a
//!   step before it decides, at release, that it is skipped; the claim
//!   counts an attempt and a start in the store (it is the fencing token),
//!   which are not the step's.
//! - The step that gathers the items of a literal fan-out (`for_each:` a
//!   list, `matrix:`) runs nothing: no attempt, no start (on workers its
//!   claim has them), and "N items gathered" as its note once it gathered
//!   them (a run one process drives says so in its report; no store keeps
//!   the note of a step that did not skip).

use orch_model::store::TaskRecord;
use orch_model::{SavedRun, TaskStatus, ValidWorkflow};

/// The note of a step that gathered `items` items.
pub fn gathered_note(items: usize) -> String {
    let s = if items == 1 { "" } else { "s" };
    format!("{items} item{s} gathered")
}

/// What a run's definition tells about its records (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Shown {
    /// By step index: the number of items of a step that gathers a
    /// literal fan-out's items.
    gathers: Vec<Option<usize>>,
}

impl Shown {
    /// Of a run of `wf`.
    pub fn of(wf: &ValidWorkflow) -> Self {
        use orch_model::definition::FanOut;
        let steps = &wf.workflow().steps;
        if !steps.iter().any(|s| s.fan_out.is_some()) {
            return Self::default();
        }
        let gathers = (0u32..)
            .zip(steps)
            .map(|(i, s)| match s.fan_out.as_deref() {
                Some(FanOut::List(_) | FanOut::Matrix(_)) => Some(wf.graph().deps(i).len()),
                _ => None,
            })
            .collect();
        Self { gathers }
    }

    /// Of a run whose saved definition (`RunRecord::definition`) is
    /// `definition`; it is read only when it has fan-out steps (an
    /// unreadable one tells nothing: skipped steps are still shown so).
    pub fn of_saved(definition: &str) -> Self {
        if !definition.contains("\"for_each\"") && !definition.contains("\"matrix\"") {
            return Self::default();
        }
        SavedRun::from_json(definition)
            .map(|saved| Self::of(&saved.workflow))
            .unwrap_or_default()
    }

    /// Task `t` as it is shown.
    pub fn task(&self, t: &mut TaskRecord) {
        let gathers = self.gathers.get(t.index as usize).copied().flatten();
        if t.status == TaskStatus::Skipped || gathers.is_some() {
            t.attempt = 0;
            t.started_at = None;
        }
        if let Some(n) = gathers {
            if t.note.is_none() && matches!(t.status, TaskStatus::Completed | TaskStatus::Failed) {
                t.note = Some(gathered_note(n));
            }
        }
    }
}
