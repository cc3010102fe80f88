//! The ready queue (one FIFO per priority) and `Hot`, what the scheduler reads
//! of a step's definition, packed.

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

    pub(super) fn of(s: &orch_model::WorkflowStep) -> Self {
        let mut flags = 0;
        if s.conditions.when.is_some() {
            flags |= Self::WHEN;
        }
        if !s.parameters.is_empty() {
            flags |= Self::PARAMS;
        }
        if s.cache {
            flags |= Self::CACHE;
        }
        if s.timeout.is_none() && s.max_retries == 0 {
            flags |= Self::PLAIN;
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

/// Ready steps: one FIFO per priority, highest priority first. Push and pop
/// are O(1), and the order is exactly "by priority, then by release order".
#[derive(Default)]
pub(super) struct ReadyQueue {
    pub(super) queues: [std::collections::VecDeque<u32>; TaskPriority::ALL.len()],
}

impl ReadyQueue {
    pub(super) fn slot(p: TaskPriority) -> usize {
        p as usize - TaskPriority::Low as usize
    }

    pub(super) fn push(&mut self, p: TaskPriority, i: u32) {
        self.queues[Self::slot(p)].push_back(i);
    }

    pub(super) fn pop(&mut self) -> Option<u32> {
        self.queues.iter_mut().rev().find_map(|q| q.pop_front())
    }

    /// Returns steps taken by `pop` (in the order popped) to the front of their queues.
    pub(super) fn put_back(&mut self, popped: &[u32], hot: &[Hot]) {
        for &i in popped.iter().rev() {
            self.queues[Self::slot(hot[i as usize].priority)].push_front(i);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queues.iter().all(std::collections::VecDeque::is_empty)
    }
}
