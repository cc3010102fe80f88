//! What the steps upstream of a step (every step it depends on, directly or
//! not) came to: the input of the trigger rules over all upstream steps
//! (`all_success`, `all_done`, `one_failed`, `none_failed`; see
//! [`crate::release`]).
//!
//! A step is released only once its dependencies have ended, and they only
//! once theirs had: every upstream step is final by then, and so is what it
//! saw upstream. [`UpstreamMemo`] keeps that per step, so that each step is
//! folded once per run however many rules ask (a chain of `none_failed`
//! steps costs O(its length), not its square). Steps of the plain rules
//! never ask, and a run without such rules allocates nothing.

use orch_model::TaskStatus;
use orch_model::graph::DepGraph;

/// What upstream steps came to, as flags: which outcomes other than
/// `completed` occurred among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upstream(u8);

impl Upstream {
    const FAILED: u8 = 1;
    const CANCELLED: u8 = 2;
    const SKIPPED: u8 = 4;
    /// Not final (pending, ready, running): never the case once released.
    const UNFINISHED: u8 = 8;

    /// Every upstream step completed (or there is none).
    pub const ALL_COMPLETED: Self = Self(0);

    /// One step's outcome.
    #[must_use]
    pub fn of(status: TaskStatus) -> Self {
        Self(match status {
            TaskStatus::Completed => 0,
            TaskStatus::Failed => Self::FAILED,
            TaskStatus::Cancelled => Self::CANCELLED,
            TaskStatus::Skipped => Self::SKIPPED,
            _ => Self::UNFINISHED,
        })
    }

    /// The outcomes of these steps together.
    pub fn of_all(statuses: impl IntoIterator<Item = TaskStatus>) -> Self {
        statuses
            .into_iter()
            .fold(Self::default(), |acc, s| acc.with(Self::of(s)))
    }

    /// Both together.
    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Every upstream step completed.
    pub fn all_completed(self) -> bool {
        self.0 == 0
    }

    /// At least one upstream step failed.
    pub fn any_failed(self) -> bool {
        self.0 & Self::FAILED != 0
    }

    /// At least one upstream step was cancelled.
    pub fn any_cancelled(self) -> bool {
        self.0 & Self::CANCELLED != 0
    }

    /// What kept the upstream steps from all completing, in words
    /// ("failed, skipped"), for a skip's reason.
    pub fn describe(self) -> String {
        let words = [
            (Self::FAILED, "failed"),
            (Self::CANCELLED, "cancelled"),
            (Self::SKIPPED, "skipped"),
            (Self::UNFINISHED, "unfinished"),
        ];
        words
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, w)| *w)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Per step, what its upstream steps came to, computed when first asked
/// and kept (every upstream step is final by then).
#[derive(Debug, Default)]
pub struct UpstreamMemo {
    /// Per step: `KNOWN` and the flags, or 0 while not computed.
    memo: Vec<u8>,
    stack: Vec<(u32, u32)>,
}

const KNOWN: u8 = 0x80;

impl UpstreamMemo {
    /// What the steps upstream of `node` came to; `status` gives each
    /// step's state.
    pub fn of(
        &mut self,
        node: u32,
        graph: &DepGraph,
        status: &dyn Fn(u32) -> TaskStatus,
    ) -> Upstream {
        if self.memo.len() < graph.len() {
            self.memo.resize(graph.len(), 0);
        }
        // Depth first, each step folded after its dependencies.
        let mut stack = std::mem::take(&mut self.stack);
        stack.push((node, 0));
        while let Some((n, next)) = stack.pop() {
            let deps = graph.deps(n);
            if let Some(&d) = deps.get(next as usize) {
                stack.push((n, next + 1));
                if self.memo[d as usize] & KNOWN == 0 && !graph.deps(d).is_empty() {
                    stack.push((d, 0));
                }
                continue;
            }
            let flags = deps.iter().fold(0u8, |acc, &d| {
                let seen = self.memo[d as usize] & !KNOWN;
                acc | seen | Upstream::of(status(d)).0
            });
            self.memo[n as usize] = flags | KNOWN;
        }
        self.stack = stack;
        Upstream(self.memo[node as usize] & !KNOWN)
    }
}

/// Every step upstream of `node` (its dependencies, theirs, ...), each once,
/// in no particular order: what a worker reads from the store for a rule
/// over all upstream steps.
pub fn ancestors(graph: &DepGraph, node: u32) -> Vec<u32> {
    let mut seen = rustc_hash::FxHashSet::default();
    let mut todo: Vec<u32> = graph.deps(node).to_vec();
    let mut out = Vec::new();
    while let Some(n) = todo.pop() {
        if seen.insert(n) {
            out.push(n);
            todo.extend_from_slice(graph.deps(n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::{Cancelled, Completed, Failed, Skipped};

    /// a -> b -> c -> d, and e -> d.
    fn graph() -> DepGraph {
        let mut g = DepGraph::new();
        g.push_node([]); // 0 a
        g.push_node([0]); // 1 b
        g.push_node([1]); // 2 c
        g.push_node([2, 4]); // 3 d
        g.push_node([]); // 4 e
        g
    }

    #[test]
    fn a_failure_two_levels_up_is_seen_and_kept() {
        let g = graph();
        let states = [Failed, Completed, Completed, Completed, Skipped];
        let status = |i: u32| states[i as usize];
        let mut m = UpstreamMemo::default();
        let d = m.of(3, &g, &status);
        assert!(d.any_failed());
        assert!(!d.any_cancelled());
        assert_eq!(d.describe(), "failed, skipped");
        let c = m.of(2, &g, &status);
        assert!(c.any_failed() && !c.all_completed());
        assert!(m.of(0, &g, &status).all_completed());
        assert_eq!(
            Upstream::of_all([Completed, Cancelled]).describe(),
            "cancelled"
        );
        let mut up = ancestors(&g, 3);
        up.sort_unstable();
        assert_eq!(up, [0, 1, 2, 4]);
    }

    #[test]
    fn a_long_chain_is_folded_without_recursion() {
        let mut g = DepGraph::new();
        g.push_node([]);
        for i in 1..200_000u32 {
            g.push_node([i - 1]);
        }
        let status = |i: u32| if i == 0 { Cancelled } else { Completed };
        let mut m = UpstreamMemo::default();
        assert!(m.of(199_999, &g, &status).any_cancelled());
        assert!(m.of(199_998, &g, &status).any_cancelled());
    }
}
