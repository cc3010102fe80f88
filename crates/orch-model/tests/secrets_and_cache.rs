//! Behaviour tests of the `secrets:` section, a step's `secrets:` list and a step's `cache:` options: decoding, validation at line and column, and saved definitions that read back.

use orch_model::{
    CacheSpec, Format, Limits, RunSettings, SavedRun, SecretDecl, SecretSource, load_workflow,
};
use std::time::Duration;

fn load(text: &str, format: Format) -> orch_model::ValidWorkflow {
    match load_workflow(text, format, &Limits::default(), Some("wf")) {
        Ok(wf) => wf,
        Err(d) => panic!(
            "expected a valid workflow, got:\n{}",
            d.lines().collect::<Vec<_>>().join("\n")
        ),
    }
}

fn problems(text: &str) -> Vec<String> {
    match load_workflow(text, Format::Yaml, &Limits::default(), Some("wf")) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(d) => d.lines().collect(),
    }
}

const GOOD: &str = r#"name: deploy
secrets:
  API_TOKEN: { env: DEPLOY_TOKEN }
  DB_PASSWORD: { file: secrets/db }
steps:
  - name: push
    module: shell
    action: script
    parameters: { script: 'curl -H "Authorization: Bearer $API_TOKEN" example.invalid' }
    secrets: [API_TOKEN, DB_PASSWORD]
  - name: summary
    module: data
    action: csv_summary
    parameters: { path: data/orders.csv }
    cache: { files: ["data/*.csv", "config/**/*.toml"], ttl: 1h }
  - name: plain
    module: core
    action: noop
    cache: true
"#;

#[test]
fn secrets_and_cache_options_decode() {
    let wf = load(GOOD, Format::Yaml);
    let w = wf.workflow();
    assert_eq!(
        w.secrets,
        vec![
            SecretDecl {
                name: "API_TOKEN".into(),
                source: SecretSource::Env("DEPLOY_TOKEN".into())
            },
            SecretDecl {
                name: "DB_PASSWORD".into(),
                source: SecretSource::File("secrets/db".into())
            },
        ]
    );
    assert_eq!(w.steps[0].secrets, ["API_TOKEN", "DB_PASSWORD"]);
    assert_eq!(w.steps[0].cache, None);
    assert_eq!(
        w.steps[1].cache.as_deref(),
        Some(&CacheSpec {
            files: vec!["data/*.csv".into(), "config/**/*.toml".into()],
            ttl: Some(Duration::from_secs(3600)),
        })
    );
    assert_eq!(w.steps[2].cache.as_deref(), Some(&CacheSpec::default()));
}

#[test]
fn the_same_definition_reads_from_toml_and_json() {
    let toml = r#"
name = "deploy"
[secrets.API_TOKEN]
env = "DEPLOY_TOKEN"
[[steps]]
name = "push"
module = "shell"
action = "exec"
parameters = { program = "true" }
secrets = ["API_TOKEN"]
cache = { files = ["data/*.csv"], ttl = "30m" }
"#;
    let t = load(toml, Format::Toml);
    let json = r#"{"name": "deploy", "secrets": {"API_TOKEN": {"env": "DEPLOY_TOKEN"}},
        "steps": [{"name": "push", "module": "shell", "action": "exec", "parameters": {"program": "true"},
                   "secrets": ["API_TOKEN"], "cache": {"files": ["data/*.csv"], "ttl": 1800}}]}"#;
    let j = load(json, Format::Json);
    assert_eq!(t.workflow(), j.workflow());
}

