//! Issue 10, items 1 and 11: a `${...}` in a `shell.script` `script` is a
//! validation error; YAML anchors within the documented limit load while an
//! alias bomb is refused naming the limit that raises it; a zero timeout is
//! refused; messages name no library function and never print `inf`.

use orch_model::definition::validate;
use orch_model::duration::parse_timeout;
use orch_model::{DiagnosticKind, Format, Limits, Workflow, WorkflowStep, load_workflow};
use serde_json::json;
use std::time::Duration;

fn problems_with(text: &str, format: Format, limits: &Limits) -> Vec<String> {
    match load_workflow(text, format, limits, Some("wf")) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(d) => d.lines().collect(),
    }
}

fn problems(text: &str, format: Format) -> Vec<String> {
    problems_with(text, format, &Limits::default())
}

fn loads(text: &str, format: Format, limits: &Limits) {
    if let Err(d) = load_workflow(text, format, limits, Some("wf")) {
        panic!("expected a valid workflow, got:\n{d}\nfor:\n{text}");
    }
}

/// The payloads of the issue: each would run `touch PWNED` if spliced into shell source.
const PAYLOADS: &[&str] = &[
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED",
    "\"$(touch PWNED)\"",
];

// ---- item 1: shell.script -------------------------------------------------

fn script_workflow(script_yaml: &str) -> String {
    format!(
        "name: w
parameters: {{v: x}}
steps:
  - {{name: a, module: core, action: noop}}
  - {{name: b, module: core, action: noop}}
  - name: c
    module: shell
    action: script
    parameters:
      script: {script_yaml}
"
    )
}

#[test]
fn a_reference_in_a_script_is_an_error_at_its_line_and_column_that_says_what_to_do() {
    let lines = problems(&script_workflow("'echo ${params.v}'"), Format::Yaml);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert!(
        line.starts_with("wf:10:15: steps[2].parameters.script: `${params.v}`"),
        "{line}"
    );
    assert!(line.contains("env:"), "{line}");
    assert!(line.contains("V: \"${params.v}\""), "{line}");
    assert!(line.contains("\"$V\""), "{line}");
    assert!(line.contains("args:"), "{line}");
    assert!(line.contains("$1"), "{line}");
}

#[test]
fn every_kind_of_reference_in_a_script_is_refused() {
    for script in [
        "'echo ${params.v}'",
        "'echo ${a.result}'",
        "'echo ${a.result.stdout}; ls'",
        "'echo ${a.status}'",
        "'echo ${run.id}'",
        "'echo ${project.path}'",
        // Not even a well-formed reference: orch would still read it, so it is refused
        // with the advice to write `$${HOME}` for the shell's own syntax.
        "'echo ${HOME}'",
        "\"printf '%s' ${params.v} ${a.result}\"",
        "|\n        set -e\n        echo \"${params.v}\"\n",
    ] {
        let lines = problems(&script_workflow(script), Format::Yaml);
        assert_eq!(lines.len(), 1, "{script}: {lines:#?}");
        assert!(
            lines[0].contains("steps[2].parameters.script:")
                && lines[0].contains("env:")
                && lines[0].contains("$${"),
            "{script}: {}",
            lines[0]
        );
    }
}

#[test]
fn escaped_dollars_in_a_script_are_fine_and_references_elsewhere_too() {
    loads(
        &script_workflow(
            "'echo \"$${HOME}\" $$ \"$V\" \"$1\"'\n      env: {V: '${params.v}', R: '${a.result}'}\n      args: ['${params.v}', '${b.status}']",
        ),
        Format::Yaml,
        &Limits::default(),
    );
    // The same text in another action's parameter is an ordinary template.
    loads(
        "name: w\nparameters: {v: x}\nsteps:\n  - {name: a, module: core, action: noop, parameters: {script: 'echo ${params.v}'}}\n",
        Format::Yaml,
        &Limits::default(),
    );
}

