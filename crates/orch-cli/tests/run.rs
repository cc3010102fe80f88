//! End-to-end tests of `orch run`: the real binary on real workflows, success, failure and invalid input.

use assert_cmd::Command;
use std::path::Path;

fn orch(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    // The home beside the test's files, never the user's.
    c.current_dir(dir)
        // Relative to the test's directory, as messages print it.
        .env("ORCH_HOME", ".orch")
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .timeout(std::time::Duration::from_secs(120));
    c
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn the_code_report_example_runs_and_writes_its_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The example counts the sources under `crates`; give it a small tree of its own.
    std::fs::create_dir_all(dir.path().join("crates/orch-model/src")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("crates/orch-cli/src")).expect("mkdir");
    std::fs::write(
        dir.path().join("crates/orch-model/src/lib.rs"),
        "//! m\nfn a() {}\nfn b() {}\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("crates/orch-cli/src/main.rs"),
        "//! c\nfn main() {}\n",
    )
    .expect("write");
    let out = orch(dir.path())
        .arg("run")
        .arg(examples().join("code-report.yaml"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "workflow `code-report` completed: 5 completed, 0 failed, 1 skipped of 6 steps"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("report_failure  skipped"), "{stdout}");
    assert!(
        stderr.contains("summary: completed"),
        "plain event lines when not on a terminal: {stderr}"
    );
    let summary = std::fs::read_to_string(dir.path().join("target/code-report.txt"))
        .expect("summary written");
    assert!(summary.contains("orch-model: 3\n"), "{summary}");
    assert!(summary.contains("orch-cli: 2\n"), "{summary}");
    assert!(summary.contains("all crates: 5\n"), "{summary}");
}

#[test]
fn a_failing_workflow_exits_1_with_a_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("f.yaml"),
        "name: f\nsteps:\n  - {name: ok, module: shell, action: exec, parameters: {program: 'true'}}\n  - {name: boom, module: shell, action: exec, parameters: {program: sh, args: ['-c', 'echo oops >&2; exit 3']}, dependencies: [ok]}\n  - {name: never, module: core, action: noop, dependencies: [boom]}\n",
    )
    .expect("write");
    let out = orch(dir.path())
        .args(["run", "f.yaml"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("boom            failed") || stdout.contains("boom   failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ExitCode: `sh` exited with code 3"),
        "{stdout}"
    );
    assert!(stdout.contains("never  "), "{stdout}");
    let out = orch(dir.path())
        .args(["run", "f.yaml", "--json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["steps"][1]["result"]["data"]["exit_code"], 3);
    assert_eq!(v["steps"][1]["result"]["data"]["stderr"], "oops\n");
    assert_eq!(v["steps"][2]["status"], "skipped");
}

#[test]
fn invalid_input_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: b\nsteps:\n  - {name: a, module: core, action: noop, dependencies: [a]}\n",
    )
    .expect("write");
    let out = orch(dir.path())
        .args(["run", "bad.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.yaml:3:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = orch(dir.path())
        .arg("run")
        .arg(examples().join("seed-analysis.json"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    // Checked with the file's positions before the run: each unknown module at its line.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("seed-analysis.json:6:17: steps[0].module: unknown module `static_analysis`"),
        "{err}"
    );
    let out = orch(dir.path())
        .arg("run")
        .arg(examples().join("code-report.yaml"))
        .args(["-p", "nope=1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no parameter `nope`"));
    std::fs::write(
        dir.path().join("huge.yaml"),
        "name: h\nsteps:\n  - {name: a, module: core, action: noop, resources: {memory: {gb: 1000000}}}\n",
    )
    .expect("write");
    let out = orch(dir.path())
        .args(["run", "huge.yaml", "--mode", "resource_aware"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exceeds the total capacity"), "{stderr}");
    let out = orch(dir.path())
        .args(["run", "huge.yaml"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "parallel mode does not allocate"
    );
}

#[test]
fn parameters_and_modes_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p\nparameters: {n: 1, word: x}\nsteps:\n  - {name: a, module: fs, action: write, parameters: {path: out.json, content: {n: '${params.n}', w: '${params.word}'}}}\n",
    )
    .expect("write");
    let out = orch(dir.path())
        .args([
            "run",
            "p.yaml",
            "-p",
            "n=42",
            "-p",
            "word=hello world",
            "--mode",
            "sequential",
        ])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.json")).expect("out"))
            .expect("json");
    assert_eq!(written, serde_json::json!({"n": 42, "w": "hello world"}));
}

#[test]
fn resources_lists_the_machine_or_a_file_and_resource_aware_runs_use_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orch(dir.path()).args(["resources"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("system_cpu") && stdout.contains("cores="),
        "{stdout}"
    );
    let out = orch(dir.path())
        .args(["resources", "--json"])
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v["usage"]["total_resources"]
            .as_u64()
            .is_some_and(|n| n >= 4)
    );
    std::fs::write(
        dir.path().join("res.json"),
        r#"{"resources": {"tiny": {"id": "tiny", "name": "tiny", "type": "cpu", "capacity": {"cores": 1}}}}"#,
    )
    .expect("write");
    let out = orch(dir.path())
        .args(["resources", "--file", "res.json"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tiny"));
    std::fs::write(
        dir.path().join("two.yaml"),
        "name: t\nsteps:\n  - {name: a, module: core, action: sleep, parameters: {ms: 10}, resources: {cpu: {cores: 1}}}\n  - {name: b, module: core, action: sleep, parameters: {ms: 10}, resources: {cpu: {cores: 2}}}\n",
    )
    .expect("write");
    let out = orch(dir.path())
        .args([
            "run",
            "two.yaml",
            "--mode",
            "resource_aware",
            "--resources",
            "res.json",
        ])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "step b asks for more than the file's capacity"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("steps[1].resources"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = orch(dir.path())
        .args(["resources", "--file", "missing.json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read resources file"));
}

#[test]
fn a_python_module_plugs_in_with_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("stats.py"),
        "import json, sys\nreq = json.load(sys.stdin)\nnums = req['parameters']['numbers']\nprint(json.dumps({'action': req['action'], 'sum': sum(nums), 'count': len(nums)}))\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("py.yaml"),
        "name: py\nsteps:\n  - {name: s, module: stats, action: summarize, parameters: {numbers: [1, 2, 3.5]}}\n  - {name: out, module: fs, action: write, parameters: {path: sum.txt, content: 'sum=${s.result.sum} of ${s.result.count} (${s.result.action})'}}\n",
    )
    .expect("write");
    // PROGRAM is one executable: a two-line wrapper runs the Python module.
    std::fs::write(
        dir.path().join("stats.sh"),
        "#!/bin/sh\nexec python3 \"$(dirname \"$0\")/stats.py\"\n",
    )
    .expect("write");
    let mut perms = std::fs::metadata(dir.path().join("stats.sh"))
        .expect("meta")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(dir.path().join("stats.sh"), perms).expect("chmod");
    let out = orch(dir.path())
        .args(["run", "py.yaml", "--module", "stats=./stats.sh"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sum.txt")).expect("written"),
        "sum=6.5 of 3 (summarize)"
    );
    let out = orch(dir.path())
        .args(["run", "py.yaml", "--module", "=x"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cached_results_survive_between_runs_and_can_be_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("c.yaml"),
        "name: c\nsteps:\n  - {name: stamp, module: shell, action: exec, parameters: {program: date, args: ['+%N']}, cache: true}\n",
    )
    .expect("write");
    let first = orch(dir.path())
        .args(["run", "c.yaml", "--json"])
        .output()
        .expect("runs");
    let second = orch(dir.path())
        .args(["run", "c.yaml", "--json"])
        .output()
        .expect("runs");
    let a: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json");
    let b: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(b["steps"][0]["result"]["cached"], true, "{b}");
    assert_eq!(
        a["steps"][0]["result"]["data"],
        b["steps"][0]["result"]["data"]
    );
    let list = orch(dir.path())
        .args(["cache", "list"])
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("1 cached result in sqlite://.orch/orch.db")
    );
    let third = orch(dir.path())
        .args(["run", "c.yaml", "--json", "--no-cache"])
        .output()
        .expect("runs");
    let c: serde_json::Value = serde_json::from_slice(&third.stdout).expect("json");
    assert!(
        c["steps"][0]["result"].get("cached").is_none(),
        "--no-cache runs the step"
    );
    let cleared = orch(dir.path())
        .args(["cache", "clear"])
        .output()
        .expect("runs");
    assert_eq!(
        String::from_utf8_lossy(&cleared.stdout).trim(),
        "removed 1 cached result"
    );
}

/// The steps of a `--json` report as (started, finished) pairs, in start order.
fn step_spans(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut spans: Vec<(String, String)> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["started_at"].as_str().expect("started").to_owned(),
                s["finished_at"].as_str().expect("finished").to_owned(),
            )
        })
        .collect();
    spans.sort();
    spans
}

#[test]
fn max_workers_from_the_environment_or_the_config_bounds_parallelism_unless_the_flag_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p\nsteps:\n  - {name: a, module: shell, action: exec, parameters: {program: sleep, args: ['0.3']}}\n  - {name: b, module: shell, action: exec, parameters: {program: sleep, args: ['0.3']}}\n  - {name: c, module: shell, action: exec, parameters: {program: sleep, args: ['0.3']}}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("one.json"), r#"{"max_workers": 1}"#).expect("write");
    let one_at_a_time = |report: &serde_json::Value| {
        let spans = step_spans(report);
        // RFC 3339 times in one zone compare as text.
        spans.windows(2).all(|w| w[1].0 >= w[0].1)
    };
    let by_env = orch(dir.path())
        .env("ORCH_MAX_WORKERS", "1")
        .args(["run", "p.yaml", "--json"])
        .output()
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&by_env.stdout).expect("json");
    assert!(one_at_a_time(&report), "ORCH_MAX_WORKERS=1: {report}");
    let by_config = orch(dir.path())
        .args(["--config", "one.json", "run", "p.yaml", "--json"])
        .output()
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&by_config.stdout).expect("json");
    assert!(
        one_at_a_time(&report),
        "max_workers 1 in the config: {report}"
    );
    let by_flag = orch(dir.path())
        .env("ORCH_MAX_WORKERS", "1")
        .args(["run", "p.yaml", "--json", "--max-parallel", "3"])
        .output()
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&by_flag.stdout).expect("json");
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(step_spans(&report).len(), 3, "{report}");
}
