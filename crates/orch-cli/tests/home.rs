//! Where `orch` keeps its state when `ORCH_HOME` is not set: the nearest enclosing home, never a
//! project's metadata directory, else the per-user data directory (docs/cli.md, "Where orch keeps
//! its state"). Every test gives orch a temporary `HOME`, so nothing reaches the real one.

use std::path::Path;
use std::process::Command;

/// `orch` in `cwd` with no home configured: `HOME` is `user` and nothing else points anywhere.
fn orch(cwd: &Path, user: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    c.current_dir(cwd)
        .env("HOME", user)
        .env_remove("XDG_DATA_HOME")
        .env_remove("ORCH_HOME")
        .env_remove("CODOMYRMEX_ORCHESTRATION_DIR")
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL");
    c
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("orch runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{cmd:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn hello(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("hi.yaml");
    std::fs::write(
        &p,
        "name: hi\nsteps:\n  - { name: a, module: core, action: noop }\n",
    )
    .expect("write");
    p
}

#[test]
fn with_no_enclosing_home_the_store_goes_to_the_per_user_data_directory() {
    let t = tempfile::tempdir().expect("tempdir");
    let (work, user) = (t.path().join("work"), t.path().join("user"));
    std::fs::create_dir_all(&work).expect("mkdir");
    hello(&work);
    ok(orch(&work, &user).args(["run", "hi.yaml"]));
    assert!(user.join(".local/share/orch/orch.db").is_file());
    assert!(
        !work.join(".orch").exists(),
        "no home in the current directory"
    );
    // From anywhere else, the same history.
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let out = ok(orch(&elsewhere, &user).args(["runs", "list"]));
    assert!(out.contains("hi"), "{out}");

    // A project made there runs from its own subdirectory, with no store inside it.
    ok(orch(&work, &user).args(["project", "new", "demo", "--template", "ai_analysis"]));
    let project = user.join(".local/share/orch/projects/demo");
    std::fs::write(project.join("src/app.py"), "print(1)\n").expect("write");
    ok(orch(&project.join("src"), &user).args(["project", "run", "demo", "ai-analysis"]));
    assert!(project.join("reports/analysis.md").is_file());
    assert!(!project.join(".orch/orch.db").exists() && !project.join("src/.orch").exists());

    // XDG_DATA_HOME, when set, holds it instead.
    let xdg = t.path().join("xdg");
    ok(orch(&work, &user)
        .env("XDG_DATA_HOME", &xdg)
        .args(["run", "hi.yaml"]));
    assert!(xdg.join("orch/orch.db").is_file());
}

#[test]
fn an_enclosing_home_is_found_from_a_subdirectory_and_projects_run_from_inside() {
    let t = tempfile::tempdir().expect("tempdir");
    let (ws, user) = (t.path().join("ws"), t.path().join("user"));
    std::fs::create_dir_all(&ws).expect("mkdir");
    // A home of its own for this tree, made by a first run with ORCH_HOME.
    hello(&ws);
    ok(orch(&ws, &user)
        .env("ORCH_HOME", ".orch")
        .args(["run", "hi.yaml"]));
    assert!(ws.join(".orch/orch.db").is_file());

    // From a subdirectory, without ORCH_HOME, that home is found.
    let sub = ws.join("a/b");
    std::fs::create_dir_all(&sub).expect("mkdir");
    hello(&sub);
    ok(orch(&sub, &user).args(["run", "hi.yaml"]));
    let out = ok(orch(&ws, &user).args(["runs", "list"]));
    assert!(
        out.contains("hi"),
        "the run is in the enclosing home: {out}"
    );
    assert!(!sub.join(".orch").exists() && !ws.join("a/.orch").exists());

    // A project made there, then run from its own subdirectory and its root.
    ok(orch(&sub, &user).args(["project", "new", "demo", "--template", "ai_analysis"]));
    let project = ws.join(".orch/projects/demo");
    std::fs::write(project.join("src/app.py"), "# app\nprint(1)\n").expect("write");
    let out = ok(orch(&project.join("src"), &user).args(["project", "run", "demo", "ai-analysis"]));
    assert!(out.contains("completed"), "{out}");
    assert!(project.join("reports/analysis.md").is_file());
    let out = ok(orch(&project, &user).args(["project", "status", "demo", "--json"]));
    assert!(out.contains("\"workflow_runs\": 1"), "{out}");
    ok(orch(&project, &user).args(["run", "ai-analysis", "-p", "output_path=again"]));
    assert!(project.join("again/analysis.md").is_file());
    // No store inside the project: not in its metadata directory, not in its subdirectories.
    assert!(!project.join(".orch/orch.db").exists());
    assert!(!project.join("src/.orch").exists());
    let out = ok(orch(&ws, &user).args(["runs", "list"]));
    assert_eq!(out.matches("ai-analysis").count(), 2, "{out}");
    // And nothing went to the per-user directory.
    assert!(!user.exists());
}

#[test]
fn a_project_metadata_directory_holding_a_store_is_not_a_home() {
    // What an older orch left behind: a store inside a project's `.orch/`.
    let t = tempfile::tempdir().expect("tempdir");
    let user = t.path().join("user");
    let project = t.path().join("p");
    std::fs::create_dir_all(project.join(".orch")).expect("mkdir");
    std::fs::write(project.join(".orch/project.json"), "{}").expect("write");
    std::fs::write(project.join(".orch/orch.db"), "").expect("write");
    hello(&project);
    ok(orch(&project, &user).args(["run", "hi.yaml"]));
    assert!(user.join(".local/share/orch/orch.db").is_file());
    assert_eq!(
        std::fs::metadata(project.join(".orch/orch.db"))
            .expect("stat")
            .len(),
        0,
        "the project's directory was left alone"
    );
}
