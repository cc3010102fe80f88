//! `orch status` lists the schedules (text and `--json`): workflow,
//! schedule, state, next tick, last fired and missed ticks, and who fires
//! them; nothing about schedules when no workflow has one.

mod common;

use common::run;
use serde_json::Value;
use std::path::Path;

fn write_workflow(dir: &Path, name: &str, text: &str) {
    let wf = dir.join(".orch/workflows");
    std::fs::create_dir_all(&wf).expect("workflows dir");
    std::fs::write(wf.join(format!("{name}.yaml")), text).expect("write");
}

#[test]
fn status_lists_the_schedules_with_their_state() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, out, err) = run(dir.path(), &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("schedules:"), "no schedule, no line:\n{out}");

    write_workflow(
        dir.path(),
        "hourly",
        "name: hourly\nschedule: {every: 1h}\nsteps:\n  - name: at\n    module: core\n    action: set\n    parameters: {value: \"${schedule.time}\"}\n",
    );
    let (code, _, err) = run(dir.path(), &["schedule", "pause", "hourly"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(dir.path(), &["schedule", "trigger", "hourly"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = run(dir.path(), &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  schedules:  1 (no scheduler runs now"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("hourly"))
        .unwrap_or_else(|| panic!("a row for hourly:\n{out}"));
    assert!(row.contains("every 1h"), "{row}");
    assert!(row.contains("paused"), "{row}");

    let (code, out, err) = run(dir.path(), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    let s = &v["schedules"][0];
    assert_eq!(s["workflow"], "hourly", "{v}");
    assert_eq!(s["schedule"], "every 1h", "{v}");
    assert!(s["paused"]["by"].is_string(), "{v}");
    assert!(s.get("next").is_none(), "paused: no next tick: {v}");
    // The triggered run is the schedule's last tick, fired.
    assert_eq!(s["last"]["state"], "fired", "{v}");
    assert_eq!(s["last"]["cause"], "trigger", "{v}");
    let run_id = s["last_fired"]["run"].as_str().expect("its run");
    assert_eq!(s["last"]["run"], s["last_fired"]["run"], "{v}");
    assert!(
        row.contains(&format!("fired {}", &run_id[..13])),
        "the last fired tick and its run: {row}"
    );
    assert_eq!(v["scheduler"], Value::Null, "{v}");
    // The rest of the status is still there.
    assert!(v["workflow_manager"].is_object(), "{v}");
}
