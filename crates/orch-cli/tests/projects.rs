//! End-to-end tests of `orch templates`, `orch project ...`, `orch run NAME`, `orch status` and `orch health`.

use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

fn orch(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    // The home beside the test's files, never the user's (relative: status prints it as given).
    c.current_dir(dir)
        .env("ORCH_HOME", ".orch")
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .env_remove("CODOMYRMEX_ORCHESTRATION_DIR")
        .timeout(std::time::Duration::from_secs(120));
    c
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = orch(dir).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tree(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap_or(e.path())
                .display()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn an_ai_analysis_project_is_created_run_and_inspected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (code, out, _) = run(d, &["templates"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ai_analysis") && out.contains("ai-analysis, build-and-test"),
        "{out}"
    );

    let (code, out, err) = run(
        d,
        &[
            "project",
            "new",
            "demo",
            "--template",
            "ai_analysis",
            "--author",
            "me",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("orch project run demo ai-analysis"), "{out}");
    let root = d.join(".orch/projects/demo");
    std::fs::write(root.join("src/app.py"), "# app\nprint(1)\n").expect("write");

    let (code, out, err) = run(d, &["project", "run", "demo", "ai-analysis"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("workflow `ai-analysis` completed: 4 completed"),
        "{out}"
    );
    let report = std::fs::read_to_string(root.join("reports/analysis.md")).expect("report");
    assert!(report.contains("1 files, 2 lines"), "{report}");
    assert!(
        std::fs::read_to_string(root.join("reports/code-by-language.svg"))
            .expect("svg")
            .contains(">Python</text>")
    );

    // Inside the project, `orch run NAME` finds the project's workflow and runs it there.
    let (code, out, err) = run(
        &root.join("src"),
        &["run", "ai-analysis", "-p", "output_path=output"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(root.join("output/analysis.md").is_file());

    let (code, out, _) = run(
        d,
        &[
            "project",
            "milestone",
            "demo",
            "first_look",
            "--data",
            r#"{"score": 8.5}"#,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(d, &["project", "status", "demo", "--json"]);
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(s["status"], "active");
    assert_eq!(s["milestones"]["first_look"]["score"], 8.5);
    assert_eq!(s["metrics"]["workflow_runs"], 1);
    assert_eq!(s["workflows"], 2);
    // The same, as text.
    let (code, out, _) = run(d, &["project", "status", "demo"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("demo (ai_analysis, active)\n")
            && out.contains("workflows:  2 (0 running)")
            && out.contains("\"first_look\"")
            && out.contains("\"workflow_runs\":1"),
        "{out}"
    );

    let (code, out, _) = run(d, &["project", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("demo") && out.contains("ai_analysis"), "{out}");
    let (code, out, _) = run(d, &["project", "archive", "demo"]);
    assert_eq!(code, 0, "{out}");
    assert!(d.join(".orch/projects/archives/demo.tar.gz").is_file());

    let (code, out, _) = run(d, &["status", "--json"]);
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(s["project_manager"]["total_projects"], 1);
    assert_eq!(s["workflow_manager"]["total_workflows"], 5);
    let (code, out, _) = run(d, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("orch status at ")
            && out.contains("workflows:  5 defined in .orch/workflows")
            && out.contains("projects:   1 in .orch/projects"),
        "{out}"
    );
    let (code, out, _) = run(d, &["health", "--json"]);
    let h: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (code, h["overall_status"].as_str()),
        (0, Some("healthy")),
        "{h}"
    );
    assert_eq!(
        h["components"]["project_manager"]["details"]["total_projects"], 1,
        "{h}"
    );
}

#[test]
fn run_by_name_finds_workflows_in_the_workflows_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join(".orch/workflows")).expect("mkdir");
    std::fs::write(
        d.join(".orch/workflows/hello.yaml"),
        "name: hello\nsteps:\n  - { name: hi, module: fs, action: write, parameters: { path: out.txt, content: hi } }\n",
    )
    .expect("write");
    let (code, out, err) = run(d, &["run", "hello"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(d.join("out.txt")).expect("written"),
        "hi"
    );
    let (code, _, err) = run(d, &["run", "nosuch"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`nosuch` is neither a file nor a known workflow") && err.contains("hello"),
        "{err}"
    );
    // A broken definition makes health degraded, with the file and line.
    std::fs::write(d.join(".orch/workflows/bad.yaml"), "name: bad\nsteps: 3\n").expect("write");
    let (code, out, _) = run(d, &["health"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("overall: degraded") && out.contains("bad.yaml:2:8"),
        "{out}"
    );
}

#[test]
fn bad_project_input_exits_2_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join(".orch/projects")).expect("mkdir");
    let before = tree(d);
    let long = "x".repeat(4096);
    for template in ["ai_analysis", "custom"] {
        for name in ["../x", "/etc/x", "a/../../x", "", long.as_str()] {
            let (code, out, err) = run(d, &["project", "new", name, "--template", template]);
            assert_eq!(code, 2, "{name:?}: {out}{err}");
            assert!(
                err.starts_with("orch: invalid parameters: project name"),
                "{err}"
            );
            // One line that says what to do: no generic `hint:` line after it.
            assert!(
                err.lines().count() == 1 && err.len() < 600,
                "short, clear error: {err}"
            );
            assert_eq!(tree(d), before, "{name:?}");
        }
    }
    let (code, _, err) = run(d, &["project", "new", "ok", "--template", "nope"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("template `nope` not found") && err.contains("ai_analysis"),
        "{err}"
    );
    let (code, _, err) = run(d, &["project", "status", "ghost"]);
    assert_eq!(code, 2);
    assert!(err.contains("project `ghost` not found"), "{err}");
    let (code, _, err) = run(
        d,
        &["project", "milestone", "ghost", "k", "--data", "{oops"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--data is not JSON"), "{err}");
    assert_eq!(tree(d), before);
}

#[test]
fn run_by_name_in_a_project_lists_every_workflow_it_can_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (code, out, err) = run(d, &["project", "new", "demo", "--template", "ai_analysis"]);
    assert_eq!(code, 0, "{out}{err}");
    let root = d.join(".orch/projects/demo");
    // A workflow added by hand: project.json does not list it, `orch run` runs it.
    std::fs::write(
        root.join(".orch/workflows/extra.yaml"),
        "name: extra\nsteps:\n  - { name: hi, module: fs, action: write, parameters: { path: extra.txt, content: hi } }\n",
    )
    .expect("write");
    let (code, out, err) = run(d, &["project", "run", "demo", "extra"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(root.join("extra.txt").is_file());
    let (code, _, err) = run(d, &["project", "run", "demo", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    let listed = err
        .lines()
        .find(|l| l.contains("has no workflow `nosuch`"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        listed.contains("ai-analysis") && listed.contains("extra"),
        "the hand-added workflow is listed too: {listed}"
    );
}
