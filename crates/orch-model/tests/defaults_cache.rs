//! `defaults: cache:` takes what a step's `cache:` takes (`true`, `false`,
//! or `{files: [GLOB...], ttl: DURATION}`), and steps that do not set their
//! own `cache:` get it; its problems are reported at their line and column
//! under `defaults.cache`, and a glob's bad `${...}` at the glob.

use orch_model::{CacheSpec, Format, Limits, load_workflow};
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

const WITH_FILES: &str = r#"name: w
parameters: { dir: data }
defaults:
  cache: { files: ["${params.dir}/*.csv", "config.toml"], ttl: 1h }
steps:
  - {name: a, module: core, action: noop}
  - {name: b, module: core, action: noop, cache: false}
  - {name: c, module: core, action: noop, cache: {ttl: 10s}}
  - {name: d, module: core, action: noop, cache: true}
finally:
  - {name: e, module: core, action: noop}
"#;

#[test]
fn steps_without_their_own_cache_take_the_default_options() {
    let wf = load(WITH_FILES, Format::Yaml);
    let s = &wf.workflow().steps;
    let default = CacheSpec {
        files: vec!["${params.dir}/*.csv".into(), "config.toml".into()],
        ttl: Some(Duration::from_secs(3600)),
    };
    assert_eq!(s[0].cache.as_deref(), Some(&default), "a takes the default");
    assert_eq!(s[1].cache, None, "b's own false wins");
    assert_eq!(
        s[2].cache.as_deref(),
        Some(&CacheSpec {
            files: Vec::new(),
            ttl: Some(Duration::from_secs(10))
        }),
        "c's own options win whole (not merged field by field)"
    );
    assert_eq!(
        s[3].cache.as_deref(),
        Some(&CacheSpec::default()),
        "d's own true is plain caching"
    );
    assert_eq!(s[4].name, "e");
    assert_eq!(s[4].cache.as_deref(), Some(&default), "a finally step too");
    // The defaults are kept as written: the definition reads back the same.
    let json = wf.workflow().to_json_pretty();
    assert!(json.contains("\"ttl\": 3600"), "{json}");
    assert_eq!(load(&json, Format::Json).workflow(), wf.workflow());
}

#[test]
fn true_and_false_still_work_and_toml_reads_the_same() {
    let on = load(
        "name: w\ndefaults: { cache: true }\nsteps:\n  - {name: a, module: core, action: noop}\n",
        Format::Yaml,
    );
    assert_eq!(
        on.workflow().steps[0].cache.as_deref(),
        Some(&CacheSpec::default())
    );
    let off = load(
        "name: w\ndefaults: { cache: false }\nsteps:\n  - {name: a, module: core, action: noop}\n",
        Format::Yaml,
    );
    assert_eq!(off.workflow().steps[0].cache, None);
    let toml = load(
        "name = \"w\"\n[defaults.cache]\nfiles = [\"data/*.csv\"]\nttl = \"30m\"\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\n",
        Format::Toml,
    );
    assert_eq!(
        toml.workflow().steps[0].cache.as_deref(),
        Some(&CacheSpec {
            files: vec!["data/*.csv".into()],
            ttl: Some(Duration::from_secs(1800))
        })
    );
}

#[test]
fn bad_default_cache_options_are_reported_where_they_are_written() {
    let text = r#"name: w
defaults:
  cache: { files: ["/etc/passwd", "../up/*.csv"], ttl: 0, file: x }
steps:
  - {name: a, module: core, action: noop}
"#;
    let p = problems(text);
    for (at, what) in [
        ("wf:3:20: defaults.cache.files[0]", "is absolute"),
        ("defaults.cache.files[1]", "has a `..` component"),
        ("defaults.cache.ttl", "positive"),
        ("defaults.cache.file", "did you mean `files`?"),
    ] {
        assert!(
            p.iter().any(|l| l.contains(at) && l.contains(what)),
            "no `{what}` at {at} in {p:#?}"
        );
    }
    let p = problems(
        "name: w\ndefaults: { cache: \"yes\" }\nsteps:\n  - {name: a, module: core, action: noop}\n",
    );
    assert!(
        p.iter()
            .any(|l| l.contains("defaults.cache") && l.contains("expected true, false, or a map")),
        "{p:#?}"
    );
}

#[test]
fn a_default_glob_with_an_undeclared_parameter_is_reported_at_the_glob() {
    let text = r#"name: w
defaults:
  cache:
    files: ["${params.nope}/*.csv"]
steps:
  - {name: a, module: core, action: noop}
  - {name: b, module: core, action: noop, cache: true}
"#;
    let p = problems(text);
    // Only a takes the default, so one problem, at the glob's line.
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("wf:4:13:") && p[0].contains("undeclared parameter"),
        "{p:#?}"
    );
}

#[test]
fn the_schema_lets_editors_write_the_map_form_too() {
    let schema = orch_model::definition::workflow_schema(None);
    let text = schema.to_string();
    let defaults = &schema["definitions"]["Defaults"]["properties"]["cache"];
    let any = defaults["anyOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(any[0]["type"], "boolean", "{defaults}");
    // The map form is the step's own cache options.
    assert_eq!(
        any[1], schema["definitions"]["Step"]["properties"]["cache"]["anyOf"][1],
        "{defaults}"
    );
    assert!(any[1]["$ref"].is_string(), "{defaults}");
}
