//! Ticks left `firing`: a process claimed the tick (its record exists, with
//! the run's id) and stopped before it started the run or noted it. The
//! scheduler that leads takes such a tick over once its record is older
//! than the lease ([`SchedulerOptions::lease`](super::SchedulerOptions)):
//! a run with the record's id in the store means the run started (the
//! record is noted `fired`); otherwise the tick fires now, with that same
//! run id, when the schedule's catch-up policy still wants it, or is
//! recorded `missed` with the reason.
//!
//! Never twice: the run id is the tick's, fixed when the tick was claimed,
//! and every store refuses a second run of one id (`create_run` answers
//! `AlreadyExists`), so of the claimer (slow, not dead) and the leader
//! that took over, at most one starts a run. A claimer also reads its
//! record again just before it starts the run and gives up when another
//! process took it over. A tick recorded `missed` here may still get its
//! run from a claimer that was alive after all (stalled for longer than
//! the lease between that read and the start): that claimer then notes it
//! `fired`, and the leader, which reads the run again after writing
//! `missed`, does too.

use super::records::{ScheduleState, TickCause, TickRecord, TickState, tick_text};
use super::{PassReport, Scheduler, start_claimed};
use chrono::{DateTime, Utc};
use orch_model::definition::schedule::{CatchUp, ON_TIME, Schedule};
use orch_model::{OrchestrationError, RunId, ValidWorkflow};
use std::sync::Arc;

/// What became of a tick taken over from a process that stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The workflow.
    pub workflow: String,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// Its run (the one the claimer would have started).
    pub run: RunId,
    /// `Fired` (its run had started, or starts now) or `Missed` (or
    /// `Failed`: it was fired and its run could not start).
    pub state: TickState,
    /// Whether this pass started its run.
    pub started: bool,
    /// Why it was not fired (a missed tick).
    pub reason: Option<String>,
}

/// Whether a tick still counts as wanted at `now` by the schedule's
/// catch-up policy: it is a tick of the schedule, and `skip` wants it when
/// it is the newest tick and on time, `latest` when it is the newest,
/// `all` when fewer than `max` ticks came after it. `Err` says why not.
pub fn still_wanted(s: &Schedule, tick: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    if s.at_or_before(tick) != Some(tick) {
        return Err(format!(
            "{} is no tick of the schedule any more ({})",
            tick_text(tick),
            s.describe()
        ));
    }
    let cap = match s.catch_up {
        CatchUp::All { max } => max as usize,
        CatchUp::Skip | CatchUp::Latest => 1,
    };
    let newer = s
        .next_after(tick)
        .map_or(0, |n| s.ticks(n, now).take(cap).count());
    match s.catch_up {
        CatchUp::Skip | CatchUp::Latest if newer > 0 => Err(format!(
            "catch_up {} runs only the newest tick, and a newer one is due",
            s.catch_up
        )),
        CatchUp::Skip
            if now
                .signed_duration_since(tick)
                .to_std()
                .is_ok_and(|late| late > ON_TIME) =>
        {
            Err(format!(
                "catch_up skip runs a tick only on time (within {} s)",
                ON_TIME.as_secs()
            ))
        }
        CatchUp::All { max } if newer >= cap => Err(format!(
            "catch_up {} runs the newest {max} ticks, and {max} newer ones are due",
            s.catch_up
        )),
        _ => Ok(()),
    }
}

