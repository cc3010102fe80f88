//! What schedules keep in the store, as records (`RecordStore`): each
//! tick dealt with (`schedule_tick`, keyed `WORKFLOW@TIME`, claimed with
//! `create_record` so that one process fires it), each schedule's state
//! (`schedule`: the last tick dealt with and counts, written by the
//! scheduler that leads) and each pause (`schedule_pause`).

use chrono::{DateTime, SecondsFormat, Utc};
use orch_model::{OrchestrationError, Record, RecordKind, RunId, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// A tick as records and `${schedule.time}` write it: RFC 3339 in UTC,
/// whole seconds (`2024-05-01T02:00:00Z`).
pub fn tick_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The key of a tick's record.
pub fn tick_key(workflow: &str, tick: DateTime<Utc>) -> String {
    format!("{workflow}@{}", tick_text(tick))
}

/// What became of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickState {
    /// Claimed; its run is being started (a process that stopped here left
    /// the tick without a run).
    Firing,
    /// Its run started.
    Fired,
    /// Its run could not start (the error says why).
    Failed,
    /// It passed while no scheduler ran (or while paused) and the catch-up
    /// policy did not run it; a record of this state covers a range.
    Missed,
}

impl TickState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Fired => "fired",
            Self::Failed => "failed",
            Self::Missed => "missed",
        }
    }
}

/// Who asked for a tick's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickCause {
    /// The scheduler, on time.
    Schedule,
    /// The scheduler, catching up a missed tick.
    CatchUp,
    /// `orch schedule trigger`.
    Trigger,
    /// `orch backfill`.
    Backfill,
    /// Paused while it passed.
    Paused,
}

impl TickCause {
    /// The cause's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::CatchUp => "catch_up",
            Self::Trigger => "trigger",
            Self::Backfill => "backfill",
            Self::Paused => "paused",
        }
    }
}

/// One tick (or, when missed, a range of ticks from `tick` to `last`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickRecord {
    /// The workflow.
    pub workflow: String,
    /// The tick (the first of a missed range).
    pub tick: DateTime<Utc>,
    /// What became of it.
    pub state: TickState,
    /// Who asked.
    pub cause: TickCause,
    /// Its run, once claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    /// The process that dealt with it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why its run did not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A missed range's last tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<DateTime<Utc>>,
    /// How many ticks a missed range covers (at least this many when `more`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u64,
    /// Whether a missed range had more ticks than were counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

fn one() -> u64 {
    1
}

impl TickRecord {
    /// A record of one tick.
    pub fn new(
        workflow: &str,
        tick: DateTime<Utc>,
        state: TickState,
        cause: TickCause,
        by: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            workflow: workflow.to_owned(),
            tick,
            state,
            cause,
            run: None,
            by: by.to_owned(),
            at,
            error: None,
            last: None,
            count: 1,
            more: false,
        }
    }

    /// As a store record.
    pub fn to_record(&self) -> Record {
        Record {
            kind: RecordKind::ScheduleTick,
            key: tick_key(&self.workflow, self.tick),
            data: serde_json::to_value(self).unwrap_or(Value::Null),
            updated_at: self.at,
        }
    }
}

/// A schedule's state, written by the scheduler that leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ScheduleState {
    /// The newest tick dealt with (fired or missed): ticks after it are due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<DateTime<Utc>>,
    /// Ticks fired so far.
    #[serde(default)]
    pub fired: u64,
    /// Ticks missed so far (while nothing ran, or paused).
    #[serde(default)]
    pub missed: u64,
    /// Ticks whose run could not start.
    #[serde(default)]
    pub failed: u64,
    /// The newest tick fired and its run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<(DateTime<Utc>, RunId)>,
    /// Tick records written since the old ones were last pruned.
    #[serde(default)]
    pub since_prune: u32,
}

/// A pause of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// When it was paused.
    pub at: DateTime<Utc>,
    /// Who paused it (user and host).
    pub by: String,
}

fn store_err(what: &str, e: impl std::fmt::Display) -> OrchestrationError {
    OrchestrationError::Store {
        message: format!("schedules: {what}: {e}"),
        retryable: false,
    }
}

/// Every schedule's state, by workflow.
///
/// # Errors
/// The store's.
pub async fn states(
    store: &dyn Store,
) -> Result<HashMap<String, ScheduleState>, OrchestrationError> {
    Ok(store
        .records(RecordKind::Schedule)
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_value(r.data).ok().map(|s| (r.key, s)))
        .collect())
}

/// Writes a schedule's state.
///
/// # Errors
/// The store's.
pub async fn put_state(
    store: &dyn Store,
    workflow: &str,
    state: &ScheduleState,
    now: DateTime<Utc>,
) -> Result<(), OrchestrationError> {
    store
        .put_record(Record {
            kind: RecordKind::Schedule,
            key: workflow.to_owned(),
            data: serde_json::to_value(state).map_err(|e| store_err("state", e))?,
            updated_at: now,
        })
        .await
}

/// The paused schedules, by workflow.
///
/// # Errors
/// The store's.
pub async fn pauses(store: &dyn Store) -> Result<HashMap<String, Pause>, OrchestrationError> {
    Ok(store
        .records(RecordKind::SchedulePause)
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_value(r.data).ok().map(|p| (r.key, p)))
        .collect())
}

/// Every tick record of a workflow (of all when `None`), newest tick first.
///
/// # Errors
/// The store's.
pub async fn ticks(
    store: &dyn Store,
    workflow: Option<&str>,
) -> Result<Vec<TickRecord>, OrchestrationError> {
    let mut v: Vec<TickRecord> = store
        .records(RecordKind::ScheduleTick)
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_value::<TickRecord>(r.data).ok())
        .filter(|t| workflow.is_none_or(|w| t.workflow == w))
        .collect();
    v.sort_by_key(|t| std::cmp::Reverse(t.tick));
    Ok(v)
}

/// A tick's record, if there is one.
///
/// # Errors
/// The store's.
pub async fn tick(
    store: &dyn Store,
    workflow: &str,
    at: DateTime<Utc>,
) -> Result<Option<TickRecord>, OrchestrationError> {
    let key = tick_key(workflow, at);
    Ok(store
        .records(RecordKind::ScheduleTick)
        .await?
        .into_iter()
        .find(|r| r.key == key)
        .and_then(|r| serde_json::from_value(r.data).ok()))
}

/// Removes a workflow's oldest tick records beyond the newest `keep`.
///
/// # Errors
/// The store's.
pub async fn prune(
    store: &dyn Store,
    workflow: &str,
    keep: usize,
) -> Result<usize, OrchestrationError> {
    let all = ticks(store, Some(workflow)).await?;
    let mut removed = 0;
    for t in all.iter().skip(keep) {
        if store
            .remove_record(RecordKind::ScheduleTick, &tick_key(workflow, t.tick))
            .await?
        {
            removed += 1;
        }
    }
    Ok(removed)
}