#[test]
fn json_and_toml_scripts_are_checked_too() {
    let json = r#"{"name": "w", "parameters": {"v": "x"}, "steps": [
  {"name": "a", "module": "shell", "action": "script", "parameters": {"script": "echo ${params.v}"}}]}"#;
    let lines = problems(json, Format::Json);
    assert!(
        lines.len() == 1 && lines[0].starts_with("wf:2:81: steps[0].parameters.script:"),
        "{lines:#?}"
    );
    let toml = "name = \"w\"\nparameters = { v = \"x\" }\n[[steps]]\nname = \"a\"\nmodule = \"shell\"\naction = \"script\"\nparameters = { script = \"echo ${params.v}\" }\n";
    let lines = problems(toml, Format::Toml);
    assert!(
        lines.len() == 1 && lines[0].starts_with("wf:7:25: steps[0].parameters.script:"),
        "{lines:#?}"
    );
}

#[test]
fn a_workflow_built_in_code_gets_the_same_rule() {
    for payload in PAYLOADS {
        for reference in ["${params.v}", "${src.result}", "${src.result.stdout}"] {
            let mut wf = Workflow::new("w", "").param("v", json!(payload));
            wf.add_step(WorkflowStep::new("src", "core", "set").param("value", json!(payload)));
            wf.add_step(
                WorkflowStep::new("sh", "shell", "script")
                    .param("script", json!(format!("echo {reference}"))),
            );
            let d = validate(wf, &Limits::default()).expect_err("refused");
            assert!(d.has(DiagnosticKind::Reference), "{d}");
            let text = d.to_string();
            assert!(
                text.contains("steps[1].parameters.script") && text.contains("env:"),
                "{text}"
            );
        }
    }
    // A script with no reference, values through env and args: valid.
    let mut wf = Workflow::new("w", "").param("v", json!("$(touch PWNED)"));
    wf.add_step(
        WorkflowStep::new("sh", "shell", "script")
            .param("script", json!("echo \"$V\" \"$1\" $${HOME}"))
            .param("env", json!({"V": "${params.v}"}))
            .param("args", json!(["${params.v}"])),
    );
    validate(wf, &Limits::default()).expect("valid");
}

// ---- item 11 (a): anchors and alias bombs -----------------------------------

/// One anchor used `uses` times: as parameters and through a merge key.
fn anchor_reuse(uses: usize) -> String {
    let mut text = String::from("name: a\nsteps:\n");
    text.push_str("  - &base {name: s0, module: core, action: noop, parameters: &p {a: 1}}\n");
    for i in 1..=uses {
        text.push_str(&format!("  - {{<<: *base, name: s{i}, parameters: *p}}\n"));
    }
    text
}

#[test]
fn one_anchor_used_hundreds_of_times_loads() {
    // 100 and 1,000 uses of each of two anchors: a few thousand replayed
    // events, far below the documented 100,000. Before, the library's
    // alias/anchor ratio heuristic called this an alias bomb.
    for uses in [100, 1000] {
        loads(&anchor_reuse(uses), Format::Yaml, &Limits::default());
    }
    let mut text = String::from(
        "name: a\nsteps:\n  - {name: s0, module: core, action: noop, parameters: &p {a: 1}}\n",
    );
    for i in 1..=100 {
        text.push_str(&format!(
            "  - {{name: s{i}, module: core, action: noop, parameters: *p}}\n"
        ));
    }
    loads(&text, Format::Yaml, &Limits::default());
}

