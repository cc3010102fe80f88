//! What users ask of schedules: list them with their state, pause and
//! resume them (a record, so that every process sees it), trigger a run
//! now, and backfill a range of past ticks.

use super::records::{self, Pause, ScheduleState, TickCause, TickRecord, TickState, tick_text};
use super::{LEASE, fire, need_records, start_claimed};
use crate::{OrchestrationEngine, RunHandle};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use orch_model::{EntityKind, OrchestrationError, Record, RecordKind, Store, ValidWorkflow};
use serde::Serialize;
use std::sync::Arc;

/// A schedule as `orch schedule list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleInfo {
    /// The workflow.
    pub workflow: String,
    /// The schedule in words (`cron "0 2 * * *" (Europe/Paris)`, `every 10m`).
    pub schedule: String,
    /// The catch-up policy (`latest`, `all (max 10)`).
    pub catch_up: String,
    /// The pause, when paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// The next tick (none while paused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<DateTime<Utc>>,
    /// What the scheduler recorded: the last tick dealt with, counts.
    pub state: ScheduleState,
    /// The newest tick record (fired, missed, failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<TickRecord>,
    /// The newest tick that fired (by the scheduler, a trigger or a
    /// backfill), among the tick records kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<TickRecord>,
    /// The newest record of missed ticks (a range, or a claim taken over
    /// and not fired), among the tick records kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_missed: Option<TickRecord>,
}

/// What `orch backfill` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillOptions {
    /// Most ticks the range may hold (at most the engine's
    /// `Limits::max_schedule_runs`).
    pub max: u32,
}

/// One tick of a backfill's range.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillTick {
    /// The tick.
    pub tick: DateTime<Utc>,
    /// Its record when it has one: a fired tick is left out of the
    /// backfill; a missed or failed one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<TickRecord>,
}

impl BackfillTick {
    /// Whether the backfill runs it (no run was started for it before).
    pub fn runs(&self) -> bool {
        self.existing
            .as_ref()
            .is_none_or(|r| matches!(r.state, TickState::Missed | TickState::Failed))
    }
}

/// Who pauses: `USER@HOST`.
fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".to_owned());
    format!("{user}@{}", orch_tasks::worker::hostname())
}

impl OrchestrationEngine {
    /// A workflow of the catalog with a schedule.
    fn scheduled(&self, name: &str) -> Result<Arc<ValidWorkflow>, OrchestrationError> {
        let known = self.scheduled_workflows();
        if let Some((_, wf)) = known.iter().find(|(n, _)| n == name) {
            return Ok(wf.clone());
        }
        if self.workflow_manager().get_valid(name).is_some() {
            return Err(OrchestrationError::invalid_parameters(format!(
                "workflow `{name}` has no schedule; add `schedule:` to its definition (docs/schedules.md), or run it with `orch run {name}`"
            )));
        }
        let names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
        Err(OrchestrationError::NotFound {
            kind: EntityKind::Workflow,
            name: name.to_owned(),
            hint: Some(if names.is_empty() {
                format!(
                    "no workflow of the workflows directory ({}) has a schedule",
                    self.workflow_manager().workflows_dir().display()
                )
            } else {
                format!("scheduled workflows: {}", names.join(", "))
            }),
        })
    }

