//! Schedules driven with explicit times (`Scheduler::pass(now)`): two
//! engines on one SQLite file fire each tick once, also across a change of
//! leader and when both believe they lead; each catch-up policy after a
//! stop; pauses seen by another engine; triggers; backfills; and
//! `${schedule.time}` in the runs. No test waits for a clock.

mod common;

use chrono::{DateTime, Utc};
use common::rt;
use orch_engine::schedule::{
    BackfillOptions, Scheduler, SchedulerOptions, TickCause, TickRecord, TickState, tick_text,
};
use orch_engine::{EngineConfig, OrchestrationEngine, RunRequest, RunTarget};
use orch_model::{
    OrchestrationError, Record, RecordKind, RunId, Store, TaskStatus, WorkflowStatus,
};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// A workflow whose one step returns `${schedule.time}`.
fn ticker(name: &str, schedule: &str) -> String {
    format!(
        "name: {name}\nschedule: {schedule}\nsteps:\n  - name: at\n    module: core\n    action: set\n    parameters: {{value: \"${{schedule.time}}\"}}\n"
    )
}

/// An engine on the SQLite file `db`, its workflows in `home/workflows`.
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

/// The fired ticks of `wf`, oldest first: (tick, run, by).
async fn fired(e: &OrchestrationEngine, wf: &str) -> Vec<(DateTime<Utc>, RunId, String)> {
    let mut v: Vec<_> = e
        .schedule_ticks(Some(wf), 1000)
        .await
        .expect("ticks")
        .into_iter()
        .filter(|r| r.state == TickState::Fired)
        .map(|r| (r.tick, r.run.expect("a fired tick has a run"), r.by))
        .collect();
    v.reverse();
    v
}

async fn missed(e: &OrchestrationEngine, wf: &str) -> Vec<TickRecord> {
    e.schedule_ticks(Some(wf), 1000)
        .await
        .expect("ticks")
        .into_iter()
        .filter(|r| r.state == TickState::Missed)
        .collect()
}

/// A finished run's one result and its `schedule.time` parameter.
async fn result_of(store: &dyn Store, run: RunId) -> (Value, Value) {
    let rec = store.get_run(run).await.expect("get").expect("the run");
    assert_eq!(rec.status, WorkflowStatus::Completed, "run {run}");
    let task = &store.tasks(run).await.expect("tasks")[0];
    assert_eq!(task.status, TaskStatus::Completed);
    (
        task.result
            .as_ref()
            .map(|r| r.data.clone())
            .unwrap_or_default(),
        rec.params.get("schedule.time").cloned().unwrap_or_default(),
    )
}

/// Runs of `wf` in the store.
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
fn two_engines_on_one_sqlite_file_fire_each_tick_once_and_hand_over() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
    rt().block_on(async {
        let (a, b) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let (sa, sb) = (scheduler(&a, "a"), scheduler(&b, "b"));
        // First seen: no tick before now is due.
        let r = sa.pass(t("2024-05-01T10:00:00.5Z")).await.expect("pass");
        assert!(r.leader && r.fired.is_empty());
        for k in 1..=5 {
            let tick = t(&format!("2024-05-01T10:0{k}:00Z"));
            let ra = sa
                .pass(tick + chrono::Duration::milliseconds(100))
                .await
                .expect("a's pass");
            let rb = sb
                .pass(tick + chrono::Duration::milliseconds(200))
                .await
                .expect("b's pass");
            assert!(ra.leader, "a keeps the lease it renews");
            assert!(!rb.leader, "b waits");
            assert_eq!(
                ra.fired.iter().map(|f| f.tick).collect::<Vec<_>>(),
                vec![tick]
            );
            assert!(!ra.fired[0].late);
            assert_eq!(ra.next, Some(tick + chrono::Duration::minutes(1)));
        }
        // a stops (no more passes): its lease runs out 15 s after its last
        // renewal, and b takes over at the next tick.
        let rb = sb.pass(t("2024-05-01T10:06:00.2Z")).await.expect("pass");
        assert!(rb.leader);
        assert_eq!(
            rb.fired.iter().map(|f| f.tick).collect::<Vec<_>>(),
            vec![t("2024-05-01T10:06:00Z")]
        );
        sa.wait_for_runs().await;
        sb.wait_for_runs().await;
        let ticks = fired(&a, "minutely").await;
        assert_eq!(
            ticks.iter().map(|(t, _, _)| *t).collect::<Vec<_>>(),
            (1..=6)
                .map(|k| t(&format!("2024-05-01T10:0{k}:00Z")))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            ticks
                .iter()
                .map(|(_, _, by)| by.as_str())
                .collect::<Vec<_>>(),
            ["a", "a", "a", "a", "a", "b"]
        );
        // One run per tick, no more, each with its tick.
        let mut runs = runs_of(a.store().as_ref(), "minutely").await;
        runs.sort();
        let mut recorded: Vec<RunId> = ticks.iter().map(|(_, r, _)| *r).collect();
        recorded.sort();
        assert_eq!(runs, recorded);
        for (tick, run, _) in &ticks {
            let (result, param) = result_of(a.store().as_ref(), *run).await;
            assert_eq!(result, json!(tick_text(*tick)));
            assert_eq!(param, json!(tick_text(*tick)));
        }
        // The other engine lists the same.
        let infos = b.schedules(t("2024-05-01T10:06:30Z")).await.expect("list");
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].state.fired, 6);
        assert_eq!(infos[0].next, Some(t("2024-05-01T10:07:00Z")));
        assert_eq!(
            b.schedule_leader(t("2024-05-01T10:06:10Z"))
                .await
                .expect("leader")
                .map(|(h, _)| h),
            Some("b".to_owned())
        );
    });
}

