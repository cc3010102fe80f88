//! A workflow's `schedule:`: when it starts by itself (a cron pattern read
//! in a time zone, or a plain interval) and what becomes of the ticks that
//! passed while no scheduler ran (the catch-up policy).
//!
//! Ticks are whole seconds in UTC. A cron pattern has 5 fields (minute,
//! hour, day of month, month, day of week) or 6 with seconds first, read
//! by `croner` in the schedule's IANA time zone (UTC by default), so that
//! `0 2 * * *` in `Europe/Paris` is 02:00 Paris time on both sides of a
//! daylight saving change. An interval (`every: 10m`) ticks at the
//! multiples of it since 1970-01-01T00:00:00Z, so that every process
//! computes the same ticks without keeping any state.
//!
//! Nothing here reads a clock: every function takes the time it is asked
//! about.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use schemars::JsonSchema;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// The run parameter that holds a scheduled run's tick (RFC 3339), which
/// `${schedule.time}` reads. Its dot keeps it apart from every declared
/// parameter (names have none), and it is saved with the run's parameters,
/// so a resumed or retried run keeps its tick.
pub const SCHEDULE_TIME_PARAM: &str = "schedule.time";

/// How many missed ticks `catch_up: all` starts when it names no `max`.
pub const DEFAULT_CATCH_UP_MAX: u32 = 10;

/// The longest `every` interval (a year and a day); longer periods are a
/// cron pattern's job.
pub const MAX_EVERY_SECS: u64 = 366 * 86_400;

/// How late the newest due tick may be found and still count as on time:
/// `skip` fires it, and only older ticks are missed.
pub const ON_TIME: Duration = Duration::from_secs(60);

/// A workflow's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// When it ticks.
    pub trigger: Trigger,
    /// What becomes of ticks missed while no scheduler ran.
    pub catch_up: CatchUp,
}

/// When a schedule ticks.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// A cron pattern in a time zone (boxed: croner's pattern is large).
    Cron(Box<CronSpec>),
    /// A fixed interval, aligned to the Unix epoch (whole seconds, at least one).
    Every(Duration),
}

/// A parsed cron pattern and the time zone it is read in.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSpec {
    pattern: String,
    zone: Tz,
    cron: Cron,
}

/// What becomes of the ticks that passed while no scheduler ran. Only the
/// newest due tick can be on time (found at most [`ON_TIME`] after it);
/// every older due tick was missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Missed ticks are recorded as missed and not run; the newest due tick
    /// runs only when it is on time.
    Skip,
    /// The newest due tick runs, however late; older ones are recorded as
    /// missed. The default.
    #[default]
    Latest,
    /// The newest `max` due ticks run, oldest first; older ones are recorded as missed.
    All {
        /// Most ticks run at once (at least 1).
        max: u32,
    },
}

impl CatchUp {
    /// The policy's name: `skip`, `latest` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Latest => "latest",
            Self::All { .. } => "all",
        }
    }

    /// The policy's names, for messages.
    pub const NAMES: &'static [&'static str] = &["skip", "latest", "all"];
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All { max } => write!(f, "all (max {max})"),
            other => f.write_str(other.as_str()),
        }
    }
}

impl CronSpec {
    /// Parses a pattern of 5 fields, or 6 with seconds first, read in `zone`
    /// (an IANA name such as `Europe/Paris`; UTC when `None`).
    ///
    /// # Errors
    /// What is wrong with the pattern or the zone, and how to write it.
    pub fn parse(pattern: &str, zone: Option<&str>) -> Result<Self, String> {
        let cron = parse_pattern(pattern)?;
        let zone = match zone {
            Some(z) => parse_zone(z)?,
            None => Tz::UTC,
        };
        let spec = Self {
            pattern: pattern.trim().to_owned(),
            zone,
            cron,
        };
        // A pattern that names no real day (`0 0 30 2 *`) never ticks.
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if probe.and_then(|t| spec.next_after(t)).is_none() {
            return Err(format!(
                "cron pattern `{}` never matches a real time (a day that does not exist, such as 30 February?)",
                spec.pattern
            ));
        }
        Ok(spec)
    }