impl Scheduler {
    /// Takes over the stale `firing` ticks of one workflow (`wf`: its
    /// definition when it still has a schedule). Returns whether `state`
    /// changed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn recover(
        &self,
        name: &str,
        wf: Option<&Arc<ValidWorkflow>>,
        state: &mut ScheduleState,
        stale: Vec<TickRecord>,
        now: DateTime<Utc>,
        paused: bool,
        report: &mut PassReport,
    ) -> Result<bool, OrchestrationError> {
        let store = self.engine.store().clone();
        let mut changed = false;
        for old in stale {
            let run = old.run.unwrap_or_default();
            let claimed = format!(
                "claimed by {} at {}, and its run had not started {} s later",
                old.by,
                tick_text(old.at),
                now.signed_duration_since(old.at).num_seconds()
            );
            let mut rec = old.clone();
            rec.run = Some(run);
            if store.get_run(run).await?.is_some() {
                // The run started; its process stopped before noting it.
                rec.state = TickState::Fired;
                store.put_record(rec.to_record()).await?;
                note_fired(state, old.tick, run);
                changed = true;
                report.recovered.push(Recovered {
                    workflow: name.to_owned(),
                    tick: old.tick,
                    run,
                    state: TickState::Fired,
                    started: false,
                    reason: None,
                });
                continue;
            }
            let wanted = match (wf, old.cause) {
                (None, _) => Err("the workflow has no schedule any more".to_owned()),
                (Some(_), _) if paused => Err("the schedule is paused".to_owned()),
                (Some(_), TickCause::Trigger | TickCause::Backfill | TickCause::Paused) => {
                    Err(format!(
                        "a {} is not fired again by the scheduler (trigger the workflow, or run orch backfill, which runs it)",
                        old.cause.as_str()
                    ))
                }
                (Some(wf), TickCause::Schedule | TickCause::CatchUp) => {
                    match wf.workflow().schedule.as_ref() {
                        Some(s) => still_wanted(s, old.tick, now),
                        None => Err("the workflow has no schedule any more".to_owned()),
                    }
                }
            };
            rec.by = self.opts.holder.clone();
            rec.at = now;
            match (wanted, wf) {
                (Ok(()), Some(wf)) => {
                    rec.cause = TickCause::CatchUp;
                    // Taken over: the claimer, if alive, sees it is no longer its own.
                    store.put_record(rec.to_record()).await?;
                    let (state_now, started) = match start_claimed(
                        &self.engine,
                        wf.clone(),
                        rec,
                        self.opts.detach,
                    )
                    .await
                    {
                        Ok(Some((_, handle))) => {
                            self.drive(handle).await;
                            (TickState::Fired, true)
                        }
                        Ok(None) => (TickState::Fired, false),
                        Err((_, e)) => {
                            tracing::warn!(workflow = name, tick = %tick_text(old.tick), error = %e, "a scheduled run taken over did not start");
                            (TickState::Failed, false)
                        }
                    };
                    if state_now == TickState::Fired {
                        note_fired(state, old.tick, run);
                    } else {
                        state.failed += 1;
                    }
                    changed = true;
                    report.recovered.push(Recovered {
                        workflow: name.to_owned(),
                        tick: old.tick,
                        run,
                        state: state_now,
                        started,
                        reason: None,
                    });
                }
                (wanted, _) => {
                    let why = match wanted {
                        Err(why) => why,
                        Ok(()) => "the workflow has no schedule any more".to_owned(),
                    };
                    let reason = format!("{claimed}; not fired: {why}");
                    rec.state = TickState::Missed;
                    rec.error = Some(reason.clone());
                    store.put_record(rec.to_record()).await?;
                    // A claimer alive after all may have started it meanwhile.
                    let state_now = if store.get_run(run).await?.is_some() {
                        rec.state = TickState::Fired;
                        rec.error = None;
                        store.put_record(rec.to_record()).await?;
                        note_fired(state, old.tick, run);
                        TickState::Fired
                    } else {
                        tracing::warn!(workflow = name, tick = %tick_text(old.tick), reason = %reason, "a claimed tick was recorded missed");
                        state.missed += 1;
                        TickState::Missed
                    };
                    changed = true;
                    report.recovered.push(Recovered {
                        workflow: name.to_owned(),
                        tick: old.tick,
                        run,
                        state: state_now,
                        started: false,
                        reason: (state_now == TickState::Missed).then_some(reason),
                    });
                }
            }
        }
        Ok(changed)
    }
}

