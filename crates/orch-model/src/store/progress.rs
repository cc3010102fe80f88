//! The two progress events a run's driver (the local journal, or a worker)
//! appends with its commits, and their one reader: `tasks_started` (which
//! steps started, with their attempt numbers) and `tasks_finished` (which
//! steps ended, how, and with which attempt).
//!
//! A turn of a large run names tens of thousands of steps, so the list is
//! one string, not a JSON array per step (which cost about 200 bytes of
//! memory a step while it was built, and kept an in-memory store's events
//! ten times larger): `{"tasks": "4:1 5:1"}` for starts,
//! `{"tasks": "4:completed:1 5:failed:2"}` for ends. [`Progress::read`]
//! also reads the arrays earlier versions wrote (`[[4, 1], [5, 1]]`,
//! `[[4, "completed", 1]]`).

use super::types::StoredEvent;
use crate::enums::TaskStatus;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::fmt::Write as _;
use std::str::FromStr;

/// The kind of the event that says which steps started.
pub const TASKS_STARTED: &str = "tasks_started";
/// The kind of the event that says which steps ended.
pub const TASKS_FINISHED: &str = "tasks_finished";

/// What a progress event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// These steps started: (index, attempt).
    Started(Vec<(u32, u32)>),
    /// These steps ended: (index, final state, attempt; 0 for a step that
    /// never started).
    Finished(Vec<(u32, TaskStatus, u32)>),
}

impl Progress {
    /// The event saying that `tasks` (index, attempt) started at `at`.
    pub fn started(
        at: DateTime<Utc>,
        tasks: impl ExactSizeIterator<Item = (u32, u32)>,
    ) -> StoredEvent {
        let n = tasks.len();
        let mut text = String::with_capacity(n * 10);
        let mut only = None;
        for (i, a) in tasks {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{i}:{a}");
            only = Some(i);
        }
        event(TASKS_STARTED, at, (n == 1).then_some(only).flatten(), text)
    }

    /// The event saying that `tasks` (index, final state, attempt) ended at `at`.
    pub fn finished(
        at: DateTime<Utc>,
        tasks: impl ExactSizeIterator<Item = (u32, TaskStatus, u32)>,
    ) -> StoredEvent {
        let n = tasks.len();
        let mut text = String::with_capacity(n * 18);
        let mut only = None;
        for (i, s, a) in tasks {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{i}:{}:{a}", s.as_str());
            only = Some(i);
        }
        event(TASKS_FINISHED, at, (n == 1).then_some(only).flatten(), text)
    }

    /// What `e` says, if it is a progress event; entries that cannot be read
    /// are left out.
    pub fn read(e: &StoredEvent) -> Option<Self> {
        let started = match e.kind.as_str() {
            TASKS_STARTED => true,
            TASKS_FINISHED => false,
            _ => return None,
        };
        let tasks = e.data.get("tasks")?;
        Some(match tasks {
            Value::String(text) => {
                let entries = text.split(' ').filter(|s| !s.is_empty());
                if started {
                    Self::Started(
                        entries
                            .filter_map(|t| {
                                let (i, a) = t.split_once(':')?;
                                Some((i.parse().ok()?, a.parse().ok()?))
                            })
                            .collect(),
                    )
                } else {
                    Self::Finished(
                        entries
                            .filter_map(|t| {
                                let mut p = t.split(':');
                                let i = p.next()?.parse().ok()?;
                                let s = TaskStatus::from_str(p.next()?).ok()?;
                                let a = p.next()?.parse().ok()?;
                                Some((i, s, a))
                            })
                            .collect(),
                    )
                }
            }
            // Earlier versions: one JSON array per step.
            Value::Array(list) => {
                let num = |v: Option<&Value>| {
                    v.and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                };
                if started {
                    Self::Started(
                        list.iter()
                            .filter_map(|t| Some((num(t.get(0))?, num(t.get(1))?)))
                            .collect(),
                    )
                } else {
                    Self::Finished(
                        list.iter()
                            .filter_map(|t| {
                                let s = TaskStatus::from_str(t.get(1)?.as_str()?).ok()?;
                                Some((num(t.get(0))?, s, num(t.get(2)).unwrap_or(0)))
                            })
                            .collect(),
                    )
                }
            }
            _ => return None,
        })
    }
}

fn event(kind: &str, at: DateTime<Utc>, task: Option<u32>, text: String) -> StoredEvent {
    let mut data = serde_json::Map::with_capacity(1);
    data.insert("tasks".to_owned(), Value::String(text));
    StoredEvent {
        seq: 0,
        at,
        kind: kind.to_owned(),
        task,
        data: Value::Object(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_events_read_back_and_earlier_arrays_still_read() {
        let at = Utc::now();
        let s = Progress::started(at, [(4, 1), (5, 2)].into_iter());
        assert_eq!(s.kind, TASKS_STARTED);
        assert_eq!(s.data, json!({"tasks": "4:1 5:2"}));
        assert_eq!(s.task, None);
        assert_eq!(
            Progress::read(&s),
            Some(Progress::Started(vec![(4, 1), (5, 2)]))
        );
        let f = Progress::finished(
            at,
            [(4, TaskStatus::Completed, 1), (7, TaskStatus::Skipped, 0)].into_iter(),
        );
        assert_eq!(f.data, json!({"tasks": "4:completed:1 7:skipped:0"}));
        assert_eq!(
            Progress::read(&f),
            Some(Progress::Finished(vec![
                (4, TaskStatus::Completed, 1),
                (7, TaskStatus::Skipped, 0)
            ]))
        );
        let one = Progress::finished(at, [(9, TaskStatus::Failed, 3)].into_iter());
        assert_eq!(one.task, Some(9));
        // Written by earlier versions.
        let mut old = s.clone();
        old.data = json!({"tasks": [[4, 1], [5, 2]]});
        assert_eq!(
            Progress::read(&old),
            Some(Progress::Started(vec![(4, 1), (5, 2)]))
        );
        let mut old = f.clone();
        old.data = json!({"tasks": [[4, "completed", 1], [7, "skipped", 0]]});
        assert_eq!(
            Progress::read(&old),
            Some(Progress::Finished(vec![
                (4, TaskStatus::Completed, 1),
                (7, TaskStatus::Skipped, 0)
            ]))
        );
        // Other events, and entries that do not read, are left out.
        let mut other = s.clone();
        other.kind = "run_started".into();
        assert_eq!(Progress::read(&other), None);
        let mut bad = s;
        bad.data = json!({"tasks": "4:1 x:2 6"});
        assert_eq!(Progress::read(&bad), Some(Progress::Started(vec![(4, 1)])));
    }
}