/// A "billion laughs": `levels` anchors, each a list of ten aliases of the previous one.
fn laughs(levels: usize) -> String {
    let mut text = String::from("x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..levels {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let last = levels - 1;
    text.push_str(&format!(
        "name: w\nsteps:\n  - {{name: s, module: core, action: noop, parameters: {{v: *a{last}}}}}\n"
    ));
    text
}

#[test]
fn an_alias_bomb_is_refused_naming_the_limit_that_raises_it() {
    let lines = problems(&laughs(9), Format::Yaml);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("alias bomb")
            && lines[0].contains("100000")
            && lines[0].contains("--limit max_yaml_alias_expansion="),
        "{}",
        lines[0]
    );
    // A smaller expansion (about 26,000 replayed events) is refused under a
    // lower limit, and passes the parser once the limit the message names is
    // raised (the `x*` keys are then refused as unknown fields).
    let mut limits = Limits::default();
    limits
        .set("max_yaml_alias_expansion", "10000")
        .expect("known limit");
    let lines = problems_with(&laughs(4), Format::Yaml, &limits);
    assert!(
        lines.len() == 1
            && lines[0].contains("10000")
            && lines[0].contains("--limit max_yaml_alias_expansion="),
        "{lines:#?}"
    );
    limits
        .set("max_yaml_alias_expansion", "100000")
        .expect("known limit");
    let lines = problems_with(&laughs(4), Format::Yaml, &limits);
    assert!(
        lines.len() == 4 && lines.iter().all(|l| l.contains("unknown field `x")),
        "{lines:#?}"
    );
}

// ---- item 11 (b): zero timeouts ------------------------------------------------

#[test]
fn a_zero_timeout_is_refused_wherever_it_is_written() {
    let step = |t: &str| {
        format!("name: w\nsteps:\n  - {{name: a, module: core, action: noop, timeout: {t}}}\n")
    };
    for t in ["0", "-0", "0.0", "-0.0", "'0s'", "'0ms'", "0e0", "1e-12"] {
        let lines = problems(&step(t), Format::Yaml);
        assert_eq!(lines.len(), 1, "{t}: {lines:#?}");
        assert!(
            lines[0].starts_with("wf:3:52: steps[0].timeout:")
                && lines[0].contains("must be positive"),
            "{t}: {}",
            lines[0]
        );
    }
    let lines = problems(
        "name: w\ndefaults: {timeout: 0}\nsteps:\n  - {name: a, module: core, action: noop}\n",
        Format::Yaml,
    );
    assert!(
        lines.len() == 1
            && lines[0].starts_with("wf:2:21: defaults.timeout:")
            && lines[0].contains("must be positive"),
        "{lines:#?}"
    );
    let json = r#"{"name": "w", "steps": [{"name": "a", "module": "core", "action": "noop", "timeout": -0}]}"#;
    let lines = problems(json, Format::Json);
    assert!(lines[0].contains("must be positive"), "{lines:#?}");
    let toml = "name = \"w\"\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\ntimeout = -0.0\n";
    let lines = problems(toml, Format::Toml);
    assert!(lines[0].contains("must be positive"), "{lines:#?}");
    // No timeout at all stays valid, and so does the smallest positive one.
    loads(
        "name: w\nsteps:\n  - {name: a, module: core, action: noop, timeout: null}\n  - {name: b, module: core, action: noop, timeout: 1ms}\n",
        Format::Yaml,
        &Limits::default(),
    );
    // Built in code.
    let mut wf = Workflow::new("w", "");
    wf.add_step(WorkflowStep::new("a", "core", "noop").timeout(Duration::ZERO));
    let d = validate(wf, &Limits::default()).expect_err("zero timeout");
    assert!(
        d.to_string().contains("steps[0].timeout") && d.to_string().contains("must be positive"),
        "{d}"
    );
    // And the run-level `--timeout` text.
    for t in ["0", "-0", "0s", "0ms"] {
        let e = parse_timeout(t).expect_err(t);
        assert!(e.contains("must be positive"), "{t}: {e}");
    }
    assert_eq!(parse_timeout("1ms"), Ok(Duration::from_millis(1)));
}

// ---- item 11 (c): no library names in messages --------------------------------

