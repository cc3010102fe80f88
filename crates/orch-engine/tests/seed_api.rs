//! The original module's API as issue 10 found it broken: the specification's
//! `ai-analysis` example, caching, `execute_task` in status and metrics, the
//! session bound, `archive_project`, `recent_activity`, the template
//! workflows, `execute_complex_workflow` and the performance summary.

mod common;

use common::{drain, four_cores_file, params, rt};
use orch_engine::{EngineConfig, EngineEvent, OrchestrationEngine, SessionOptions, SessionStatus};
use orch_model::{ErrorCode, OrchestrationError, Task, Workflow, WorkflowStep};
use orch_workflows::WorkflowManager;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::Duration;

/// An engine in `dir` with fixed resources and this configuration.
fn engine_with(dir: &Path, config: EngineConfig) -> OrchestrationEngine {
    let res = four_cores_file(dir);
    OrchestrationEngine::builder()
        .home(dir.join("home"))
        .work_dir(dir)
        .config(EngineConfig {
            resource_config: Some(res),
            ..config
        })
        .build()
        .expect("engine")
}

fn engine(dir: &Path) -> OrchestrationEngine {
    engine_with(dir, EngineConfig::default())
}

fn cached_steps(events: &[EngineEvent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::TaskCompleted { task, cached, .. } => Some((task.clone(), *cached)),
            _ => None,
        })
        .collect()
}

/// A workflow whose one step appends a line to `count.txt` and may be cached
/// (the cache key covers the step's parameters, so `name` keeps the
/// workflows' entries apart).
fn counting(name: &str) -> Workflow {
    let mut step = WorkflowStep::new("count", "shell", "exec")
        .param("program", json!("sh"))
        .param(
            "args",
            json!(["-c", format!("echo {name} >> count.txt; echo counted")]),
        );
    step.cache = Some(Box::default());
    Workflow::new(name, "").step(step)
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count())
}

/// Adds `counting("counted")` to the engine in `dir`, runs it `times` times
/// on `rt`, each successfully, and returns how many lines `count.txt` has
/// then (how often the step really ran).
fn count_runs(
    engine: &OrchestrationEngine,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    times: usize,
) -> usize {
    engine
        .workflow_manager()
        .add_workflow(&counting("counted"))
        .expect("added");
    for _ in 0..times {
        assert!(
            rt.block_on(engine.execute_workflow("counted", None, Map::new()))
                .expect("ran")
                .success
        );
    }
    lines(&dir.join("count.txt"))
}

// Item 12: the specification's own example.
#[test]
fn the_specifications_ai_analysis_example_takes_include_visualization() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(dir.path().join("src/app.py"), "x = 1\n").expect("write");
    let engine = engine(dir.path());
    let rt = rt();
    // engine.execute_workflow("ai-analysis", code_path="./src", output_path="./analysis", include_visualization=True)
    let with = rt
        .block_on(engine.execute_workflow(
            "ai-analysis",
            None,
            params(json!({"code_path": "./src", "output_path": "./analysis", "include_visualization": true})),
        ))
        .expect("the specification's example runs");
    assert!(with.success, "{with:?}");
    assert!(dir.path().join("analysis/code-by-language.svg").is_file());
    let md = std::fs::read_to_string(dir.path().join("analysis/analysis.md")).expect("report");
    assert!(
        md.contains("![Lines of code by language](code-by-language.svg)"),
        "{md}"
    );
    assert!(with.results.contains_key("chart") && with.results.contains_key("report"));

    // False switches the chart off; the report is written without it.
    let without = rt
        .block_on(engine.execute_workflow(
            "ai-analysis",
            None,
            params(json!({"code_path": "./src", "output_path": "./plain", "include_visualization": false})),
        ))
        .expect("ran");
    assert!(without.success, "{without:?}");
    assert!(!dir.path().join("plain/code-by-language.svg").exists());
    let md = std::fs::read_to_string(dir.path().join("plain/analysis.md")).expect("report");
    assert!(md.contains("Sources in `./src`: 1 files"), "{md}");
    assert!(!md.contains("code-by-language.svg"), "{md}");
    assert!(!without.results.contains_key("chart"));
    let run = engine
        .workflow_manager()
        .runs()
        .into_iter()
        .next_back()
        .expect("run");
    assert_eq!(
        run.progress.completed_steps, 3,
        "target, stats, report-text"
    );
    // Left out, it is on (the seed's basic example).
    let wf = engine
        .workflow_manager()
        .get_workflow("ai-analysis")
        .expect("built in");
    assert_eq!(wf.parameters["include_visualization"], json!(true));
}