#[test]
fn a_tick_fires_once_when_two_processes_both_believe_they_lead() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
    rt().block_on(async {
        let (a, b) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let (sa, sb) = (scheduler(&a, "a"), scheduler(&b, "b"));
        sa.pass(t("2024-05-01T10:00:00.5Z")).await.expect("first seen");
        let ra = sa.pass(t("2024-05-01T10:01:00.1Z")).await.expect("pass");
        assert_eq!(ra.fired.len(), 1);
        // b read the state before a wrote its new mark, and b's clock runs
        // 20 s ahead, so that a's lease has lapsed in b's eyes.
        let stale = json!({"mark": "2024-05-01T10:00:00.500Z", "fired": 0, "missed": 0, "failed": 0, "since_prune": 0});
        b.store()
            .put_record(Record {
                kind: RecordKind::Schedule,
                key: "minutely".into(),
                data: stale,
                updated_at: Utc::now(),
            })
            .await
            .expect("rewind");
        let rb = sb.pass(t("2024-05-01T10:01:20Z")).await.expect("pass");
        assert!(rb.leader, "b took the lapsed lease");
        assert!(rb.fired.is_empty(), "{:?}", rb.fired);
        assert_eq!(
            rb.taken,
            vec![("minutely".to_owned(), t("2024-05-01T10:01:00Z"))]
        );
        sa.wait_for_runs().await;
        assert_eq!(runs_of(a.store().as_ref(), "minutely").await.len(), 1);
    });
}

