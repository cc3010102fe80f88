//! Schedules through the binary: bad `schedule:` blocks at their line and
//! column, `orch schedule list | pause | resume | trigger`, `orch backfill`,
//! and two `orch serve` processes on one SQLite file firing a schedule of
//! one tick a second: each tick fired once, the lease handed over when the
//! firing one stops, every tick fired or recorded missed.

mod common;

use common::{orch_cmd, run};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Against hangs only: how long a test waits for something at most.
const PATIENCE: Duration = Duration::from_secs(120);

fn ticker(name: &str, schedule: &str) -> String {
    format!(
        "name: {name}\nschedule: {schedule}\nsteps:\n  - name: at\n    module: core\n    action: set\n    parameters: {{value: \"${{schedule.time}}\"}}\n"
    )
}

fn write_workflow(dir: &Path, name: &str, text: &str) {
    let wf = dir.join(".orch/workflows");
    std::fs::create_dir_all(&wf).expect("workflows dir");
    std::fs::write(wf.join(format!("{name}.yaml")), text).expect("write");
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "orch {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("orch {args:?}: {e}: {out}"))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bad_schedules_are_reported_at_their_line_and_column() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nschedule:\n  cron: \"0 2 * * * * * *\"\n  timezone: Europe/Pariss\n  catch_up: {policy: all, max: 0}\nsteps:\n  - name: a\n    module: core\n    action: noop\n",
    )
    .expect("write");
    let (code, out, err) = run(dir.path(), &["validate", "bad.yaml"]);
    assert_eq!(code, 2, "{out}{err}");
    let text = format!("{out}{err}");
    for want in [
        "bad.yaml:3:9: schedule.cron: cron pattern `0 2 * * * * * *` has 8 fields",
        "bad.yaml:4:13: schedule.timezone: unknown time zone `Europe/Pariss`; did you mean `Europe/Paris`?",
        "bad.yaml:5:32: schedule.catch_up.max: `max` is at least 1",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    std::fs::write(
        dir.path().join("interval.toml"),
        "name = \"interval\"\n[schedule]\nevery = \"90 seconds\"\n[[steps]]\nname = \"a\"\nmodule = \"core\"\naction = \"noop\"\n",
    )
    .expect("write");
    let (code, out, err) = run(dir.path(), &["validate", "interval.toml"]);
    assert_eq!(code, 2);
    assert!(
        format!("{out}{err}")
            .contains("interval.toml:3:9: schedule.every: `90 seconds` is not a duration"),
        "{out}{err}"
    );
}

#[test]
fn schedule_commands_list_pause_resume_trigger_and_backfill() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    write_workflow(
        d,
        "hourly",
        &ticker("hourly", "{every: 1h, catch_up: skip}"),
    );
    let (code, out, err) = run(d, &["schedule", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("hourly") && out.contains("every 1h") && out.contains("skip"),
        "{out}"
    );
    assert!(out.contains("no scheduler runs now"), "{out}");

    let (code, out, _) = run(d, &["schedule", "pause", "hourly"]);
    assert_eq!(code, 0);
    assert!(out.contains("paused `hourly`"), "{out}");
    let v = json(d, &["schedule", "list", "--json"]);
    assert!(v["schedules"][0]["paused"]["by"].is_string(), "{v}");
    assert!(v["schedules"][0]["next"].is_null(), "{v}");
    let (code, out, _) = run(d, &["schedule", "resume", "hourly"]);
    assert_eq!(code, 0);
    assert!(out.contains("resumed `hourly`"), "{out}");
    let v = json(d, &["schedule", "list", "--json"]);
    assert!(v["schedules"][0]["next"].is_string(), "{v}");

    // Trigger: one run now, its time in ${schedule.time}.
    let (code, out, err) = run(d, &["schedule", "trigger", "hourly"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("of `hourly` for "), "{err}");
    let v = json(d, &["schedule", "list", "hourly", "--json"]);
    let tick = &v["ticks"][0];
    assert_eq!(tick["cause"], "trigger", "{v}");
    assert_eq!(tick["state"], "fired", "{v}");
    let run_id = tick["run"].as_str().expect("run").to_owned();
    let shown = json(d, &["runs", "show", &run_id, "--json"]);
    assert_eq!(shown["params"]["schedule.time"], tick["tick"], "{shown}");
    assert_eq!(
        shown["tasks"][0]["result"]["data"],
        shown["params"]["schedule.time"]
    );

    // Backfill: a dry run lists, a run runs, a second run leaves them.
    let range = [
        "--from",
        "2024-05-01T00:00:00Z",
        "--to",
        "2024-05-01T02:00:00Z",
    ];
    let mut args = vec!["backfill", "hourly"];
    args.extend(range);
    let mut dry = args.clone();
    dry.push("--dry-run");
    let (code, out, err) = run(d, &dry);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("would run").count(), 3, "{out}");
    let (code, out, err) = run(d, &args);
    assert_eq!(code, 0, "{out}{err}");
    for t in [
        "2024-05-01T00:00:00Z",
        "2024-05-01T01:00:00Z",
        "2024-05-01T02:00:00Z",
    ] {
        assert!(out.contains(&format!("{t}  completed")), "{out}");
    }
    assert!(err.contains("3 tick(s), 3 run, 0 failed"), "{err}");
    let (code, out, _) = run(d, &args);
    assert_eq!(code, 0);
    assert_eq!(out.matches("skipped").count(), 3, "{out}");
    let v = json(d, &["schedule", "list", "hourly", "--json"]);
    let backfilled: Vec<&str> = v["ticks"]
        .as_array()
        .expect("ticks")
        .iter()
        .filter(|t| t["cause"] == "backfill")
        .filter_map(|t| t["run"].as_str())
        .collect();
    assert_eq!(backfilled.len(), 3, "{v}");
    for id in backfilled {
        let shown = json(d, &["runs", "show", id, "--json"]);
        assert_eq!(shown["status"], "completed");
        assert!(
            shown["params"]["schedule.time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2024-05-01T0")),
            "{shown}"
        );
    }

    // Bounded, and clear about what is wrong.
    let (code, _, err) = run(
        d,
        &[
            "backfill",
            "hourly",
            "--from",
            "2024-01-01",
            "--to",
            "2024-05-01",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("holds more than 100 ticks"), "{err}");
    let (code, _, err) = run(
        d,
        &[
            "backfill",
            "hourly",
            "--from",
            "yesterday",
            "--to",
            "2024-05-01",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("is not a time"), "{err}");
    let (code, _, err) = run(d, &["schedule", "pause", "nosuch"]);
    assert_eq!(code, 2);
    assert!(err.contains("scheduled workflows: hourly"), "{err}");
}

/// `orch serve` on the test's home, listening on a port of its own.
fn serve(dir: &Path, log: &str) -> Child {
    orch_cmd(dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).expect("log"))
        .spawn()
        .expect("orch serve starts")
}

