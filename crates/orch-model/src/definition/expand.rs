//! Expanding literal fan-outs while a workflow is validated: where each step's items go, their graph nodes and their steps.
//!
//! Validation calls [`Plan::new`] before it builds the graph, [`Plan::node`]
//! for each definition step (a literal fan-out step's node depends on its
//! items, which take the step's own dependencies), and [`Plan::finish`] after
//! the last one: the items' nodes and steps are appended, in fan-out order,
//! after every definition step.

use super::fanout::{FanOut, Items, expand_items};
use super::{SourceMap, Workflow};
use crate::diagnostic::{DiagnosticKind as K, Diagnostics};
use crate::graph::DepGraph;
use crate::limits::Limits;

/// Where the items of each literal fan-out go.
pub(crate) struct Plan {
    /// Definition steps.
    n: u32,
    /// Each literal fan-out: its step, its first item's index, its item count.
    fans: Vec<(u32, u32, u32)>,
    /// The dependencies of each fan-out's items (the step's own), in `fans` order.
    item_deps: Vec<Vec<u32>>,
    /// The next fan-out `node` expects (they come in step order).
    next: usize,
}

impl Plan {
    /// Counts the items of every literal fan-out; a workflow whose steps
    /// and items exceed `max_steps` is reported.
    pub(crate) fn new(
        wf: &Workflow,
        limits: &Limits,
        map: &SourceMap,
        d: &mut Diagnostics,
    ) -> Self {
        let n = u32::try_from(wf.steps.len()).unwrap_or(u32::MAX);
        let mut fans = Vec::new();
        let mut next = u64::from(n);
        for (i, s) in wf.steps.iter().enumerate() {
            let Some(count) = s.fan_out.as_deref().and_then(FanOut::literal_len) else {
                continue;
            };
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            fans.push((i as u32, u32::try_from(next).unwrap_or(u32::MAX), count));
            next += u64::from(count);
        }
        if next > limits.max_steps as u64 {
            let (step, _, _) = fans.first().copied().unwrap_or_default();
            let field = match wf
                .steps
                .get(step as usize)
                .and_then(|s| s.fan_out.as_deref())
            {
                Some(FanOut::Matrix(_)) => "matrix",
                _ => "for_each",
            };
            d.push(
                K::Limit,
                format!("steps[{step}].{field}"),
                map.ref_pos(step as usize, field),
                format!(
                    "{} steps and their fan-out items ({next} in all) exceed the limit of {} (limit max_steps)",
                    wf.steps.len(),
                    limits.max_steps
                ),
            );
            fans.clear();
        }
        Plan {
            n,
            item_deps: Vec::with_capacity(fans.len()),
            fans,
            next: 0,
        }
    }

    /// Step `i`'s dependencies in the graph: for a literal fan-out step,
    /// its items (which keep `deps`, the step's own); otherwise `deps`.
    pub(crate) fn node(&mut self, i: u32, deps: &mut Vec<u32>) {
        let Some(&(step, first, count)) = self.fans.get(self.next) else {
            return;
        };
        if step != i {
            return;
        }
        self.next += 1;
        self.item_deps.push(std::mem::take(deps));
        deps.extend(first..first.saturating_add(count));
    }

    /// Appends every item: its graph node (the fan-out step's dependencies)
    /// and its step (named for the item, the item substituted into its
    /// parameters). An item that cannot fill a parameter is reported at the
    /// step's parameter.
    pub(crate) fn finish(
        self,
        wf: &mut Workflow,
        graph: &mut DepGraph,
        map: &SourceMap,
        d: &mut Diagnostics,
    ) {
        let total: usize = self.fans.iter().map(|f| f.2 as usize).sum();
        wf.steps.reserve_exact(total);
        for ((step, _, count), deps) in self.fans.iter().zip(&self.item_deps) {
            for _ in 0..*count {
                graph.push_node(deps.iter().copied());
            }
            let t = &wf.steps[*step as usize];
            let Some(fan) = t.fan_out.as_deref() else {
                continue;
            };
            let items = Items::new(&t.name, fan, None);
            let mut made = Vec::new();
            if let Err((path, msg)) = expand_items(t, *step, &items, &mut made) {
                let at = format!("steps[{step}].{path}");
                // A reference already reported (an unknown matrix key) is not reported twice.
                if !d.problems.iter().any(|p| p.path == at) {
                    d.push(K::Reference, at, map.ref_pos(*step as usize, &path), msg);
                }
                // Placeholders keep the steps and the graph the same length.
                made.clear();
                let mut t = t.clone();
                t.fan_out = None;
                made.resize(*count as usize, t);
            }
            wf.steps.append(&mut made);
        }
        debug_assert_eq!(wf.steps.len(), self.n as usize + total);
    }
}
