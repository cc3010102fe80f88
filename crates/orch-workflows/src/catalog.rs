//! The catalog: the named workflows of `workflows_dir` (loading, load problems, listing, checking, saving atomically).

use crate::{WorkflowManager, io};
use orch_model::{EntityKind, Format, OrchestrationError, ValidWorkflow, Workflow, load_workflow};
use serde_json::Map;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A workflow known to the manager.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) workflow: Arc<ValidWorkflow>,
    pub(crate) path: Option<PathBuf>,
}

fn not_found(name: &str, known: &BTreeMap<String, Entry>) -> OrchestrationError {
    let names: Vec<&str> = known.keys().map(String::as_str).collect();
    OrchestrationError::NotFound {
        kind: EntityKind::Workflow,
        name: name.to_owned(),
        hint: Some(if names.is_empty() {
            "no workflows are defined; add a definition to the workflows directory".to_owned()
        } else {
            format!("known workflows: {}", names.join(", "))
        }),
    }
}

impl WorkflowManager {
    /// Reads the directory again: definitions saved by others appear, deleted ones go.
    /// Workflows added with [`WorkflowManager::add_workflow`] stay.
    ///
    /// # Errors
    /// `Io` when the directory exists but cannot be listed.
    pub fn reload(&self) -> Result<(), OrchestrationError> {
        let dir = &self.inner.dir;
        let mut found: BTreeMap<String, Entry> = BTreeMap::new();
        let mut problems = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                let mut paths: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && Format::from_path(p).is_some())
                    .collect();
                paths.sort();
                for p in paths {
                    match self.load_file(&p) {
                        Ok(wf) => {
                            let name = wf.workflow().name.clone();
                            if let Some(other) = found.get(&name) {
                                problems.push(format!(
                                    "{}: defines workflow `{name}`, already defined by {}; rename one of them",
                                    p.display(),
                                    other.path.as_deref().unwrap_or(Path::new("?")).display()
                                ));
                                continue;
                            }
                            found.insert(
                                name,
                                Entry {
                                    workflow: Arc::new(wf),
                                    path: Some(p),
                                },
                            );
                        }
                        Err(e) => problems.push(e),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot list workflows directory", dir, &e)),
        }
        let mut st = self.state();
        for (name, e) in &st.workflows {
            if e.path.is_none() && !found.contains_key(name) {
                found.insert(name.clone(), e.clone());
            }
        }
        st.workflows = found;
        st.problems = problems;
        Ok(())
    }

    fn load_file(&self, p: &Path) -> Result<ValidWorkflow, String> {
        let shown = p.display().to_string();
        let meta = std::fs::metadata(p).map_err(|e| format!("{shown}: {e}"))?;
        if meta.len() > self.inner.limits.max_definition_bytes {
            return Err(format!(
                "{shown}: {} bytes is over the definition size limit of {} bytes",
                meta.len(),
                self.inner.limits.max_definition_bytes
            ));
        }
        let text = std::fs::read_to_string(p).map_err(|e| format!("{shown}: {e}"))?;
        let format = Format::from_path(p).unwrap_or(Format::Json);
        load_workflow(&text, format, &self.inner.limits, Some(&shown))
            .map_err(|d| d.lines().collect::<Vec<_>>().join("\n"))
    }

    /// Reads `wf` back the way [`WorkflowManager::reload`] reads a saved
    /// file: its canonical JSON through the loader, with the same limits, so
    /// that nothing is accepted now that the loader would refuse after a restart.
    pub(crate) fn as_loaded(&self, wf: &Workflow) -> Result<ValidWorkflow, OrchestrationError> {
        let mut text = wf.to_json_pretty();
        text.push('\n');
        let shown = format!("workflow `{}`", wf.name);
        let max = self.inner.limits.max_definition_bytes;
        if text.len() as u64 > max {
            return Err(OrchestrationError::invalid_parameters(format!(
                "{shown}: its saved form is {} bytes, over the definition size limit of {max} bytes; split it into sub-workflows or raise the limit",
                text.len()
            )));
        }
        load_workflow(&text, Format::Json, &self.inner.limits, Some(&shown))
            .map_err(OrchestrationError::Validation)
    }

    /// Definitions in the directory that did not load, one message each (with file, line and column).
    pub fn load_problems(&self) -> Vec<String> {
        self.state().problems.clone()
    }

    /// A new, empty workflow (seed: `create_workflow`); add steps with
    /// [`Workflow::step`], then [`WorkflowManager::save_workflow`] or
    /// [`WorkflowManager::add_workflow`] it.
    pub fn create_workflow(&self, name: &str, description: &str) -> Workflow {
        Workflow::new(name, description)
    }

    fn check(&self, wf: &Workflow) -> Result<ValidWorkflow, OrchestrationError> {
        // The loader's rules, not only validation's: a workflow with no steps
        // validates but is refused by the loader.
        let valid = self.as_loaded(wf)?;
        orch_tasks::prepare(&valid, &self.inner.registry, &Map::new())
            .map(|_| ())
            .or_else(|e| match e {
                // Parameters without defaults are given at run time; only module problems count here.
                OrchestrationError::InvalidParameters { .. } => Ok(()),
                other => Err(other),
            })?;
        Ok(valid)
    }

