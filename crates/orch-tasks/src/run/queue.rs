//! `Hot`: what the scheduler reads of a step's definition, packed (the ready
//! queue is `crate::release::ReadyQueue`, shared with the task orchestrator).

use orch_model::{RunIf, TaskPriority};

/// What the scheduler reads of a step each time it releases or starts it,
/// packed into 3 bytes: a plain step's definition (248 bytes, in a million-
/// step run far out of the cache) is then not touched during the run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hot {
    pub(super) priority: TaskPriority,
    pub(super) run_if: RunIf,
    pub(super) flags: u8,
}

impl Hot {
    /// The step has a `when` condition.
    pub(super) const WHEN: u8 = 1;
    /// The step has parameters (to resolve on release).
    pub(super) const PARAMS: u8 = 2;
    /// `cache: true`.
    pub(super) const CACHE: u8 = 4;
    /// No timeout and no retries: the default attempt policy.
    pub(super) const PLAIN: u8 = 8;
    /// A fan-out step with its items in the graph: it gathers their
    /// results instead of running (`super::fanout`).
    pub(super) const GATHER: u8 = 16;
    /// A fan-out step over a list known at run time: it starts a run of
    /// its items when it starts (`super::fanout`).
    pub(super) const DYNAMIC: u8 = 32;

    pub(super) fn of(s: &orch_model::WorkflowStep) -> Self {
        let mut flags = 0;
        if s.conditions.when.is_some() {
            flags |= Self::WHEN;
        }
        if !s.parameters.is_empty() {
            flags |= Self::PARAMS;
        }
        if s.cache.is_some() {
            flags |= Self::CACHE;
        }
        if s.timeout.is_none() && s.max_retries == 0 {
            flags |= Self::PLAIN;
        }
        match s.fan_out.as_deref() {
            None | Some(orch_model::definition::FanOut::Item { .. }) => {}
            // Its parameters hold `${item}`: resolved per item, not on release.
            Some(orch_model::definition::FanOut::Ref(_)) => {
                flags = (flags & !(Self::PARAMS | Self::PLAIN | Self::CACHE)) | Self::DYNAMIC;
            }
            Some(_) => flags |= Self::GATHER,
        }
        Self {
            priority: s.priority,
            run_if: s.conditions.run_if,
            flags,
        }
    }

    pub(super) fn is(self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}
