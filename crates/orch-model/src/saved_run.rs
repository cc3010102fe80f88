//! `SavedRun`: what a journaled run keeps in its store so that it can be
//! resumed from the store alone (the run's `definition` text).
//!
//! The scheduler writes it when the run is created; whoever resumes the run
//! reads it back with [`SavedRun::from_json`]. The JSON shape is an object
//! with the workflow under `workflow` and the [`RunSettings`] beside it:
//!
//! ```
//! use orch_model::{Format, Limits, RunSettings, SavedRun, load_workflow};
//!
//! let wf = load_workflow(
//!     r#"{"name": "w", "steps": [{"name": "a", "module": "core", "action": "noop"}]}"#,
//!     Format::Json,
//!     &Limits::default(),
//!     None,
//! )
//! .unwrap();
//! let settings = RunSettings {
//!     work_dir: Some("/srv/work".into()),
//!     max_parallel: Some(8),
//!     ..RunSettings::default()
//! };
//! let text = SavedRun::write_json(wf.workflow(), &settings).unwrap();
//! let back = SavedRun::from_json(&text).unwrap();
//! assert_eq!(back.workflow.workflow().name, "w");
//! assert_eq!(back.settings, settings);
//! ```
//!
//! Every setting is optional (`#[serde(default)]`): records written before a
//! setting existed still read, with the setting absent.

use crate::definition::{ValidWorkflow, Workflow};
use crate::enums::ExecutionMode;
use crate::error::OrchestrationError;
use crate::limits::Limits;
use crate::node::Format;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// How a run was started, as far as resuming it needs besides its workflow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSettings {
    /// The directory the run's actions work in (absent: the directory of
    /// whoever resumes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<PathBuf>,
    /// `${project.path}`, when the run belongs to a project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_path: Option<String>,
    /// The project's name, when the run belongs to a project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    /// The mode it ran in (absent: the default, `parallel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ExecutionMode>,
    /// The most steps it ran at once (absent: the resumer's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// Its run timeout in milliseconds (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_timeout_ms: Option<u64>,
    /// The failed or cancelled run this one retries (`orch retry`), whose
    /// completed steps it kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<crate::RunId>,
    /// `--no-cache`: its `cache:` steps run and store what they return;
    /// nothing is served from the cache (kept for the workers of a
    /// submitted run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
}

/// A run's saved definition: the validated workflow and how it was started.
#[derive(Debug, Clone)]
pub struct SavedRun {
    /// The workflow, validated again when read back.
    pub workflow: ValidWorkflow,
    /// How the run was started.
    pub settings: RunSettings,
}

/// The JSON written: the workflow and the settings side by side.
#[derive(Serialize)]
struct Out<'a> {
    workflow: &'a Workflow,
    #[serde(flatten)]
    settings: &'a RunSettings,
}

impl SavedRun {
    /// The JSON text of this record (what a store keeps as the run's definition).
    ///
    /// # Errors
    /// `Store` when the workflow does not serialize (a parameter value JSON
    /// cannot hold).
    pub fn to_json(&self) -> Result<String, OrchestrationError> {
        Self::write_json(self.workflow.workflow(), &self.settings)
    }

    /// The JSON text of a record of `workflow` and `settings`, without
    /// building a `SavedRun` (the scheduler writes one for a workflow it
    /// only borrows).
    ///
    /// # Errors
    /// As [`SavedRun::to_json`].
    pub fn write_json(
        workflow: &Workflow,
        settings: &RunSettings,
    ) -> Result<String, OrchestrationError> {
        // The short form: fields at their default are left out.
        // Sized for a typical step up front: a million-step definition
        // grown by doubling would hold up to twice its size meanwhile.
        let mut out = Vec::with_capacity(256 + 96 * workflow.steps.len());
        crate::definition::saved::short(|| {
            serde_json::to_writer(&mut out, &Out { workflow, settings })
        })
        .map_err(|e| OrchestrationError::Store {
            message: format!("the run's definition does not serialize: {e}"),
            retryable: false,
        })?;
        // serde_json writes UTF-8 only.
        String::from_utf8(out).map_err(|e| OrchestrationError::Store {
            message: format!("the run's definition does not serialize: {e}"),
            retryable: false,
        })
    }

