//! The performance summary: what each finished run took, by outcome and by module.

use crate::WorkflowManager;
use orch_model::{ValidWorkflow, WorkflowStatus};
use orch_tasks::RunReport;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The timings of one finished run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunPerf {
    pub(crate) seconds: f64,
    pub(crate) modules: BTreeMap<String, ModuleUsage>,
}

impl RunPerf {
    pub(crate) fn of(r: &RunReport, wf: &ValidWorkflow) -> Self {
        // The report has one entry per step, in the definition's order.
        let mut by_module: HashMap<&str, ModuleUsage> = HashMap::new();
        for (s, step) in r.steps.iter().zip(&wf.workflow().steps) {
            let Some(res) = &s.result else { continue };
            // Steps that ran: not skipped, not cancelled before starting, not served from the cache.
            if s.attempts == 0 || res.cached {
                continue;
            }
            let u = by_module.entry(step.module.as_str()).or_default();
            u.count += 1;
            u.total_time += res.execution_time;
        }
        let modules: BTreeMap<String, ModuleUsage> = by_module
            .into_iter()
            .map(|(m, u)| (m.to_owned(), u))
            .collect();
        Self {
            seconds: r.duration.as_secs_f64(),
            modules,
        }
    }
}

/// How often a module's actions ran and for how long (seed: `module_usage_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModuleUsage {
    /// Steps of this module that ran (a cached or skipped step did not run).
    pub count: u64,
    /// Seconds they took, summed.
    pub total_time: f64,
}

/// Run durations (seed: `performance_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DurationStats {
    /// Finished runs.
    pub count: usize,
    /// Their seconds, summed.
    pub total_time: f64,
    /// Mean seconds per run (0 without runs).
    pub average_time: f64,
    /// The shortest run's seconds (0 without runs).
    pub min_time: f64,
    /// The longest run's seconds (0 without runs).
    pub max_time: f64,
}

/// What finished runs took (seed: `get_performance_summary`), over the runs
/// the manager remembers (the last [`RUN_HISTORY`](crate::RUN_HISTORY) finished).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerformanceSummary {
    /// The workflow summarized; `None` for every workflow.
    pub workflow: Option<String>,
    /// Finished runs counted.
    pub total_workflows_executed: usize,
    /// Of which completed.
    pub successful_executions: usize,
    /// Of which failed (a step failed, the run timed out or could not start).
    pub failed_executions: usize,
    /// Of which were cancelled.
    pub cancelled_executions: usize,
    /// Mean seconds per finished run.
    pub average_execution_time: f64,
    /// Run durations.
    pub performance_stats: DurationStats,
    /// Per module: how many steps ran and their seconds.
    pub module_usage_stats: BTreeMap<String, ModuleUsage>,
}

impl WorkflowManager {
    /// What the remembered finished runs of `workflow` (of every workflow
    /// when `None`) took: counts by outcome, run durations and seconds per
    /// module (seed: `get_performance_summary`). Always available: timings
    /// come from the runs' own reports, not from a separate monitor.
    pub fn get_performance_summary(&self, workflow: Option<&str>) -> PerformanceSummary {
        let st = self.state();
        let mut stats = DurationStats::default();
        let (mut ok, mut failed, mut cancelled) = (0, 0, 0);
        let mut modules: BTreeMap<String, ModuleUsage> = BTreeMap::new();
        for id in &st.finished {
            let (Some(rec), Some(perf)) = (st.runs.get(id), st.perf.get(id)) else {
                continue;
            };
            if workflow.is_some_and(|w| w != rec.workflow) {
                continue;
            }
            match rec.status {
                WorkflowStatus::Completed => ok += 1,
                WorkflowStatus::Cancelled => cancelled += 1,
                _ => failed += 1,
            }
            let t = perf.seconds;
            stats.min_time = if stats.count == 0 {
                t
            } else {
                stats.min_time.min(t)
            };
            stats.max_time = stats.max_time.max(t);
            stats.count += 1;
            stats.total_time += t;
            for (m, u) in &perf.modules {
                let e = modules.entry(m.clone()).or_default();
                e.count += u.count;
                e.total_time += u.total_time;
            }
        }
        if stats.count > 0 {
            stats.average_time = stats.total_time / stats.count as f64;
        }
        PerformanceSummary {
            workflow: workflow.map(str::to_owned),
            total_workflows_executed: stats.count,
            successful_executions: ok,
            failed_executions: failed,
            cancelled_executions: cancelled,
            average_execution_time: stats.average_time,
            performance_stats: stats,
            module_usage_stats: modules,
        }
    }
}
