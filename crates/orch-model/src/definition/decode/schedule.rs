//! The workflow's `schedule:`: `cron` (with `timezone`) or `every`, and `catch_up`, each problem at its line and column.

use super::{Decoder, Path};
use crate::definition::schedule::{
    CatchUp, CronSpec, DEFAULT_CATCH_UP_MAX, Schedule, Trigger, check_every, parse_pattern,
    parse_zone,
};
use crate::diagnostic::DiagnosticKind as K;
use crate::node::{Node, NodeValue, Pos};

/// The fields of `schedule:`.
pub(crate) const SCHEDULE_FIELDS: &[&str] = &["cron", "every", "timezone", "catch_up"];

/// The fields of `catch_up:` written as a map.
pub(crate) const CATCH_UP_FIELDS: &[&str] = &["policy", "max"];

impl Decoder<'_> {
    /// `schedule:`; `None` (with the problems reported) when it is not usable.
    pub(super) fn schedule(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<Schedule> {
        let pos = node.pos;
        self.map.top.insert("schedule".into(), pos);
        let mut f = self.fields(node, path, SCHEDULE_FIELDS, "a schedule")?;
        let cron = f.take("cron");
        let every = f.take("every");
        let zone = f.take("timezone");
        let catch_up = f.take("catch_up");
        let mut ok = true;
        let zone = match zone {
            Some((_, n)) => {
                let zpos = n.pos;
                let p = Path::Field(path, "timezone");
                match self.string(n, &p) {
                    Some(z) => match parse_zone(&z) {
                        Ok(_) => Some((z, zpos)),
                        Err(e) => {
                            self.err(K::InvalidValue, &p, zpos, e);
                            ok = false;
                            None
                        }
                    },
                    None => {
                        ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        let trigger = match (cron, every) {
            (Some(_), Some((key, _))) => {
                self.err(
                    K::InvalidValue,
                    &Path::Field(path, "every"),
                    key.pos,
                    "`cron` and `every` cannot both be set; a schedule has one of them",
                );
                None
            }
            (Some((_, n)), None) => {
                let npos = n.pos;
                let p = Path::Field(path, "cron");
                let pattern = self.string(n, &p)?;
                match parse_pattern(&pattern) {
                    Err(e) => {
                        self.err(K::InvalidValue, &p, npos, e);
                        None
                    }
                    // The zone's own problem is reported already.
                    Ok(_) if !ok => None,
                    Ok(_) => {
                        match CronSpec::parse(&pattern, zone.as_ref().map(|(z, _)| z.as_str())) {
                            Ok(c) => Some(Trigger::Cron(Box::new(c))),
                            Err(e) => {
                                self.err(K::InvalidValue, &p, npos, e);
                                None
                            }
                        }
                    }
                }
            }
            (None, Some((_, n))) => {
                let npos = n.pos;
                let p = Path::Field(path, "every");
                if let Some((_, zpos)) = &zone {
                    self.err(
                        K::InvalidValue,
                        &Path::Field(path, "timezone"),
                        *zpos,
                        "`timezone` applies to `cron` only; an `every` interval counts from 1970-01-01T00:00:00Z",
                    );
                }
                match self.duration(n, &p) {
                    Some(Some(d)) => match check_every(d) {
                        Ok(()) => Some(Trigger::Every(d)),
                        Err(e) => {
                            self.err(K::Duration, &p, npos, e);
                            None
                        }
                    },
                    Some(None) => {
                        self.err(
                            K::Duration,
                            &p,
                            npos,
                            "`every` needs an interval such as 30s, 10m or 1h",
                        );
                        None
                    }
                    None => None,
                }
            }
            (None, None) => {
                self.err(
                    K::MissingField,
                    path,
                    pos,
                    "a schedule needs `cron` (a pattern such as \"0 2 * * *\") or `every` (an interval such as 10m)",
                );
                None
            }
        };
        let catch_up = match catch_up {
            Some((_, n)) => self.catch_up(n, &Path::Field(path, "catch_up"))?,
            None => CatchUp::default(),
        };
        Some(Schedule {
            trigger: trigger?,
            catch_up,
        })
    }

    /// `catch_up: skip | latest | all` or `{policy: ..., max: N}` (`max` with `all` only).
    fn catch_up(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<CatchUp> {
        let pos = node.pos;
        if let NodeValue::Map(_) = node.value {
            let mut f = self.fields(node, path, CATCH_UP_FIELDS, "a catch-up policy")?;
            let policy = match f.take("policy") {
                Some((_, n)) => {
                    let ppos = n.pos;
                    let p = Path::Field(path, "policy");
                    let name = self.string(n, &p)?;
                    Some(self.policy(&name, &p, ppos)?)
                }
                None => {
                    self.err(
                        K::MissingField,
                        path,
                        pos,
                        "missing field `policy`: skip, latest or all",
                    );
                    None
                }
            };
            let max = match f.take("max") {
                Some((_, n)) => {
                    let mpos = n.pos;
                    let p = Path::Field(path, "max");
                    let limit = self.limits.max_schedule_runs;
                    let m = self.count(n, &p, limit, "max_schedule_runs")?;
                    if m == 0 {
                        self.err(
                            K::InvalidValue,
                            &p,
                            mpos,
                            "`max` is at least 1; use `policy: skip` to run no missed tick",
                        );
                        return None;
                    }
                    if !matches!(policy, Some(CatchUp::All { .. }) | None) {
                        self.err(
                            K::InvalidValue,
                            &p,
                            mpos,
                            "`max` goes with `policy: all` only",
                        );
                        return None;
                    }
                    Some(m)
                }
                None => None,
            };
            return match (policy?, max) {
                (CatchUp::All { .. }, Some(max)) => Some(CatchUp::All { max }),
                (p, _) => Some(p),
            };
        }
        let name = self.string(node, path)?;
        self.policy(&name, path, pos)
    }

    fn policy(&mut self, name: &str, path: &Path<'_>, pos: Pos) -> Option<CatchUp> {
        match name {
            "skip" => Some(CatchUp::Skip),
            "latest" => Some(CatchUp::Latest),
            "all" => Some(CatchUp::All {
                max: DEFAULT_CATCH_UP_MAX.min(self.limits.max_schedule_runs.max(1)),
            }),
            other => {
                self.err(
                    K::InvalidValue,
                    path,
                    pos,
                    format!(
                        "unknown catch-up policy `{other}`; expected skip, latest or all (or {{policy: all, max: N}})"
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CATCH_UP_FIELDS, SCHEDULE_FIELDS};
    use crate::definition::schedule::{CatchUp, Trigger};
    use crate::definition::{load, workflow_schema};
    use crate::limits::Limits;
    use crate::node::Format;
    use std::time::Duration;

    fn yaml(schedule: &str) -> String {
        format!(
            "name: nightly\nsteps:\n  - name: a\n    module: core\n    action: noop\n{schedule}"
        )
    }

    fn problems(schedule: &str) -> Vec<String> {
        match load(
            &yaml(schedule),
            Format::Yaml,
            &Limits::default(),
            Some("w.yaml"),
        ) {
            Ok(_) => Vec::new(),
            Err(d) => d.lines().collect(),
        }
    }

    #[test]
    fn cron_interval_and_catch_up_are_read() {
        let wf = load(
            &yaml("schedule:\n  cron: \"*/10 * * * * *\"\n  timezone: Europe/Paris\n  catch_up: {policy: all, max: 3}\n"),
            Format::Yaml,
            &Limits::default(),
            None,
        )
        .expect("valid");
        let s = wf.workflow().schedule.clone().expect("a schedule");
        assert_eq!(s.catch_up, CatchUp::All { max: 3 });
        match &s.trigger {
            Trigger::Cron(c) => {
                assert_eq!(c.pattern(), "*/10 * * * * *");
                assert_eq!(c.zone().name(), "Europe/Paris");
            }
            Trigger::Every(_) => panic!("a cron schedule"),
        }
        let wf = load(
            &yaml("schedule: {every: 10m, catch_up: skip}\n"),
            Format::Yaml,
            &Limits::default(),
            None,
        )
        .expect("valid");
        let s = wf.workflow().schedule.clone().expect("a schedule");
        assert_eq!(s.trigger, Trigger::Every(Duration::from_secs(600)));
        assert_eq!(s.catch_up, CatchUp::Skip);
        // `all` alone has the default bound; no catch_up is `latest`.
        let wf = load(
            &yaml("schedule: {every: 1h, catch_up: all}\n"),
            Format::Yaml,
            &Limits::default(),
            None,
        )
        .expect("valid");
        assert_eq!(
            wf.workflow().schedule.as_ref().map(|s| s.catch_up),
            Some(CatchUp::All { max: 10 })
        );
        let wf = load(
            &yaml("schedule: {cron: \"0 2 * * *\"}\n"),
            Format::Yaml,
            &Limits::default(),
            None,
        )
        .expect("valid");
        assert_eq!(
            wf.workflow().schedule.as_ref().map(|s| s.catch_up),
            Some(CatchUp::Latest)
        );
    }

    #[test]
    fn the_saved_form_reads_back_the_same() {
        for s in [
            "schedule:\n  cron: \"0 2 * * MON-FRI\"\n  timezone: America/New_York\n  catch_up: {policy: all, max: 7}\n",
            "schedule: {every: 90s, catch_up: skip}\n",
        ] {
            let wf = load(&yaml(s), Format::Yaml, &Limits::default(), None).expect("valid");
            let json = wf.workflow().to_json_pretty();
            let back = load(&json, Format::Json, &Limits::default(), None).expect("read back");
            assert_eq!(back.workflow().schedule, wf.workflow().schedule, "{json}");
        }
    }

    #[test]
    fn bad_schedules_are_reported_at_their_line_and_column() {
        let p = problems("schedule:\n  cron: \"0 25 * * *\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("w.yaml:7:9: schedule.cron: invalid cron pattern `0 25 * * *`"),
            "{p:?}"
        );
        let p = problems("schedule:\n  cron: \"0 2 * * *\"\n  timezone: Mars/Olympus\n");
        assert!(
            p[0].starts_with("w.yaml:8:13: schedule.timezone: unknown time zone `Mars/Olympus`"),
            "{p:?}"
        );
        let p = problems("schedule:\n  every: 10 minutes\n");
        assert!(
            p[0].starts_with("w.yaml:7:10: schedule.every: `10 minutes` is not a duration"),
            "{p:?}"
        );
        let p = problems("schedule:\n  every: 0s\n");
        assert!(p[0].contains("at least 1 s"), "{p:?}");
        let p = problems("schedule:\n  every: 10m\n  catch_up: sometimes\n");
        assert!(
            p[0].starts_with("w.yaml:8:13: schedule.catch_up: unknown catch-up policy `sometimes`"),
            "{p:?}"
        );
        let p = problems("schedule:\n  every: 10m\n  catch_up: {policy: latest, max: 3}\n");
        assert!(p[0].contains("`max` goes with `policy: all` only"), "{p:?}");
        let p = problems("schedule:\n  every: 10m\n  catch_up: {policy: all, max: 5000}\n");
        assert!(p[0].contains("limit max_schedule_runs"), "{p:?}");
        let p = problems("schedule:\n  cron: \"* * * * *\"\n  every: 10m\n");
        assert!(
            p[0].starts_with("w.yaml:8:3: schedule.every: `cron` and `every` cannot both be set"),
            "{p:?}"
        );
        let p = problems("schedule:\n  timezone: UTC\n");
        assert!(
            p[0].starts_with("w.yaml:7:3: schedule: a schedule needs `cron`"),
            "{p:?}"
        );
        let p = problems("schedule:\n  every: 10m\n  timezone: UTC\n");
        assert!(p[0].contains("`timezone` applies to `cron` only"), "{p:?}");
        let p = problems("schedule:\n  evry: 10m\n");
        assert!(
            p.iter().any(|l| l.contains("did you mean `every`?")),
            "{p:?}"
        );
        // Every problem at once, with the steps' own.
        let p = problems("schedule:\n  cron: \"bad\"\n  catch_up: never\n");
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn the_schema_has_the_decoders_fields() {
        let s = workflow_schema(None);
        let keys = |ptr: &str| {
            let mut k: Vec<String> = s
                .pointer(ptr)
                .and_then(serde_json::Value::as_object)
                .unwrap_or_else(|| panic!("no {ptr}"))
                .keys()
                .cloned()
                .collect();
            k.sort();
            k
        };
        let mut fields: Vec<String> = SCHEDULE_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        fields.sort();
        assert_eq!(keys("/definitions/Schedule/properties"), fields);
        assert_eq!(
            s.pointer("/definitions/Schedule/properties/catch_up/anyOf/1/properties")
                .and_then(serde_json::Value::as_object)
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(CATCH_UP_FIELDS.iter().map(|f| (*f).to_owned()).collect())
        );
        assert!(s.pointer("/properties/schedule").is_some());
    }
}
