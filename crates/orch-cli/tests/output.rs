//! What `orch` prints: control characters escaped, a closed pipe ends it
//! quietly, a panic exits 70, definitions that are not files refused, `last`
//! is the newest top-level run, tables aligned, hints once, `graph NAME`.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn orch(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    c.current_dir(dir)
        .env("ORCH_HOME", dir.join(".orch"))
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .env_remove("CODOMYRMEX_ORCHESTRATION_DIR")
        .env_remove("ORCH_DEBUG_PANIC")
        .timeout(std::time::Duration::from_secs(120));
    c
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Bytes that would drive a terminal: ESC, BEL, CSI (C1), DEL.
fn assert_no_controls(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c.is_control() && c != '\n' && c != '\t')
        .collect();
    assert!(bad.is_empty(), "{what} holds {bad:?}:\n{text}");
}

const HOSTILE: &str = "x\u{1b}[2J\u{1b}]0;pwned\u{7}";

#[test]
fn values_from_params_steps_and_results_are_printed_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A step that prints escapes, one that fails with them on stderr, and
    // one whose error quotes a parameter value holding them.
    write(
        dir.path(),
        "hostile.yaml",
        concat!(
            "name: hostile\n",
            "parameters: {p: plain}\n",
            "steps:\n",
            "  - {name: paint, module: shell, action: exec, parameters: {program: printf, args: [\"\\e[2J\\e]0;pwned\\a done\"]}}\n",
            "  - {name: loud, module: shell, action: exec, parameters: {program: sh, args: ['-c', 'printf \"\\033[31mboom\\033[0m\\n\" >&2; exit 3']}}\n",
            "  - {name: by_param, module: shell, action: exec, parameters: {program: '${params.p}'}}\n",
        ),
    );
    let param = format!("p={HOSTILE}");
    let run = orch(dir.path())
        .args(["run", "hostile.yaml", "--mode", "sequential", "-p", &param])
        .output()
        .expect("runs");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert_no_controls("orch run's stdout", &run.stdout);
    assert_no_controls("orch run's stderr", &run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("\\u001b[2J"), "shown escaped: {stdout}");

    for args in [
        &["runs", "show", "last"][..],
        &["runs", "show", "last", "--json"],
        &["runs", "list"],
        &["logs", "last", "paint"],
        &["logs", "last", "loud"],
        &["logs", "last", "by_param"],
    ] {
        let out = orch(dir.path()).args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert_no_controls(&format!("stdout of {args:?}"), &out.stdout);
        assert_no_controls(&format!("stderr of {args:?}"), &out.stderr);
    }
    let logs = orch(dir.path())
        .args(["logs", "last", "paint"])
        .output()
        .expect("runs");
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("\\u001b[2J\\u001b]0;pwned\\u0007 done"),
        "{logs}"
    );
    // The JSON still says what the values were.
    let json = orch(dir.path())
        .args(["runs", "show", "last", "--json"])
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["params"]["p"], HOSTILE);

    // Asked for explicitly, the output comes as it was.
    let raw = orch(dir.path())
        .args(["logs", "last", "paint", "--raw"])
        .output()
        .expect("runs");
    assert_eq!(raw.status.code(), Some(0));
    assert_eq!(raw.stdout, b"\x1b[2J\x1b]0;pwned\x07 done");
    let raw = orch(dir.path())
        .args(["logs", "last", "loud", "--raw"])
        .output()
        .expect("runs");
    assert_eq!(raw.stderr, b"\x1b[31mboom\x1b[0m\n");
}

