//! The steps a workflow runs after its main graph (`on_failure:`, `finally:`):
//! the order of phases, and the dependencies that make each of them wait for
//! every step of the phases before it.
//!
//! A step of a later phase that names no step of its own phase as a
//! dependency gets, as implicit dependencies, the sinks of everything before
//! its phase (the steps no earlier step depends on): every earlier step is
//! then upstream of it, which its trigger rule (`one_failed`, `all_done`,
//! over all upstream steps) reads. The edges are as many as those sinks, not
//! as the steps before. An earlier phase cannot depend on a later one.

use super::Workflow;
use super::decode::SourceMap;
use crate::diagnostic::{DiagnosticKind as K, Diagnostics};
use crate::enums::Phase;
use crate::graph::DepGraph;

/// What validation needs to add the implicit dependencies of hook steps.
pub(super) struct HookEdges {
    /// The phase whose roots `sinks` serves, and the sinks of the steps before it.
    sinks: Option<(Phase, Vec<u32>)>,
}

impl HookEdges {
    /// `None` for a workflow with main steps only; otherwise checks that the
    /// phases come in order (main, on_failure, finally), reporting a step
    /// out of order.
    pub(super) fn new(wf: &Workflow, map: &SourceMap, d: &mut Diagnostics) -> Option<Self> {
        if wf.steps.iter().all(|s| s.phase.is_main()) {
            return None;
        }
        let mut highest = Phase::Main;
        let mut ok = true;
        for (i, s) in wf.steps.iter().enumerate() {
            if s.phase < highest {
                d.push(
                    K::InvalidValue,
                    format!("steps[{i}].phase"),
                    map.step_pos(i),
                    format!(
                        "step `{}` of phase {} comes after a step of phase {highest}; \
                         list main steps first, then on_failure, then finally",
                        s.name, s.phase
                    ),
                );
                ok = false;
            }
            highest = highest.max(s.phase);
        }
        ok.then_some(Self { sinks: None })
    }

    /// Checks step `i`'s dependencies (`deps`, by index, declared and from
    /// references) against the phases, and adds the implicit ones. `graph`
    /// holds the steps before `i`.
    pub(super) fn add(
        &mut self,
        i: usize,
        wf: &Workflow,
        graph: &DepGraph,
        deps: &mut Vec<u32>,
        map: &SourceMap,
        d: &mut Diagnostics,
    ) {
        let steps = &wf.steps;
        let phase = steps[i].phase;
        let mut own = false;
        for &j in deps.iter() {
            let other = steps[j as usize].phase;
            if other > phase {
                d.push(
                    K::UnknownDependency,
                    format!("steps[{i}].dependencies"),
                    map.step_pos(i),
                    format!(
                        "step `{}` ({phase}) cannot depend on `{}`, a step of {other}: \
                         {other} steps run after the {phase} steps; remove the dependency \
                         or the reference",
                        steps[i].name, steps[j as usize].name
                    ),
                );
            }
            own |= other == phase;
        }
        if phase.is_main() || own {
            return;
        }
        if self.sinks.as_ref().is_none_or(|(p, _)| *p != phase) {
            // Every step before this phase is in the graph already.
            let before = steps.iter().take_while(|s| s.phase < phase).count();
            self.sinks = Some((phase, sinks(graph, before)));
        }
        if let Some((_, s)) = &self.sinks {
            deps.extend_from_slice(s);
        }
    }
}

/// The steps among the first `n` of `graph` that none of those depends on.
fn sinks(graph: &DepGraph, n: usize) -> Vec<u32> {
    let mut has_dependent = vec![false; n];
    for node in 0..n.min(graph.len()) {
        for &dep in graph.deps(node as u32) {
            if let Some(h) = has_dependent.get_mut(dep as usize) {
                *h = true;
            }
        }
    }
    (0..n as u32)
        .filter(|&k| !has_dependent[k as usize])
        .collect()
}