// Item 13: `cache: true` through execute_workflow, project workflows, and the switch.
#[test]
fn cache_true_works_through_the_engine_and_project_workflows_and_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    engine
        .workflow_manager()
        .add_workflow(&counting("counted"))
        .expect("added");
    let rt = rt();
    let mut rx = engine.subscribe();
    for _ in 0..2 {
        let r = rt
            .block_on(engine.execute_workflow("counted", None, Map::new()))
            .expect("ran");
        assert!(r.success, "{r:?}");
        assert_eq!(r.results["count"]["stdout"], "counted\n");
    }
    assert_eq!(
        lines(&dir.path().join("count.txt")),
        1,
        "the second run was served from the cache"
    );
    assert_eq!(
        cached_steps(&drain(&mut rx)),
        vec![("count".to_owned(), false), ("count".to_owned(), true)]
    );
    // The cache is the store's: the entry is there.
    let entries = rt.block_on(engine.store().cache_list()).expect("entries");
    assert_eq!(entries.len(), 1);

    // A project workflow shares it.
    let pm = engine.project_manager();
    let p = pm
        .create_project(
            "proj",
            Some("ai_analysis"),
            None,
            orch_projects::CreateOptions::default(),
        )
        .expect("created");
    let root = Path::new(&p.path);
    std::fs::write(
        root.join(".orch/workflows/ai-analysis.yaml"),
        counting("ai-analysis").to_json_pretty(),
    )
    .expect("replaced");
    for _ in 0..2 {
        let r = rt
            .block_on(engine.execute_project_workflow("proj", "ai-analysis", None, Map::new()))
            .expect("ran");
        assert!(r.success, "{r:?}");
    }
    assert_eq!(
        lines(&root.join("count.txt")),
        1,
        "the project's second run was cached"
    );

    // `cache: false` in the configuration runs every step.
    let off = tempfile::tempdir().expect("tempdir");
    let engine = engine_with(
        off.path(),
        EngineConfig {
            cache: Some(false),
            ..EngineConfig::default()
        },
    );
    assert_eq!(count_runs(&engine, &rt, off.path(), 2), 2);
}

// Item 13: the cache works on a current-thread runtime too (no block_in_place).
#[test]
fn the_cache_works_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert_eq!(count_runs(&engine, &rt, dir.path(), 3), 1);
}

// Item 14: execute_task counts in the status and the metrics.
#[test]
fn execute_task_is_seen_by_status_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let rt = rt();
    let mut ok = Task::new("ok", "core", "set");
    ok.parameters = params(json!({"value": 1}));
    assert!(rt.block_on(engine.execute_task(&ok)).success);
    let mut bad = Task::new("bad", "core", "fail");
    bad.parameters = params(json!({"retryable": false}));
    assert!(!rt.block_on(engine.execute_task(&bad)).success);
    let status = engine.get_system_status();
    assert_eq!(
        serde_json::to_value(status.task_orchestrator).expect("json"),
        json!({"total_tasks": 2, "pending": 0, "running": 0, "completed": 1, "failed": 1})
    );
    let m = engine.get_metrics();
    assert_eq!((m.tasks_completed, m.tasks_failed), (1, 1));

    // While it runs, it is running; shutdown waits for it, then stops it.
    let mut long = Task::new("long", "shell", "exec");
    long.parameters = params(json!({"program": "sleep", "args": ["30"]}));
    let e2 = engine.clone();
    let running = rt.spawn(async move { e2.execute_task(&long).await });
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            while engine.get_system_status().task_orchestrator.running != 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the task shows as running");
    });
    let finished = rt.block_on(engine.shutdown(Duration::from_millis(100)));
    assert!(
        !finished,
        "the task was still running at the end of the grace period"
    );
    let r = rt.block_on(running).expect("joined");
    assert!(!r.success, "stopped by the shutdown: {r:?}");
    let status = engine.get_system_status();
    assert_eq!(status.task_orchestrator.running, 0);
    assert_eq!(status.task_orchestrator.failed, 2);
}

// Item 16: ended sessions are bounded.
#[test]
fn ended_sessions_are_bounded_by_session_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine_with(
        dir.path(),
        EngineConfig {
            session_history: Some(3),
            ..EngineConfig::default()
        },
    );
    let active = engine
        .create_session(SessionOptions::default())
        .expect("session");
    let mut closed = Vec::new();
    for _ in 0..10 {
        let id = engine
            .create_session(SessionOptions::default())
            .expect("session");
        assert!(engine.close_session(&id));
        closed.push(id);
    }
    let kept = engine.list_sessions();
    assert_eq!(kept.len(), 4, "the active one and the last three ended");
    assert!(
        engine
            .get_session(&active)
            .is_some_and(|s| s.status == SessionStatus::Active)
    );
    assert!(engine.get_session(&closed[6]).is_none(), "forgotten");
    assert!(
        closed[7..]
            .iter()
            .all(|id| engine.get_session(id).is_some())
    );
    // The store still has every one.
    let history = rt().block_on(engine.session_history()).expect("history");
    assert_eq!(history.len(), 11);
}

