//! The `deploy` workflow's log is well-formed Markdown: the arguments list is a block of its own,
//! never a list pasted into a sentence (issue 10).

mod common;

use common::{pm, rt};
use orch_projects::CreateOptions;
use serde_json::{Map, Value, json};

fn deploy_log(args: Value) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = pm(dir.path());
    pm.create_project(
        "web",
        Some("web_application"),
        None,
        CreateOptions::default(),
    )
    .expect("created");
    let rt = rt();
    let mut params = Map::new();
    params.insert("program".into(), json!("rsync"));
    params.insert("args".into(), args);
    let r = rt
        .block_on(pm.execute_project_workflow("web", "deploy", params))
        .expect("ran");
    assert!(r.succeeded(), "{r:?}");
    std::fs::read_to_string(dir.path().join("projects/web/deploy/deploy.md")).expect("log")
}

#[test]
fn the_arguments_are_a_list_of_their_own() {
    let log = deploy_log(json!(["-a", "dist/", "host:/srv"]));
    assert!(
        log.contains("Program: `rsync`\n\nArguments:\n\n- -a\n- dist/\n- host:/srv\n"),
        "{log}"
    );
    // No line holds text and then a list item.
    for line in log.lines() {
        assert!(
            !line.contains(" - ") || line.starts_with("- "),
            "a list inside a sentence: {line:?}\n{log}"
        );
    }
}

#[test]
fn no_arguments_say_none() {
    let log = deploy_log(json!([]));
    assert!(log.contains("Arguments:\n\n_none_\n"), "{log}");
}
