//! Fan-out runs: each item a step of its own (in the report and the store), results gathered in order, lists known at run time, empty lists, failing items, 10,000 items.

mod common;

use async_trait::async_trait;
use common::{rt, yaml};
use orch_model::{Store, TaskStatus, WorkflowStatus};
use orch_tasks::{
    Action, ActionContext, ActionError, ActionRegistry, MemoryStore, RunOptions, RunReport,
    StepReport, run_workflow,
};
use serde_json::{Value, json};
use std::sync::Arc;

/// Fails when its `v` is "bad"; returns its `v` otherwise.
#[derive(Debug)]
struct Check;

#[async_trait]
impl Action for Check {
    async fn run(&self, params: Value, _: &ActionContext) -> Result<Value, ActionError> {
        if params["v"] == "bad" {
            return Err(ActionError::retryable("Bad", "a bad item"));
        }
        Ok(params["v"].clone())
    }
}

fn registry() -> ActionRegistry {
    let mut reg = ActionRegistry::with_builtins();
    reg.register("t", "check", Arc::new(Check));
    reg
}

fn run(text: &str, store: Option<Arc<MemoryStore>>) -> RunReport {
    let wf = yaml(text);
    let opts = RunOptions {
        store: store.map(|s| s as Arc<dyn Store>),
        ..RunOptions::default()
    };
    rt().block_on(run_workflow(&wf, &registry(), opts, None))
        .expect("ran")
}

fn step<'r>(r: &'r RunReport, name: &str) -> &'r StepReport {
    r.steps.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no step {name} in {:?}",
            r.steps.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

fn data(r: &RunReport, name: &str) -> Value {
    step(r, name)
        .result
        .as_ref()
        .map(|r| r.data.clone())
        .unwrap_or(Value::Null)
}

#[test]
fn a_literal_list_runs_each_item_as_a_step_and_gathers_results_in_order() {
    let store = Arc::new(MemoryStore::new());
    let r = run(
        r#"
name: lit
steps:
  - name: greet
    module: core
    action: set
    for_each: [ann, bob, cy]
    parameters: { value: "hello ${item}" }
  - name: after
    module: core
    action: set
    parameters: { value: "${greet.result}", second: "${greet.result[1]}" }
"#,
        Some(store.clone()),
    );
    assert_eq!(r.status, WorkflowStatus::Completed);
    assert_eq!(data(&r, "greet[2]"), json!("hello cy"));
    assert_eq!(step(&r, "greet[0]").attempts, 1);
    assert_eq!(
        data(&r, "greet"),
        json!(["hello ann", "hello bob", "hello cy"])
    );
    assert_eq!(
        data(&r, "after"),
        json!(["hello ann", "hello bob", "hello cy"])
    );
    // Each item is a task of its own in the store, with its result.
    let tasks = rt().block_on(store.tasks(r.run_id)).expect("tasks");
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["greet", "after", "greet[0]", "greet[1]", "greet[2]"]
    );
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Completed));
    assert_eq!(
        tasks[3].result.as_ref().map(|r| r.data.clone()),
        Some(json!("hello bob"))
    );
    assert_eq!(
        tasks[0].result.as_ref().map(|r| r.data.clone()),
        Some(json!(["hello ann", "hello bob", "hello cy"]))
    );
}

#[test]
fn a_matrix_runs_every_combination() {
    let r = run(
        r#"
name: mx
steps:
  - name: build
    module: core
    action: set
    matrix: { os: [linux, mac], arch: [x64, arm] }
    parameters: { value: "${matrix.os}-${matrix.arch}" }
"#,
        None,
    );
    assert_eq!(r.status, WorkflowStatus::Completed);
    assert_eq!(
        data(&r, "build"),
        json!(["linux-x64", "linux-arm", "mac-x64", "mac-arm"])
    );
    assert_eq!(data(&r, "build[os=mac,arch=x64]"), json!("mac-x64"));
}

#[test]
fn a_list_from_a_previous_result_runs_its_items_as_a_run_of_their_own() {
    let store = Arc::new(MemoryStore::new());
    let r = run(
        r#"
name: dyn
parameters: { prefix: "n=" }
steps:
  - name: list
    module: core
    action: set
    parameters: { value: { files: [a.txt, b.txt, "$${x}"] } }
  - name: each
    module: core
    action: set
    for_each: "${list.result.files}"
    max_retries: 1
    retry: { initial_delay: 1ms }
    parameters: { value: "${params.prefix}${item}" }
  - name: after
    module: core
    action: set
    parameters: { value: "${each.result}" }
"#,
        Some(store.clone()),
    );
    assert_eq!(r.status, WorkflowStatus::Completed, "{:?}", r.steps);
    // The item `${x}` is data: never resolved.
    let want = json!(["n=a.txt", "n=b.txt", "n=${x}"]);
    assert_eq!(data(&r, "each"), want);
    assert_eq!(data(&r, "after"), want);
    // The items ran in a run whose parent is this one, each a task of its own.
    let child = step(&r, "each")
        .result
        .as_ref()
        .and_then(|r| r.metadata.get("items_run").cloned())
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("the items' run");
    let child: orch_model::RunId = child.parse().expect("a run id");
    let rec = rt()
        .block_on(store.get_run(child))
        .expect("read")
        .expect("the items' run is stored");
    assert_eq!(rec.parent, Some(r.run_id));
    assert_eq!(rec.status, WorkflowStatus::Completed);
    let tasks = rt().block_on(store.tasks(child)).expect("tasks");
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["each", "each[0]", "each[1]", "each[2]"]);
    assert_eq!(
        tasks[2].result.as_ref().map(|r| r.data.clone()),
        Some(json!("n=b.txt"))
    );
}

