//! Fan-out in definitions: `for_each:` and `matrix:` decoded, validated at line and column, expanded into item steps, and written back without them.

use orch_model::definition::FanOut;
use orch_model::{Format, Limits, RunSettings, SavedRun, ValidWorkflow, load_workflow};
use serde_json::json;

fn load(text: &str) -> ValidWorkflow {
    load_with(text, &Limits::default())
}

fn load_with(text: &str, limits: &Limits) -> ValidWorkflow {
    match load_workflow(text, Format::Yaml, limits, Some("wf.yaml")) {
        Ok(wf) => wf,
        Err(d) => panic!(
            "expected a valid workflow, got:\n{}",
            d.lines().collect::<Vec<_>>().join("\n")
        ),
    }
}

fn problems(text: &str, limits: &Limits) -> Vec<String> {
    match load_workflow(text, Format::Yaml, limits, Some("wf.yaml")) {
        Ok(_) => panic!("expected problems"),
        Err(d) => d.lines().collect(),
    }
}

fn names(wf: &ValidWorkflow) -> Vec<&str> {
    wf.workflow()
        .steps
        .iter()
        .map(|s| s.name.as_str())
        .collect()
}

const LIST: &str = r#"
name: fan
parameters: { greeting: hello }
steps:
  - name: prepare
    module: core
    action: noop
  - name: greet
    module: core
    action: set
    for_each: [ann, bob, { first: cy }]
    dependencies: [prepare]
    max_retries: 2
    parameters:
      value: "${params.greeting} ${item}"
      raw: "${item}"
  - name: after
    module: core
    action: set
    parameters: { value: "${greet.result}" }
"#;

#[test]
fn a_literal_list_becomes_one_step_per_item_and_a_gathering_step() {
    let wf = load(LIST);
    assert_eq!(
        names(&wf),
        [
            "prepare", "greet", "after", "greet[0]", "greet[1]", "greet[2]"
        ]
    );
    let steps = &wf.workflow().steps;
    // Items: the step's settings, the item substituted, other references kept.
    assert_eq!(
        steps[3].parameters.get("value"),
        Some(&json!("${params.greeting} ann"))
    );
    assert_eq!(
        steps[5].parameters.get("raw"),
        Some(&json!({"first": "cy"}))
    );
    assert_eq!(steps[4].max_retries, 2);
    assert_eq!(
        steps[4].fan_out.as_deref(),
        Some(&FanOut::Item { of: 1, index: 1 })
    );
    // The items take the step's dependencies; the step gathers its items.
    let g = wf.graph();
    for item in 3..6 {
        assert_eq!(g.deps(item), [0]);
    }
    assert_eq!(g.deps(1), [3, 4, 5]);
    assert_eq!(g.deps(2), [1]);
    assert_eq!(
        wf.execution_order(),
        vec![
            vec!["prepare"],
            vec!["greet[0]", "greet[1]", "greet[2]"],
            vec!["greet"],
            vec!["after"]
        ]
    );
    assert!(
        wf.to_mermaid().contains("greet[1]"),
        "items are in the graph"
    );
}

