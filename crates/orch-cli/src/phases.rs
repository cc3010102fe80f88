//! What `orch runs show` adds about steps that ran after the main graph
//! (`on_failure:`, `finally:`, read from the run's saved definition) and
//! steps that passed after failed attempts (flaky).

use orch_model::store::TaskRecord;
use orch_model::{Phase, SavedRun};
use serde_json::Value;

/// Each task's phase, by index, when the run's saved definition has steps
/// outside the main graph (empty otherwise: nothing is parsed for them).
pub(crate) fn of_saved(definition: &str, tasks: usize) -> Vec<Phase> {
    if !definition.contains("\"phase\":") {
        return Vec::new();
    }
    match SavedRun::from_json(definition) {
        Ok(saved) if saved.workflow.workflow().steps.len() == tasks => saved
            .workflow
            .workflow()
            .steps
            .iter()
            .map(|s| s.phase)
            .collect(),
        _ => Vec::new(),
    }
}

fn phase(t: &TaskRecord, phases: &[Phase]) -> Phase {
    phases.get(t.index as usize).copied().unwrap_or_default()
}

/// The STEP cell: the name, and the phase of a step outside the main graph
/// (`cleanup (finally)`).
pub(crate) fn label(t: &TaskRecord, phases: &[Phase]) -> String {
    named(&t.name, phase(t, phases))
}

/// A step's name with its phase when it is outside the main graph
/// (`cleanup (finally)`): the STEP cell of `orch runs show` and `orch run`.
pub(crate) fn named(name: &str, phase: Phase) -> String {
    match phase {
        Phase::Main => name.to_owned(),
        p => format!("{name} ({p})"),
    }
}

/// Adds `phase` (outside the main graph) and `flaky` (passed after failed
/// attempts) to a task's JSON.
pub(crate) fn annotate(v: &mut Value, t: &TaskRecord, phases: &[Phase]) {
    let p = phase(t, phases);
    if !p.is_main() {
        v["phase"] = p.as_str().into();
    }
    if t.result.as_ref().is_some_and(|r| r.flaky().is_some()) {
        v["flaky"] = true.into();
    }
}
