//! Fan-out steps over lists known at run time (`for_each: "${STEP.result}"`)
//! on real `orch worker` processes sharing a schema of their own: the items
//! run as a run of their own submitted to the workers (recorded with the
//! run as its parent), spread across them; the step gathers their results
//! in order; an empty list gives `[]`; a list that is not one fails the
//! step; a cancel of the run reaches the items; a worker killed while its
//! step waits for its items loses nothing; `orch runs show` lists the items
//! under their step.

mod common;
mod procs;

use orch_model::{RunId, TaskStatus, WorkflowStatus};
use procs::{Fixture, PATIENCE, gone, one_at_a_time, send, wait_for};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Items that each append `ITEM OWNER` to `ledger` (OWNER: the worker
/// process that ran it), sleep a little so that both workers take some,
/// and print `loaded ITEM`; an empty list beside it.
const SPREAD: &str = r#"name: spread
steps:
  - { name: found, module: core, action: set, parameters: { value: [a, b, c, d, e, f] } }
  - name: load
    module: shell
    action: exec
    for_each: "${found.result}"
    parameters: { program: sh, args: ['-c', 'echo "$1 $ORCH_OWNER" >> ledger; sleep 0.3; echo "loaded $1"', sh, '${item}'] }
  - { name: report, module: core, action: set, parameters: { value: '${load.result}' } }
  - { name: none, module: core, action: set, parameters: { value: [] } }
  - { name: empty, module: core, action: set, for_each: "${none.result}", parameters: { value: '${item}' } }
  - { name: after_empty, module: core, action: set, parameters: { value: '${empty.result}' } }
"#;

fn show_json(f: &Fixture, run: RunId) -> Value {
    let out = f.run(&["runs", "show", &run.to_string(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("runs show --json")
}

fn task<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task `{name}` in {v}"))
}

/// Two workers of one slot each: the step that waits for its items takes
/// no slot, so the items still run, on both workers; their results are
/// gathered in order; the empty list gives `[]`; the items show under
/// their step in `orch runs show`, and in `orch run`'s report.
#[test]
fn a_list_known_at_run_time_runs_its_items_across_the_workers() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("spread.yaml", SPREAD);
    let mut w1 = f.worker("w1", &["--slots", "1"]);
    let mut w2 = f.worker("w2", &["--slots", "1"]);
    let out = f.run(&["run", "spread.yaml", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}{}{}",
        String::from_utf8_lossy(&out.stderr),
        w1.log(),
        w2.log()
    );
    let report: Value = serde_json::from_str(&stdout).expect("orch run --json");
    let run: RunId = report["run_id"]
        .as_str()
        .expect("run id")
        .parse()
        .expect("id");
    let names: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let at = names
        .iter()
        .position(|n| *n == "load")
        .expect("load in the report");
    assert_eq!(
        &names[at..at + 7],
        [
            "load", "load[0]", "load[1]", "load[2]", "load[3]", "load[4]", "load[5]"
        ],
        "the report lists the items after their step: {names:?}"
    );

    let tasks = f.tasks(run);
    let by_name = |n: &str| {
        tasks
            .iter()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("no task {n}"))
    };
    let gathered = &by_name("report").result.as_ref().expect("a result").data;
    let outs: Vec<&str> = gathered
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["stdout"].as_str().expect("stdout"))
        .collect();
    assert_eq!(
        outs,
        [
            "loaded a\n",
            "loaded b\n",
            "loaded c\n",
            "loaded d\n",
            "loaded e\n",
            "loaded f\n"
        ]
    );
    assert_eq!(
        by_name("after_empty")
            .result
            .as_ref()
            .expect("a result")
            .data,
        json!([])
    );
    assert_eq!(by_name("empty").status, TaskStatus::Completed);

    // The items' runs: one per step, recorded with the run as parent and
    // submitted to the workers.
    let load = by_name("load").result.as_ref().expect("a result");
    let child: RunId = load.metadata["items_run"]
        .as_str()
        .expect("items_run")
        .parse()
        .expect("an id");
    let children: Vec<_> = f
        .runs()
        .into_iter()
        .filter(|r| r.parent == Some(run))
        .collect();
    assert_eq!(children.len(), 2, "one items' run per fan-out step");
    let rec = f.run_record(child);
    assert_eq!(rec.workflow, "spread.load");
    assert_eq!(rec.owner.as_deref(), Some("workers"));
    assert_eq!(rec.status, WorkflowStatus::Completed);

    // Spread across both workers.
    let owners: BTreeSet<String> = f
        .read("ledger")
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, o)| o.to_owned()))
        .collect();
    assert_eq!(f.read("ledger").lines().count(), 6, "each item ran once");
    assert_eq!(owners.len(), 2, "items ran on both workers: {owners:?}");

    // `orch runs show` lists the items under their step.
    let v = show_json(&f, run);
    let load = task(&v, "load");
    assert_eq!(load["items_run"], child.to_string());
    let items = load["items"].as_array().expect("items");
    let item_names: Vec<&str> = items.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(
        item_names,
        [
            "load[0]", "load[1]", "load[2]", "load[3]", "load[4]", "load[5]"
        ]
    );
    assert!(
        items.iter().all(|i| i["status"] == "completed"),
        "{items:?}"
    );
    assert_eq!(items[2]["result"]["data"]["stdout"], "loaded c\n");
    assert_eq!(task(&v, "empty")["items"], json!([]));
    let out = f.run(&["runs", "show", &run.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("  load[5]") && l.contains("completed")),
        "{text}"
    );
    assert!(w1.stop().success(), "{}", w1.log());
    assert!(w2.stop().success(), "{}", w2.log());
}