    /// The pattern as written (trimmed).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The time zone it is read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn at_or_before(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        self.cron
            .find_previous_occurrence(&local, inclusive)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// Parses a cron pattern as schedules read it: 5 fields, or 6 with seconds
/// first; no year field.
///
/// # Errors
/// What is wrong, with the accepted shapes.
pub fn parse_pattern(pattern: &str) -> Result<Cron, String> {
    let p = pattern.trim();
    let fields = p.split_whitespace().count();
    let shape = "write 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\") \
                 or 6 with seconds first (e.g. \"*/10 * * * * *\")";
    if p.is_empty() {
        return Err(format!("the cron pattern is empty; {shape}"));
    }
    if !(5..=6).contains(&fields) && !p.starts_with('@') {
        return Err(format!(
            "cron pattern `{p}` has {fields} field{}; {shape}",
            if fields == 1 { "" } else { "s" }
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(p)
        .map_err(|e| format!("invalid cron pattern `{p}`: {}; {shape}", cron_error(&e)))
}

/// croner's message without its type-name prefixes.
fn cron_error(e: &croner::errors::CronError) -> String {
    let s = e.to_string();
    for prefix in [
        "Invalid pattern: ",
        "Component error: ",
        "Pattern contains illegal characters: ",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.trim_end_matches('.').to_owned();
        }
    }
    s.trim_end_matches('.').to_owned()
}

/// Parses an IANA time zone name (`Europe/Paris`, `UTC`).
///
/// # Errors
/// The unknown name, with the closest known ones.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    if let Ok(z) = name.parse::<Tz>() {
        return Ok(z);
    }
    let lower = name.to_ascii_lowercase();
    let mut close: Vec<(f64, &str)> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|z| {
            let n = z.name();
            (strsim::jaro_winkler(&lower, &n.to_ascii_lowercase()), n)
        })
        .filter(|(score, _)| *score > 0.85)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0));
    let hint = match close.first() {
        Some((_, n)) => format!("did you mean `{n}`?"),
        None => "use an IANA name such as `UTC`, `Europe/Paris` or `America/New_York`".to_owned(),
    };
    Err(format!("unknown time zone `{name}`; {hint}"))
}

/// Checks an `every` interval: whole seconds, from 1 s to [`MAX_EVERY_SECS`].
///
/// # Errors
/// What is wrong and what is accepted.
pub fn check_every(d: Duration) -> Result<(), String> {
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err(format!(
            "`every` must be a whole number of seconds, at least 1 s (got {})",
            crate::duration::format_duration(d)
        ));
    }
    if d.as_secs() > MAX_EVERY_SECS {
        return Err(format!(
            "`every` is at most 366d (got {}); use a cron pattern for longer periods",
            crate::duration::format_duration(d)
        ));
    }
    Ok(())
}

fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

fn at(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

impl Schedule {
    /// A cron schedule with the default catch-up policy.
    ///
    /// # Errors
    /// As [`CronSpec::parse`].
    pub fn cron(pattern: &str, zone: Option<&str>) -> Result<Self, String> {
        Ok(Self {
            trigger: Trigger::Cron(Box::new(CronSpec::parse(pattern, zone)?)),
            catch_up: CatchUp::default(),
        })
    }

    /// An interval schedule with the default catch-up policy.
    ///
    /// # Errors
    /// As [`check_every`].
    pub fn every(d: Duration) -> Result<Self, String> {
        check_every(d)?;
        Ok(Self {
            trigger: Trigger::Every(d),
            catch_up: CatchUp::default(),
        })
    }

    /// With this catch-up policy, builder style.
    #[must_use]
    pub fn with_catch_up(mut self, c: CatchUp) -> Self {
        self.catch_up = c;
        self
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.trigger {
            Trigger::Cron(c) => c.next_after(t),
            Trigger::Every(d) => {
                let p = i64::try_from(d.as_secs()).ok()?;
                at(secs(t).div_euclid(p).checked_add(1)?.checked_mul(p)?)
            }
        }
    }

    /// The newest tick at or before `t`.
    pub fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.trigger {
            // Ticks are whole seconds: `t`'s fraction does not matter.
            Trigger::Cron(c) => c.at_or_before(t, true),
            Trigger::Every(d) => {
                let p = i64::try_from(d.as_secs()).ok()?;
                at(secs(t).div_euclid(p).checked_mul(p)?)
            }
        }
    }

    /// The newest tick strictly before `t`.
    pub fn before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let whole = t.timestamp_subsec_nanos() == 0;
        match &self.trigger {
            Trigger::Cron(c) => c.at_or_before(t, !whole),
            Trigger::Every(d) => {
                let p = i64::try_from(d.as_secs()).ok()?;
                let s = secs(t);
                let k = if whole && s.rem_euclid(p) == 0 {
                    s.div_euclid(p).checked_sub(1)?
                } else {
                    s.div_euclid(p)
                };
                at(k.checked_mul(p)?)
            }
        }
    }

    /// The ticks `t` with `from <= t <= to`, oldest first (lazily: stop
    /// taking when you have enough).
    pub fn ticks(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let first = match self.at_or_before(from) {
            Some(t) if t == from => Some(t),
            _ => self.next_after(from),
        };
        std::iter::successors(first, move |t| self.next_after(*t)).take_while(move |t| *t <= to)
    }

    /// What the schedule is, in words: `cron "0 2 * * *" (Europe/Paris)`,
    /// `every 10m`.
    pub fn describe(&self) -> String {
        match &self.trigger {
            Trigger::Cron(c) => format!("cron \"{}\" ({})", c.pattern, c.zone.name()),
            Trigger::Every(d) => format!("every {}", crate::duration::format_duration(*d)),
        }
    }
}