    /// Reads a record written by [`SavedRun::to_json`] (or by an earlier
    /// version: settings it lacks are absent) and validates its workflow.
    /// The workflow's text goes to the definition parser as it is, without
    /// building a JSON tree of it.
    ///
    /// # Errors
    /// `InvalidState` when the text is not such a record, `Validation` when
    /// its workflow does not load.
    pub fn from_json(text: &str) -> Result<Self, OrchestrationError> {
        let bad = |why: String| OrchestrationError::InvalidState {
            message: format!("the saved run is not readable: {why}"),
        };
        let members = top_level_members(text).map_err(bad)?;
        let mut rest = Map::new();
        let mut workflow = None;
        for (key, raw) in members {
            if key == "workflow" {
                workflow = Some(raw);
            } else {
                let v: Value =
                    serde_json::from_str(raw).map_err(|e| bad(format!("member `{key}`: {e}")))?;
                rest.insert(key, v);
            }
        }
        let Some(raw) = workflow else {
            return Err(bad("it has no `workflow`".to_owned()));
        };
        let settings: RunSettings =
            serde_json::from_value(Value::Object(rest)).map_err(|e| bad(e.to_string()))?;
        let workflow = crate::load_workflow(
            raw,
            Format::Json,
            &Limits::default(),
            Some("saved definition"),
        )
        .map_err(OrchestrationError::Validation)?;
        Ok(Self { workflow, settings })
    }
}

impl RunSettings {
    /// The settings of a saved run's text (as [`SavedRun::to_json`] writes
    /// it), without reading its workflow: cheap for any size of run.
    ///
    /// # Errors
    /// `InvalidState` when the text is not such a record.
    pub fn of_saved(text: &str) -> Result<Self, OrchestrationError> {
        let bad = |why: String| OrchestrationError::InvalidState {
            message: format!("the saved run is not readable: {why}"),
        };
        let mut rest = Map::new();
        for (key, raw) in top_level_members(text).map_err(bad)? {
            if key != "workflow" {
                let v: Value =
                    serde_json::from_str(raw).map_err(|e| bad(format!("member `{key}`: {e}")))?;
                rest.insert(key, v);
            }
        }
        serde_json::from_value(Value::Object(rest)).map_err(|e| bad(e.to_string()))
    }
}

/// The members of a JSON object: each key (unescaped) with its value's text.
/// Values are skipped by matching brackets outside strings, not parsed.
fn top_level_members(text: &str) -> Result<Vec<(String, &str)>, String> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return Err("it is not a JSON object".to_owned());
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Ok(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(format!("a key was expected at byte {i}"));
        }
        let end = string_end(b, i)?;
        let key: String =
            serde_json::from_str(&text[i..end]).map_err(|e| format!("key at byte {i}: {e}"))?;
        i = skip_ws(b, end);
        if b.get(i) != Some(&b':') {
            return Err(format!("`:` was expected at byte {i}"));
        }
        let start = skip_ws(b, i + 1);
        let stop = value_end(b, start)?;
        out.push((key, &text[start..stop]));
        i = skip_ws(b, stop);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(out),
            _ => return Err(format!("`,` or `}}` was expected at byte {i}")),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string that starts (with `"`) at `i`.
fn string_end(b: &[u8], i: usize) -> Result<usize, String> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err(format!("the string at byte {i} does not end"))
}