    /// Every scheduled workflow with its state at `now`, by name.
    ///
    /// # Errors
    /// `Unsupported` for a store without records; the store's.
    pub async fn schedules(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduleInfo>, OrchestrationError> {
        self.schedules_in(self.store().as_ref(), now).await
    }

    /// As [`OrchestrationEngine::schedules`], read from `store` (for
    /// instance a read-only opening of the engine's store, as `orch
    /// status` reads it).
    ///
    /// # Errors
    /// As [`OrchestrationEngine::schedules`].
    pub async fn schedules_in(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduleInfo>, OrchestrationError> {
        need_records(store)?;
        let states = records::states(store).await?;
        let pauses = records::pauses(store).await?;
        let ticks = records::ticks(store, None).await?;
        Ok(self
            .scheduled_workflows()
            .into_iter()
            .filter_map(|(name, wf)| {
                let s = wf.workflow().schedule.as_ref()?;
                let paused = pauses.get(&name).cloned();
                Some(ScheduleInfo {
                    schedule: s.describe(),
                    catch_up: s.catch_up.to_string(),
                    next: if paused.is_some() {
                        None
                    } else {
                        s.next_after(now)
                    },
                    paused,
                    state: states.get(&name).cloned().unwrap_or_default(),
                    last: ticks.iter().find(|t| t.workflow == name).cloned(),
                    last_fired: ticks
                        .iter()
                        .find(|t| t.workflow == name && t.state == TickState::Fired)
                        .cloned(),
                    last_missed: ticks
                        .iter()
                        .filter(|t| t.workflow == name && t.state == TickState::Missed)
                        .max_by_key(|t| t.last.unwrap_or(t.tick))
                        .cloned(),
                    workflow: name,
                })
            })
            .collect())
    }

    /// The newest `limit` tick records of a workflow (of every one when
    /// `None`), newest first.
    ///
    /// # Errors
    /// `NotFound` for a workflow without a schedule; the store's.
    pub async fn schedule_ticks(
        &self,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TickRecord>, OrchestrationError> {
        need_records(self.store().as_ref())?;
        if let Some(w) = workflow {
            self.scheduled(w)?;
        }
        let mut v = records::ticks(self.store().as_ref(), workflow).await?;
        v.truncate(limit);
        Ok(v)
    }

    /// The process that fires schedules now (the `scheduler` lease's
    /// holder) and until when it holds it; none when no scheduler runs.
    ///
    /// # Errors
    /// The store's.
    pub async fn schedule_leader(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, OrchestrationError> {
        Self::schedule_leader_in(self.store().as_ref(), now).await
    }

    /// As [`OrchestrationEngine::schedule_leader`], read from `store`.
    ///
    /// # Errors
    /// As [`OrchestrationEngine::schedule_leader`].
    pub async fn schedule_leader_in(
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, OrchestrationError> {
        if !store.capabilities().leaders {
            return Ok(None);
        }
        store.leader(LEASE, now).await
    }

    /// Pauses a schedule: no tick fires until it is resumed (ticks that
    /// pass meanwhile are recorded as missed, and not caught up). False
    /// when it was paused already.
    ///
    /// # Errors
    /// `NotFound` or `InvalidParameters` for a workflow without a schedule;
    /// the store's.
    pub async fn pause_schedule(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, OrchestrationError> {
        need_records(self.store().as_ref())?;
        self.scheduled(name)?;
        let pause = Pause { at: now, by: who() };
        self.store()
            .create_record(Record {
                kind: RecordKind::SchedulePause,
                key: name.to_owned(),
                data: serde_json::to_value(&pause).unwrap_or_default(),
                updated_at: now,
            })
            .await
    }

    /// Resumes a paused schedule: its next tick fires. False when it was
    /// not paused.
    ///
    /// # Errors
    /// As [`OrchestrationEngine::pause_schedule`].
    pub async fn resume_schedule(&self, name: &str) -> Result<bool, OrchestrationError> {
        need_records(self.store().as_ref())?;
        self.scheduled(name)?;
        self.store()
            .remove_record(RecordKind::SchedulePause, name)
            .await
    }

    /// Starts a run of a scheduled workflow now, with `${schedule.time}`
    /// set to `now` (whole seconds), recorded as a triggered tick (paused
    /// or not).
    ///
    /// # Errors
    /// As [`OrchestrationEngine::pause_schedule`]; `InvalidState` when a
    /// run was started for this very second already; what
    /// [`OrchestrationEngine::run`] refuses.
    pub async fn trigger_schedule(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<RunHandle, OrchestrationError> {
        need_records(self.store().as_ref())?;
        let wf = self.scheduled(name)?;
        let tick = now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now);
        match fire(self, wf, tick, TickCause::Trigger, &who(), now, false).await {
            Ok(Some((_, handle))) => Ok(handle),
            Ok(None) => Err(OrchestrationError::InvalidState {
                message: format!(
                    "a run of `{name}` for {} was started already; trigger again in a second",
                    tick_text(tick)
                ),
            }),
            Err((_, e)) => Err(OrchestrationError::WorkflowExecution { message: e }),
        }
    }

    /// The ticks of a scheduled workflow from `from` to `to` (both
    /// included), oldest first, each with its record if it has one.
    ///
    /// # Errors
    /// `InvalidParameters` for `from` after `to` or `to` in the future;
    /// `LimitExceeded` for more ticks than `opts.max`; as
    /// [`OrchestrationEngine::pause_schedule`].
    pub async fn backfill_plan(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        opts: BackfillOptions,
        now: DateTime<Utc>,
    ) -> Result<Vec<BackfillTick>, OrchestrationError> {
        need_records(self.store().as_ref())?;
        let wf = self.scheduled(name)?;
        if from > to {
            return Err(OrchestrationError::invalid_parameters(format!(
                "--from {} is after --to {}",
                tick_text(from),
                tick_text(to)
            )));
        }
        if to > now {
            return Err(OrchestrationError::invalid_parameters(format!(
                "--to {} is in the future; a backfill runs past ticks (the scheduler runs the others)",
                tick_text(to)
            )));
        }
        let limit = self.workflow_manager().limits().max_schedule_runs;
        if opts.max > limit {
            return Err(OrchestrationError::invalid_parameters(format!(
                "--max {} is over the limit of {limit} (limit max_schedule_runs)",
                opts.max
            )));
        }
        let Some(s) = wf.workflow().schedule.as_ref() else {
            return Ok(Vec::new());
        };
        let ticks: Vec<DateTime<Utc>> = s.ticks(from, to).take(opts.max as usize + 1).collect();
        if ticks.len() > opts.max as usize {
            return Err(OrchestrationError::LimitExceeded {
                message: format!(
                    "{} to {} holds more than {} ticks of `{name}` ({}); narrow the range or raise --max (up to {limit}, limit max_schedule_runs)",
                    tick_text(from),
                    tick_text(to),
                    opts.max,
                    s.describe()
                ),
            });
        }
        let recorded = records::ticks(self.store().as_ref(), Some(name)).await?;
        Ok(ticks
            .into_iter()
            .map(|tick| BackfillTick {
                tick,
                existing: recorded.iter().find(|r| r.tick == tick).cloned(),
            })
            .collect())
    }

    /// Starts the run of one past tick of a backfill (in this process),
    /// with `${schedule.time}` set to it. `Ok(None)` when the tick has a run
    /// already (started by the scheduler, a trigger or another backfill).
    /// A missed or failed tick's record is replaced; a missed range that
    /// started at it is recorded again from its next tick.
    ///
    /// # Errors
    /// As [`OrchestrationEngine::pause_schedule`]; the run's refusal.
    pub async fn backfill_tick(
        &self,
        name: &str,
        tick: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<RunHandle>, OrchestrationError> {
        need_records(self.store().as_ref())?;
        let wf = self.scheduled(name)?;
        let store = self.store().clone();
        let existing = records::tick(store.as_ref(), name, tick).await?;
        if let Some(old) = &existing {
            if !matches!(old.state, TickState::Missed | TickState::Failed) {
                return Ok(None);
            }
            // Of several backfills only the one that removes it goes on to
            // create the new record (which only one can).
            if !store
                .remove_record(RecordKind::ScheduleTick, &records::tick_key(name, tick))
                .await?
            {
                return Ok(None);
            }
        }
        let mut rec = TickRecord::new(
            name,
            tick,
            TickState::Firing,
            TickCause::Backfill,
            &who(),
            now,
        );
        // A tick taken over from a process that stopped and recorded missed
        // keeps the run id of its claim: should that process start it after
        // all, only one of the two runs can be created.
        rec.run = Some(
            existing
                .as_ref()
                .filter(|o| o.state == TickState::Missed)
                .and_then(|o| o.run)
                .unwrap_or_default(),
        );
        if !store.create_record(rec.to_record()).await? {
            return Ok(None);
        }
        if let (Some(old), Some(s)) = (&existing, wf.workflow().schedule.as_ref()) {
            if let (TickState::Missed, Some(last)) = (old.state, old.last) {
                if let Some(next) = s.next_after(tick).filter(|n| *n <= last) {
                    let mut rest = old.clone();
                    rest.tick = next;
                    rest.count = old.count.saturating_sub(1).max(1);
                    rest.last = (last != next).then_some(last);
                    let _ = store.create_record(rest.to_record()).await;
                }
            }
        }
        match start_claimed(self, wf, rec, false).await {
            Ok(Some((_, handle))) => Ok(Some(handle)),
            Ok(None) => Ok(None),
            Err((_, e)) => Err(OrchestrationError::WorkflowExecution { message: e }),
        }
    }
}