fn terminate(child: &mut Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -TERM {}", child.id());
    let status = child.wait().expect("wait");
    assert!(status.success(), "orch serve exits 0 on SIGTERM: {status}");
}

/// The schedule's ticks, oldest first.
fn ticks(dir: &Path) -> Vec<Value> {
    let v = json(
        dir,
        &["schedule", "list", "tick", "--json", "--limit", "100000"],
    );
    let mut t = v["ticks"].as_array().cloned().unwrap_or_default();
    t.reverse();
    t
}

fn fired_by(ticks: &[Value], holder: Option<&str>) -> usize {
    ticks
        .iter()
        .filter(|t| t["state"] == "fired" && holder.is_none_or(|h| t["by"] == h))
        .count()
}

#[test]
fn two_servers_on_one_sqlite_file_fire_each_tick_once_and_hand_over() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    write_workflow(d, "tick", &ticker("tick", "{every: 1s}"));
    let mut a = serve(d, "a.log");
    let mut b = serve(d, "b.log");
    wait_for("4 fired ticks", || fired_by(&ticks(d), None) >= 4);
    // The one that fires stops; the other takes the lease it gives up.
    let leader = json(d, &["schedule", "list", "--json"])["leader"]["holder"]
        .as_str()
        .expect("a leader")
        .to_owned();
    let (first, second) = if leader.contains(&format!("-{}-", a.id())) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(leader.contains(&format!("-{}-", first.id())), "{leader}");
    terminate(first);
    let mut other = String::new();
    wait_for("3 ticks fired by the other server", || {
        let t = ticks(d);
        other = t
            .iter()
            .rev()
            .find(|t| t["state"] == "fired" && t["by"] != leader.as_str())
            .and_then(|t| t["by"].as_str())
            .unwrap_or_default()
            .to_owned();
        !other.is_empty() && fired_by(&t, Some(&other)) >= 3
    });
    assert!(other.contains(&format!("-{}-", second.id())), "{other}");
    terminate(second);

    let all = ticks(d);
    // Every tick from the first to the last is fired once or recorded
    // missed (while the lease changed hands), never both.
    let mut seen = BTreeSet::new();
    let mut runs = BTreeSet::new();
    for t in &all {
        let at = t["tick"].as_str().expect("tick").to_owned();
        assert!(seen.insert(at.clone()), "tick {at} twice: {all:?}");
        match t["state"].as_str() {
            Some("fired") => {
                let id = t["run"].as_str().expect("run");
                assert!(runs.insert(id.to_owned()));
                let shown = json(d, &["runs", "show", id, "--json"]);
                assert_eq!(shown["status"], "completed", "{shown}");
                assert_eq!(shown["tasks"][0]["result"]["data"], at.as_str(), "{shown}");
            }
            Some("missed") => {}
            other => panic!("tick {at} is {other:?}: {all:?}"),
        }
    }
    // A missed range holds no fired tick.
    for m in all.iter().filter(|t| t["state"] == "missed") {
        let (from, to) = (
            m["tick"].as_str().unwrap_or_default(),
            m["last"]
                .as_str()
                .or(m["tick"].as_str())
                .unwrap_or_default(),
        );
        for f in all.iter().filter(|t| t["state"] == "fired") {
            let at = f["tick"].as_str().unwrap_or_default();
            assert!(!(from <= at && at <= to), "{at} fired and missed: {all:?}");
        }
    }
    // No run of the workflow without a fired tick: nothing fired twice.
    let listed = json(d, &["runs", "list", "--json", "--limit", "100000"]);
    let of_tick: BTreeSet<String> = listed
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["workflow"] == "tick")
        .filter_map(|r| r["run_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(of_tick, runs);
    assert!(fired_by(&all, Some(&leader)) >= 4);
}
