//! What one pass of the scheduler does with one schedule: which due ticks
//! fire and which were missed, from the last tick dealt with and the time
//! now (a pure function: tests give both).

use chrono::{DateTime, Utc};
use orch_model::definition::schedule::{CatchUp, ON_TIME, Schedule, Trigger};

/// Most missed ticks counted one by one (a cron schedule's; an interval's
/// are counted by arithmetic): past it a range says "at least".
pub const COUNT_CAP: u64 = 10_000;

/// A range of missed ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    /// The oldest.
    pub first: DateTime<Utc>,
    /// The newest.
    pub last: DateTime<Utc>,
    /// How many (at least this many when `more`).
    pub count: u64,
    /// Whether there were more than [`COUNT_CAP`] (then `count` is the cap).
    pub more: bool,
}

/// What a pass does with one schedule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Ticks to fire, oldest first, each with whether it is late (a
    /// catch-up of a missed tick rather than a tick on time).
    pub fire: Vec<(DateTime<Utc>, bool)>,
    /// Due ticks that do not fire.
    pub missed: Option<Missed>,
    /// The newest due tick (the new mark), when any tick was due.
    pub mark: Option<DateTime<Utc>>,
}

impl Plan {
    /// Whether nothing was due.
    pub fn is_empty(&self) -> bool {
        self.mark.is_none()
    }
}

/// The ticks after `mark` up to `now`, shared out by the schedule's
/// catch-up policy: only the newest due tick can be on time (found at most
/// [`ON_TIME`] after it); `skip` fires it only then, `latest` fires it
/// however late, `all` fires the newest `max` (oldest first). The others
/// are missed. A `paused` schedule fires nothing: every due tick is missed.
pub fn plan(s: &Schedule, mark: DateTime<Utc>, now: DateTime<Utc>, paused: bool) -> Plan {
    let Some(newest) = s.at_or_before(now).filter(|t| *t > mark) else {
        return Plan::default();
    };
    let on_time = now
        .signed_duration_since(newest)
        .to_std()
        .is_ok_and(|late| late <= ON_TIME);
    let keep = if paused {
        0
    } else {
        match s.catch_up {
            CatchUp::Skip => usize::from(on_time),
            CatchUp::Latest => 1,
            CatchUp::All { max } => max as usize,
        }
    };
    let mut fire = Vec::with_capacity(keep.min(64));
    let mut t = Some(newest);
    while fire.len() < keep {
        match t {
            Some(tick) if tick > mark => {
                fire.push((tick, !(tick == newest && on_time)));
                t = s.before(tick);
            }
            _ => break,
        }
    }
    fire.reverse();
    let last_missed = match fire.first() {
        Some((oldest, _)) => s.before(*oldest).filter(|t| *t > mark),
        None => Some(newest),
    };
    let missed = last_missed.and_then(|last| {
        let first = s.next_after(mark)?;
        let (count, more) = count(s, first, last);
        Some(Missed {
            first,
            last,
            count,
            more,
        })
    });
    Plan {
        fire,
        missed,
        mark: Some(newest),
    }
}

/// `m` without its ticks up to `done`, the newest tick a scheduler has
/// already recorded (fired, claimed or missed) although the schedule's
/// mark is older: a leader that stopped between recording a tick and
/// writing its mark leaves that. `None` when no tick of `m` is left.
pub fn after_recorded(s: &Schedule, m: Missed, done: DateTime<Utc>) -> Option<Missed> {
    if done < m.first {
        return Some(m);
    }
    let first = s.next_after(done).filter(|f| *f <= m.last)?;
    let (count, more) = count(s, first, m.last);
    Some(Missed {
        first,
        last: m.last,
        count,
        more,
    })
}

