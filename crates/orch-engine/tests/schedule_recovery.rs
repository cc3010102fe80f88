//! Ticks left `firing` by a process that claimed them and stopped (or
//! stalled) before starting the run: the next leader takes them over once
//! the record is older than the lease, firing them with the claim's run id
//! or recording them missed with the reason, and never runs a tick twice.
//! Two engines on one SQLite file, driven with explicit times.

mod common;

use chrono::{DateTime, Utc};
use common::rt;
use orch_engine::schedule::{
    Scheduler, SchedulerOptions, TickCause, TickRecord, TickState, tick_text,
};
use orch_engine::{EngineConfig, OrchestrationEngine, RunRequest, RunTarget};
use orch_model::{RunId, Store, WorkflowStatus};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn ticker(name: &str, schedule: &str) -> String {
    format!(
        "name: {name}\nschedule: {schedule}\nsteps:\n  - name: at\n    module: core\n    action: set\n    parameters: {{value: \"${{schedule.time}}\"}}\n"
    )
}

fn engine(home: &Path, db: &Path) -> OrchestrationEngine {
    let config = EngineConfig {
        store_url: Some(format!("sqlite://{}", db.display())),
        ..EngineConfig::default()
    };
    OrchestrationEngine::builder()
        .config(config)
        .home(home)
        .work_dir(home)
        .build()
        .expect("engine")
}

fn write(home: &Path, name: &str, text: &str) {
    let dir = home.join("workflows");
    std::fs::create_dir_all(&dir).expect("workflows dir");
    std::fs::write(dir.join(format!("{name}.yaml")), text).expect("write");
}

fn scheduler(e: &OrchestrationEngine, holder: &str) -> Scheduler {
    Scheduler::new(
        e.clone(),
        SchedulerOptions {
            holder: holder.to_owned(),
            lease: Duration::from_secs(15),
            ..SchedulerOptions::default()
        },
    )
    .expect("a scheduler")
}

/// Two engines on one SQLite file, `a` and `b`, with their schedulers; `a`
/// leads from its first pass, at 10:00:00.5 (where the schedules' marks
/// start).
async fn a_leads(
    home: &Path,
    db: &Path,
) -> (
    OrchestrationEngine,
    OrchestrationEngine,
    Scheduler,
    Scheduler,
) {
    let (a, b) = (engine(home, db), engine(home, db));
    let (sa, sb) = (scheduler(&a, "a"), scheduler(&b, "b"));
    assert!(
        sa.pass(t("2024-05-01T10:00:00.5Z"))
            .await
            .expect("pass")
            .leader
    );
    (a, b, sa, sb)
}

/// What a process that stopped right after its claim leaves: the tick's
/// record, `firing`, with the run id it meant to start.
async fn claim(store: &dyn Store, wf: &str, tick: &str, by: &str, at: &str) -> RunId {
    let run = RunId::new();
    let mut rec = TickRecord::new(
        wf,
        t(tick),
        TickState::Firing,
        TickCause::Schedule,
        by,
        t(at),
    );
    rec.run = Some(run);
    assert!(store.create_record(rec.to_record()).await.expect("claim"));
    run
}

async fn tick_of(e: &OrchestrationEngine, wf: &str, tick: &str) -> TickRecord {
    e.schedule_ticks(Some(wf), 1000)
        .await
        .expect("ticks")
        .into_iter()
        .find(|r| r.tick == t(tick))
        .expect("the tick's record")
}

async fn runs_of(store: &dyn Store, wf: &str) -> Vec<RunId> {
    store
        .list_runs()
        .await
        .expect("runs")
        .into_iter()
        .filter(|r| r.workflow == wf)
        .map(|r| r.id)
        .collect()
}