/// The definition form, as the decoder reads it back:
/// `{cron, timezone?, catch_up}` or `{every, catch_up}`.
impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match &self.trigger {
            Trigger::Cron(c) => {
                m.serialize_entry("cron", &c.pattern)?;
                if c.zone != Tz::UTC {
                    m.serialize_entry("timezone", c.zone.name())?;
                }
            }
            Trigger::Every(d) => m.serialize_entry("every", &d.as_secs())?,
        }
        match self.catch_up {
            CatchUp::All { max } => m.serialize_entry(
                "catch_up",
                &serde_json::json!({"policy": "all", "max": max}),
            )?,
            other => m.serialize_entry("catch_up", other.as_str())?,
        }
        m.end()
    }
}

/// `schedule:` in the JSON Schema of the format (`orch schema`); its
/// fields are held equal to the decoder's (`SCHEDULE_FIELDS`) by a test.
#[derive(JsonSchema)]
#[schemars(
    rename = "Schedule",
    deny_unknown_fields,
    extend("oneOf" = [{"required": ["cron"]}, {"required": ["every"]}])
)]
#[allow(dead_code)]
pub(crate) struct ScheduleFile {
    /// A cron pattern: 5 fields (minute hour day-of-month month day-of-week, e.g. "0 2 * * *")
    /// or 6 with seconds first (e.g. "*/10 * * * * *"); names (MON, JAN), ranges, steps,
    /// L, W and #. Exactly one of `cron` and `every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "cron_pattern")]
    cron: Option<String>,
    /// An interval in whole seconds, at least 1 s: a number of seconds or text like
    /// "30s", "10m", "1h"; ticks at its multiples since 1970-01-01T00:00:00Z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "every")]
    every: Option<Value>,
    /// The IANA time zone `cron` is read in, e.g. "Europe/Paris" (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "zone")]
    timezone: Option<String>,
    /// What becomes of ticks missed while no scheduler ran: `skip`, `latest` (the
    /// default: the newest missed tick runs) or `all` (up to `max`, default 10), or
    /// `{policy: all, max: N}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "catch_up")]
    catch_up: Option<Value>,
}

fn cron_pattern(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "minLength": 1})
}

fn every(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_EVERY_SECS},
            {"type": "string", "pattern": r"^\s*([0-9]+(d|h|m|s))+\s*$"},
        ]
    })
}

fn zone(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "minLength": 1})
}

