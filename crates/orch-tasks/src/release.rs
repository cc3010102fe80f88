//! What happens to a step once every one of its dependencies has ended, and
//! in which order ready steps start: the one release rule of the workflow
//! scheduler ([`crate::run_workflow`]), the task orchestrator
//! ([`crate::TaskOrchestrator`]) and anything else that hands out steps (a
//! worker claiming them from a store).
//!
//! A released step is decided in three checks, in this order:
//! 1. its trigger rule (`run_if`) over its dependencies' final states, or,
//!    for the rules over all upstream steps (`all_success`, `all_done`,
//!    `one_failed`, `none_failed`), over every step upstream of it
//!    ([`trigger_skip`], [`crate::upstream`]): not met, it is skipped with
//!    the reason;
//! 2. its `when` condition: false, it is skipped with the condition and the
//!    value it saw; a reference that cannot be resolved fails it;
//! 3. its `${...}` references in parameters: resolved, keeping JSON types; a
//!    reference that cannot be resolved fails it (`ReferenceError`).
//!
//! Then it is ready, and waits for a slot ([`slot_limit`]) in the order of
//! [`ReadyQueue`]: highest priority first, then the order of release.

use crate::resolve::{Scope, evaluate, resolve_parameters, skip_reason};
pub use crate::upstream::Upstream;
use orch_model::definition::When;
use orch_model::{ExecutionMode, RunIf, TaskPriority, TaskStatus};
use serde_json::{Map, Value};
use std::collections::VecDeque;

/// What becomes of a step whose dependencies have all ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// It runs, with these resolved parameters (`None`: it has none).
    Run(Option<Map<String, Value>>),
    /// It does not run; why (its trigger rule or its `when` said no).
    Skip(String),
    /// It cannot run: a reference in its `when` or its parameters could not
    /// be resolved (a `ReferenceError`); the message says which.
    Fail(String),
}

/// What a step's release reads of its definition.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// Its trigger rule.
    pub run_if: RunIf,
    /// What the steps upstream of it came to, when its rule looks at every
    /// upstream step ([`RunIf::over_upstream`]; otherwise not read).
    pub upstream: Upstream,
    /// Its `when` condition, if it has one.
    pub when: Option<&'a When>,
    /// Its module, action and parameters, when it has parameters to resolve.
    pub params: Option<(&'a str, &'a str, &'a Map<String, Value>)>,
}