#[test]
fn hostile_yaml_gets_messages_in_user_words() {
    let cases: &[(&str, &str)] = &[
        (
            "name: a\nsteps: []\n---\nname: b\n",
            "more than one YAML document",
        ),
        (
            "name: a\nsteps: []\n...\n---\n",
            "more than one YAML document",
        ),
        ("a: &a [*a]\nname: x\nsteps: []\n", "recursive"),
        ("a: &a\n  b: *a\nname: x\nsteps: []\n", "recursive"),
        ("name: x\nsteps: *nope\n", "not defined"),
        ("? [a, b]\n: c\nname: x\n", "key must be a plain string"),
        ("name: !!int x\n", "tag"),
        ("name: x\nsteps:\n  - {<<: 5, name: a}\n", "merge key"),
        ("name: {a: 1\n", "unclosed"),
        ("name: !!timestamp 2001-12-14\n", "tag"),
        ("name: !!binary //79\n", "`!!binary`"),
        ("name: x\nsteps: !!map []\n", "tag `!!map`"),
    ];
    const FORBIDDEN: &[&str] = &[
        "from_str",
        "_with_options",
        "weak",
        "recursion types",
        "Options",
        "budget",
        "breach",
        "serde",
        "Spanned",
        "deserializ",
        "alias bomb",
    ];
    for (text, want) in cases {
        let lines = problems(text, Format::Yaml);
        let all = lines.join("\n");
        assert!(all.contains(want), "{text:?}: want {want:?} in {all}");
        for word in FORBIDDEN {
            assert!(!all.contains(word), "{text:?}: {word:?} in {all}");
        }
    }
}

#[test]
fn hostile_toml_gets_messages_in_user_words() {
    for (text, want) in [
        ("a = 0x\n", "an integer without digits"),
        (
            "a = 99999999999999999999\n",
            "the integer 99999999999999999999 is out of range",
        ),
        ("a = [1, 2\n", "unclosed array"),
    ] {
        let lines = problems(text, Format::Toml);
        assert!(
            lines.len() == 1 && lines[0].contains(want),
            "{text:?}: {lines:#?}"
        );
    }
}

// ---- item 11 (d): out-of-range numbers ----------------------------------------

fn says_inf(line: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case("inf"))
}

#[test]
fn out_of_range_numbers_say_so_and_never_print_inf() {
    let yaml = |field: &str| {
        format!("name: w\nsteps:\n  - {{name: a, module: core, action: noop, {field}}}\n")
    };
    let cases = [
        (yaml("timeout: 1e400"), Format::Yaml),
        (yaml("timeout: -1e400"), Format::Yaml),
        (yaml("timeout: '1e400'"), Format::Yaml),
        (yaml(&format!("timeout: '{}s'", "9".repeat(400))), Format::Yaml),
        (yaml("parameters: {x: 1e400}"), Format::Yaml),
        (yaml(&format!("parameters: {{x: {}}}", "9".repeat(400))), Format::Yaml),
        (yaml("resources: {cpu: {cores: 1e400}}"), Format::Yaml),
        (yaml("resources: {cpu: {cores: .inf}}"), Format::Yaml),
        (
            "name: w\nversion: 1e400\nsteps:\n  - {name: a, module: core, action: noop}\n"
                .to_owned(),
            Format::Yaml,
        ),
        (
            "name = \"w\"\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\ntimeout = 1e400\n"
                .to_owned(),
            Format::Toml,
        ),
        (
            "name = \"w\"\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\nparameters = { x = inf }\n"
                .to_owned(),
            Format::Toml,
        ),
        (
            r#"{"name": "w", "steps": [{"name": "a", "module": "core", "action": "noop", "timeout": 1e400}]}"#
                .to_owned(),
            Format::Json,
        ),
    ];
    for (text, format) in cases {
        let lines = problems(&text, format);
        assert_eq!(lines.len(), 1, "{text}: {lines:#?}");
        assert!(lines[0].contains("out of range"), "{text}: {}", lines[0]);
        assert!(!says_inf(&lines[0]), "{text}: {}", lines[0]);
    }
}
