//! Authoring: `orch schema` (every example validates against it, bad definitions do not),
//! `orch validate`'s checks of actions and their parameters, and `orch completions`.

mod common;

use common::run;
use orch_model::{Format, Limits};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

fn schema() -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(dir.path(), &["schema"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("orch schema prints JSON")
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft7::new(schema).expect("orch schema is a valid draft-07 schema")
}

/// A definition's text as the JSON document the schema describes (YAML and TOML
/// read by orch's own parser, as the decoder reads them).
fn as_json(text: &str, format: Format) -> Value {
    orch_model::node::parse(text, format, &Limits::default())
        .expect("parses")
        .into_json()
        .expect("JSON")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_example_validates_against_the_schema() {
    let v = validator(&schema());
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        let Some(format) = Format::from_path(&path) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("read");
        let doc = as_json(&text, format);
        let problems = errors(&v, &doc);
        assert!(
            problems.is_empty(),
            "{} does not validate against `orch schema`:\n{}",
            path.display(),
            problems.join("\n")
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples found");
}

#[test]
fn the_schema_refuses_what_orch_validate_refuses() {
    let v = validator(&schema());
    let bad = [
        // A typo of a field.
        "name: w\nsteps:\n  - { name: a, module: core, action: noop, dependecies: [] }\n",
        // No steps.
        "name: w\nsteps: []\n",
        // A priority that does not exist.
        "name: w\nsteps:\n  - { name: a, module: core, action: noop, priority: urgent }\n",
        // `shell.exec` without `program`.
        "name: w\nsteps:\n  - { name: a, module: shell, action: exec, parameters: { args: [x] } }\n",
        // A parameter `shell.exec` does not take.
        "name: w\nsteps:\n  - { name: a, module: shell, action: exec, parameters: { program: ls, shell: true } }\n",
        // A parameter of the wrong type.
        "name: w\nsteps:\n  - { name: a, module: core, action: sleep, parameters: { ms: soon } }\n",
        // A bad duration.
        "name: w\nsteps:\n  - { name: a, module: core, action: noop, timeout: 5 minutes }\n",
    ];
    for text in bad {
        let doc = as_json(text, Format::Yaml);
        assert!(!errors(&v, &doc).is_empty(), "the schema accepts:\n{text}");
    }
    let good = [
        // A reference stands for a value of any type.
        "name: w\nparameters: { n: 5 }\nsteps:\n  - { name: a, module: core, action: sleep, parameters: { ms: \"${params.n}\" } }\n",
        // A module served by a program takes anything.
        "name: w\nsteps:\n  - { name: a, module: stats, action: summarize, parameters: { numbers: [1] } }\n",
        "name: w\nsteps:\n  - { name: a, module: core, action: noop, timeout: 1h30m, priority: 4, conditions: null }\n",
    ];
    for text in good {
        let doc = as_json(text, Format::Yaml);
        let problems = errors(&v, &doc);
        assert!(problems.is_empty(), "{text}\n{}", problems.join("\n"));
    }
}

fn validate(dir: &Path, file: &str, text: &str, extra: &[&str]) -> (i32, String, String) {
    std::fs::write(dir.join(file), text).expect("write");
    let mut args = vec!["validate", file];
    args.extend_from_slice(extra);
    run(dir, &args)
}

#[test]
fn validate_reports_actions_and_parameters_at_their_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "\
name: authoring
parameters: { delay: 5 }
steps:
  - name: list
    module: shell
    action: exec
    parameters: { progam: ls, args: \"-l\" }
  - name: other
    module: nosuch
    action: thing
  - name: typo
    module: shell
    action: exce
  - name: nap
    module: core
    action: sleep
  - name: later
    module: core
    action: sleep
    parameters:
      ms: \"${params.delay}\"
  - name: text
    module: core
    action: sleep
    parameters:
      ms: \"${params.delay} ms\"
  - name: sub
    module: workflow
    action: run
    parameters: { workflow: other-flow, params: {} }
";
    let (code, out, err) = validate(dir.path(), "authoring.yaml", text, &[]);
    assert_eq!(code, 2, "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    let want = [
        "authoring.yaml:7:5: steps[0].parameters: missing parameter `program`, which `shell.exec` needs: the program to run (a path, or a name found on PATH)",
        "authoring.yaml:7:19: steps[0].parameters.progam: unknown parameter `progam` of `shell.exec`; did you mean `program`?",
        "authoring.yaml:7:31: steps[0].parameters.args: parameter `args` of `shell.exec` must be a list, found string",
        "authoring.yaml:9:13: steps[1].module: unknown module `nosuch` (in `nosuch.thing`); known modules: chart, code, core, data, fs, http, report, shell, workflow; a module served by a program is registered with --module NAME=PROGRAM",
        "authoring.yaml:13:13: steps[2].action: module `shell` has no action `exce`; did you mean `exec`?",
        "authoring.yaml:16:13: steps[3].parameters: missing parameter `ms`, which `core.sleep` needs: milliseconds to wait",
        "authoring.yaml:26:7: steps[5].parameters.ms: parameter `ms` of `core.sleep` must be a whole number, found string",
        "authoring.yaml:30:41: steps[6].parameters.params: unknown parameter `params` of `workflow.run`; did you mean `parameters`?",
    ];
    assert_eq!(lines, want, "{err}");

    // The same definition in JSON points at the same keys.
    let json = r#"{"name": "j", "steps": [
  {"name": "a", "module": "shell", "action": "exec", "parameters": {"program": 7}}
]}"#;
    let (code, out, err) = validate(dir.path(), "j.json", json, &["--json"]);
    assert_eq!(code, 2, "{err}");
    let report: Value = serde_json::from_str(&out).expect("json");
    let p = &report[0]["problems"][0];
    assert_eq!(p["kind"], "wrong_type");
    assert_eq!(p["path"], "steps[0].parameters.program");
    assert_eq!(p["pos"], serde_json::json!({"line": 2, "column": 69}));
}

#[test]
fn a_module_served_by_a_program_validates_when_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "name: ext\nsteps:\n  - { name: sum, module: stats, action: summarize, parameters: { numbers: [3, 1, 4] } }\n";
    let (code, _, err) = validate(dir.path(), "ext.yaml", text, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown module `stats`"), "{err}");
    for module in ["stats", "stats=./stats.sh"] {
        let (code, out, err) = validate(dir.path(), "ext.yaml", text, &["--module", module]);
        assert_eq!(code, 0, "--module {module}: {out}{err}");
        assert!(out.contains("ok: workflow `ext`"), "{out}");
    }
    let (code, _, err) = validate(dir.path(), "ext.yaml", text, &["--module", "bad name"]);
    assert_eq!(code, 2);
    assert!(err.contains("--module `bad name`"), "{err}");
}

#[test]
fn orch_run_refuses_a_bad_parameter_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "name: r\nsteps:\n  - { name: mark, module: fs, action: write, parameters: { path: marker.txt, content: x } }\n  - { name: bad, module: shell, action: exec, parameters: { args: [x] } }\n";
    std::fs::write(dir.path().join("r.yaml"), text).expect("write");
    let (code, _, err) = run(dir.path(), &["run", "r.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("r.yaml:4:") && err.contains("missing parameter `program`"),
        "{err}"
    );
    assert!(!dir.path().join("marker.txt").exists(), "nothing ran");
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(dir.path(), &["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("validate"), "{shell}: no subcommand in\n{out}");
        assert!(out.contains("orch"), "{shell}");
    }
    let (code, _, err) = run(dir.path(), &["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("tcsh"), "{err}");
}