/// The index just past the value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> Result<usize, String> {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(format!("the value at byte {i} does not end"))
        }
        Some(_) => {
            // A number, `true`, `false` or `null`: up to the next delimiter.
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            Ok(j)
        }
        None => Err(format!("a value was expected at byte {i}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf() -> ValidWorkflow {
        crate::load_workflow(
            r#"{"name": "w", "parameters": {"p": "x \"}{ y"}, "steps": [{"name": "a", "module": "core", "action": "noop", "parameters": {"s": "${params.p}"}}]}"#,
            Format::Json,
            &Limits::default(),
            None,
        )
        .expect("valid")
    }

    #[test]
    fn a_record_reads_back_with_every_setting() {
        let saved = SavedRun {
            workflow: wf(),
            settings: RunSettings {
                work_dir: Some("/tmp/x".into()),
                project_path: Some("/p".into()),
                project_name: Some("proj".into()),
                mode: Some(ExecutionMode::Sequential),
                max_parallel: Some(3),
                run_timeout_ms: Some(1500),
                retry_of: Some(crate::RunId::new()),
                no_cache: true,
            },
        };
        let text = saved.to_json().expect("json");
        let back = SavedRun::from_json(&text).expect("reads");
        assert_eq!(back.settings, saved.settings);
        assert_eq!(
            RunSettings::of_saved(&text).expect("settings"),
            saved.settings
        );
        assert_eq!(back.workflow.workflow(), saved.workflow.workflow());
    }

    #[test]
    fn a_step_value_at_its_default_is_kept_under_workflow_defaults() {
        // The short form leaves `max_retries: 0` out; the workflow's defaults
        // must not fill 2 back in when the run is read (resume, retry).
        let wf = crate::load_workflow(
            r#"{"name": "w", "defaults": {"max_retries": 2, "timeout": 9}, "steps": [
                {"name": "a", "module": "core", "action": "noop", "max_retries": 0},
                {"name": "b", "module": "core", "action": "noop"}]}"#,
            Format::Json,
            &Limits::default(),
            None,
        )
        .expect("valid");
        let text = SavedRun::write_json(wf.workflow(), &RunSettings::default()).expect("json");
        let back = SavedRun::from_json(&text).expect("reads");
        let steps = &back.workflow.workflow().steps;
        assert_eq!((steps[0].max_retries, steps[1].max_retries), (0, 2));
        assert_eq!(steps[1].timeout, Some(std::time::Duration::from_secs(9)));
    }

    #[test]
    fn a_record_of_an_earlier_version_reads_with_absent_settings() {
        // The shape written before `SavedRun` existed: workflow first, no settings but these.
        let w = serde_json::to_string(wf().workflow()).expect("json");
        let text = format!(r#"{{ "workflow": {w}, "work_dir": "/old", "project_path": null }}"#);
        let back = SavedRun::from_json(&text).expect("reads");
        assert_eq!(back.settings.work_dir, Some(PathBuf::from("/old")));
        assert_eq!(back.settings.project_path, None);
        assert_eq!(back.settings.max_parallel, None);
        assert_eq!(back.workflow.workflow().steps.len(), 1);
    }

    #[test]
    fn text_that_is_no_record_is_a_clear_error() {
        for bad in [
            "",
            "[]",
            "{\"work_dir\": \"/x\"}",
            "{\"workflow\": {",
            "{\"workflow\" 1}",
        ] {
            let e = SavedRun::from_json(bad).expect_err(bad);
            assert!(
                matches!(e, OrchestrationError::InvalidState { .. }),
                "{bad}: {e:?}"
            );
        }
        let e = SavedRun::from_json(r#"{"workflow": {"name": "w", "steps": 3}}"#)
            .expect_err("a workflow that does not load");
        assert!(matches!(e, OrchestrationError::Validation(_)), "{e:?}");
    }

    #[test]
    fn the_short_form_leaves_defaults_out_and_reads_back_the_same_workflow() {
        let full = crate::load_workflow(
            r#"{"name": "w", "steps": [
                {"name": "a", "module": "core", "action": "noop"},
                {"name": "b", "module": "core", "action": "set", "description": "d",
                 "parameters": {"value": 1}, "dependencies": ["a"], "timeout": 2.5,
                 "retry_count": 0, "max_retries": 3, "priority": "high", "cache": true,
                 "retry": {"backoff": "linear", "initial_delay": 1, "max_delay": 4, "multiplier": 3, "jitter": false},
                 "conditions": {"run_if": "always", "when": {"ref": "${a.result}", "op": "exists"}},
                 "resources": {"cpu": {"cores": 1}}}
            ]}"#,
            Format::Json,
            &Limits::default(),
            None,
        )
        .expect("valid");
        let text = SavedRun::write_json(full.workflow(), &RunSettings::default()).expect("json");
        assert!(
            !text.contains("\"retry_count\"") && !text.contains("\"timeout\":null"),
            "{text}"
        );
        let back = SavedRun::from_json(&text).expect("reads");
        assert_eq!(back.workflow.workflow(), full.workflow());
        // Everywhere else, the seed's shape keeps every field.
        let seed = serde_json::to_string(full.workflow()).expect("json");
        assert!(
            seed.contains("\"retry_count\":0") && seed.contains("\"timeout\":null"),
            "{seed}"
        );
    }
}

