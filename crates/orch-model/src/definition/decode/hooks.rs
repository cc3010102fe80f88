//! A workflow's `on_failure:` and `finally:` lists (steps that run after the main graph), its `cancel_grace`, and a step's `phase`.
//!
//! Their steps are decoded as any step, then appended to the workflow's
//! steps with their phase (`Phase::OnFailure`, `Phase::Finally`) and, when
//! they set no trigger rule, their phase's default one (`one_failed`,
//! `all_done`). Validation (`definition/hooks.rs`) makes each of them wait
//! for the steps of the phases before it.

use super::fields::Fields;
use super::{Decoder, Path};
use crate::definition::{Workflow, WorkflowStep};
use crate::diagnostic::DiagnosticKind as K;
use crate::enums::{Phase, RunIf};
use crate::node::{Node, NodeValue};

impl Decoder<'_> {
    /// Takes `cancel_grace`, `on_failure` and `finally` from the workflow's
    /// fields; the steps of the two lists are appended to `wf.steps` (after
    /// the main steps, which are decoded already).
    pub(super) fn hooks(&mut self, f: &mut Fields<'_>, path: &Path<'_>, wf: &mut Workflow) {
        if let Some((_, n)) = f.take("cancel_grace") {
            wf.cancel_grace = self
                .duration(n, &Path::Field(path, "cancel_grace"))
                .flatten();
        }
        for (field, phase) in [
            ("on_failure", Phase::OnFailure),
            ("finally", Phase::Finally),
        ] {
            if let Some((_, n)) = f.take(field) {
                self.hook_steps(n, &Path::Field(path, field), phase, &mut wf.steps);
            }
        }
    }

    fn hook_steps(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        phase: Phase,
        steps: &mut Vec<WorkflowStep>,
    ) {
        let pos = node.pos;
        let items = match node.value {
            NodeValue::Null => return,
            NodeValue::Seq(items) => items,
            other => {
                self.wrong_type(path, &Node { pos, value: other }, "a list of steps");
                return;
            }
        };
        if steps.len().saturating_add(items.len()) > self.limits.max_steps {
            let msg = format!(
                "{} steps in all exceed the limit of {} (limit max_steps)",
                steps.len() + items.len(),
                self.limits.max_steps
            );
            self.err(K::Limit, path, pos, msg);
            return;
        }
        for (i, item) in items.into_iter().enumerate() {
            let ipath = Path::Index(path, i);
            let ipos = item.pos;
            let index = u32::try_from(steps.len()).unwrap_or(u32::MAX);
            let mut s = self.step(item, &ipath, index);
            if s.phase != Phase::Main && s.phase != phase {
                let msg = format!(
                    "phase `{}` does not match the list it is in (`{phase}:`); remove `phase`",
                    s.phase
                );
                self.err(K::InvalidValue, &Path::Field(&ipath, "phase"), ipos, msg);
            }
            set_phase(&mut s, phase);
            steps.push(s);
        }
    }

    /// A step's own `phase:` (how a saved definition keeps the lists).
    pub(super) fn step_phase(&mut self, node: Node<'_>, path: &Path<'_>, s: &mut WorkflowStep) {
        if let Some(p) = self.text_enum::<Phase>(node, path, K::InvalidValue) {
            set_phase(s, p);
        }
    }
}

/// Gives `s` its phase, and that phase's trigger rule when it set none.
fn set_phase(s: &mut WorkflowStep, phase: Phase) {
    s.phase = phase;
    if s.conditions.run_if == RunIf::Success {
        s.conditions.run_if = phase.default_run_if();
    }
}