#[test]
fn a_tick_left_firing_by_a_dead_leader_is_fired_by_the_next_with_the_claims_run() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
    rt().block_on(async {
        let (a, b, _sa, sb) = a_leads(dir.path(), &db).await;
        // a claims 10:01 and dies before starting the run (and before its
        // lease, renewed at 10:00:00.5, would have been renewed again).
        let run = claim(
            a.store().as_ref(),
            "minutely",
            "2024-05-01T10:01:00Z",
            "a",
            "2024-05-01T10:01:00.1Z",
        )
        .await;
        // b leads once a's lease ran out; the claim is 5 s old: a live
        // process may still be starting the run, so it is left alone.
        let r = sb.pass(t("2024-05-01T10:01:05Z")).await.expect("pass");
        assert!(r.leader);
        assert!(r.fired.is_empty() && r.recovered.is_empty(), "{r:?}");
        assert_eq!(
            r.taken,
            vec![("minutely".to_owned(), t("2024-05-01T10:01:00Z"))]
        );
        let rec = tick_of(&b, "minutely", "2024-05-01T10:01:00Z").await;
        assert_eq!((rec.state, rec.by.as_str()), (TickState::Firing, "a"));
        assert!(runs_of(b.store().as_ref(), "minutely").await.is_empty());
        // Older than the lease (15 s) and still without a run: b fires it,
        // late, with the run id of a's claim.
        let r = sb.pass(t("2024-05-01T10:01:16Z")).await.expect("pass");
        assert_eq!(r.recovered.len(), 1, "{r:?}");
        let got = &r.recovered[0];
        assert_eq!(
            (got.tick, got.run, got.state, got.started),
            (t("2024-05-01T10:01:00Z"), run, TickState::Fired, true)
        );
        sb.wait_for_runs().await;
        let rec = tick_of(&b, "minutely", "2024-05-01T10:01:00Z").await;
        assert_eq!(
            (rec.state, rec.by.as_str(), rec.run, rec.cause),
            (TickState::Fired, "b", Some(run), TickCause::CatchUp)
        );
        assert_eq!(runs_of(b.store().as_ref(), "minutely").await, vec![run]);
        let stored = b.store().get_run(run).await.expect("get").expect("run");
        assert_eq!(stored.status, WorkflowStatus::Completed);
        assert_eq!(
            stored.params.get("schedule.time"),
            Some(&json!("2024-05-01T10:01:00Z"))
        );
        // Counted, and not taken over again.
        let info = &b.schedules(t("2024-05-01T10:01:30Z")).await.expect("list")[0];
        assert_eq!(info.state.fired, 1);
        assert_eq!(
            info.state.last_fired,
            Some((t("2024-05-01T10:01:00Z"), run))
        );
        let r = sb.pass(t("2024-05-01T10:01:40Z")).await.expect("pass");
        assert!(r.recovered.is_empty() && r.fired.is_empty(), "{r:?}");
        assert_eq!(runs_of(b.store().as_ref(), "minutely").await, vec![run]);
    });
}

#[test]
fn a_claim_the_policy_no_longer_wants_is_recorded_missed_with_why() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
    write(
        dir.path(),
        "hourly",
        &ticker("hourly", "{every: 1h, catch_up: skip}"),
    );
    rt().block_on(async {
        let (a, b) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let sb = scheduler(&b, "b");
        let sa = scheduler(&a, "a");
        assert!(
            sa.pass(t("2024-05-01T10:00:00.5Z"))
                .await
                .expect("pass")
                .leader
        );
        let m = claim(
            a.store().as_ref(),
            "minutely",
            "2024-05-01T10:01:00Z",
            "a",
            "2024-05-01T10:01:00.1Z",
        )
        .await;
        let h = claim(
            a.store().as_ref(),
            "hourly",
            "2024-05-01T11:00:00Z",
            "a",
            "2024-05-01T11:00:00.1Z",
        )
        .await;
        // b comes at 11:02:30: 10:02 .. 11:02 of minutely passed since
        // (latest runs only the newest), and hourly's 11:00 is no longer
        // on time for skip.
        let r = sb.pass(t("2024-05-01T11:02:30Z")).await.expect("pass");
        assert!(r.leader);
        let mut got: Vec<_> = r
            .recovered
            .iter()
            .map(|x| (x.workflow.clone(), x.run, x.state, x.started))
            .collect();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            got,
            vec![
                ("hourly".to_owned(), h, TickState::Missed, false),
                ("minutely".to_owned(), m, TickState::Missed, false),
            ]
        );
        let rec = tick_of(&b, "minutely", "2024-05-01T10:01:00Z").await;
        assert_eq!(rec.state, TickState::Missed);
        assert_eq!(rec.run, Some(m), "the claim's run id is kept");
        let why = rec.error.expect("a reason");
        assert!(
            why.contains("claimed by a at 2024-05-01T10:01:00Z"),
            "{why}"
        );
        assert!(why.contains("newer"), "{why}");
        let rec = tick_of(&b, "hourly", "2024-05-01T11:00:00Z").await;
        let why = rec.error.expect("a reason");
        assert!(why.contains("on time"), "{why}");
        sb.wait_for_runs().await;
        // The minutely schedule fired its newest tick as usual; the
        // missed claim has no run.
        assert!(b.store().get_run(m).await.expect("get").is_none());
        assert!(b.store().get_run(h).await.expect("get").is_none());
        let fired: Vec<_> = r.fired.iter().map(|f| tick_text(f.tick)).collect();
        assert_eq!(fired, ["2024-05-01T11:02:00Z"]);
        // A backfill of the missed claim runs it with the claim's run id.
        let handle = b
            .backfill_tick(
                "minutely",
                t("2024-05-01T10:01:00Z"),
                t("2024-05-01T11:03:00Z"),
            )
            .await
            .expect("backfill")
            .expect("runs");
        assert_eq!(handle.run_id(), m);
        handle.report().await.expect("the run");
        let rec = tick_of(&b, "minutely", "2024-05-01T10:01:00Z").await;
        assert_eq!((rec.state, rec.run), (TickState::Fired, Some(m)));
    });
}