#[test]
fn a_file_name_or_key_holding_escapes_is_shown_escaped_by_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("bad{HOSTILE}.yaml");
    write(
        dir.path(),
        &name,
        "name: w\nsteps:\n  - {name: a, module: core, action: noop, \"k\\e[2J\\nfake: line\": 1}\n",
    );
    let out = orch(dir.path())
        .args(["validate", &name])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_no_controls("stdout", &out.stdout);
    assert_no_controls("stderr", &out.stderr);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("badx\\u001b[2J"), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "a key cannot start a line: {stderr}"
    );

    let out = orch(dir.path())
        .args(["validate", "--json", &name])
        .output()
        .expect("runs");
    assert_no_controls("stdout", &out.stdout);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["file"], name.as_str());

    // A name that is not a file is quoted escaped too.
    let out = orch(dir.path())
        .args(["run", &format!("nosuch{HOSTILE}")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert_no_controls("stderr", &out.stderr);
    // So are clap's messages, which quote what was typed.
    let out = orch(dir.path())
        .args(["runs", &format!("--{HOSTILE}")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert_no_controls("stderr", &out.stderr);
}

#[test]
fn a_closed_stdout_ends_orch_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "w.yaml",
        "name: w\nsteps:\n  - {name: a, module: core, action: noop}\n",
    );
    orch(dir.path()).args(["run", "w.yaml"]).assert().success();
    for args in [
        &["runs", "show", "last", "--json"][..],
        &["runs", "list"],
        &["templates"],
        &["validate", "w.yaml"],
    ] {
        // The reading end is closed before orch starts: its first write fails.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
            .current_dir(dir.path())
            .env("ORCH_HOME", dir.path().join(".orch"))
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("runs");
        assert_eq!(
            out.status.code(),
            Some(141),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: quiet: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_panic_prints_one_line_and_exits_70() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orch(dir.path())
        .env("ORCH_DEBUG_PANIC", "1")
        .arg("status")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(70), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("orch: internal error at ") && stderr.contains("please report it"),
        "{stderr}"
    );
}

#[test]
fn what_is_not_a_regular_file_is_refused_and_stdin_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe.yaml"))
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    std::fs::create_dir(dir.path().join("dir.yaml")).expect("mkdir");
    for cmd in ["validate", "graph", "run"] {
        // A FIFO with no writer would block an open for reading forever.
        let out = orch(dir.path())
            .args([cmd, "pipe.yaml"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("pipe.yaml: is a named pipe (FIFO), not a regular file")
                && stderr.contains("give `-`"),
            "{cmd}: {stderr}"
        );
        let out = orch(dir.path())
            .args([cmd, "dir.yaml"])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("dir.yaml: is a directory"),
            "{cmd}: {out:?}"
        );
    }
    let def = "name: piped\nsteps:\n  - {name: a, module: core, action: noop}\n";
    let out = orch(dir.path())
        .args(["validate", "-", "--input-format", "yaml"])
        .write_stdin(def)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("<stdin>: ok: workflow `piped`"),
        "{out:?}"
    );
    let out = orch(dir.path())
        .args(["graph", "-", "--input-format", "yaml"])
        .write_stdin(def)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = orch(dir.path())
        .args(["run", "-", "--input-format", "yaml"])
        .write_stdin(def)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = orch(dir.path())
        .args(["validate", "-"])
        .write_stdin(def)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --input-format"),
        "{out:?}"
    );
}

#[test]
fn last_is_the_newest_top_level_run_not_a_sub_workflows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join(".orch/workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    write(
        &workflows,
        "child.yaml",
        "name: child\nsteps:\n  - {name: inner, module: core, action: noop}\n",
    );
    write(
        dir.path(),
        "parent.yaml",
        concat!(
            "name: parent\n",
            "steps:\n",
            "  - {name: call, module: workflow, action: run, parameters: {workflow: child}}\n",
            "  - {name: after, module: shell, action: exec, parameters: {program: echo, args: [parent done]}, dependencies: [call]}\n",
        ),
    );
    let out = orch(dir.path())
        .args(["run", "parent.yaml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let list = orch(dir.path())
        .args(["runs", "list", "--json"])
        .output()
        .expect("runs");
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    let names: Vec<&str> = runs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["workflow"].as_str())
        .collect();
    assert_eq!(
        names,
        ["child", "parent"],
        "the child is recorded, and newer"
    );

    let out = orch(dir.path())
        .args(["logs", "last", "after"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("parent done"));
    let out = orch(dir.path())
        .args(["runs", "show", "last", "--json"])
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["workflow"], "parent");

    // A later top-level run is `last` again.
    orch(dir.path()).args(["run", "child"]).assert().success();
    let out = orch(dir.path())
        .args(["runs", "show", "last", "--json"])
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["workflow"], "child");
}