/// Decides what becomes of a step whose dependencies (`deps`: each one's
/// final state and name) have all ended; `scope` answers its references.
pub fn decide<'a, I>(gate: Gate<'_>, deps: I, scope: &dyn Scope) -> Release
where
    I: IntoIterator<Item = (TaskStatus, &'a str)>,
    I::IntoIter: Clone,
{
    if let Some(reason) = trigger_skip(gate.run_if, deps, gate.upstream) {
        return Release::Skip(reason);
    }
    if let Some(when) = gate.when {
        match evaluate(when, scope) {
            Ok(true) => {}
            Ok(false) => return Release::Skip(skip_reason(when, scope)),
            Err(e) => return Release::Fail(e),
        }
    }
    match gate.params {
        None => Release::Run(None),
        Some((module, action, params)) => match resolve_parameters(module, action, params, scope) {
            Ok(p) => Release::Run((!p.is_empty()).then_some(p)),
            Err(e) => Release::Fail(e),
        },
    }
}

/// Why a step is skipped by its trigger rule, given its dependencies' final
/// states and names and what its upstream steps came to; `None` when the
/// rule lets it run. `success` (the default) needs every dependency
/// completed; `failure` needs one failed; `always` runs whatever happened.
/// Over every upstream step: `all_success` needs each completed,
/// `one_failed` one failed, `none_failed` each completed or skipped, and
/// `all_done` runs whatever happened.
pub fn trigger_skip<'a, I>(run_if: RunIf, deps: I, upstream: Upstream) -> Option<String>
where
    I: IntoIterator<Item = (TaskStatus, &'a str)>,
    I::IntoIter: Clone,
{
    let deps = deps.into_iter();
    match run_if {
        RunIf::Success => {
            if deps.clone().all(|(s, _)| s == TaskStatus::Completed) {
                return None;
            }
            let not_ok: Vec<&str> = deps
                .filter(|(s, _)| *s != TaskStatus::Completed)
                .map(|(_, n)| n)
                .collect();
            Some(format!(
                "upstream step(s) {} did not succeed",
                not_ok.join(", ")
            ))
        }
        RunIf::Failure => {
            if deps.clone().any(|(s, _)| s == TaskStatus::Failed) {
                None
            } else {
                Some("no upstream step failed (run_if: failure)".to_owned())
            }
        }
        RunIf::Always | RunIf::AllDone => None,
        RunIf::AllSuccess => (!upstream.all_completed()).then(|| {
            format!(
                "not every upstream step completed ({}; run_if: all_success)",
                upstream.describe()
            )
        }),
        RunIf::OneFailed => (!upstream.any_failed())
            .then(|| "no upstream step failed (run_if: one_failed)".to_owned()),
        RunIf::NoneFailed => (upstream.any_failed() || upstream.any_cancelled()).then(|| {
            format!(
                "an upstream step {} (run_if: none_failed)",
                if upstream.any_failed() {
                    "failed"
                } else {
                    "was cancelled"
                }
            )
        }),
    }
}

/// How many steps may wait (run) at once: one in sequential mode, otherwise
/// `max_parallel` (at least one).
#[must_use]
pub fn slot_limit(mode: ExecutionMode, max_parallel: usize) -> usize {
    match mode {
        ExecutionMode::Sequential => 1,
        _ => max_parallel.max(1),
    }
}

/// Ready steps: one FIFO per priority, highest priority first. Push and pop
/// are O(1), and the order is exactly "by priority, then by release order".
#[derive(Debug, Default)]
pub struct ReadyQueue {
    queues: [VecDeque<u32>; TaskPriority::ALL.len()],
}

impl ReadyQueue {
    fn slot(p: TaskPriority) -> usize {
        p as usize - TaskPriority::Low as usize
    }

    /// Adds a step that became ready.
    pub fn push(&mut self, p: TaskPriority, i: u32) {
        self.queues[Self::slot(p)].push_back(i);
    }

    /// The next step to start.
    pub fn pop(&mut self) -> Option<u32> {
        self.queues.iter_mut().rev().find_map(VecDeque::pop_front)
    }

    /// Returns steps taken by `pop` (in the order popped) to the front of
    /// their queues; `priority` gives each one's priority.
    pub fn put_back(&mut self, popped: &[u32], priority: impl Fn(u32) -> TaskPriority) {
        for &i in popped.iter().rev() {
            self.queues[Self::slot(priority(i))].push_front(i);
        }
    }

    /// No step is ready.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// How many steps are ready.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::{Cancelled, Completed, Failed, Skipped};

    const NONE: Upstream = Upstream::ALL_COMPLETED;

    #[test]
    fn trigger_rules_decide_on_the_dependencies_final_states() {
        let ok = [(Completed, "a"), (Completed, "b")];
        let one_failed = [(Completed, "a"), (Failed, "b")];
        let skipped = [(Skipped, "a"), (Cancelled, "b")];
        assert_eq!(trigger_skip(RunIf::Success, ok, NONE), None);
        assert_eq!(
            trigger_skip(RunIf::Success, one_failed, NONE).as_deref(),
            Some("upstream step(s) b did not succeed")
        );
        assert_eq!(
            trigger_skip(RunIf::Success, skipped, NONE).as_deref(),
            Some("upstream step(s) a, b did not succeed")
        );
        assert_eq!(trigger_skip(RunIf::Failure, one_failed, NONE), None);
        assert_eq!(
            trigger_skip(RunIf::Failure, ok, NONE).as_deref(),
            Some("no upstream step failed (run_if: failure)")
        );
        for deps in [&ok[..], &one_failed, &skipped] {
            assert_eq!(
                trigger_skip(RunIf::Always, deps.iter().copied(), NONE),
                None
            );
        }
        // No dependencies: `success` runs, `failure` is skipped.
        assert_eq!(trigger_skip(RunIf::Success, [], NONE), None);
        assert!(trigger_skip(RunIf::Failure, [], NONE).is_some());
    }

    #[test]
    fn rules_over_upstream_read_every_upstream_step_not_the_dependencies() {
        // The dependencies all completed; further up, one failed, one was skipped.
        let deps = [(Completed, "a")];
        let failed = Upstream::of_all([Completed, Failed]);
        let skipped = Upstream::of_all([Skipped]);
        let cancelled = Upstream::of_all([Cancelled, Completed]);
        assert_eq!(trigger_skip(RunIf::AllSuccess, deps, NONE), None);
        assert_eq!(
            trigger_skip(RunIf::AllSuccess, deps, skipped).as_deref(),
            Some("not every upstream step completed (skipped; run_if: all_success)")
        );
        assert_eq!(trigger_skip(RunIf::OneFailed, deps, failed), None);
        assert_eq!(
            trigger_skip(RunIf::OneFailed, deps, cancelled).as_deref(),
            Some("no upstream step failed (run_if: one_failed)")
        );
        assert_eq!(trigger_skip(RunIf::NoneFailed, deps, skipped), None);
        assert_eq!(
            trigger_skip(RunIf::NoneFailed, deps, failed).as_deref(),
            Some("an upstream step failed (run_if: none_failed)")
        );
        assert_eq!(
            trigger_skip(RunIf::NoneFailed, deps, cancelled).as_deref(),
            Some("an upstream step was cancelled (run_if: none_failed)")
        );
        for up in [NONE, failed, skipped, cancelled] {
            assert_eq!(trigger_skip(RunIf::AllDone, deps, up), None);
        }
        // `success` and `failure` look at the dependencies only.
        assert_eq!(trigger_skip(RunIf::Success, deps, failed), None);
        assert!(trigger_skip(RunIf::Failure, deps, failed).is_some());
    }

    #[test]
    fn ready_steps_leave_by_priority_then_release_order() {
        let mut q = ReadyQueue::default();
        q.push(TaskPriority::Low, 0);
        q.push(TaskPriority::High, 1);
        q.push(TaskPriority::Normal, 2);
        q.push(TaskPriority::High, 3);
        assert_eq!(q.len(), 4);
        let first: Vec<u32> = std::iter::from_fn(|| q.pop()).take(2).collect();
        assert_eq!(first, [1, 3]);
        q.put_back(&first, |_| TaskPriority::High);
        let all: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(all, [1, 3, 2, 0]);
        assert!(q.is_empty());
    }

    #[test]
    fn slots_are_one_in_sequential_mode_and_at_least_one_otherwise() {
        assert_eq!(slot_limit(ExecutionMode::Sequential, 8), 1);
        assert_eq!(slot_limit(ExecutionMode::Parallel, 8), 8);
        assert_eq!(slot_limit(ExecutionMode::Parallel, 0), 1);
        assert_eq!(slot_limit(ExecutionMode::ResourceAware, 3), 3);
    }
}
