//! A project's `.orch/project.json` is rewritten beneath the project's root
//! without following links (issue 10, item 2): a workflow run in the project
//! that replaces `.orch` by a link to another directory cannot make orch
//! write the project file there.

use orch_model::{ErrorCode, Project};
use orch_projects::{CreateOptions, PROJECT_DIR, ProjectManager, ProjectUpdate};
use std::path::Path;

#[test]
fn project_json_is_not_written_through_a_link() {
    let dir = tempfile::tempdir().expect("dir");
    let outside = tempfile::tempdir().expect("outside");
    let pm = ProjectManager::builder(dir.path().join("projects"))
        .build()
        .expect("manager");
    let p = pm
        .create_project("p", None, None, CreateOptions::default())
        .expect("created");
    let root = Path::new(&p.path);
    // `.orch` moves outside and a link takes its place.
    let moved = outside.path().join("meta");
    std::fs::rename(root.join(PROJECT_DIR), &moved).expect("move .orch");
    std::os::unix::fs::symlink(&moved, root.join(PROJECT_DIR)).expect("link");
    let before = std::fs::read_to_string(moved.join("project.json")).expect("project.json");

    let e = pm
        .update_project(
            "p",
            ProjectUpdate {
                description: Some("changed".into()),
                ..ProjectUpdate::default()
            },
        )
        .expect_err("written through a link");
    assert_eq!(e.error_code(), ErrorCode::PermissionDenied, "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(
        std::fs::read_to_string(moved.join("project.json")).expect("project.json"),
        before,
        "the file outside was rewritten"
    );
    let names: Vec<_> = std::fs::read_dir(&moved)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.to_string_lossy().contains("orch-tmp")),
        "a temporary file was left outside: {names:?}"
    );

    // With `.orch` a directory again, updates are written as before.
    std::fs::remove_file(root.join(PROJECT_DIR)).expect("unlink");
    std::fs::rename(&moved, root.join(PROJECT_DIR)).expect("move back");
    let updated = pm
        .update_project(
            "p",
            ProjectUpdate {
                description: Some("changed".into()),
                ..ProjectUpdate::default()
            },
        )
        .expect("updated");
    let on_disk: Project = serde_json::from_str(
        &std::fs::read_to_string(root.join(PROJECT_DIR).join("project.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(on_disk.description, updated.description);
    assert_eq!(on_disk.description, "changed");
}
