//! Issue 10, item 1: a value never becomes part of a `shell.script` script.
//! Validation refuses a `${...}` in `script` (see orch-model's
//! `hostile_definitions`); these tests cover what does not go through it:
//! tasks of the seed's `TaskOrchestrator`, whose parameters are resolved
//! against finished tasks, must not splice either.

mod common;

use common::{params, rt};
use orch_model::{Format, Limits, Task, TaskStatus, load_workflow};
use orch_tasks::orchestrator::{OrchestratorConfig, TaskOptions, TaskOrchestrator};
use serde_json::json;
use std::time::Duration;

const PAYLOADS: &[&str] = &[
    "$(touch PWNED)",
    "`touch PWNED`",
    "; touch PWNED",
    "\"$(touch PWNED)\"",
    "x; touch PWNED #",
];

fn orchestrator(dir: &std::path::Path) -> TaskOrchestrator {
    TaskOrchestrator::new(OrchestratorConfig {
        work_dir: dir.to_path_buf(),
        ..OrchestratorConfig::default()
    })
}

/// Starts `o` with a task `src` whose result is `payload`.
fn start_with_source(o: &TaskOrchestrator, payload: &str) -> Task {
    o.start_execution().expect("start");
    o.create_task(
        "src",
        "core",
        "set",
        TaskOptions {
            parameters: params(json!({"value": payload})),
            ..TaskOptions::default()
        },
    )
    .expect("src")
}

#[test]
fn a_definition_that_splices_a_value_into_a_script_never_runs() {
    for payload in PAYLOADS {
        for script in ["echo ${params.v}", "echo \"${src.result}\""] {
            let yaml = format!(
                "name: w\nparameters: {{v: {}}}\nsteps:\n  - {{name: src, module: core, action: set, parameters: {{value: {}}}}}\n  - {{name: sh, module: shell, action: script, parameters: {{script: {}}}}}\n",
                json!(payload),
                json!(payload),
                json!(script)
            );
            let d = load_workflow(&yaml, Format::Yaml, &Limits::default(), None)
                .expect_err("refused before anything runs");
            let text = d.to_string();
            assert!(
                text.contains("steps[1].parameters.script") && text.contains("env:"),
                "{text}"
            );
        }
    }
}

#[test]
fn a_task_whose_script_refers_to_a_result_is_refused_and_runs_nothing() {
    let rt = rt();
    for payload in PAYLOADS {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = orchestrator(dir.path());
        rt.block_on(async {
            let src = start_with_source(&o, payload);
            let script = params(json!({"script": "echo ${src.result} > out.txt"}));
            // Refused when the task is created, as validation refuses a step.
            let err = o
                .create_task(
                    "sh",
                    "shell",
                    "script",
                    TaskOptions {
                        parameters: script.clone(),
                        dependencies: vec![src.id],
                        ..TaskOptions::default()
                    },
                )
                .expect_err("refused");
            let text = err.to_string();
            assert!(text.contains("`script`") && text.contains("env:"), "{text}");
            let mut task = Task::new("sh2", "shell", "script");
            task.parameters = script.clone();
            task.dependencies = vec![src.id];
            let err = o.add_task(task).expect_err("refused");
            assert!(err.to_string().contains("env:"), "{err}");
            assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
            // `execute_task` takes a task that was never added: resolving its
            // parameters refuses the reference (the resolver's own defence).
            let mut direct = Task::new("direct", "shell", "script");
            direct.parameters = script;
            let result = o.execute_task(&direct).await;
            let text = format!("{result:?}");
            assert!(text.contains("env:"), "{text}");
        });
        assert!(!dir.path().join("PWNED").exists(), "{payload} ran as code");
        assert!(
            !dir.path().join("out.txt").exists(),
            "{payload}: the script ran"
        );
    }
}

#[test]
fn values_through_env_stay_data_and_escaped_dollars_reach_the_shell() {
    let rt = rt();
    for payload in PAYLOADS {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = orchestrator(dir.path());
        rt.block_on(async {
            let src = start_with_source(&o, payload);
            let sh = o
                .create_task(
                    "sh",
                    "shell",
                    "script",
                    TaskOptions {
                        parameters: params(json!({
                            "script": "printf '%s|%s|%s' \"$V\" \"$1\" \"$${ORCH_TEST_WORD}\" > out.txt",
                            "env": {"V": "${src.result}", "ORCH_TEST_WORD": "word"},
                            "args": ["${src.result}"],
                        })),
                        dependencies: vec![src.id],
                        ..TaskOptions::default()
                    },
                )
                .expect("sh");
            assert!(o.wait_for_completion(Some(Duration::from_secs(30))).await);
            let task = o.get_task(sh.id).expect("task");
            assert_eq!(task.status, TaskStatus::Completed, "{payload}: {task:?}");
        });
        let out = std::fs::read_to_string(dir.path().join("out.txt")).expect("out.txt");
        assert_eq!(out, format!("{payload}|{payload}|word"));
        assert!(!dir.path().join("PWNED").exists(), "{payload} ran as code");
    }
}