/// A reference that is not a list fails the step (naming what it is), and
/// its dependents are skipped; no items' run is made.
#[test]
fn a_reference_that_is_not_a_list_fails_the_step_on_a_worker() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write(
        "notalist.yaml",
        "name: notalist\nsteps:\n  - { name: found, module: core, action: set, parameters: { value: { a: 1 } } }\n  - { name: load, module: core, action: set, for_each: '${found.result}', parameters: { value: '${item}' } }\n  - { name: after, module: core, action: noop, dependencies: [load] }\n",
    );
    let mut w = f.worker("w1", &[]);
    let out = f.run(&["run", "notalist.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", w.log());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let run: RunId = v["run_id"].as_str().expect("run id").parse().expect("id");
    let tasks = f.tasks(run);
    let load = tasks.iter().find(|t| t.name == "load").expect("load");
    assert_eq!(load.status, TaskStatus::Failed);
    let r = load.result.as_ref().expect("a result");
    assert_eq!(r.error_type.as_deref(), Some("FanOutError"));
    let msg = r.error_message.as_deref().unwrap_or_default();
    assert!(msg.contains("is a map, not a list"), "{msg}");
    let after = tasks.iter().find(|t| t.name == "after").expect("after");
    assert_eq!(after.status, TaskStatus::Skipped);
    assert!(
        f.runs().iter().all(|r| r.parent != Some(run)),
        "no items' run"
    );
    assert!(w.stop().success(), "{}", w.log());
}

/// Items that wait: `pids/ITEM` holds each one's pid.
const WAITING: &str = r#"name: waiting
steps:
  - { name: found, module: core, action: set, parameters: { value: [x, y] } }
  - name: hold
    module: shell
    action: exec
    for_each: "${found.result}"
    parameters: { program: sh, args: ['-c', 'echo $$ > "pids/$1"; while [ ! -e go ]; do sleep 0.05; done; echo "held $1"', sh, '${item}'] }
"#;

fn pid_of(f: &Fixture, name: &str) -> u32 {
    let mut pid = 0;
    wait_for(&format!("item {name}'s process"), PATIENCE, || {
        let t = f.read(&format!("pids/{name}"));
        pid = t.trim().parse().unwrap_or(0);
        t.ends_with('\n')
    });
    pid
}

/// `orch cancel` of the run reaches its items: their run is cancelled and
/// their processes stopped.
#[test]
fn cancel_of_the_run_reaches_the_items_on_the_workers() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("waiting.yaml", WAITING);
    let run = f.submit("waiting.yaml");
    let mut w = f.worker("w1", &[]);
    let (x, y) = (pid_of(&f, "x"), pid_of(&f, "y"));
    let out = f.run(&["cancel", &run.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the items' processes to be gone", PATIENCE, || {
        gone(x) && gone(y)
    });
    assert_eq!(f.wait_end(run).status, WorkflowStatus::Cancelled);
    let child = items_run_of(&f, run);
    assert_eq!(f.wait_end(child).status, WorkflowStatus::Cancelled);
    assert!(
        f.tasks(child)
            .iter()
            .all(|t| t.status == TaskStatus::Cancelled),
        "{:?}",
        f.tasks(child)
    );
    assert!(w.stop().success(), "{}", w.log());
}

/// The items' run of `run` (its only child).
fn items_run_of(f: &Fixture, run: RunId) -> RunId {
    let children: Vec<RunId> = f
        .runs()
        .into_iter()
        .filter(|r| r.parent == Some(run))
        .map(|r| r.id)
        .collect();
    assert_eq!(children.len(), 1, "one items' run");
    children[0]
}

/// The worker whose step waits for its items is killed with SIGKILL: the
/// step is reclaimed by another worker, which waits for the same items'
/// run (none is made twice), and the run completes with every item.
#[test]
fn a_worker_killed_while_its_step_waits_loses_nothing() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    f.write("waiting.yaml", WAITING);
    let run = f.submit("waiting.yaml");
    let mut w1 = f.worker("w1", &[]);
    pid_of(&f, "x");
    pid_of(&f, "y");
    // w1 holds the step and both items.
    let hold = f
        .tasks(run)
        .into_iter()
        .find(|t| t.name == "hold")
        .expect("hold");
    assert_eq!(hold.status, TaskStatus::Running);
    send("KILL", w1.pid());
    w1.wait_exit();
    std::fs::remove_dir_all(f.dir.join("pids")).expect("clear pids");
    std::fs::create_dir_all(f.dir.join("pids")).expect("pids");
    let mut w2 = f.worker("w2", &[]);
    f.write("go", "");
    let rec = f.wait_end(run);
    assert_eq!(rec.status, WorkflowStatus::Completed, "{}", w2.log());
    let child = items_run_of(&f, run);
    let hold = f
        .tasks(run)
        .into_iter()
        .find(|t| t.name == "hold")
        .expect("hold");
    assert!(hold.attempt >= 2, "the step was claimed again: {hold:?}");
    let data = &hold.result.as_ref().expect("a result").data;
    assert_eq!(data[0]["stdout"], "held x\n");
    assert_eq!(data[1]["stdout"], "held y\n");
    assert_eq!(
        hold.result.as_ref().expect("a result").metadata["items_run"],
        child.to_string()
    );
    assert!(w2.stop().success(), "{}", w2.log());
}