/// A submitted run cut for the workers that share it: the workflow without
/// its steps (its name, parameters, secrets section, defaults: what every
/// step's attempt may need of it) and each step on its own, so that a
/// worker reads one step of a large run at a time, never the whole
/// definition. Both in the saved (short) form of [`SavedRun::to_json`].
pub mod cut {
    use crate::definition::{Workflow, WorkflowStep};
    use crate::error::OrchestrationError;
    use crate::limits::Limits;
    use serde_json::{Map, Value};

    fn written(e: serde_json::Error) -> OrchestrationError {
        OrchestrationError::Store {
            message: format!("the run's definition does not serialize: {e}"),
            retryable: false,
        }
    }

    /// The workflow's fields but its steps, as JSON.
    ///
    /// # Errors
    /// `Store` when a value does not serialize.
    pub fn header(wf: &Workflow) -> Result<Map<String, Value>, OrchestrationError> {
        // Every field but the steps, named one by one: a field added to
        // `Workflow` must be decided on here.
        let Workflow {
            name,
            description,
            version,
            parameters,
            env,
            concurrency,
            secrets,
            defaults,
            steps: _,
            cancel_grace,
            status,
            metadata,
            schedule,
        } = wf;
        let head = Workflow {
            name: name.clone(),
            description: description.clone(),
            version: version.clone(),
            parameters: parameters.clone(),
            env: env.clone(),
            concurrency: concurrency.clone(),
            secrets: secrets.clone(),
            defaults: defaults.clone(),
            steps: Vec::new(),
            cancel_grace: *cancel_grace,
            status: *status,
            metadata: metadata.clone(),
            schedule: schedule.clone(),
        };
        match crate::definition::saved::short(|| serde_json::to_value(&head)).map_err(written)? {
            Value::Object(mut m) => {
                m.remove("steps");
                Ok(m)
            }
            _ => Err(written(serde::ser::Error::custom("not an object"))),
        }
    }

    /// One step, as JSON (a generated fan-out item as the plain step it is:
    /// its parameters already hold its item).
    ///
    /// # Errors
    /// `Store` when a parameter value does not serialize.
    pub fn step(step: &WorkflowStep) -> Result<Value, OrchestrationError> {
        crate::definition::saved::short(|| serde_json::to_value(step)).map_err(written)
    }

    /// The workflow of `header` with `step` as its only step, decoded as a
    /// saved definition is (defaults filled in; no validation across steps:
    /// the whole was validated when the run was created).
    ///
    /// # Errors
    /// `InvalidState` when the two do not decode.
    pub fn one_step(
        header: &Map<String, Value>,
        step: Value,
    ) -> Result<Workflow, OrchestrationError> {
        let mut doc = header.clone();
        doc.insert("steps".to_owned(), Value::Array(vec![step]));
        let (wf, _) = crate::definition::from_value(&Value::Object(doc), &Limits::default())
            .map_err(|d| OrchestrationError::InvalidState {
                message: format!("a submitted run's step is not readable: {d}"),
            })?;
        Ok(wf)
    }
}
