//! A workflow's `concurrency:`: decoded with its defaults, every problem reported at its line, the key rendered from the run's parameters, and a saved definition that reads back.

use orch_model::{Concurrency, Format, Limits, OnConflict, RunSettings, SavedRun, load_workflow};
use serde_json::json;

fn problems(text: &str) -> Vec<String> {
    match load_workflow(text, Format::Yaml, &Limits::default(), Some("wf")) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(d) => d.lines().collect(),
    }
}

const STEPS: &str = "steps:\n  - {name: a, module: core, action: noop}\n";

#[test]
fn a_key_with_its_defaults_decodes_renders_and_reads_back() {
    let text = format!(
        "name: deploy\nparameters: {{ env: staging, n: 2 }}\nconcurrency: {{ key: \"deploy-${{params.env}}-${{params.n}}\" }}\n{STEPS}"
    );
    let wf = load_workflow(&text, Format::Yaml, &Limits::default(), None).expect("valid");
    let c = wf.workflow().concurrency.as_deref().expect("concurrency");
    assert_eq!(
        c,
        &Concurrency {
            key: "deploy-${params.env}-${params.n}".into(),
            limit: 1,
            on_conflict: OnConflict::Queue
        }
    );
    let params = json!({"env": "prod", "n": 3});
    assert_eq!(
        c.render_key(params.as_object().expect("map")).as_deref(),
        Ok("deploy-prod-3")
    );
    let saved = SavedRun::write_json(wf.workflow(), &RunSettings::default()).expect("saved");
    assert!(saved.contains(r#""concurrency":{"key":"deploy-${params.env}-${params.n}","limit":1,"on_conflict":"queue"}"#), "{saved}");
    let back = SavedRun::from_json(&saved).expect("reads back");
    assert_eq!(back.workflow.workflow(), wf.workflow());
    for (text, policy) in [
        ("cancel_running", OnConflict::CancelRunning),
        ("skip", OnConflict::Skip),
    ] {
        let t =
            format!("name: w\nconcurrency: {{ key: k, limit: 3, on_conflict: {text} }}\n{STEPS}");
        let wf = load_workflow(&t, Format::Yaml, &Limits::default(), None).expect("valid");
        let c = wf.workflow().concurrency.as_deref().expect("concurrency");
        assert_eq!((c.limit, c.on_conflict), (3, policy));
    }
}

#[test]
fn every_problem_of_a_concurrency_key_is_reported() {
    let p = problems(&format!(
        "name: w\nconcurrency: {{ limit: 0, on_conflict: wait }}\n{STEPS}"
    ));
    for what in [
        "missing field `key`",
        "at least 1",
        "not a valid on_conflict",
    ] {
        assert!(
            p.iter().any(|l| l.starts_with("wf:2:") && l.contains(what)),
            "{what}: {p:#?}"
        );
    }
    let p = problems(&format!(
        "name: w\nenv: [HOME]\nconcurrency:\n  key: \"${{env.HOME}}-${{params.x}}-${{a.result}}\"\n  limit: 5000\n{STEPS}"
    ));
    for what in [
        "may only use `${params.NAME}`",
        "undeclared parameter",
        "more than the limit of 1000",
    ] {
        assert!(
            p.iter()
                .any(|l| l.contains("concurrency.") && l.contains(what)),
            "{what}: {p:#?}"
        );
    }
    let p = problems(&format!(
        "name: w\nconcurrency: {{ key: \" \", extra: 1 }}\n{STEPS}"
    ));
    assert!(p.iter().any(|l| l.contains("cannot be empty")), "{p:#?}");
    assert!(
        p.iter().any(|l| l.contains("unknown field `extra`")),
        "{p:#?}"
    );
}
