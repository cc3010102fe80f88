//! Checks before anything runs: the actions the steps use, parameter values, resource requests.

use crate::action::{Action, ActionRegistry};
use orch_model::CompactString;
use orch_model::{DiagnosticKind, Diagnostics, OrchestrationError, Pos, ValidWorkflow};
use orch_resources::ResourceManager;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Checks what the registry and the parameters must provide before anything
/// runs, and merges parameter values over the declared defaults.
///
/// # Errors
/// `Validation` with `UnknownModule` problems, or `InvalidParameters` for an
/// undeclared or missing parameter.
pub fn prepare(
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
    overrides: &Map<String, Value>,
) -> Result<Map<String, Value>, OrchestrationError> {
    lookup_actions(wf, registry)?;
    merge_params(wf, overrides)
}

/// The distinct actions of a run: each one's implementation and action
/// name, and for every step the index of its action.
pub(super) struct ActionTable {
    pub(super) impls: Vec<Arc<dyn Action>>,
    pub(super) names: Vec<CompactString>,
    /// Whether each action finishes without waiting (`Action::immediate`).
    pub(super) immediate: Vec<bool>,
    pub(super) of: Vec<u32>,
}

/// The distinct actions the workflow's steps run, and for every step the
/// index of its action in that table. Each distinct `module.action` is looked
/// up in the registry once.
pub(super) fn lookup_actions(
    wf: &ValidWorkflow,
    registry: &ActionRegistry,
) -> Result<ActionTable, OrchestrationError> {
    let w = wf.workflow();
    let mut d = Diagnostics::new(None);
    let mut impls: Vec<Arc<dyn Action>> = Vec::new();
    let mut names: Vec<CompactString> = Vec::new();
    let mut immediate: Vec<bool> = Vec::new();
    let mut of: Vec<u32> = Vec::with_capacity(w.steps.len());
    let mut seen: rustc_hash::FxHashMap<(&str, &str), u32> = rustc_hash::FxHashMap::default();
    // Steps of one action often come in runs: the last lookup is kept aside.
    let mut last: Option<(&str, &str, u32)> = None;
    for (i, s) in w.steps.iter().enumerate() {
        if let Some((m, a, k)) = last {
            if m == s.module && a == s.action {
                of.push(k);
                continue;
            }
        }
        let key = (s.module.as_str(), s.action.as_str());
        if let Some(&k) = seen.get(&key) {
            of.push(k);
            last = Some((key.0, key.1, k));
            continue;
        }
        match registry.get(&s.module, &s.action) {
            Some(imp) => {
                let k = u32::try_from(impls.len()).unwrap_or(u32::MAX);
                immediate.push(imp.immediate().is_some());
                impls.push(imp.clone());
                names.push(s.action.clone());
                seen.insert(key, k);
                of.push(k);
                last = Some((key.0, key.1, k));
            }
            None => {
                let known: Vec<String> = registry.names().collect();
                d.push(
                    DiagnosticKind::UnknownModule,
                    format!("steps[{i}]"),
                    Pos::UNKNOWN,
                    format!(
                        "step `{}` uses `{}.{}`, which no module provides; registered actions: {}",
                        s.name,
                        s.module,
                        s.action,
                        known.join(", ")
                    ),
                );
            }
        }
    }
    if d.is_empty() {
        Ok(ActionTable {
            impls,
            names,
            immediate,
            of,
        })
    } else {
        Err(OrchestrationError::Validation(d))
    }
}

/// Parameter values over the declared defaults; every parameter needs a value.
pub(super) fn merge_params(
    wf: &ValidWorkflow,
    overrides: &Map<String, Value>,
) -> Result<Map<String, Value>, OrchestrationError> {
    let w = wf.workflow();
    let mut params = w.parameters.clone();
    for (k, v) in overrides {
        // A scheduled run's tick (`${schedule.time}`) is not declared.
        if k == orch_model::definition::schedule::SCHEDULE_TIME_PARAM {
            if v.as_str()
                .is_none_or(|s| chrono::DateTime::parse_from_rfc3339(s).is_err())
            {
                return Err(OrchestrationError::invalid_parameters(format!(
                    "`{k}` must be an RFC 3339 time such as 2024-05-01T02:00:00Z, not {v}"
                )));
            }
            params.insert(k.clone(), v.clone());
            continue;
        }
        if !params.contains_key(k) {
            let declared: Vec<&str> = w.parameters.keys().map(String::as_str).collect();
            return Err(OrchestrationError::invalid_parameters(format!(
                "workflow `{}` has no parameter `{k}`; declared: {}",
                w.name,
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                }
            )));
        }
        params.insert(k.clone(), v.clone());
    }
    if let Some((k, _)) = params.iter().find(|(_, v)| v.is_null()) {
        return Err(OrchestrationError::invalid_parameters(format!(
            "parameter `{k}` of workflow `{}` has no default and needs a value (-p {k}=VALUE)",
            w.name
        )));
    }
    Ok(params)
}

/// Every step's resource request fits what `rm` can ever give: a request
/// that can never fit is an error now, not a hang later.
pub(super) fn check_resources(
    wf: &ValidWorkflow,
    rm: &ResourceManager,
) -> Result<(), OrchestrationError> {
    for (i, s) in wf.workflow().steps.iter().enumerate() {
        if let Err(e) = rm.check_request(&s.resources) {
            let mut d = Diagnostics::new(None);
            d.push(
                DiagnosticKind::Resource,
                format!("steps[{i}].resources"),
                Pos::UNKNOWN,
                format!("step `{}`: {e}", s.name),
            );
            return Err(OrchestrationError::Validation(d));
        }
    }
    Ok(())
}