fn note_fired(state: &mut ScheduleState, tick: DateTime<Utc>, run: RunId) {
    state.fired += 1;
    if state.last_fired.is_none_or(|(t, _)| t < tick) {
        state.last_fired = Some((tick, run));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn every_10m(c: CatchUp) -> Schedule {
        Schedule::every(Duration::from_secs(600))
            .expect("every")
            .with_catch_up(c)
    }

    #[test]
    fn each_policy_still_wants_what_it_would_fire() {
        let tick = t("2024-05-01T10:00:00Z");
        // 20 s later: every policy wants it.
        for c in [CatchUp::Skip, CatchUp::Latest, CatchUp::All { max: 2 }] {
            assert_eq!(
                still_wanted(&every_10m(c), tick, t("2024-05-01T10:00:20Z")),
                Ok(()),
                "{c}"
            );
        }
        // 5 minutes later: not on time for skip; latest and all want it.
        let late = t("2024-05-01T10:05:00Z");
        assert!(still_wanted(&every_10m(CatchUp::Skip), tick, late).is_err());
        assert_eq!(
            still_wanted(&every_10m(CatchUp::Latest), tick, late),
            Ok(())
        );
        // After a newer tick: latest does not; all with room does.
        let after = t("2024-05-01T10:10:30Z");
        let e = still_wanted(&every_10m(CatchUp::Latest), tick, after).expect_err("newer");
        assert!(e.contains("newer"), "{e}");
        assert_eq!(
            still_wanted(&every_10m(CatchUp::All { max: 2 }), tick, after),
            Ok(())
        );
        assert!(
            still_wanted(
                &every_10m(CatchUp::All { max: 2 }),
                tick,
                t("2024-05-01T10:20:30Z")
            )
            .is_err()
        );
        // Not a tick of the schedule (it changed).
        let e = still_wanted(&every_10m(CatchUp::Latest), t("2024-05-01T10:05:00Z"), late)
            .expect_err("no tick");
        assert!(e.contains("no tick"), "{e}");
    }

    /// A claimer that stalled past the lease reads its record again before
    /// it starts the run: taken over by the leader, it starts nothing.
    #[test]
    fn a_claimer_taken_over_starts_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let wfs = dir.path().join("workflows");
        std::fs::create_dir_all(&wfs).expect("dir");
        std::fs::write(
            wfs.join("minutely.yaml"),
            "name: minutely\nschedule: {every: 1m}\nsteps:\n  - name: at\n    module: core\n    action: set\n    parameters: {value: 1}\n",
        )
        .expect("write");
        let config = crate::EngineConfig {
            store_url: Some(format!("sqlite://{}", dir.path().join("o.db").display())),
            ..crate::EngineConfig::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let e = crate::OrchestrationEngine::builder()
                .config(config)
                .home(dir.path())
                .work_dir(dir.path())
                .build()
                .expect("engine");
            let wf = e.scheduled_workflows().remove(0).1;
            let tick = t("2024-05-01T10:01:00Z");
            let run = RunId::new();
            let mut mine = TickRecord::new(
                "minutely",
                tick,
                TickState::Firing,
                TickCause::Schedule,
                "a",
                t("2024-05-01T10:01:00.1Z"),
            );
            mine.run = Some(run);
            let store = e.store().clone();
            assert!(store.create_record(mine.to_record()).await.expect("claim"));
            let mut theirs = mine.clone();
            theirs.by = "b".into();
            theirs.cause = TickCause::CatchUp;
            store
                .put_record(theirs.to_record())
                .await
                .expect("take over");
            let got = start_claimed(&e, wf.clone(), mine.clone(), false).await;
            assert!(matches!(got, Ok(None)), "{got:?}");
            assert!(store.get_run(run).await.expect("get").is_none());
            // Its own claim, untouched, it starts.
            store.put_record(mine.to_record()).await.expect("back");
            let got = start_claimed(&e, wf, mine, false)
                .await
                .expect("started")
                .expect("its run");
            assert_eq!(got.0, run);
            got.1.report().await.expect("report");
            assert!(store.get_run(run).await.expect("get").is_some());
        });
    }
}