#[test]
fn graph_takes_a_workflow_name_as_run_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join(".orch/workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    write(
        &workflows,
        "pair.yaml",
        "name: pair\nsteps:\n  - {name: one, module: core, action: noop}\n  - {name: two, module: core, action: noop, dependencies: [one]}\n",
    );
    let out = orch(dir.path())
        .args(["graph", "pair", "--json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["name"], "pair");
    assert_eq!(v["levels"], serde_json::json!([["one"], ["two"]]));
    // A template's workflow, and an unknown name with the known ones.
    orch(dir.path())
        .args(["graph", "ai-analysis"])
        .assert()
        .success();
    let out = orch(dir.path())
        .args(["graph", "nosuch"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pair"),
        "{out:?}"
    );
}

#[test]
fn table_columns_line_up_whatever_the_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "a-workflow-with-a-rather-long-name";
    write(
        dir.path(),
        "w.yaml",
        &format!(
            "name: {long}\nsteps:\n  - {{name: a, module: core, action: noop}}\n  - {{name: a_step_with_a_long_name, module: core, action: noop}}\n"
        ),
    );
    let run = orch(dir.path())
        .args(["run", "w.yaml"])
        .output()
        .expect("runs");
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    // The STATUS column starts where its header does (wide characters
    // are checked in the unit tests of `term`: names here are ASCII).
    let stdout = String::from_utf8_lossy(&run.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let col = lines[0].find("STATUS").expect("header");
    for line in &lines[1..3] {
        assert_eq!(line.find("completed"), Some(col), "{stdout}");
    }
    let list = orch(dir.path())
        .args(["runs", "list"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&list.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].find("STATUS"),
        lines[1].find("completed"),
        "{stdout}"
    );
}

#[test]
fn a_hint_the_message_carries_is_not_printed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = orch(dir.path())
        .args(["project", "status", "nosuch"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("no projects yet").count(), 1, "{stderr}");
    orch(dir.path())
        .args(["project", "new", "one", "--template", "custom"])
        .assert()
        .success();
    let out = orch(dir.path())
        .args(["project", "status", "nosuch"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("known projects: one").count(), 1, "{stderr}");
    assert!(
        !stderr.contains("hint:"),
        "the hint is in the message: {stderr}"
    );
}

#[test]
fn health_indents_every_line_of_a_problem_under_its_issue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join(".orch/workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    // Two problems: one issue of several lines.
    write(
        &workflows,
        "broken.yaml",
        "name: broken\nsteps:\n  - {name: a, module: core, action: noop, bogus: 1}\n  - {name: b, module: core, action: noop, dependencies: [ghost]}\n",
    );
    let out = orch(dir.path()).arg("health").output().expect("runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("overall: "), "{stdout}");
    assert!(
        lines[1..].iter().all(|l| l.starts_with("  ")),
        "every line belongs to a component or an issue: {stdout}"
    );
    let issue = lines
        .iter()
        .position(|l| l.contains("issue: ") && l.contains("broken.yaml"))
        .expect("the issue");
    assert!(
        lines
            .get(issue + 1)
            .is_some_and(|l| l.starts_with("         ") && l.contains("broken.yaml")),
        "the next problem is indented under it: {stdout}"
    );
}

#[test]
fn with_term_dumb_each_event_shows_as_it_happens() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "w.yaml",
        "name: w\nsteps:\n  - {name: first, module: core, action: noop}\n",
    );
    // On a terminal (a pseudo-terminal that `script` opens) that cannot
    // draw a progress bar, the events come as lines.
    let command = format!("'{}' run w.yaml", env!("CARGO_BIN_EXE_orch"));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("ORCH_HOME", dir.path().join(".orch"))
        .env("TERM", "dumb")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("first: completed in"), "{text}");
}

#[test]
fn on_a_terminal_the_bar_names_the_running_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "w.yaml",
        "name: w\nsteps:\n  - {name: slow_one, module: shell, action: exec, parameters: {program: sleep, args: ['1']}}\n",
    );
    // A pseudo-terminal (that `script` opens) that can draw a bar.
    let command = format!("'{}' run w.yaml", env!("CARGO_BIN_EXE_orch"));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("ORCH_HOME", dir.path().join(".orch"))
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("1 running: slow_one | 0 failed"), "{text}");
    assert!(
        !text.contains("slow_one: started"),
        "a bar, not a line per event: {text}"
    );
}

