//! Hostile and malformed definitions through the real binary: each is one clear
//! error with exit code 2, never a panic, within a bounded address space.

use std::path::Path;
use std::process::Command;

/// The address-space cap for the hostile inputs: far above what a correct
/// rejection needs, far below what an unbounded expansion would take.
const MEMORY_CAP_KIB: u64 = 1024 * 1024;

struct Out {
    code: i32,
    stderr: String,
}

/// Runs `orch validate FILE` under `ulimit -v`, so unbounded memory use fails the test.
fn validate_capped(dir: &Path, file: &str, text: &[u8]) -> Out {
    std::fs::write(dir.join(file), text).expect("write test file");
    let script = format!("ulimit -v {MEMORY_CAP_KIB} && exec \"$0\" validate \"$1\"");
    let out = assert_cmd::Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_orch"), file])
        .current_dir(dir)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("orch runs");
    let _ = Command::new("true").status();
    Out {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn rejects(file: &str, text: impl AsRef<[u8]>, needles: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = validate_capped(dir.path(), file, text.as_ref());
    assert_eq!(
        out.code, 2,
        "{file}: expected exit 2, got {}: {}",
        out.code, out.stderr
    );
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("internal error"),
        "{file}: {}",
        out.stderr
    );
    assert!(
        out.stderr.lines().count() <= 20,
        "{file}: too many lines:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.len() < 4096,
        "{file}: the message is short, not an echo of the input"
    );
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "{file}: missing `{n}` in:\n{}",
            out.stderr
        );
    }
}

fn step(name_json: &str) -> String {
    format!(
        r#"{{"name": "w", "steps": [{{"name": {name_json}, "module": "core", "action": "noop"}}]}}"#
    )
}

#[test]
fn json_nested_100000_deep() {
    let mut s = String::from(
        r#"{"name": "w", "steps": [{"name": "a", "module": "core", "action": "noop", "parameters": {"x": "#,
    );
    s.push_str(&"[".repeat(100_000));
    s.push_str(&"]".repeat(100_000));
    s.push_str("}}]}");
    rejects(
        "deep.json",
        &s,
        &[
            "deep.json:1:",
            "nesting deeper than 64 levels (limit max_depth)",
        ],
    );
    let objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    rejects(
        "deep-objects.json",
        &objects,
        &["nesting deeper than 64 levels"],
    );
}

#[test]
fn yaml_nested_100000_deep() {
    let flow = format!(
        "name: w\nsteps: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    rejects(
        "deep-flow.yaml",
        &flow,
        &["deep-flow.yaml:", "nesting deeper than 64 levels"],
    );
    let block = format!("name: w\nsteps:\n  {}x\n", "- ".repeat(100_000));
    rejects(
        "deep-block.yaml",
        &block,
        &["nesting deeper than 64 levels"],
    );
}

#[test]
fn yaml_alias_bomb() {
    let mut s = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 10].join(",");
        s.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    rejects(
        "bomb.yaml",
        &s,
        &["alias", "limit max_yaml_alias_expansion"],
    );
}

#[test]
fn a_20_mib_parameter() {
    let big = "x".repeat(20 * 1024 * 1024);
    let json = format!(
        r#"{{"name": "w", "steps": [{{"name": "a", "module": "core", "action": "noop", "parameters": {{"p": "{big}"}}}}]}}"#
    );
    rejects(
        "big.json",
        &json,
        &[
            "big.json:1:",
            "exceeds the limit of 1048576 bytes (limit max_string_bytes)",
        ],
    );
    let yaml = format!(
        "name: w\nsteps:\n  - name: a\n    module: core\n    action: noop\n    parameters: {{p: \"{big}\"}}\n"
    );
    rejects("big.yaml", &yaml, &["limit max_string_bytes"]);
    let toml = format!(
        "name = \"w\"\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\nparameters = {{ p = \"{big}\" }}\n"
    );
    rejects("big.toml", &toml, &["limit max_string_bytes"]);
}

#[test]
fn a_100000_character_step_name() {
    let name = format!("\"{}\"", "n".repeat(100_000));
    rejects(
        "long.json",
        step(&name),
        &[
            "long.json:1:",
            "steps[0].name: step name `nnnn",
            "is 100000 bytes long; the limit is 256 (limit max_name_len)",
        ],
    );
}

#[test]
fn names_with_separators_dots_nul_and_control_characters() {
    rejects(
        "slash.json",
        step(r#""a/b""#),
        &["steps[0].name: step name `a/b` contains a path separator"],
    );
    rejects(
        "dots.json",
        step(r#""..""#),
        &["steps[0].name: step name `..` contains `..`"],
    );
    rejects(
        "nul.json",
        step(r#""a\u0000b""#),
        &["contains a NUL character"],
    );
    rejects(
        "ctl.json",
        step(r#""a\u001bb""#),
        &["contains the control character"],
    );
    rejects(
        "nul.yaml",
        "name: w\nsteps:\n  - {name: \"a\\0b\", module: core, action: noop}\n",
        &["nul.yaml:3:", "NUL"],
    );
    rejects(
        "wf-name.json",
        r#"{"name": "../../etc/x", "steps": [{"name": "a", "module": "core", "action": "noop"}]}"#,
        &["wf-name.json:1:10: name: workflow name `../../etc/x` contains a path separator"],
    );
}

#[test]
fn a_misspelled_key() {
    rejects(
        "typo.yaml",
        "name: w\nsteps:\n  - name: a\n    module: core\n    action: noop\n    dependecies: [b]\n",
        &[
            "typo.yaml:6:5: steps[0].dependecies: unknown field `dependecies` in a step; did you mean `dependencies`?",
        ],
    );
}

#[test]
fn a_cycle_of_three_and_a_self_dependency() {
    rejects(
        "cycle.toml",
        "name = \"w\"\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\ndependencies = [\"c\"]\n[[steps]]\nname = \"b\"\nmodule = \"core\"\naction = \"noop\"\ndependencies = [\"a\"]\n[[steps]]\nname = \"c\"\nmodule = \"core\"\naction = \"noop\"\ndependencies = [\"b\"]\n",
        &["cycle.toml:", "dependency cycle: a -> c -> b -> a"],
    );
    rejects(
        "self.yaml",
        "name: w\nsteps:\n  - {name: a, module: core, action: noop, dependencies: [a]}\n",
        &[
            "self.yaml:3:",
            "steps[0].dependencies[0]: step `a` depends on itself",
        ],
    );
}

#[test]
fn bad_references() {
    rejects(
        "refs.yaml",
        "name: w\nsteps:\n  - name: a\n    module: core\n    action: set\n    parameters:\n      x: \"${ghost.result}\"\n      y: \"${1+1}\"\n      z: \"unterminated ${a\"\n",
        &[
            "refs.yaml:7:10: steps[0].parameters.x: `${ghost.result}` refers to an unknown step `ghost`",
            "refs.yaml:8:10: steps[0].parameters.y: `${1+1}`: `1+1` is not a reference: orch has no expression language",
            "refs.yaml:9:10: steps[0].parameters.z: `${a`: `${` is never closed with `}`",
        ],
    );
}
