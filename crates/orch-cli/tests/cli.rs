//! End-to-end tests of `orch validate` and `orch graph`: the real binary on real files.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn orch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    c.timeout(std::time::Duration::from_secs(60));
    c
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let out = cmd.output().expect("orch runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn validate_prints_a_summary_per_valid_file() {
    let ex = examples();
    let out = run(orch().current_dir(&ex).args([
        "validate",
        "code-report.yaml",
        "seed-analysis.json",
        "data-pipeline.toml",
        // The modules examples/seed_modules.py serves to seed-analysis.json.
        "--module",
        "static_analysis",
        "--module",
        "data_visualization",
        "--module",
        "documentation=seed_modules.py",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout, @r"
    code-report.yaml: ok: workflow `code-report`, 6 steps, 3 levels, longest path 3 (list_sources -> count_model -> summary)
    seed-analysis.json: ok: workflow `seed-analysis`, 3 steps, 3 levels, longest path 3 (analyze_code -> create_chart -> write_report)
    data-pipeline.toml: ok: workflow `data-pipeline`, 6 steps, 5 levels, longest path 5 (fetch_orders -> merge -> count_rows -> publish -> alert)
    ");
    assert!(out.stderr.is_empty());
}

#[test]
fn validate_reports_every_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = "\
name: broken
parameters: { root: . }
steps:
  - name: fetch_
    module: shell
    action: exec
    dependecies: []
  - name: parse
    module: core
    action: noop
    dependencies: [fetch]
    timeout: soon
  - name: report
    module: core
    action: set
    parameters: { value: \"${parse.result.rows} ${params.rooot} ${1+1} ${parse.result\" }
";
    write(dir.path(), "broken.yaml", broken);
    let out = run(orch()
        .current_dir(dir.path())
        .args(["validate", "broken.yaml"]));
    assert_eq!(out.code, 2);
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!(out.stderr);
}

#[test]
fn validate_json_output_is_machine_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "cycle.json",
        r#"{"name": "c", "steps": [
        {"name": "a", "module": "core", "action": "noop", "dependencies": ["c"]},
        {"name": "b", "module": "core", "action": "noop", "dependencies": ["a"]},
        {"name": "c", "module": "core", "action": "noop", "dependencies": ["b"]}]}"#,
    );
    let ex = examples().join("seed-analysis.json");
    let out = run(orch()
        .current_dir(dir.path())
        .args(["validate", "--json", "cycle.json"])
        .arg(&ex)
        .args([
            "--module",
            "static_analysis",
            "--module",
            "data_visualization",
        ])
        .args(["--module", "documentation"]));
    assert_eq!(out.code, 2);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON on stdout");
    assert_eq!(v[0]["valid"], false);
    assert_eq!(v[0]["problems"][0]["kind"], "cycle");
    assert_eq!(v[0]["problems"][0]["pos"]["line"], 2);
    assert!(
        v[0]["problems"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("a -> c -> b -> a"))
    );
    assert_eq!(v[1]["valid"], true);
    assert_eq!(v[1]["steps"], 3);
    assert_eq!(
        v[1]["longest_path"],
        serde_json::json!(["analyze_code", "create_chart", "write_report"])
    );
}

#[test]
fn graph_prints_mermaid_and_dot() {
    let ex = examples();
    let out = run(orch()
        .current_dir(&ex)
        .args(["graph", "seed-analysis.json"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout, @r#"
    flowchart TD
        n0["analyze_code<br/>static_analysis.analyze_code_quality"]
        n1["create_chart<br/>data_visualization.create_bar_chart"]
        n2["write_report<br/>documentation.generate_report"]
        n0 --> n1
        n0 --> n2
        n1 --> n2
    "#);
    let out = run(orch()
        .current_dir(&ex)
        .args(["graph", "seed-analysis.json", "--format", "dot"]));
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.starts_with("digraph \"seed-analysis\" {"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"analyze_code\" -> \"create_chart\";"));
    let out = run(orch()
        .current_dir(&ex)
        .args(["graph", "data-pipeline.toml", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        v["levels"][0],
        serde_json::json!(["fetch_orders", "fetch_customers"])
    );
}

#[test]
fn input_format_can_be_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "wf.txt",
        "name: w\nsteps: [{name: a, module: core, action: noop}]\n",
    );
    let out = run(orch().current_dir(dir.path()).args(["validate", "wf.txt"]));
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim(),
        "wf.txt: cannot tell the format from the extension; use .yaml, .yml, .json or .toml, or pass --input-format"
    );
    let out = run(orch()
        .current_dir(dir.path())
        .args(["validate", "--format", "yaml", "wf.txt"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out =
        run(orch()
            .current_dir(dir.path())
            .args(["graph", "--input-format", "yaml", "wf.txt"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn file_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(orch()
        .current_dir(dir.path())
        .args(["validate", "missing.yaml"]));
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.trim(), "missing.yaml: cannot open: no such file");
    std::fs::create_dir(dir.path().join("d.yaml")).expect("mkdir");
    let out = run(orch().current_dir(dir.path()).args(["validate", "d.yaml"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("d.yaml: is a directory"),
        "{}",
        out.stderr
    );
    std::fs::write(dir.path().join("bin.json"), b"{\"name\": \"\xff\"}").expect("write");
    let out = run(orch()
        .current_dir(dir.path())
        .args(["validate", "bin.json"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("bin.json: is not valid UTF-8"),
        "{}",
        out.stderr
    );
    write(dir.path(), "big.json", "{\"name\": \"w\", \"steps\": []}");
    let out = run(orch().current_dir(dir.path()).args([
        "validate",
        "--limit",
        "max_definition_bytes=10",
        "big.json",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("the file is 26 bytes; the limit is 10"),
        "{}",
        out.stderr
    );
    let out = run(orch().current_dir(dir.path()).args([
        "validate",
        "--limit",
        "max_stepz=1",
        "big.json",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unknown limit `max_stepz`"),
        "{}",
        out.stderr
    );
}

#[test]
fn help_and_version() {
    let out = run(orch().arg("--help"));
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("validate") && out.stdout.contains("graph"),
        "{}",
        out.stdout
    );
    let out = run(orch().arg("--version"));
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout.trim(),
        format!("orch {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(orch().arg("frobnicate"));
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains("panicked"));
}