/// The STEP cell of `orch run`'s table and of `orch runs show`, for one
/// run: the same names, phases and notes.
fn step_cells(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("STEP "))
        .skip(1)
        .take_while(|l| !l.starts_with("workflow `"))
        .map(|l| {
            let cells: Vec<&str> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let note = if cells.len() > 1 && cells.last().is_some_and(|c| c.contains(' ')) {
                (*cells.last().unwrap_or(&"")).to_owned()
            } else {
                String::new()
            };
            (cells.first().copied().unwrap_or("").to_owned(), note)
        })
        .collect()
}

#[test]
fn run_and_runs_show_name_and_note_steps_alike_and_one_step_is_singular() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "phases.yaml",
        concat!(
            "name: phases\n",
            "steps:\n",
            "  - {name: fan, module: core, action: set, for_each: [a, b, c], parameters: {value: '${item}'}}\n",
            "  - {name: solo, module: core, action: set, for_each: [a], parameters: {value: '${item}'}}\n",
            "  - {name: bad, module: core, action: fail, parameters: {message: no}, dependencies: [fan]}\n",
            "on_failure:\n",
            "  - {name: alert, module: core, action: noop}\n",
            "finally:\n",
            "  - {name: cleanup, module: core, action: noop}\n",
        ),
    );
    let run = orch(dir.path())
        .args(["run", "phases.yaml"])
        .output()
        .expect("runs");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let table = String::from_utf8_lossy(&run.stdout).into_owned();
    let show = orch(dir.path())
        .args(["runs", "show", "last"])
        .output()
        .expect("shows");
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    let names = |cells: &[(String, String)]| -> Vec<String> {
        cells.iter().map(|(n, _)| n.clone()).collect()
    };
    let ran = step_cells(&table);
    assert_eq!(
        names(&ran),
        [
            "fan",
            "solo",
            "bad",
            "alert (on_failure)",
            "cleanup (finally)",
            "fan[0]",
            "fan[1]",
            "fan[2]",
            "solo[0]"
        ],
        "{table}"
    );
    assert_eq!(names(&step_cells(&shown)), names(&ran), "{shown}");
    // The gathering steps' note, in both.
    for cells in [&ran, &step_cells(&shown)] {
        assert_eq!(cells[0].1, "3 items gathered", "{table}\n{shown}");
        assert_eq!(cells[1].1, "1 item gathered", "{table}\n{shown}");
    }

    // One step: `1 step`, not `1 steps`.
    write(
        dir.path(),
        "one.yaml",
        "name: one\nsteps:\n  - {name: a, module: core, action: noop}\n",
    );
    let one = orch(dir.path())
        .args(["run", "one.yaml"])
        .env("TERM", "dumb")
        .output()
        .expect("runs");
    let (out, err) = (
        String::from_utf8_lossy(&one.stdout),
        String::from_utf8_lossy(&one.stderr),
    );
    assert!(out.contains(" of 1 step in "), "{out}");
    assert!(err.contains(" started: 1 step\n"), "{err}");
}