#[test]
fn an_empty_list_gathers_an_empty_result_and_dependents_run() {
    let r = run(
        r#"
name: empty
steps:
  - { name: none, module: core, action: set, for_each: [], parameters: { value: "${item}" } }
  - { name: list, module: core, action: set, parameters: { value: [] } }
  - { name: later, module: core, action: set, for_each: "${list.result}", parameters: { value: "${item}" } }
  - { name: after, module: core, action: set, parameters: { value: ["${none.result}", "${later.result}"] } }
"#,
        None,
    );
    assert_eq!(r.status, WorkflowStatus::Completed);
    assert_eq!(data(&r, "none"), json!([]));
    assert_eq!(data(&r, "later"), json!([]));
    assert_eq!(data(&r, "after"), json!([[], []]));
}

#[test]
fn a_failing_item_fails_the_step_and_its_dependents_follow_their_trigger_rules() {
    let store = Arc::new(MemoryStore::new());
    let r = run(
        r#"
name: failing
steps:
  - name: check
    module: t
    action: check
    for_each: [ok1, bad, ok2]
    max_retries: 2
    retry: { initial_delay: 1ms }
    parameters: { v: "${item}" }
  - { name: uses, module: core, action: set, parameters: { value: "${check.result}" } }
  - { name: cleanup, module: core, action: noop, dependencies: [check], conditions: { run_if: always } }
"#,
        Some(store.clone()),
    );
    assert_eq!(r.status, WorkflowStatus::Failed);
    // Each item has its own status and attempts; only the bad one retried.
    assert_eq!(step(&r, "check[0]").status, TaskStatus::Completed);
    assert_eq!(step(&r, "check[1]").status, TaskStatus::Failed);
    assert_eq!(step(&r, "check[1]").attempts, 3);
    assert_eq!(step(&r, "check[2]").attempts, 1);
    // The step fails, naming the item; its result keeps what succeeded.
    let gathered = step(&r, "check").result.clone().expect("a result");
    assert_eq!(gathered.error_type.as_deref(), Some("FanOutError"));
    assert_eq!(
        gathered.error_message.as_deref(),
        Some("1 of 3 items did not succeed: check[1] (failed)")
    );
    assert_eq!(gathered.data, json!(["ok1", null, "ok2"]));
    assert_eq!(step(&r, "uses").status, TaskStatus::Skipped);
    assert_eq!(step(&r, "cleanup").status, TaskStatus::Completed);
    let tasks = rt().block_on(store.tasks(r.run_id)).expect("tasks");
    let bad = tasks.iter().find(|t| t.name == "check[1]").expect("stored");
    assert_eq!((bad.status, bad.attempt), (TaskStatus::Failed, 3));
}

#[test]
fn a_list_that_is_not_a_list_fails_the_step() {
    let r = run(
        r#"
name: notalist
steps:
  - { name: src, module: core, action: set, parameters: { value: { a: 1 } } }
  - { name: each, module: core, action: set, for_each: "${src.result}", parameters: { value: "${item}" } }
"#,
        None,
    );
    assert_eq!(r.status, WorkflowStatus::Failed);
    let res = step(&r, "each").result.clone().expect("a result");
    assert_eq!(
        res.error_message.as_deref(),
        Some("`for_each: ${src.result}` is a map, not a list")
    );
}

#[test]
fn ten_thousand_items_run_and_gather_in_order() {
    let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let text = format!(
        "name: big\nsteps:\n  - name: s\n    module: core\n    action: set\n    for_each: [{}]\n    parameters: {{ value: \"${{item}}\" }}\n",
        list.join(", ")
    );
    let store = Arc::new(MemoryStore::new());
    let r = run(&text, Some(store.clone()));
    assert_eq!(r.status, WorkflowStatus::Completed);
    assert_eq!(r.steps.len(), 10_001);
    let gathered = data(&r, "s");
    let want: Vec<Value> = (0..10_000).map(|i| json!(i)).collect();
    assert_eq!(gathered, Value::Array(want));
    let tasks = rt().block_on(store.tasks(r.run_id)).expect("tasks");
    assert_eq!(tasks.len(), 10_001);
    assert_eq!(tasks[10_000].name, "s[9999]");
}