    /// Validates `wf` and keeps it in memory only (it is gone after a restart).
    ///
    /// # Errors
    /// `Validation` with every problem; `AlreadyExists` when a workflow of that name is known.
    pub fn add_workflow(&self, wf: &Workflow) -> Result<(), OrchestrationError> {
        let valid = self.check(wf)?;
        let mut st = self.state();
        if st.workflows.contains_key(&wf.name) {
            return Err(OrchestrationError::AlreadyExists {
                kind: EntityKind::Workflow,
                name: wf.name.clone(),
                hint: Some("choose another name, or save_workflow to replace a saved one".into()),
            });
        }
        st.workflows.insert(
            wf.name.clone(),
            Entry {
                workflow: Arc::new(valid),
                path: None,
            },
        );
        Ok(())
    }

    /// Validates `wf` and writes it to `<workflows_dir>/<name>.json`
    /// atomically (replacing an earlier version saved there); returns the path.
    ///
    /// # Errors
    /// `Validation` with every problem (nothing is written); `AlreadyExists`
    /// when another file defines a workflow of that name; `Io` when writing fails.
    pub fn save_workflow(&self, wf: &Workflow) -> Result<PathBuf, OrchestrationError> {
        let valid = self.check(wf)?;
        let path = self.inner.dir.join(format!("{}.json", wf.name));
        if let Some(existing) = self.state().workflows.get(&wf.name) {
            if let Some(p) = &existing.path {
                if p != &path {
                    return Err(OrchestrationError::AlreadyExists {
                        kind: EntityKind::Workflow,
                        name: wf.name.clone(),
                        hint: Some(format!("it is defined in {}; edit that file", p.display())),
                    });
                }
            }
        }
        std::fs::create_dir_all(&self.inner.dir)
            .map_err(|e| io("cannot create workflows directory", &self.inner.dir, &e))?;
        let mut text = wf.to_json_pretty();
        text.push('\n');
        orch_resources::atomic::write_file(&path, text.as_bytes())
            .map_err(|e| io("cannot write", &path, &e))?;
        self.state().workflows.insert(
            wf.name.clone(),
            Entry {
                workflow: Arc::new(valid),
                path: Some(path.clone()),
            },
        );
        Ok(path)
    }

    /// Names of every known workflow, sorted (seed: `list_workflows`).
    pub fn list_workflows(&self) -> Vec<String> {
        self.state().workflows.keys().cloned().collect()
    }

    /// A workflow's definition.
    pub fn get_workflow(&self, name: &str) -> Option<Workflow> {
        self.state()
            .workflows
            .get(name)
            .map(|e| e.workflow.workflow().clone())
    }

    /// A workflow's validated definition (what runs).
    pub fn get_valid(&self, name: &str) -> Option<Arc<ValidWorkflow>> {
        self.state().workflows.get(name).map(|e| e.workflow.clone())
    }

    /// The file a workflow was read from, if it came from one.
    pub fn workflow_path(&self, name: &str) -> Option<PathBuf> {
        self.state()
            .workflows
            .get(name)
            .and_then(|e| e.path.clone())
    }

    pub(crate) fn valid(&self, name: &str) -> Result<Arc<ValidWorkflow>, OrchestrationError> {
        let st = self.state();
        st.workflows
            .get(name)
            .map(|e| e.workflow.clone())
            .ok_or_else(|| not_found(name, &st.workflows))
    }

    /// Checks that a workflow can run: its modules exist and it does not call itself through sub-workflows.
    ///
    /// # Errors
    /// `NotFound`, `Validation`, or `Validation` with a `CycleDetected` problem.
    pub fn validate(&self, name: &str) -> Result<(), OrchestrationError> {
        let wf = self.valid(name)?;
        orch_tasks::prepare(&wf, &self.inner.registry, &Map::new())
            .map(|_| ())
            .or_else(|e| match e {
                OrchestrationError::InvalidParameters { .. } => Ok(()),
                other => Err(other),
            })?;
        self.check_calls(name)
    }

    /// The steps level by level: each level's steps may run together (seed: `get_workflow_execution_order`).
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow.
    pub fn execution_order(&self, name: &str) -> Result<Vec<Vec<String>>, OrchestrationError> {
        Ok(self.valid(name)?.execution_order())
    }

    /// The workflow as a Mermaid flowchart.
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow.
    pub fn to_mermaid(&self, name: &str) -> Result<String, OrchestrationError> {
        Ok(self.valid(name)?.to_mermaid())
    }

    /// The workflow as a Graphviz DOT digraph.
    ///
    /// # Errors
    /// `NotFound` for an unknown workflow.
    pub fn to_dot(&self, name: &str) -> Result<String, OrchestrationError> {
        Ok(self.valid(name)?.to_dot())
    }
}
