//! The end of a project: archiving it as a tar.gz (written to a temporary file, then persisted) and deleting or retiring it.

use crate::persist::project_file;
use crate::{ProjectManager, denied, io_err, lock, project_err};
use chrono::Utc;
use orch_model::{OrchestrationError, ProjectStatus};
use std::path::{Path, PathBuf};

impl ProjectManager {
    /// Writes a tar.gz of the project (root entry `<name>/`, links stored as
    /// links, never followed) to `archive_path`, default
    /// `<projects_dir>/archives/<name>.tar.gz`, and marks it archived
    /// (seed: `archive_project`). Returns the archive's path.
    ///
    /// # Errors
    /// `NotFound`; `Io` (no partial archive is left; a symbolic link at
    /// the archive's path is refused, not replaced).
    pub fn archive_project(
        &self,
        name: &str,
        archive_path: Option<&Path>,
    ) -> Result<PathBuf, OrchestrationError> {
        let p = self.get_project(name).ok_or_else(|| self.not_found(name))?;
        let out = archive_path.map_or_else(
            || {
                self.inner
                    .projects_dir
                    .join("archives")
                    .join(format!("{name}.tar.gz"))
            },
            Path::to_path_buf,
        );
        let dir = out.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, &e))?;
        // Written through one atomic write (fsync of the file and its
        // directory); a failure while archiving is told apart from one while writing.
        let mut archived = false;
        orch_resources::atomic::write_file_with(&out, |file| {
            let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            let mut tar = tar::Builder::new(gz);
            tar.follow_symlinks(false);
            tar.append_dir_all(name, &p.path)
                .and_then(|()| tar.into_inner())
                .and_then(flate2::write::GzEncoder::finish)?;
            archived = true;
            Ok(())
        })
        .map_err(|e| {
            if archived {
                io_err("cannot write", &out, &e)
            } else {
                project_err(format!("cannot archive `{}`: {e}", p.path))
            }
        })?;
        self.update(name, |p| {
            p.status = ProjectStatus::Archived;
            p.updated_at = Utc::now();
        })?;
        Ok(out)
    }

    /// Forgets a project; with `remove_files`, deletes its directory too
    /// (links inside are removed, not followed). Without it, the files stay
    /// and the project file is renamed to `project.json.deleted`, so the
    /// project does not come back on the next start (seed: `delete_project`).
    /// Returns false for an unknown project.
    ///
    /// # Errors
    /// `Io` when the files cannot be removed.
    pub fn delete_project(
        &self,
        name: &str,
        remove_files: bool,
    ) -> Result<bool, OrchestrationError> {
        let Some(p) = self.get_project(name) else {
            return Ok(false);
        };
        let root = PathBuf::from(&p.path);
        if remove_files {
            if project_file(&root).is_none() {
                return Err(denied(format!(
                    "`{}` holds no project file; refusing to delete it",
                    root.display()
                )));
            }
            std::fs::remove_dir_all(&root).map_err(|e| io_err("cannot delete", &root, &e))?;
        } else if let Some(file) = project_file(&root) {
            let gone = file.with_extension("json.deleted");
            std::fs::rename(&file, &gone).map_err(|e| io_err("cannot retire", &file, &e))?;
        }
        lock(&self.inner.projects).remove(name);
        if let Some(w) = &self.inner.records {
            w.remove(orch_model::RecordKind::Project, name);
        }
        self.remember(name, None)?;
        Ok(true)
    }
}
