//! A schedule of one tick a second fired by two `orch worker` processes
//! sharing PostgreSQL (a schema of its own): one fires at a time; when it
//! is killed with SIGKILL the other takes the lapsed `scheduler` lease and
//! catches up; every tick is claimed once (fired, or recorded missed), and
//! every scheduled run is run by the workers with its tick as
//! `${schedule.time}`. Then `orch schedule pause` stops the firing.

mod common;
mod procs;

use orch_model::{RecordKind, Store, TaskStatus, WorkflowStatus};
use procs::{Fixture, PATIENCE, one_at_a_time, send, wait_for};
use serde_json::Value;
use std::collections::BTreeSet;

/// The tick records of `tick`, oldest first.
fn ticks(f: &Fixture) -> Vec<Value> {
    let mut v: Vec<Value> = f
        .call("records", |s| s.records(RecordKind::ScheduleTick))
        .into_iter()
        .map(|r| r.data)
        .filter(|d| d["workflow"] == "tick")
        .collect();
    v.sort_by(|a, b| a["tick"].as_str().cmp(&b["tick"].as_str()));
    v
}

fn fired_by(ticks: &[Value], holder: &str) -> usize {
    ticks
        .iter()
        .filter(|t| t["state"] == "fired" && t["by"] == holder)
        .count()
}

#[test]
fn two_workers_fire_each_tick_once_and_the_survivor_of_a_kill_catches_up() {
    let _one = one_at_a_time();
    let f = Fixture::new();
    std::fs::create_dir_all(f.dir.join(".orch/workflows")).expect("workflows dir");
    f.write(
        ".orch/workflows/tick.yaml",
        "name: tick\nschedule: {every: 1s, catch_up: latest}\nsteps:\n  - name: at\n    module: core\n    action: set\n    parameters: {value: \"${schedule.time}\"}\n",
    );
    let mut w1 = f.worker("w1", &[]);
    let mut w2 = f.worker("w2", &[]);
    wait_for("3 ticks fired", PATIENCE, || {
        ticks(&f).iter().filter(|t| t["state"] == "fired").count() >= 3
    });
    let leader = f
        .call("leader", |s| s.leader("scheduler", chrono::Utc::now()))
        .map(|(h, _)| h)
        .expect("a worker leads");
    let (dead, survivor) = if leader == "w1" {
        (&mut w1, &mut w2)
    } else {
        (&mut w2, &mut w1)
    };
    assert_eq!(dead.id, leader);
    send("KILL", dead.pid());
    dead.wait_exit();
    // The lease lapses (15 s after its last renewal), the survivor takes it
    // and goes on.
    let other = survivor.id.clone();
    wait_for("3 ticks fired by the survivor", PATIENCE, || {
        fired_by(&ticks(&f), &other) >= 3
    });
    // Paused from the command line: the survivor fires nothing more.
    let out = f.run(&["schedule", "pause", "tick"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the scheduled runs to end", PATIENCE, || {
        f.runs()
            .iter()
            .filter(|r| r.workflow == "tick")
            .all(|r| r.status != WorkflowStatus::Running)
    });
    let before = ticks(&f).len();
    survivor.stop();

    let all = ticks(&f);
    assert!(all.len() >= before);
    let mut claimed = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for t in &all {
        let at = t["tick"].as_str().expect("tick").to_owned();
        assert!(seen.insert(at.clone()), "{at} twice");
        match t["state"].as_str() {
            // A killed leader may leave its last claim `firing`.
            Some("fired" | "firing") => {
                let run = t["run"].as_str().expect("a run id");
                claimed.insert(run.to_owned());
            }
            Some("missed") => {}
            other => panic!("tick {at}: {other:?} in {all:?}"),
        }
    }
    // The gap while the lease lapsed was caught up by `latest`: missed.
    assert!(
        all.iter()
            .any(|t| t["state"] == "missed" && t["by"] == other.as_str()),
        "{all:?}"
    );
    // Every run of the workflow belongs to a claimed tick (none fired
    // twice), was run by the workers, and returned its own tick.
    let runs: Vec<_> = f
        .runs()
        .into_iter()
        .filter(|r| r.workflow == "tick")
        .collect();
    assert!(runs.len() >= 6, "{} runs", runs.len());
    for r in &runs {
        assert!(
            claimed.contains(&r.id.to_string()),
            "run {} of no tick",
            r.id
        );
        assert_eq!(r.status, WorkflowStatus::Completed, "run {}", r.id);
        let task = &f.tasks(r.id)[0];
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(
            task.result.as_ref().map(|x| x.data.clone()),
            Some(r.params["schedule.time"].clone())
        );
        let tick = all
            .iter()
            .find(|t| t["run"] == r.id.to_string())
            .expect("its tick");
        assert_eq!(
            r.params["schedule.time"]
                .as_str()
                .map(|s| s.replace('Z', "")),
            tick["tick"].as_str().map(|s| s.replace('Z', ""))
        );
    }
}