#[test]
fn the_default_session_bound_is_the_run_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine_with(
        dir.path(),
        EngineConfig {
            store_url: Some("memory://".into()),
            ..EngineConfig::default()
        },
    );
    for _ in 0..orch_workflows::RUN_HISTORY + 50 {
        let id = engine
            .create_session(SessionOptions::default())
            .expect("session");
        engine.close_session(&id);
    }
    assert_eq!(engine.list_sessions().len(), orch_workflows::RUN_HISTORY);
}

// Item 20: archive_project updates updated_at; recent_activity in the status.
#[test]
fn archiving_updates_the_project_and_the_status_shows_recent_activity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let pm = engine.project_manager();
    let before = pm
        .create_project(
            "a",
            Some("ai_analysis"),
            None,
            orch_projects::CreateOptions::default(),
        )
        .expect("created");
    pm.create_project("b", None, None, orch_projects::CreateOptions::default())
        .expect("created");
    pm.archive_project("a", None).expect("archived");
    let after = pm.get_project("a").expect("project");
    assert!(
        after.updated_at > before.updated_at,
        "{:?} {:?}",
        before.updated_at,
        after.updated_at
    );
    let status = engine.get_system_status();
    let recent =
        serde_json::to_value(&status.project_manager.summary.recent_activity).expect("json");
    assert_eq!(
        recent[0]["name"], "a",
        "the archived one changed last: {recent}"
    );
    assert_eq!(recent[0]["status"], "archived");
    assert_eq!(recent[1]["name"], "b");
    assert!(recent[0]["updated_at"].is_string());
}

// Item 20: where the template workflows are available by name.
#[test]
fn template_workflows_are_named_by_the_engine_and_added_to_a_standalone_manager_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let names = [
        "ai-analysis",
        "build-and-test",
        "data-processing",
        "deploy",
        "visualization",
    ];
    assert_eq!(engine.workflow_manager().list_workflows(), names);
    // A standalone manager knows its own directory only...
    std::fs::create_dir_all(dir.path().join("wf")).expect("mkdir");
    std::fs::write(
        dir.path().join("wf/deploy.yaml"),
        "name: deploy\nsteps:\n  - name: mine\n    module: core\n    action: noop\n",
    )
    .expect("write");
    let wm = WorkflowManager::builder(dir.path().join("wf"))
        .build()
        .expect("manager");
    assert_eq!(wm.list_workflows(), ["deploy"]);
    // ...until the template workflows are added; its own `deploy` stays.
    let added = orch_projects::add_template_workflows(&wm).expect("added");
    assert_eq!(
        added,
        [
            "ai-analysis",
            "build-and-test",
            "data-processing",
            "visualization"
        ]
    );
    assert_eq!(wm.list_workflows(), names);
    assert_eq!(
        wm.get_workflow("deploy").expect("deploy").steps[0].name,
        "mine"
    );
}