#[test]
fn after_a_stop_each_catch_up_policy_does_what_it_says() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    let h = dir.path();
    write(h, "skip", &ticker("skip", "{every: 10m, catch_up: skip}"));
    write(
        h,
        "latest",
        &ticker("latest", "{every: 10m, catch_up: latest}"),
    );
    write(
        h,
        "all3",
        &ticker("all3", "{every: 10m, catch_up: {policy: all, max: 3}}"),
    );
    write(
        h,
        "paris",
        &ticker(
            "paris",
            "{cron: \"0 */10 * * * *\", timezone: Europe/Paris, catch_up: {policy: all, max: 2}}",
        ),
    );
    rt().block_on(async {
        let e = engine(h, &db);
        let s = scheduler(&e, "only");
        s.pass(t("2024-05-01T10:00:00Z")).await.expect("first seen");
        // Stopped from 10:00 to 10:55: 10:10 .. 10:50 passed (5 ticks).
        let r = s.pass(t("2024-05-01T10:55:00Z")).await.expect("back");
        s.wait_for_runs().await;
        let ticks = |wf: &str| {
            let wf = wf.to_owned();
            let e = e.clone();
            async move {
                fired(&e, &wf)
                    .await
                    .into_iter()
                    .map(|(t, _, _)| t)
                    .collect::<Vec<_>>()
            }
        };
        assert!(ticks("skip").await.is_empty(), "10:50 is 5 minutes late");
        assert_eq!(ticks("latest").await, vec![t("2024-05-01T10:50:00Z")]);
        assert_eq!(
            ticks("all3").await,
            vec![
                t("2024-05-01T10:30:00Z"),
                t("2024-05-01T10:40:00Z"),
                t("2024-05-01T10:50:00Z")
            ]
        );
        assert_eq!(
            ticks("paris").await,
            vec![t("2024-05-01T10:40:00Z"), t("2024-05-01T10:50:00Z")]
        );
        assert!(r.fired.iter().all(|f| f.late), "every run was a catch-up");
        let range = |m: &[TickRecord]| {
            m.iter()
                .map(|r| (r.tick, r.last, r.count, r.cause))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            range(&missed(&e, "skip").await),
            vec![(
                t("2024-05-01T10:10:00Z"),
                Some(t("2024-05-01T10:50:00Z")),
                5,
                TickCause::CatchUp
            )]
        );
        assert_eq!(
            range(&missed(&e, "latest").await),
            vec![(
                t("2024-05-01T10:10:00Z"),
                Some(t("2024-05-01T10:40:00Z")),
                4,
                TickCause::CatchUp
            )]
        );
        assert_eq!(
            range(&missed(&e, "all3").await),
            vec![(
                t("2024-05-01T10:10:00Z"),
                Some(t("2024-05-01T10:20:00Z")),
                2,
                TickCause::CatchUp
            )]
        );
        // The catch-up runs had their own ticks.
        for (tick, run, _) in fired(&e, "all3").await {
            assert_eq!(
                result_of(e.store().as_ref(), run).await.0,
                json!(tick_text(tick))
            );
        }
        // Back in step: the next tick is on time under every policy.
        let r = s.pass(t("2024-05-01T11:00:00.3Z")).await.expect("on time");
        let mut on_time: Vec<&str> = r.fired.iter().map(|f| f.workflow.as_str()).collect();
        on_time.sort_unstable();
        assert_eq!(on_time, ["all3", "latest", "paris", "skip"]);
        assert!(r.fired.iter().all(|f| !f.late));
        s.wait_for_runs().await;
        let infos = e.schedules(t("2024-05-01T11:00:01Z")).await.expect("list");
        let skip = infos.iter().find(|i| i.workflow == "skip").expect("skip");
        assert_eq!((skip.state.fired, skip.state.missed), (1, 5));
        assert_eq!(skip.catch_up, "skip");
        let all3 = infos.iter().find(|i| i.workflow == "all3").expect("all3");
        assert_eq!(all3.catch_up, "all (max 3)");
        assert_eq!(all3.schedule, "every 10m");
    });
}

#[test]
fn a_pause_holds_in_every_process_and_paused_ticks_are_not_caught_up() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(
        dir.path(),
        "minutely",
        &ticker("minutely", "{every: 1m, catch_up: {policy: all, max: 10}}"),
    );
    rt().block_on(async {
        let (a, b) = (engine(dir.path(), &db), engine(dir.path(), &db));
        let sb = scheduler(&b, "b");
        sb.pass(t("2024-05-01T10:00:00.5Z")).await.expect("first seen");
        // Paused through a, fired by b.
        assert!(
            a.pause_schedule("minutely", t("2024-05-01T10:00:30Z"))
                .await
                .expect("pause")
        );
        assert!(
            !a.pause_schedule("minutely", t("2024-05-01T10:00:31Z"))
                .await
                .expect("again")
        );
        let infos = b.schedules(t("2024-05-01T10:00:40Z")).await.expect("list");
        assert!(infos[0].paused.is_some());
        assert_eq!(infos[0].next, None);
        for k in 1..=3 {
            let r = sb
                .pass(t(&format!("2024-05-01T10:0{k}:00.1Z")))
                .await
                .expect("pass");
            assert!(r.fired.is_empty(), "paused");
            assert_eq!(r.next, None);
        }
        assert!(b.resume_schedule("minutely").await.expect("resume"));
        assert!(!b.resume_schedule("minutely").await.expect("again"));
        // The three paused ticks are not caught up, though the policy is `all`.
        let r = sb.pass(t("2024-05-01T10:04:00.1Z")).await.expect("pass");
        assert_eq!(
            r.fired.iter().map(|f| (f.tick, f.late)).collect::<Vec<_>>(),
            vec![(t("2024-05-01T10:04:00Z"), false)]
        );
        sb.wait_for_runs().await;
        let m = missed(&a, "minutely").await;
        assert_eq!(m.len(), 3);
        assert!(
            m.iter()
                .all(|r| r.cause == TickCause::Paused && r.count == 1),
            "{m:?}"
        );
        let infos = a.schedules(t("2024-05-01T10:04:01Z")).await.expect("list");
        assert_eq!((infos[0].state.fired, infos[0].state.missed), (1, 3));
        // Pausing what has no schedule says so.
        let e = a
            .pause_schedule("nosuch", t("2024-05-01T10:05:00Z"))
            .await
            .expect_err("unknown");
        assert!(
            matches!(&e, OrchestrationError::NotFound { hint: Some(h), .. } if h.contains("scheduled workflows: minutely")),
            "{e}"
        );
    });
}

