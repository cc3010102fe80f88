//! `orch-projects`: the `ProjectManager` (layer L4): projects from templates, created safely; milestones, metrics, archives.
//!
//! A project is a directory with `.orch/project.json` (the seed's
//! `.codomyrmex/project.json` is read too). [`ProjectManager::create_project`]
//! builds the whole tree (directories, documentation, the template's
//! workflows, the project file) in a temporary directory beside the target
//! and renames it into place, so a failure leaves nothing behind. Paths from
//! templates are checked (no `..`, nothing absolute), links are never
//! followed or copied, and nothing from a template runs.
//!
//! ```
//! use orch_projects::{CreateOptions, ProjectManager};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let pm = ProjectManager::builder(dir.path().join("projects")).build().unwrap();
//! let p = pm.create_project("chatbot-analysis", Some("ai_analysis"), None, CreateOptions {
//!     description: "AI analysis of chatbot conversations".into(),
//!     ..CreateOptions::default()
//! }).unwrap();
//! assert!(dir.path().join("projects/chatbot-analysis/src/README.md").is_file());
//! assert_eq!(p.workflows, vec!["ai-analysis", "build-and-test"]);
//!
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let report = rt.block_on(pm.execute_project_workflow("chatbot-analysis", "ai-analysis", Default::default())).unwrap();
//! assert!(report.succeeded());
//! assert!(dir.path().join("projects/chatbot-analysis/reports/analysis.md").is_file());
//! ```

mod archive;
mod builder;
mod create;
mod docs;
mod lookup;
mod persist;
mod run;
pub mod template;
mod tracking;

pub use builder::ProjectManagerBuilder;
pub use create::CreateOptions;
pub use lookup::ProjectFilter;
pub use run::{ProjectFromWorkflow, add_template_workflows};
pub use template::{DocumentationConfig, ProjectTemplate};
pub use tracking::{Activity, ProjectStatusReport, ProjectUpdate, ProjectsSummary};

use orch_model::{Limits, OrchestrationError, Project};
use orch_tasks::ActionRegistry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use template::Templates;

/// Where a project keeps its own files, under its root.
pub const PROJECT_DIR: &str = ".orch";

/// The original's name for it, still read.
pub const LEGACY_PROJECT_DIR: &str = ".codomyrmex";

#[derive(Debug)]
struct Inner {
    projects_dir: PathBuf,
    templates_dir: Option<PathBuf>,
    registry: ActionRegistry,
    limits: Limits,
    store: Option<Arc<dyn orch_model::Store>>,
    /// The result cache of `cache: true` steps, when there is one.
    cache: Option<Arc<dyn orch_tasks::ResultCache>>,
    /// Writes project records to `store`, when there is one.
    records: Option<orch_tasks::RecordWriter>,
    templates: Mutex<Templates>,
    projects: Mutex<BTreeMap<String, Project>>,
    problems: Mutex<Vec<String>>,
}

/// Projects and templates (seed: `ProjectManager`). Cloning is cheap and shares everything.
#[derive(Debug, Clone)]
pub struct ProjectManager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> OrchestrationError {
    OrchestrationError::Io {
        message: format!("{what} `{}`: {e}", path.display()),
    }
}

/// An error of a confined operation (see [`orch_tasks::confined`]) on `path`.
fn confined_err(what: &str, path: &Path, e: &orch_tasks::confined::Error) -> OrchestrationError {
    if e.is_escape() {
        denied(format!("{what} {e}"))
    } else if let Some(io) = e.io() {
        io_err(what, path, io)
    } else {
        OrchestrationError::Io {
            message: format!("{what} {e}"),
        }
    }
}

fn project_err(message: impl Into<String>) -> OrchestrationError {
    OrchestrationError::ProjectManagement {
        message: message.into(),
    }
}

fn denied(message: impl Into<String>) -> OrchestrationError {
    OrchestrationError::PermissionDenied {
        message: message.into(),
    }
}

impl ProjectManager {
    /// Where projects are created by default.
    pub fn projects_dir(&self) -> &Path {
        &self.inner.projects_dir
    }
}