// Item 22: execute_complex_workflow runs the seed's definition, dependencies by name.
#[test]
fn execute_complex_workflow_runs_the_seeds_definition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let rt = rt();
    let session = engine
        .create_session(SessionOptions::default())
        .expect("session");
    let definition = json!({
        "steps": [
            {"name": "analyze", "module": "core", "action": "set", "parameters": {"value": {"score": 8}}},
            {"name": "chart", "module": "core", "action": "set", "parameters": {"value": "${analyze.result.score}"}},
            {"name": "report", "module": "core", "action": "noop"}
        ],
        "dependencies": {"report": ["analyze", "chart"]},
        "parallel_groups": [["analyze"], ["chart", "report"]]
    });
    let r = rt
        .block_on(engine.execute_complex_workflow(&definition, Some(&session)))
        .expect("ran");
    assert!(r.success, "{r:?}");
    assert_eq!(r.session_id, session);
    assert_eq!(r.workflow, "complex-workflow");
    assert_eq!(r.results["chart"]["data"], 8);
    assert_eq!(r.results["analyze"]["success"], true);
    assert_eq!(
        (
            r.execution_stats.total_tasks,
            r.execution_stats.completed,
            r.execution_stats.failed
        ),
        (3, 3, 0)
    );
    // `report` waited for both (the dependencies map is by name).
    let run = engine
        .workflow_manager()
        .get_run(r.run_id)
        .expect("remembered");
    assert_eq!(run.workflow, "complex-workflow");
    assert_eq!(
        engine
            .get_session(&session)
            .expect("session")
            .workflows_executed,
        1
    );

    // A failing step is a result with success false, not success true as in the seed.
    let failing = json!({
        "name": "half",
        "steps": [
            {"name": "a", "module": "core", "action": "noop"},
            {"name": "b", "module": "core", "action": "fail", "parameters": {"retryable": false}},
            {"name": "c", "module": "core", "action": "noop"}
        ],
        "dependencies": {"c": ["b"]}
    });
    let r = rt
        .block_on(engine.execute_complex_workflow(&failing, None))
        .expect("ran");
    assert!(!r.success);
    assert_eq!(r.results["b"]["success"], false);
    assert_eq!(r.results["c"], Value::Null, "skipped, never ran");
    assert_eq!(
        (
            r.execution_stats.completed,
            r.execution_stats.failed,
            r.execution_stats.skipped
        ),
        (1, 1, 1)
    );
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("`b`") || e.contains("b failed")),
        "{r:?}"
    );

    // Definitions that do not fit are errors before anything runs.
    for (bad, says) in [
        (json!([]), "expected an object"),
        (
            json!({"steps": [{"name": "a", "module": "core", "action": "noop"}], "dependencies": {"x": ["a"]}}),
            "`x`, which is not a step",
        ),
        (
            json!({"steps": [{"name": "a", "module": "core", "action": "noop"}], "dependencies": {"a": "b"}}),
            "must be a list of step names",
        ),
        (
            json!({"steps": [{"name": "a", "module": "core", "action": "noop"}], "parallel_groups": [["a", "z"]]}),
            "`z`, which is not a step",
        ),
    ] {
        let e = rt
            .block_on(engine.execute_complex_workflow(&bad, None))
            .expect_err("refused");
        assert_eq!(e.error_code(), ErrorCode::InvalidParameters, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    for bad in [
        json!({"steps": []}),
        json!({"steps": [{"name": "a", "module": "core", "action": "noop"}], "dependencies": {"a": ["a"]}}),
        json!({"steps": [{"name": "a", "module": "core", "action": "noop", "colour": 1}]}),
    ] {
        let e = rt
            .block_on(engine.execute_complex_workflow(&bad, None))
            .expect_err("refused");
        assert!(matches!(e, OrchestrationError::Validation(_)), "{bad}: {e}");
    }
}

// Item 22: the workflow performance summary.
#[test]
fn the_performance_summary_counts_runs_and_module_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(dir.path());
    let wm = engine.workflow_manager();
    wm.add_workflow(
        &Workflow::new("ok", "")
            .step(WorkflowStep::new("a", "core", "noop"))
            .step(
                WorkflowStep::new("b", "core", "sleep")
                    .param("ms", json!(10))
                    .after("a"),
            ),
    )
    .expect("added");
    wm.add_workflow(
        &Workflow::new("bad", "")
            .step(WorkflowStep::new("boom", "core", "fail").param("retryable", json!(false)))
            .step(
                WorkflowStep::new("after", "shell", "exec")
                    .param("program", json!("true"))
                    .after("boom"),
            ),
    )
    .expect("added");
    let rt = rt();
    for name in ["ok", "ok", "bad"] {
        rt.block_on(engine.execute_workflow(name, None, Map::new()))
            .expect("ran");
    }
    let all = serde_json::to_value(engine.get_performance_summary(None)).expect("json");
    assert_eq!(all["total_workflows_executed"], 3);
    assert_eq!(all["successful_executions"], 2);
    assert_eq!(all["failed_executions"], 1);
    assert_eq!(
        all["module_usage_stats"]["core"]["count"], 5,
        "a, b twice and boom"
    );
    assert!(
        all["module_usage_stats"].get("shell").is_none(),
        "`after` never ran"
    );
    assert!(
        all["module_usage_stats"]["core"]["total_time"]
            .as_f64()
            .expect("time")
            > 0.0
    );
    let stats = &all["performance_stats"];
    assert_eq!(stats["count"], 3);
    assert!(stats["min_time"].as_f64() <= stats["max_time"].as_f64());
    assert!(all["average_execution_time"].as_f64().expect("avg") > 0.0);
    let ok = engine.get_performance_summary(Some("ok"));
    assert_eq!(
        (
            ok.total_workflows_executed,
            ok.successful_executions,
            ok.failed_executions
        ),
        (2, 2, 0)
    );
    assert_eq!(ok.workflow.as_deref(), Some("ok"));
    let none = engine.get_performance_summary(Some("never-ran"));
    assert_eq!(none.total_workflows_executed, 0);
    assert_eq!(none.performance_stats.min_time, 0.0);
}