#[test]
fn a_saved_definition_holds_the_fan_out_and_loads_back_with_the_same_items() {
    let wf = load(LIST);
    let text = SavedRun::write_json(wf.workflow(), &RunSettings::default()).expect("writes");
    assert!(!text.contains("greet[0]"), "items are not written: {text}");
    assert!(
        text.contains(r#""for_each":["ann","bob",{"first":"cy"}]"#),
        "{text}"
    );
    let back = SavedRun::from_json(&text).expect("reads back");
    assert_eq!(names(&back.workflow), names(&wf));
    assert_eq!(back.workflow.workflow().steps, wf.workflow().steps);
    // Validating a validated workflow again makes the items once.
    let again =
        orch_model::definition::validate(wf.workflow().clone(), &Limits::default()).expect("valid");
    assert_eq!(names(&again), names(&wf));
}

#[test]
fn a_matrix_is_the_cross_product_in_order() {
    let wf = load(
        r#"
name: m
steps:
  - name: test
    module: core
    action: set
    matrix: { os: [linux, mac], py: ["3.11", "3.12"] }
    parameters: { value: "${matrix.os}/${matrix.py}", all: "${item}" }
"#,
    );
    assert_eq!(
        &names(&wf)[1..],
        [
            "test[os=linux,py=3.11]",
            "test[os=linux,py=3.12]",
            "test[os=mac,py=3.11]",
            "test[os=mac,py=3.12]"
        ]
    );
    let s = &wf.workflow().steps[3];
    assert_eq!(s.parameters.get("value"), Some(&json!("mac/3.11")));
    assert_eq!(
        s.parameters.get("all"),
        Some(&json!({"os": "mac", "py": "3.11"}))
    );
}

#[test]
fn an_empty_list_has_no_item_and_a_gathering_step_without_dependencies() {
    let wf = load(
        "name: e\nsteps:\n  - {name: none, module: core, action: noop, for_each: []}\n  - {name: next, module: core, action: noop, dependencies: [none]}\n",
    );
    assert_eq!(names(&wf), ["none", "next"]);
    assert!(wf.graph().deps(0).is_empty());
}

#[test]
fn a_list_from_a_step_result_is_left_for_the_run_and_depends_on_that_step() {
    let wf = load(
        r#"
name: d
steps:
  - { name: list, module: core, action: set, parameters: { value: [1, 2] } }
  - name: each
    module: core
    action: set
    for_each: "${list.result}"
    parameters: { value: "${item}" }
"#,
    );
    assert_eq!(names(&wf), ["list", "each"]);
    assert_eq!(wf.graph().deps(1), [0]);
    assert_eq!(
        wf.workflow().steps[1].fan_out.as_deref(),
        Some(&FanOut::Ref("${list.result}".into()))
    );
}

#[test]
fn fan_out_problems_are_reported_at_their_line_and_column() {
    let text = r#"name: bad
steps:
  - name: a
    module: core
    action: noop
    for_each: { not: a list }
  - name: b
    module: core
    action: noop
    for_each: "${nosuch.result}"
  - name: c
    module: core
    action: set
    parameters: { value: "${item}" }
  - name: d
    module: core
    action: noop
    matrix: { os: [x], "bad key": [1] }
  - name: e
    module: core
    action: set
    matrix: { os: [x] }
    parameters: { value: "${matrix.py}" }
  - name: f
    module: core
    action: noop
    for_each: [1]
    matrix: { os: [x] }
  - name: g
    module: core
    action: noop
    for_each: "${a.status}"
  - name: h
    module: core
    action: set
    for_each: [{ k: 1 }]
    parameters: { value: "${item.nokey}" }
"#;
    let p = problems(text, &Limits::default());
    let has = |needle: &str| {
        assert!(
            p.iter().any(|l| l.contains(needle)),
            "no problem with {needle:?} in:\n{}",
            p.join("\n")
        );
    };
    has("wf.yaml:6:15: steps[0].for_each: expected a list of items");
    has("wf.yaml:10:15: steps[1].for_each: `${nosuch.result}` refers to an unknown step");
    has(
        "wf.yaml:14:26: steps[2].parameters.value: `${item}` is defined only in the parameters of a step with `for_each:` or `matrix:`",
    );
    has("wf.yaml:18:24: steps[3].matrix.bad key: matrix key `bad key` must match");
    has("steps[4].parameters.value: `${matrix.py}`: the matrix has no key `py` (its keys: os)");
    has("steps[5].matrix: a step has `for_each:` or `matrix:`, not both");
    has("steps[6].for_each: `for_each` is `${a.status}`: it must be a list");
    has("steps[7].parameters.value: `${item.nokey}`: the item");
    assert_eq!(
        p.iter().filter(|l| l.contains("steps[4]")).count(),
        1,
        "one problem per reference: {p:?}"
    );
}

#[test]
fn too_many_items_are_refused_with_the_limit_named() {
    let limits = Limits {
        max_fanout_items: 3,
        ..Limits::default()
    };
    let p = problems(
        "name: t\nsteps:\n  - name: s\n    module: core\n    action: noop\n    for_each: [1, 2, 3, 4]\n",
        &limits,
    );
    assert_eq!(
        p,
        ["wf.yaml:6:15: steps[0].for_each: 4 items exceed the limit of 3 (limit max_fanout_items)"]
    );
    let p = problems(
        "name: t\nsteps:\n  - name: s\n    module: core\n    action: noop\n    matrix: {a: [1, 2], b: [1, 2]}\n",
        &limits,
    );
    assert!(p[0].contains("4 items exceed the limit of 3"), "{p:?}");
    // Items count towards max_steps.
    let limits = Limits {
        max_steps: 3,
        ..Limits::default()
    };
    let p = problems(
        "name: t\nsteps:\n  - name: s\n    module: core\n    action: noop\n    for_each: [1, 2, 3]\n",
        &limits,
    );
    assert!(p[0].contains("(limit max_steps)"), "{p:?}");
}

#[test]
fn ten_thousand_items_load() {
    let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let text = format!(
        "name: big\nsteps:\n  - name: s\n    module: core\n    action: set\n    for_each: [{}]\n    parameters: {{ value: \"${{item}}\" }}\n",
        list.join(", ")
    );
    let wf = load_with(&text, &Limits::default());
    assert_eq!(wf.workflow().steps.len(), 10_001);
    assert_eq!(wf.workflow().steps[10_000].name, "s[9999]");
    assert_eq!(
        wf.workflow().steps[10_000].parameters.get("value"),
        Some(&json!(9999))
    );
    assert_eq!(wf.graph().deps(0).len(), 10_000);
}
