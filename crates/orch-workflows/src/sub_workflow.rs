//! Sub-workflows: the `workflow.run` action, and refusing recursion statically (literal calls) and at run time (each live run's chain).

use crate::runs::{ExecuteOptions, failure_summary};
use crate::{Inner, State, WorkflowManager};
use orch_model::{OrchestrationError, ValidWorkflow};
use orch_tasks::{Action, ActionContext, ActionError};
use serde_json::{Map, Value, json};
use std::sync::Weak;

/// How deep sub-workflows may nest.
pub const MAX_SUB_WORKFLOW_DEPTH: usize = 16;

impl WorkflowManager {
    /// Follows the literal `workflow.run` calls of a workflow that is not
    /// one of the manager's (see [`WorkflowManager::execute_definition`]):
    /// a call to its own name, or a path back through the known workflows,
    /// is an error.
    pub(crate) fn check_definition_calls(
        &self,
        valid: &ValidWorkflow,
    ) -> Result<(), OrchestrationError> {
        let wf = valid.workflow();
        for s in &wf.steps {
            if s.module == "workflow" && s.action == "run" {
                if let Some(Value::String(callee)) = s.parameters.get("workflow") {
                    if callee == &wf.name {
                        return Err(OrchestrationError::invalid_parameters(format!(
                            "workflow `{}` calls itself in step `{}`; remove that `workflow.run` step",
                            wf.name, s.name
                        )));
                    }
                    if !callee.contains("${") {
                        self.check_calls(callee)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Follows the literal `workflow.run` calls from `name`; a path back to a
    /// workflow already on it is an error naming the whole chain.
    pub(crate) fn check_calls(&self, name: &str) -> Result<(), OrchestrationError> {
        fn visit(
            st: &State,
            name: &str,
            path: &mut Vec<String>,
            done: &mut Vec<String>,
        ) -> Result<(), Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == name) {
                let mut cycle = path[at..].to_vec();
                cycle.push(name.to_owned());
                return Err(cycle);
            }
            if done.iter().any(|d| d == name) {
                return Ok(());
            }
            let Some(e) = st.workflows.get(name) else {
                return Ok(());
            };
            path.push(name.to_owned());
            for s in &e.workflow.workflow().steps {
                if s.module == "workflow" && s.action == "run" {
                    if let Some(Value::String(callee)) = s.parameters.get("workflow") {
                        if !callee.contains("${") {
                            visit(st, callee, path, done)?;
                        }
                    }
                }
            }
            path.pop();
            done.push(name.to_owned());
            Ok(())
        }
        let st = self.state();
        visit(&st, name, &mut Vec::new(), &mut Vec::new()).map_err(|cycle| {
            let mut d = orch_model::Diagnostics::new(None);
            d.push(
                orch_model::DiagnosticKind::Cycle,
                format!("workflow `{name}`"),
                orch_model::Pos::UNKNOWN,
                format!(
                    "workflow `{}` calls itself through sub-workflows: {}; remove one of these `workflow.run` steps",
                    cycle[0],
                    cycle.join(" -> ")
                ),
            );
            OrchestrationError::Validation(d)
        })
    }
}

/// What `workflow.run` takes (see `Action::spec`).
pub static RUN_SPEC: orch_model::ActionSpec = orch_model::ActionSpec {
    description: "Runs another workflow of the same workflows directory.",
    params: &[
        orch_model::ParamSpec::required(
            "workflow",
            orch_model::ParamType::STRING,
            "the name of the workflow to run",
        ),
        orch_model::ParamSpec::optional(
            "parameters",
            orch_model::ParamType::OBJECT,
            "its parameters' values",
        ),
    ],
    open: false,
};

/// `workflow.run {workflow, parameters}` → `{run_id, workflow, status, results: {step: data}}`.
#[derive(Debug)]
pub(crate) struct SubWorkflow {
    pub(crate) inner: Weak<Inner>,
}

#[async_trait::async_trait]
impl Action for SubWorkflow {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&RUN_SPEC)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(ActionError::permanent(
                "Unavailable",
                "the workflow manager is gone",
            ));
        };
        let manager = WorkflowManager { inner };
        let name = params
            .get("workflow")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ActionError::invalid_parameters(
                    "`workflow` (the name of the workflow to run) is required",
                )
            })?
            .to_owned();
        let sub_params = match params.get("parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(ActionError::invalid_parameters(format!(
                    "`parameters` must be an object, found {other}"
                )));
            }
        };
        let stack = manager
            .state()
            .stacks
            .get(&ctx.run_id)
            .cloned()
            .unwrap_or_default();
        if stack.contains(&name) {
            let mut chain = stack.clone();
            chain.push(name.clone());
            return Err(ActionError::permanent(
                "CycleDetected",
                format!(
                    "workflow `{name}` would call itself: {}",
                    chain.join(" -> ")
                ),
            ));
        }
        if stack.len() >= MAX_SUB_WORKFLOW_DEPTH {
            return Err(ActionError::permanent(
                "LimitExceeded",
                format!(
                    "sub-workflows nest deeper than {MAX_SUB_WORKFLOW_DEPTH}: {}",
                    stack.join(" -> ")
                ),
            ));
        }
        let opts = ExecuteOptions {
            params: sub_params,
            work_dir: Some(ctx.work_dir.to_path_buf()),
            cancel: Some(ctx.cancel.child_token()),
            ..ExecuteOptions::default()
        };
        let report = Box::pin(manager.run(&name, opts, Some((ctx.run_id, stack))))
            .await
            .map_err(|e| ActionError::permanent(e.error_type(), e.to_string()))?;
        let results: Map<String, Value> = report
            .steps
            .iter()
            .filter_map(|s| {
                s.result
                    .as_ref()
                    .filter(|r| r.success)
                    .map(|r| (s.name.to_string(), r.data.clone()))
            })
            .collect();
        let out = json!({
            "run_id": report.run_id.to_string(),
            "workflow": name,
            "status": report.status,
            "results": results,
        });
        if report.succeeded() {
            Ok(out)
        } else {
            let why = report
                .error
                .clone()
                .or_else(|| failure_summary(&report))
                .unwrap_or_else(|| format!("it ended {:?}", report.status));
            Err(ActionError::permanent(
                "SubWorkflowFailed",
                format!("sub-workflow `{name}` did not succeed: {why}"),
            )
            .with_data(out))
        }
    }
}
