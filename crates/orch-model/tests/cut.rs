//! A submitted run cut for its workers (`orch_model::cut`): every step of a
//! workflow, read back on its own beside the workflow's header, is the step
//! the whole definition holds.

use orch_model::definition::FanOut;
use orch_model::node::Format;
use orch_model::{Limits, cut, load_workflow};
use std::path::Path;

fn each_step_reads_back(text: &str, format: Format, what: &str) {
    let wf = load_workflow(text, format, &Limits::default(), Some(what))
        .unwrap_or_else(|d| panic!("{what}: {d}"));
    let header = cut::header(wf.workflow()).expect("header");
    assert!(
        !header.contains_key("steps"),
        "{what}: the header holds no steps"
    );
    for s in &wf.workflow().steps {
        let back = cut::one_step(&header, cut::step(s).expect("step"))
            .unwrap_or_else(|e| panic!("{what}: step `{}` does not read back: {e}", s.name));
        assert_eq!(back.steps.len(), 1, "{what}: one step");
        let mut want = s.clone();
        // A generated item reads back as the plain step it is.
        if want.fan_out.as_deref().is_some_and(FanOut::is_item) {
            want.fan_out = None;
        }
        assert_eq!(back.steps[0], want, "{what}: step `{}`", s.name);
        assert_eq!(back.name, wf.workflow().name);
        assert_eq!(
            back.secrets,
            wf.workflow().secrets,
            "{what}: the secrets section"
        );
        assert_eq!(back.parameters, wf.workflow().parameters);
    }
}

#[test]
fn every_example_step_reads_back_on_its_own() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            Some("json") => Format::Json,
            Some("toml") => Format::Toml,
            _ => continue,
        };
        let text = std::fs::read_to_string(&path).expect("read");
        each_step_reads_back(&text, format, &path.display().to_string());
        seen += 1;
    }
    assert!(seen >= 5, "the examples were found ({seen})");
}

#[test]
fn defaults_fan_out_hooks_and_rules_read_back() {
    let text = r#"
name: cut-check
parameters: {env: prod, n: 3}
secrets:
  TOKEN: {env: API_TOKEN}
defaults:
  timeout: 30
  max_retries: 2
  retry: {backoff: constant, initial_delay: 0.5}
steps:
  - name: a
    module: shell
    action: exec
    parameters: {program: echo, args: ["${params.env}"]}
    secrets: [TOKEN]
    max_retries: 0
    priority: high
    resources: {cpu: {cores: 2}}
  - name: each
    module: core
    action: echo
    for_each: [1, "two", {k: "${not resolved}"}]
    parameters: {value: "${item}"}
    dependencies: [a]
  - name: grid
    module: core
    action: echo
    matrix: {os: [linux, mac], py: ["3.11", "3.12"]}
    parameters: {value: "${matrix.os}-${matrix.py}"}
  - name: later
    module: core
    action: echo
    parameters: {value: "${a.result.stdout}"}
    dependencies: [each, grid]
    conditions:
      run_if: all_done
      when: {ref: "${a.result.exit_code}", op: eq, value: 0}
    timeout: 5
    cache: {ttl: 1h}
on_failure:
  - name: alert
    module: core
    action: noop
finally:
  - name: tidy
    module: core
    action: noop
"#;
    each_step_reads_back(text, Format::Yaml, "inline");
}