#[test]
fn a_trigger_runs_now_with_its_time_even_while_paused() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(
        dir.path(),
        "nightly",
        &ticker("nightly", "{cron: \"0 2 * * *\"}"),
    );
    write(
        dir.path(),
        "plain",
        "name: plain\nsteps:\n  - name: a\n    module: core\n    action: set\n    parameters: {value: \"${schedule.time}\"}\n",
    );
    rt().block_on(async {
        let e = engine(dir.path(), &db);
        let now = t("2024-05-01T12:34:56.789Z");
        e.pause_schedule("nightly", now).await.expect("pause");
        let report = e
            .trigger_schedule("nightly", now)
            .await
            .expect("trigger")
            .report()
            .await
            .expect("report");
        assert!(report.succeeded());
        assert_eq!(
            result_of(e.store().as_ref(), report.run_id).await.0,
            json!("2024-05-01T12:34:56Z")
        );
        let again = e
            .trigger_schedule("nightly", now)
            .await
            .expect_err("same second");
        assert!(
            matches!(again, OrchestrationError::InvalidState { .. }),
            "{again}"
        );
        let ticks = e.schedule_ticks(Some("nightly"), 10).await.expect("ticks");
        assert_eq!(ticks.len(), 1);
        assert_eq!(
            (ticks[0].state, ticks[0].cause),
            (TickState::Fired, TickCause::Trigger)
        );
        // Started another way, a scheduled workflow has the time it starts.
        let before = Utc::now() - chrono::Duration::seconds(1);
        let report = e
            .run(RunRequest::new(RunTarget::Name("nightly".into())))
            .await
            .expect("start")
            .report()
            .await
            .expect("report");
        let (result, param) = result_of(e.store().as_ref(), report.run_id).await;
        assert_eq!(result, param);
        let at = t(result.as_str().expect("a time"));
        assert!(at >= before && at <= Utc::now(), "{at}");
        // A workflow without a schedule cannot be triggered...
        let e2 = e
            .trigger_schedule("plain", now)
            .await
            .expect_err("no schedule");
        assert!(e2.to_string().contains("has no schedule"), "{e2}");
        // ...and run another way, `${schedule.time}` says why it has no value.
        let report = e
            .run(RunRequest::new(RunTarget::Name("plain".into())))
            .await
            .expect("start")
            .report()
            .await
            .expect("report");
        assert!(!report.succeeded());
        let err = report.steps[0]
            .result
            .as_ref()
            .and_then(|r| r.error_message.clone())
            .unwrap_or_default();
        assert!(err.contains("not started by a schedule"), "{err}");
        // A given `schedule.time` must be a time.
        let mut req = RunRequest::new(RunTarget::Name("plain".into()));
        req.params.insert("schedule.time".into(), json!("noon"));
        let bad = e.run(req).await.expect_err("not a time");
        assert!(bad.to_string().contains("RFC 3339"), "{bad}");
    });
}

