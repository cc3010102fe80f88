//! Behaviour tests of reading and validating workflow definitions in all three formats.

use orch_model::definition::{from_value, parse_definition, validate};
use orch_model::{
    DiagnosticKind, ErrorCode, Format, Limits, OrchestrationError, ResourceType, RunIf,
    TaskPriority, Workflow, WorkflowStep, load_workflow,
};
use serde_json::json;
use std::time::Duration;

fn load(text: &str, format: Format) -> orch_model::ValidWorkflow {
    match load_workflow(text, format, &Limits::default(), Some("test")) {
        Ok(wf) => wf,
        Err(d) => panic!(
            "expected a valid workflow, got:\n{}",
            d.lines().collect::<Vec<_>>().join("\n")
        ),
    }
}

fn problems(text: &str, format: Format) -> Vec<String> {
    match load_workflow(text, format, &Limits::default(), Some("wf")) {
        Ok(_) => panic!("expected problems"),
        Err(d) => d.lines().collect(),
    }
}

fn example(name: &str) -> String {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_examples_validate() {
    let yaml = load(&example("code-report.yaml"), Format::Yaml);
    assert_eq!(yaml.workflow().name, "code-report");
    // `summary` depends implicitly on the three counts through ${...} references.
    let order = yaml.execution_order();
    assert_eq!(order[0], vec!["list_sources"]);
    assert_eq!(order[1], vec!["count_model", "count_cli", "count_all"]);
    assert_eq!(order[2], vec!["summary", "report_failure"]);

    let json = load(&example("seed-analysis.json"), Format::Json);
    assert_eq!(json.workflow().steps.len(), 3);
    assert_eq!(
        json.workflow().steps[0].timeout,
        Some(Duration::from_secs(300))
    );
    assert_eq!(json.workflow().steps[1].timeout, None);
    assert_eq!(json.workflow().steps[0].max_retries, 3);

    let toml = load(&example("data-pipeline.toml"), Format::Toml);
    let merge = toml.workflow().get_step("merge").expect("merge step");
    assert_eq!(
        merge.timeout,
        Some(Duration::from_secs(1800)),
        "the step's own timeout wins"
    );
    assert_eq!(merge.max_retries, 2, "defaults are merged into steps");
    assert_eq!(merge.resources.amount(ResourceType::Memory, "gb"), 1.5);
    let fetch = toml.workflow().get_step("fetch_customers").expect("step");
    assert_eq!(fetch.priority, TaskPriority::High);
    assert_eq!(fetch.timeout, Some(Duration::from_secs(600)));
    let alert = toml.workflow().get_step("alert").expect("step");
    assert_eq!(alert.conditions.run_if, RunIf::Failure);
}

#[test]
fn the_seed_saved_json_loads_unchanged() {
    let seed = r#"{"name": "w", "steps": [{"name": "s", "module": "m", "action": "a", "parameters": {}, "dependencies": [], "timeout": null, "retry_count": 0, "max_retries": 3}]}"#;
    let wf = load(seed, Format::Json);
    let s = &wf.workflow().steps[0];
    assert_eq!(
        (s.name.as_str(), s.module.as_str(), s.action.as_str()),
        ("s", "m", "a")
    );
    assert_eq!(s.max_retries, 3);
}

#[test]
fn the_three_formats_describe_the_same_workflow() {
    let yaml = "name: w\nparameters: {n: 3}\nsteps:\n  - {name: a, module: core, action: noop, timeout: 90}\n  - name: b\n    module: core\n    action: set\n    parameters: {value: \"${a.result}\"}\n    priority: critical\n";
    let json = r#"{"name": "w", "parameters": {"n": 3}, "steps": [{"name": "a", "module": "core", "action": "noop", "timeout": "1m30s"}, {"name": "b", "module": "core", "action": "set", "parameters": {"value": "${a.result}"}, "priority": 4}]}"#;
    let toml = "name = \"w\"\n[parameters]\nn = 3\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\ntimeout = 90\n[[steps]]\nname = \"b\"\nmodule = \"core\"\naction = \"set\"\nparameters = { value = \"${a.result}\" }\npriority = \"critical\"\n";
    let a = load(yaml, Format::Yaml).into_workflow();
    let b = load(json, Format::Json).into_workflow();
    let c = load(toml, Format::Toml).into_workflow();
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn a_saved_definition_loads_back_equal() {
    for (file, format) in [
        ("code-report.yaml", Format::Yaml),
        ("seed-analysis.json", Format::Json),
        ("data-pipeline.toml", Format::Toml),
    ] {
        let wf = load(&example(file), format).into_workflow();
        let saved = wf.to_json_pretty();
        let back = load(&saved, Format::Json).into_workflow();
        assert_eq!(back, wf, "{file} changed through a save:\n{saved}");
    }
}

#[test]
fn workflows_built_in_code_validate_and_convert() {
    let wf = Workflow::new("custom-analysis", "Custom code analysis workflow")
        .param("path", json!("./src"))
        .step(
            WorkflowStep::new("analyze_code", "static_analysis", "analyze_code_quality")
                .param("path", json!("${params.path}")),
        )
        .step(
            WorkflowStep::new("create_chart", "chart", "bar")
                .param("data", json!("${analyze_code.result}"))
                .priority(TaskPriority::High),
        );
    let valid = validate(wf.clone(), &Limits::default()).expect("valid");
    assert_eq!(
        valid.execution_order(),
        vec![vec!["analyze_code"], vec!["create_chart"]]
    );
    assert!(valid.to_mermaid().contains("-->"));
    assert!(valid.to_dot().starts_with("digraph"));
    // The same workflow through the JSON API path.
    let value = serde_json::to_value(&wf).expect("serialize");
    let (back, _) = from_value(&value, &Limits::default()).expect("decodes");
    assert_eq!(back, wf);
}

#[test]
fn every_problem_is_reported_at_once_with_positions() {
    let yaml = "\
name: w
steps:
  - name: a
    module: core
    action: noop
    dependecies: [b]
  - name: a
    module: core
    action: noop
    timeout: 5 minutes
  - name: c
    module: core
    action: noop
    dependencies: [zz, c]
    priority: urgent
    resources: { cpu: { cores: -1 }, memory: { gb: .nan } }
    parameters: { x: \"${nope.result}\", y: \"${1+1}\", z: \"${params.missing}\" }
";
    let lines = problems(yaml, Format::Yaml);
    let expect = [
        "wf:6:5: steps[0].dependecies: unknown field `dependecies` in a step; did you mean `dependencies`?",
        "wf:7:11: steps[1].name: duplicate step name `a`",
        "wf:10:14: steps[1].timeout:",
        "wf:14:20: steps[2].dependencies[0]: dependency `zz` is not a step of this workflow",
        "wf:14:24: steps[2].dependencies[1]: step `c` depends on itself",
        "wf:15:15: steps[2].priority:",
        "wf:16:32: steps[2].resources.cpu.cores: a resource amount cannot be negative",
        "wf:14:20: steps[2].dependencies[0]: dependency `zz` is not a step of this workflow; remove it or add a step named `zz`",
        "steps[2].resources.memory.gb: NaN is not a resource amount",
        "steps[2].parameters.x: `${nope.result}` refers to an unknown step `nope`",
        "steps[2].parameters.y:",
        "steps[2].parameters.z: `${params.missing}` names an undeclared parameter",
    ];
    for e in expect {
        assert!(
            lines.iter().any(|l| l.contains(e)),
            "missing `{e}` in:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn decoding_problems_and_semantic_problems_come_together() {
    // Decoding problems stop before semantic validation only when the document
    // cannot be decoded at all; here all problems are decoding problems.
    let json = r#"{"name": "w", "steps": [{"name": "a", "module": "core", "action": "noop", "retry": {"backof": "linear"}, "cache": "yes"}], "extra": 1}"#;
    let lines = problems(json, Format::Json);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains(
        "steps[0].retry.backof: unknown field `backof` in a retry policy; did you mean `backoff`?"
    )));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("steps[0].cache: expected true, false, or a map"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("extra: unknown field `extra` in a workflow"))
    );
}

#[test]
fn a_cycle_is_named_in_order() {
    let yaml = "name: w\nsteps:\n  - {name: a, module: core, action: noop, dependencies: [c]}\n  - {name: b, module: core, action: noop, dependencies: [a]}\n  - {name: c, module: core, action: noop, dependencies: [b]}\n";
    let err = load_workflow(yaml, Format::Yaml, &Limits::default(), None).expect_err("cycle");
    assert!(err.has(DiagnosticKind::Cycle));
    let msg = err.lines().next().expect("one line");
    assert!(msg.contains("dependency cycle: a -> c -> b -> a"), "{msg}");
    assert_eq!(
        OrchestrationError::from(err).error_code(),
        ErrorCode::CycleDetected
    );
}

#[test]
fn implicit_dependencies_come_from_references() {
    let yaml = "name: w\nsteps:\n  - {name: b, module: core, action: set, parameters: {value: \"${a.result.x[0]}\"}}\n  - {name: a, module: core, action: noop}\n  - name: c\n    module: core\n    action: noop\n    conditions: { when: { ref: \"${b.status}\", op: eq, value: completed } }\n";
    let wf = load(yaml, Format::Yaml);
    assert_eq!(wf.execution_order(), vec![vec!["a"], vec!["b"], vec!["c"]]);
    assert_eq!(wf.longest_path(), vec!["a", "b", "c"]);
}

#[test]
fn env_references_need_the_allow_list() {
    let yaml = "name: w\nenv: [HOME]\nsteps:\n  - {name: a, module: core, action: set, parameters: {h: \"${env.HOME}\", p: \"${env.PATH}\", r: \"${run.id}\", q: \"${project.path}\", e: \"$${literal}\"}}\n";
    let lines = problems(yaml, Format::Yaml);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("${env.PATH}"), "{}", lines[0]);
    assert!(lines[0].contains("add `PATH` to `env:`"), "{}", lines[0]);
}

#[test]
fn limits_can_be_tightened() {
    let yaml = "name: w\nsteps:\n  - {name: a, module: core, action: noop, max_retries: 5}\n  - {name: b, module: core, action: noop}\n";
    let limits = Limits {
        max_steps: 1,
        max_retries: 3,
        ..Limits::default()
    };
    let err = parse_definition(yaml, Format::Yaml, &limits).expect_err("over the limits");
    let text: Vec<String> = err.lines().collect();
    assert!(
        text.iter()
            .any(|l| l.contains("2 steps exceed the limit of 1 (limit max_steps)")),
        "{text:#?}"
    );
    let limits = Limits {
        max_retries: 3,
        ..Limits::default()
    };
    let err = parse_definition(yaml, Format::Yaml, &limits).expect_err("over the retry limit");
    assert!(
        err.lines()
            .any(|l| l.contains("5 is more than the limit of 3 (limit max_retries)"))
    );
}

#[test]
fn validation_errors_convert_to_the_seed_error_response() {
    let err = load_workflow(
        "name: w\nsteps: []\n",
        Format::Yaml,
        &Limits::default(),
        Some("w.yaml"),
    )
    .expect_err("no steps");
    let resp = OrchestrationError::from(err).to_response();
    assert!(!resp.success);
    assert_eq!(resp.error_code, ErrorCode::ValidationFailed);
    assert!(resp.error.contains("at least one step"), "{}", resp.error);
}

#[test]
fn json_steps_are_counted_while_they_stream() {
    // JSON steps are decoded while they are parsed and the parsed list stays
    // empty: the count behind the limit and the empty-list check is the sink's.
    let json = r#"{"name": "w", "steps": [
        {"name": "a", "module": "core", "action": "noop"},
        {"name": "b", "module": "core", "action": "noop"},
        {"name": "c", "module": "core", "action": "noop"}]}"#;
    let limits = Limits {
        max_steps: 2,
        ..Limits::default()
    };
    let err = parse_definition(json, Format::Json, &limits).expect_err("over the limit");
    let text: Vec<String> = err.lines().collect();
    assert!(
        text.iter()
            .any(|l| l.contains("3 steps exceed the limit of 2 (limit max_steps)")),
        "{text:#?}"
    );
    let (wf, _) = parse_definition(json, Format::Json, &Limits::default()).expect("valid");
    assert_eq!(wf.steps.len(), 3);
    assert_eq!(wf.steps[2].name, "c");
    let err = parse_definition(
        r#"{"name": "w", "steps": []}"#,
        Format::Json,
        &Limits::default(),
    )
    .expect_err("no steps");
    assert!(
        err.lines()
            .any(|l| l.contains("a workflow needs at least one step")),
        "{err}"
    );
}