#[test]
fn a_claimer_that_was_alive_is_not_fired_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
    rt().block_on(async {
        let (a, b, _sa, sb) = a_leads(dir.path(), &db).await;
        let wf = a.scheduled_workflows().remove(0).1;

        // 1. a started its run but stopped before noting it: the record
        // says `firing`, the run exists. b notes it fired and starts none.
        let x = claim(
            a.store().as_ref(),
            "minutely",
            "2024-05-01T10:01:00Z",
            "a",
            "2024-05-01T10:01:00.1Z",
        )
        .await;
        let mut req = RunRequest::new(RunTarget::Valid(wf.clone()));
        req.params = common::params(json!({"schedule.time": "2024-05-01T10:01:00Z"}));
        req.run_id = Some(x);
        a.run(req)
            .await
            .expect("a's run")
            .report()
            .await
            .expect("report");
        let r = sb.pass(t("2024-05-01T10:01:20Z")).await.expect("pass");
        assert_eq!(r.recovered.len(), 1, "{r:?}");
        assert_eq!(
            (r.recovered[0].state, r.recovered[0].started),
            (TickState::Fired, false)
        );
        assert_eq!(runs_of(b.store().as_ref(), "minutely").await, vec![x]);
        let rec = tick_of(&b, "minutely", "2024-05-01T10:01:00Z").await;
        assert_eq!((rec.state, rec.run), (TickState::Fired, Some(x)));

        // 2. a claims 10:02 and stalls for longer than the lease; b takes
        // the tick over and fires it; then a wakes and starts its run of
        // the claim: the store refuses a second run of that id.
        let y = claim(
            a.store().as_ref(),
            "minutely",
            "2024-05-01T10:02:00Z",
            "a",
            "2024-05-01T10:02:00.1Z",
        )
        .await;
        let r = sb.pass(t("2024-05-01T10:02:20Z")).await.expect("pass");
        assert_eq!(r.taken.len(), 1, "{r:?}");
        assert_eq!(
            r.recovered
                .iter()
                .map(|x| (x.run, x.state, x.started))
                .collect::<Vec<_>>(),
            vec![(y, TickState::Fired, true)]
        );
        sb.wait_for_runs().await;
        let mut req = RunRequest::new(RunTarget::Valid(wf));
        req.params = common::params(json!({"schedule.time": "2024-05-01T10:02:00Z"}));
        req.run_id = Some(y);
        let late = match a.run(req).await {
            Ok(h) => h.report().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let e = late.expect_err("a second run of the tick's id");
        assert!(e.to_string().contains("exists"), "{e}");
        let mut runs = runs_of(b.store().as_ref(), "minutely").await;
        runs.sort();
        let mut want = vec![x, y];
        want.sort();
        assert_eq!(runs, want, "one run per tick");
        assert_eq!(
            b.store()
                .get_run(y)
                .await
                .expect("get")
                .expect("run")
                .status,
            WorkflowStatus::Completed
        );
    });
}

#[test]
fn ticks_a_dead_leader_fired_after_its_last_mark_are_not_recorded_missed() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
    rt().block_on(async {
        let (a, b, _sa, sb) = a_leads(dir.path(), &db).await;
        // a fires 10:01 and 10:02 and is killed each time before it writes
        // the schedule's mark (still 10:00:00.5).
        for tick in ["2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z"] {
            let mut rec = TickRecord::new(
                "minutely",
                t(tick),
                TickState::Fired,
                TickCause::Schedule,
                "a",
                t(tick),
            );
            rec.run = Some(RunId::new());
            assert!(
                a.store()
                    .create_record(rec.to_record())
                    .await
                    .expect("fire")
            );
        }
        // b leads at 10:05: 10:05 fires; of the ticks after the mark, only
        // 10:03 and 10:04 were missed (the range used to start at 10:01,
        // collide with its record and not be written at all).
        let r = sb.pass(t("2024-05-01T10:05:00.5Z")).await.expect("pass");
        assert!(r.leader);
        assert_eq!(r.fired.len(), 1, "{r:?}");
        assert_eq!(r.fired[0].tick, t("2024-05-01T10:05:00Z"));
        assert_eq!(r.missed.len(), 1, "{r:?}");
        let m = r.missed[0].1;
        assert_eq!(
            (m.first, m.last, m.count),
            (t("2024-05-01T10:03:00Z"), t("2024-05-01T10:04:00Z"), 2)
        );
        sb.wait_for_runs().await;
        let rec = tick_of(&b, "minutely", "2024-05-01T10:03:00Z").await;
        assert_eq!(
            (rec.state, rec.by.as_str(), rec.last, rec.count),
            (TickState::Missed, "b", Some(t("2024-05-01T10:04:00Z")), 2)
        );
        let rec = tick_of(&b, "minutely", "2024-05-01T10:01:00Z").await;
        assert_eq!((rec.state, rec.by.as_str()), (TickState::Fired, "a"));
        let info = &b.schedules(t("2024-05-01T10:05:30Z")).await.expect("list")[0];
        assert_eq!(info.state.missed, 2);
    });
}