fn catch_up(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            {"enum": CatchUp::NAMES},
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["policy"],
                "properties": {
                    "policy": {"enum": CatchUp::NAMES},
                    "max": {"type": "integer", "minimum": 1},
                },
            },
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn intervals_tick_at_multiples_since_the_epoch() {
        let s = Schedule::every(Duration::from_secs(600)).expect("every");
        assert_eq!(
            s.next_after(t("2024-05-01T10:03:00Z")),
            Some(t("2024-05-01T10:10:00Z"))
        );
        assert_eq!(
            s.next_after(t("2024-05-01T10:10:00Z")),
            Some(t("2024-05-01T10:20:00Z"))
        );
        assert_eq!(
            s.at_or_before(t("2024-05-01T10:10:00Z")),
            Some(t("2024-05-01T10:10:00Z"))
        );
        assert_eq!(
            s.before(t("2024-05-01T10:10:00Z")),
            Some(t("2024-05-01T10:00:00Z"))
        );
        let ticks: Vec<_> = s
            .ticks(t("2024-05-01T10:00:00Z"), t("2024-05-01T10:30:00Z"))
            .collect();
        assert_eq!(
            ticks,
            [
                t("2024-05-01T10:00:00Z"),
                t("2024-05-01T10:10:00Z"),
                t("2024-05-01T10:20:00Z"),
                t("2024-05-01T10:30:00Z")
            ]
        );
    }

    #[test]
    fn cron_with_seconds_and_a_time_zone() {
        let s = Schedule::cron("*/15 * * * * *", None).expect("cron");
        assert_eq!(
            s.next_after(t("2024-05-01T10:00:01Z")),
            Some(t("2024-05-01T10:00:15Z"))
        );
        // 02:30 in Paris is 00:30 UTC in summer (UTC+2) and 01:30 in winter (UTC+1).
        let p = Schedule::cron("30 2 * * *", Some("Europe/Paris")).expect("paris");
        assert_eq!(
            p.next_after(t("2024-07-01T00:00:00Z")),
            Some(t("2024-07-01T00:30:00Z"))
        );
        assert_eq!(
            p.next_after(t("2024-01-10T00:00:00Z")),
            Some(t("2024-01-10T01:30:00Z"))
        );
        assert_eq!(
            p.at_or_before(t("2024-01-10T01:30:00Z")),
            Some(t("2024-01-10T01:30:00Z"))
        );
        assert_eq!(
            p.before(t("2024-01-10T01:30:00Z")),
            Some(t("2024-01-09T01:30:00Z"))
        );
        assert_eq!(p.describe(), "cron \"30 2 * * *\" (Europe/Paris)");
    }

    #[test]
    fn bad_patterns_zones_and_intervals_say_what_to_write() {
        let e = Schedule::cron("0 2 * *", None).expect_err("4 fields");
        assert!(e.contains("has 4 fields") && e.contains("5 fields"), "{e}");
        let e = Schedule::cron("0 25 * * *", None).expect_err("hour 25");
        assert!(e.contains("invalid cron pattern `0 25 * * *`"), "{e}");
        let e = Schedule::cron("0 0 30 2 *", None).expect_err("30 February");
        assert!(e.contains("never matches"), "{e}");
        let e = Schedule::cron("0 2 * * *", Some("Europe/Pariss")).expect_err("zone");
        assert!(e.contains("did you mean `Europe/Paris`"), "{e}");
        let e = Schedule::every(Duration::from_millis(1500)).expect_err("fraction");
        assert!(e.contains("whole number of seconds"), "{e}");
        assert!(Schedule::every(Duration::ZERO).is_err());
        assert!(Schedule::every(Duration::from_secs(MAX_EVERY_SECS + 1)).is_err());
    }

    #[test]
    fn serializes_to_the_definition_form() {
        let s = Schedule::cron("0 2 * * *", Some("Europe/Paris"))
            .expect("cron")
            .with_catch_up(CatchUp::All { max: 3 });
        assert_eq!(
            serde_json::to_value(&s).expect("json"),
            serde_json::json!({"cron": "0 2 * * *", "timezone": "Europe/Paris",
                "catch_up": {"policy": "all", "max": 3}})
        );
        let e = Schedule::every(Duration::from_secs(600)).expect("every");
        assert_eq!(
            serde_json::to_value(&e).expect("json"),
            serde_json::json!({"every": 600, "catch_up": "latest"})
        );
    }

    #[test]
    fn a_daily_tick_fires_once_on_both_daylight_saving_days() {
        let p = Schedule::cron("0 30 2 * * *", Some("Europe/Paris")).expect("paris");
        // 02:30 does not exist on 31 March 2024: it fires at 03:00 local.
        let spring: Vec<_> = p
            .ticks(t("2024-03-30T00:00:00Z"), t("2024-04-01T12:00:00Z"))
            .collect();
        assert_eq!(
            spring,
            [
                t("2024-03-30T01:30:00Z"),
                t("2024-03-31T01:00:00Z"),
                t("2024-04-01T00:30:00Z")
            ]
        );
        // 02:30 happens twice on 27 October 2024: it fires the first time.
        let fall: Vec<_> = p
            .ticks(t("2024-10-26T00:00:00Z"), t("2024-10-28T12:00:00Z"))
            .collect();
        assert_eq!(
            fall,
            [
                t("2024-10-26T00:30:00Z"),
                t("2024-10-27T00:30:00Z"),
                t("2024-10-28T01:30:00Z")
            ]
        );
    }
}