#[test]
fn a_backfill_runs_each_past_tick_once_and_leaves_fired_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "hourly", &ticker("hourly", "{every: 1h}"));
    rt().block_on(async {
        let e = engine(dir.path(), &db);
        let s = scheduler(&e, "s");
        s.pass(t("2024-05-01T00:00:00.5Z")).await.expect("first seen");
        // Down until 03:30: `latest` runs 03:00 and misses 01:00 and 02:00.
        s.pass(t("2024-05-01T03:30:00Z")).await.expect("back");
        s.wait_for_runs().await;
        let now = t("2024-05-01T06:00:00Z");
        let opts = BackfillOptions { max: 100 };
        let plan = e
            .backfill_plan("hourly", t("2024-05-01T00:00:00Z"), t("2024-05-01T05:00:00Z"), opts, now)
            .await
            .expect("plan");
        assert_eq!(plan.len(), 6);
        assert_eq!(
            plan.iter().map(|p| p.runs()).collect::<Vec<_>>(),
            [true, true, true, false, true, true],
            "03:00 has its run; 01:00 (a missed range) runs"
        );
        for p in plan.iter().filter(|p| p.runs()) {
            let h = e
                .backfill_tick("hourly", p.tick, now)
                .await
                .expect("start")
                .expect("a run");
            let report = h.report().await.expect("report");
            assert_eq!(
                result_of(e.store().as_ref(), report.run_id).await.0,
                json!(tick_text(p.tick))
            );
        }
        let all = fired(&e, "hourly").await;
        assert_eq!(all.len(), 6, "00:00 .. 05:00, each once");
        assert_eq!(runs_of(e.store().as_ref(), "hourly").await.len(), 6);
        // Again: nothing runs twice.
        let plan = e
            .backfill_plan("hourly", t("2024-05-01T00:00:00Z"), t("2024-05-01T05:00:00Z"), opts, now)
            .await
            .expect("plan");
        assert!(plan.iter().all(|p| !p.runs()));
        assert!(
            e.backfill_tick("hourly", t("2024-05-01T02:00:00Z"), now)
                .await
                .expect("asked")
                .is_none()
        );
        // Bounded, past, in order.
        let too_many = e
            .backfill_plan(
                "hourly",
                t("2024-04-01T00:00:00Z"),
                t("2024-05-01T00:00:00Z"),
                BackfillOptions { max: 10 },
                now,
            )
            .await
            .expect_err("too many");
        assert!(
            matches!(&too_many, OrchestrationError::LimitExceeded { message } if message.contains("more than 10 ticks")),
            "{too_many}"
        );
        let future = e
            .backfill_plan("hourly", t("2024-05-01T00:00:00Z"), t("2024-05-02T00:00:00Z"), opts, now)
            .await
            .expect_err("future");
        assert!(future.to_string().contains("in the future"), "{future}");
        let reversed = e
            .backfill_plan("hourly", t("2024-05-01T05:00:00Z"), t("2024-05-01T00:00:00Z"), opts, now)
            .await
            .expect_err("reversed");
        assert!(reversed.to_string().contains("is after"), "{reversed}");
        let over = e
            .backfill_plan(
                "hourly",
                t("2024-05-01T00:00:00Z"),
                t("2024-05-01T05:00:00Z"),
                BackfillOptions { max: 5000 },
                now,
            )
            .await
            .expect_err("over the limit");
        assert!(over.to_string().contains("max_schedule_runs"), "{over}");
    });
}

#[test]
fn old_tick_records_are_pruned_to_the_history() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
    rt().block_on(async {
        let e = engine(dir.path(), &db);
        let s = Scheduler::new(
            e.clone(),
            SchedulerOptions {
                holder: "s".into(),
                history: 4,
                ..SchedulerOptions::default()
            },
        )
        .expect("scheduler");
        s.pass(t("2024-05-01T10:00:00.5Z"))
            .await
            .expect("first seen");
        for k in 1..=9 {
            s.pass(t(&format!("2024-05-01T10:0{k}:00.1Z")))
                .await
                .expect("pass");
        }
        s.wait_for_runs().await;
        let ticks = e
            .schedule_ticks(Some("minutely"), 100)
            .await
            .expect("ticks");
        assert!(ticks.len() <= 6, "{} records", ticks.len());
        assert_eq!(ticks[0].tick, t("2024-05-01T10:09:00Z"), "the newest stay");
        let infos = e.schedules(t("2024-05-01T10:09:30Z")).await.expect("list");
        assert_eq!(infos[0].state.fired, 9, "counts outlive the records");
    });
}

#[test]
fn without_schedules_a_pass_writes_nothing_and_does_not_lead() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("orch.db");
    write(
        dir.path(),
        "plain",
        "name: plain\nsteps:\n  - { name: a, module: core, action: noop }\n",
    );
    rt().block_on(async {
        let e = engine(dir.path(), &db);
        let s = scheduler(&e, "a");
        let r = s.pass(t("2024-05-01T10:00:00.5Z")).await.expect("pass");
        assert!(!r.leader, "{r:?}");
        let now = t("2024-05-01T10:00:01Z");
        assert_eq!(
            e.store().leader("scheduler", now).await.expect("leader"),
            None
        );
        // A schedule appears: the next pass leads.
        write(dir.path(), "minutely", &ticker("minutely", "{every: 1m}"));
        e.workflow_manager().reload().expect("reload");
        let r = s.pass(now).await.expect("pass");
        assert!(r.leader, "{r:?}");
    });
}