/// How many ticks from `first` to `last`, both ticks (capped for cron).
fn count(s: &Schedule, first: DateTime<Utc>, last: DateTime<Utc>) -> (u64, bool) {
    match &s.trigger {
        Trigger::Every(d) => {
            let span = last.timestamp().saturating_sub(first.timestamp());
            let p = i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX);
            (u64::try_from(span / p).unwrap_or(0) + 1, false)
        }
        Trigger::Cron(_) => {
            let n = s.ticks(first, last).take(COUNT_CAP as usize + 1).count() as u64;
            (n.min(COUNT_CAP), n > COUNT_CAP)
        }
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
    fn a_tick_on_time_fires_under_every_policy() {
        for c in [CatchUp::Skip, CatchUp::Latest, CatchUp::All { max: 5 }] {
            let p = plan(
                &every_10m(c),
                t("2024-05-01T10:00:00Z"),
                t("2024-05-01T10:10:00.2Z"),
                false,
            );
            assert_eq!(p.fire, vec![(t("2024-05-01T10:10:00Z"), false)], "{c}");
            assert_eq!(p.missed, None);
            assert_eq!(p.mark, Some(t("2024-05-01T10:10:00Z")));
        }
        // Nothing new since the mark.
        assert!(
            plan(
                &every_10m(CatchUp::Latest),
                t("2024-05-01T10:10:00Z"),
                t("2024-05-01T10:19:59Z"),
                false
            )
            .is_empty()
        );
    }

    #[test]
    fn after_a_stop_each_policy_catches_up_as_it_says() {
        // Stopped after 10:00; back at 10:55: 10:10 .. 10:50 are due (5 ticks).
        let (mark, now) = (t("2024-05-01T10:00:00Z"), t("2024-05-01T10:55:00Z"));
        let skip = plan(&every_10m(CatchUp::Skip), mark, now, false);
        assert!(skip.fire.is_empty(), "10:50 is 5 minutes late: not on time");
        assert_eq!(
            skip.missed,
            Some(Missed {
                first: t("2024-05-01T10:10:00Z"),
                last: t("2024-05-01T10:50:00Z"),
                count: 5,
                more: false
            })
        );
        assert_eq!(skip.mark, Some(t("2024-05-01T10:50:00Z")));

        let latest = plan(&every_10m(CatchUp::Latest), mark, now, false);
        assert_eq!(latest.fire, vec![(t("2024-05-01T10:50:00Z"), true)]);
        assert_eq!(latest.missed.map(|m| m.count), Some(4));
        assert_eq!(
            latest.missed.map(|m| m.last),
            Some(t("2024-05-01T10:40:00Z"))
        );

        let all3 = plan(&every_10m(CatchUp::All { max: 3 }), mark, now, false);
        assert_eq!(
            all3.fire,
            vec![
                (t("2024-05-01T10:30:00Z"), true),
                (t("2024-05-01T10:40:00Z"), true),
                (t("2024-05-01T10:50:00Z"), true)
            ]
        );
        assert_eq!(
            all3.missed.map(|m| (m.first, m.last, m.count)),
            Some((t("2024-05-01T10:10:00Z"), t("2024-05-01T10:20:00Z"), 2))
        );

        let all10 = plan(&every_10m(CatchUp::All { max: 10 }), mark, now, false);
        assert_eq!(all10.fire.len(), 5);
        assert_eq!(all10.missed, None);

        // Back just in time for 11:00: skip runs it and misses the rest.
        let skip = plan(
            &every_10m(CatchUp::Skip),
            mark,
            t("2024-05-01T11:00:30Z"),
            false,
        );
        assert_eq!(skip.fire, vec![(t("2024-05-01T11:00:00Z"), false)]);
        assert_eq!(skip.missed.map(|m| m.count), Some(5));
    }

    #[test]
    fn a_missed_range_starts_after_the_ticks_already_recorded() {
        let s = every_10m(CatchUp::Latest);
        let m = Missed {
            first: t("2024-05-01T10:10:00Z"),
            last: t("2024-05-01T10:40:00Z"),
            count: 4,
            more: false,
        };
        // Nothing recorded inside the range: as it was.
        assert_eq!(after_recorded(&s, m, t("2024-05-01T10:00:00Z")), Some(m));
        // 10:10 and 10:20 recorded by a leader that did not write its mark.
        assert_eq!(
            after_recorded(&s, m, t("2024-05-01T10:20:00Z")),
            Some(Missed {
                first: t("2024-05-01T10:30:00Z"),
                last: t("2024-05-01T10:40:00Z"),
                count: 2,
                more: false
            })
        );
        // All of it recorded: nothing is missed.
        assert_eq!(after_recorded(&s, m, t("2024-05-01T10:40:00Z")), None);
    }

    #[test]
    fn paused_schedules_fire_nothing() {
        let p = plan(
            &every_10m(CatchUp::All { max: 10 }),
            t("2024-05-01T10:00:00Z"),
            t("2024-05-01T10:20:00Z"),
            true,
        );
        assert!(p.fire.is_empty());
        assert_eq!(p.missed.map(|m| m.count), Some(2));
        assert_eq!(p.mark, Some(t("2024-05-01T10:20:00Z")));
    }

    #[test]
    fn long_stops_of_second_ticks_are_counted_within_a_bound() {
        let s = Schedule::cron("* * * * * *", None)
            .expect("every second")
            .with_catch_up(CatchUp::Latest);
        let p = plan(
            &s,
            t("2024-05-01T00:00:00Z"),
            t("2024-05-02T00:00:00Z"),
            false,
        );
        assert_eq!(p.fire, vec![(t("2024-05-02T00:00:00Z"), false)]);
        let m = p.missed.expect("missed");
        assert_eq!((m.count, m.more), (COUNT_CAP, true));
        assert_eq!(m.first, t("2024-05-01T00:00:01Z"));
        let e = Schedule::every(Duration::from_secs(1)).expect("every second");
        let p = plan(
            &e,
            t("2024-05-01T00:00:00Z"),
            t("2024-05-02T00:00:00Z"),
            false,
        );
        assert_eq!(p.missed.map(|m| (m.count, m.more)), Some((86_399, false)));
    }
}
