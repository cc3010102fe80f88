//! Helpers shared by this crate's integration tests (every test file that
//! declares this module uses all of them).

use orch_projects::ProjectManager;
use std::path::Path;

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A manager of projects in `DIR/projects` with its templates in `DIR/templates`.
pub fn pm(dir: &Path) -> ProjectManager {
    ProjectManager::builder(dir.join("projects"))
        .templates_dir(dir.join("templates"))
        .build()
        .expect("manager")
}