#[test]
fn a_saved_definition_reads_back_with_secrets_and_cache_options() {
    let wf = load(GOOD, Format::Yaml);
    let text = SavedRun::write_json(wf.workflow(), &RunSettings::default()).expect("serializes");
    // Names and sources only: a definition never holds a value.
    assert!(
        text.contains(
            r#""secrets":{"API_TOKEN":{"env":"DEPLOY_TOKEN"},"DB_PASSWORD":{"file":"secrets/db"}}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#""cache":{"files":["data/*.csv","config/**/*.toml"],"ttl":3600}"#),
        "{text}"
    );
    assert!(text.contains(r#""cache":true"#), "{text}");
    let back = SavedRun::from_json(&text).expect("reads back");
    assert_eq!(back.workflow.workflow(), wf.workflow());
    // The pretty form (what the API shows) loads unchanged too.
    let pretty = wf.workflow().to_json_pretty();
    assert_eq!(load(&pretty, Format::Json).workflow(), wf.workflow());
}

#[test]
fn a_secret_reference_is_refused_at_its_line_and_column_with_the_way_to_do_it() {
    let text = r#"name: w
secrets:
  TOKEN: { env: TOKEN }
steps:
  - name: a
    module: shell
    action: exec
    parameters:
      program: curl
      args: ["-H", "Authorization: ${secrets.TOKEN}"]
  - name: b
    module: shell
    action: exec
    parameters: { program: env, env: { T: "${secrets.TOKEN}" } }
  - name: c
    module: core
    action: noop
    conditions: { when: { ref: "${secrets.TOKEN}", op: exists } }
"#;
    let p = problems(text);
    let secret_lines: Vec<&String> = p
        .iter()
        .filter(|l| l.contains("secrets are never substituted"))
        .collect();
    assert_eq!(secret_lines.len(), 3, "{p:#?}");
    assert!(
        secret_lines[0].starts_with("wf:10:")
            && secret_lines[0].contains("steps[0].parameters.args[1]"),
        "{p:#?}"
    );
    assert!(secret_lines[0].contains("secrets: [TOKEN]"), "{p:#?}");
    assert!(secret_lines[1].starts_with("wf:14:"), "{p:#?}");
    assert!(secret_lines[2].starts_with("wf:18:"), "{p:#?}");
    // A step named `secrets` keeps its result and status.
    let ok = "name: w\nsteps:\n  - {name: secrets, module: core, action: noop}\n  - {name: b, module: core, action: noop, parameters: {v: \"${secrets.result}\", s: \"${secrets.status}\"}}\n";
    let wf = load(ok, Format::Yaml);
    assert_eq!(wf.execution_order(), [vec!["secrets"], vec!["b"]]);
}

#[test]
fn every_misuse_of_secrets_is_reported_at_once() {
    let text = r#"name: w
env: [DEPLOY_TOKEN]
secrets:
  API_TOKEN: { env: DEPLOY_TOKEN }
  ORCH_KEY: { env: K }
  bad-name: { env: K }
  BOTH: { env: K, file: f }
  NONE: {}
  WHERE: { file: "" }
  VAR: { env: "not a name" }
steps:
  - name: a
    module: shell
    action: exec
    parameters: { program: env, env: { API_TOKEN: x } }
    secrets: [API_TOKEN, UNKNOWN, API_TOKEN]
  - name: b
    module: core
    action: noop
    secrets: [API_TOKEN]
  - name: c
    module: shell
    action: exec
    parameters: { program: "true" }
    secrets: API_TOKEN
"#;
    let p = problems(text);
    let has = |line: &str, text: &str| {
        assert!(
            p.iter().any(|l| l.starts_with(line) && l.contains(text)),
            "no `{text}` at {line} in {p:#?}"
        );
    };
    has(
        "wf:2:",
        "`DEPLOY_TOKEN` is the source of secret `API_TOKEN`",
    );
    has("wf:5:", "starts with `ORCH_`");
    has("wf:6:", "must be an environment variable name");
    has("wf:7:", "has both `env` and `file`");
    has("wf:8:", "needs a source");
    has("wf:9:", "non-empty path");
    has("wf:10:", "must match [A-Za-z_][A-Za-z0-9_]*");
    has("wf:16:", "also sets `API_TOKEN`");
    has("wf:16:", "secret `UNKNOWN` is not declared");
    has("wf:16:", "secret `API_TOKEN` is listed twice");
    has("wf:20:", "starts no process");
    has("wf:25:", "expected a list of secret names");
}

#[test]
fn cache_options_are_checked() {
    let text = r#"name: w
steps:
  - name: a
    module: core
    action: noop
    cache: { files: ["/etc/passwd", "../up/*.csv", "data/[", ""], ttl: 0 }
  - name: b
    module: core
    action: noop
    cache: { file: ["x"] }
  - name: c
    module: core
    action: noop
    cache: "yes"
  - name: d
    module: core
    action: noop
    cache: { files: "data/*.csv", ttl: 5m }
"#;
    let p = problems(text);
    for (at, what) in [
        ("files[0]", "is absolute"),
        ("files[1]", "has a `..` component"),
        ("files[2]", "is not a valid glob"),
        ("files[3]", "cannot be empty"),
        ("steps[0].cache.ttl", "positive"),
        ("steps[1].cache.file", "did you mean `files`?"),
        ("steps[2].cache", "expected true, false, or a map"),
        ("steps[3].cache.files", "expected a list of globs"),
    ] {
        assert!(
            p.iter().any(|l| l.contains(at) && l.contains(what)),
            "no `{what}` at {at} in {p:#?}"
        );
    }
}

#[test]
fn defaults_cache_true_still_applies_to_steps() {
    let text = "name: w\ndefaults: { cache: true }\nsteps:\n  - {name: a, module: core, action: noop}\n  - {name: b, module: core, action: noop, cache: false}\n  - {name: c, module: core, action: noop, cache: {ttl: 10s}}\n";
    let wf = load(text, Format::Yaml);
    let s = &wf.workflow().steps;
    assert_eq!(s[0].cache.as_deref(), Some(&CacheSpec::default()));
    assert_eq!(s[1].cache, None);
    assert_eq!(
        s[2].cache.as_deref().and_then(|c| c.ttl),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn a_cache_glob_may_use_declared_parameters_only() {
    let text = r#"name: w
parameters: { dir: data }
env: [HOME]
steps:
  - name: a
    module: core
    action: noop
    cache:
      files: ["${params.dir}/*.csv", "${env.HOME}/x", "${params.nope}/y", "${a.result}/z"]
"#;
    let p = problems(text);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].starts_with("wf:9:38:")
            && p[0].contains("cache.files[1]")
            && p[0].contains("may only use"),
        "{p:#?}"
    );
    assert!(
        p[1].contains("cache.files[2]") && p[1].contains("undeclared parameter"),
        "{p:#?}"
    );
    assert!(
        p[2].contains("cache.files[3]") && p[2].contains("may only use"),
        "{p:#?}"
    );
    let ok = text.replace(
        r#", "${env.HOME}/x", "${params.nope}/y", "${a.result}/z""#,
        "",
    );
    let wf = load(&ok, Format::Yaml);
    assert_eq!(
        wf.workflow().steps[0]
            .cache
            .as_deref()
            .map(|c| c.files.clone()),
        Some(vec!["${params.dir}/*.csv".to_owned()])
    );
}
