//! Leaf values: strings, booleans, counts, durations, timeouts, priorities, enums by name, JSON objects and string lists.

use super::{Decoder, Path};
use crate::diagnostic::DiagnosticKind as K;
use crate::duration::{check_timeout, parse_duration, seconds};
use crate::enums::TaskPriority;
use crate::node::{Node, NodeValue, non_finite_value};
use compact_str::CompactString;
use serde_json::{Map, Value};
use std::time::Duration;

impl Decoder<'_> {
    pub(super) fn string(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<String> {
        match node.value {
            NodeValue::Str(s) => Some(s.into_owned()),
            _ => {
                self.wrong_type(path, &node, "a string");
                None
            }
        }
    }

    /// A string as a [`CompactString`] (inline up to 24 bytes: no allocation
    /// for typical step names, modules and actions).
    pub(super) fn compact(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<CompactString> {
        match node.value {
            NodeValue::Str(s) => Some(CompactString::from(s)),
            _ => {
                self.wrong_type(path, &node, "a string");
                None
            }
        }
    }

    /// A string, or a number written where a version-like string was meant.
    pub(super) fn lenient_string(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<String> {
        match node.value {
            NodeValue::Str(s) => Some(s.into_owned()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::UInt(u) => Some(u.to_string()),
            NodeValue::Float(f) if f.is_finite() => Some(f.to_string()),
            NodeValue::Float(f) => {
                self.err(K::InvalidValue, path, node.pos, non_finite_value(f));
                None
            }
            _ => {
                self.wrong_type(path, &node, "a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<bool> {
        match node.value {
            NodeValue::Bool(b) => Some(b),
            _ => {
                self.wrong_type(path, &node, "true or false");
                None
            }
        }
    }

    pub(super) fn count(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        max: u32,
        limit: &str,
    ) -> Option<u32> {
        let v = match node.value {
            NodeValue::Int(i) => i128::from(i),
            NodeValue::UInt(u) => i128::from(u),
            NodeValue::Float(f) if f.fract() == 0.0 && f.is_finite() => f as i128,
            _ => {
                self.wrong_type(path, &node, "a whole number");
                return None;
            }
        };
        if v < 0 {
            self.err(
                K::InvalidValue,
                path,
                node.pos,
                format!("{v} is negative; expected 0 or more"),
            );
            return None;
        }
        if v > i128::from(max) {
            let msg = format!("{v} is more than the limit of {max} (limit {limit})");
            self.err(K::Limit, path, node.pos, msg);
            return None;
        }
        u32::try_from(v).ok()
    }

    pub(super) fn duration(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<Option<Duration>> {
        let parsed = match &node.value {
            NodeValue::Null => return Some(None),
            NodeValue::Int(i) => {
                if *i < 0 {
                    Err(format!("a duration cannot be negative ({i} s)"))
                } else {
                    Ok(Duration::from_secs(i.unsigned_abs()))
                }
            }
            NodeValue::UInt(u) => Ok(Duration::from_secs(*u)),
            NodeValue::Float(f) => seconds(*f),
            NodeValue::Str(s) => parse_duration(s),
            _ => {
                self.wrong_type(path, &node, "a duration (seconds, or text like \"5m\")");
                return None;
            }
        };
        match parsed {
            Ok(d) if d.as_secs() > self.limits.max_timeout_secs => {
                let msg = format!(
                    "{} s is longer than the limit of {} s (limit max_timeout_secs)",
                    d.as_secs(),
                    self.limits.max_timeout_secs
                );
                self.err(K::Limit, path, node.pos, msg);
                None
            }
            Ok(d) => Some(Some(d)),
            Err(e) => {
                self.err(K::Duration, path, node.pos, e);
                None
            }
        }
    }

    /// A duration that must be positive: `timeout` (`null` means no limit).
    pub(super) fn timeout(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<Option<Duration>> {
        let pos = node.pos;
        let d = self.duration(node, path)?;
        if let Some(Err(e)) = d.map(check_timeout) {
            self.err(K::Duration, path, pos, e);
            return None;
        }
        Some(d)
    }

    pub(super) fn priority(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<TaskPriority> {
        let r = match &node.value {
            NodeValue::Str(s) => s.parse::<TaskPriority>(),
            NodeValue::Int(i) => TaskPriority::from_value(*i)
                .ok_or_else(|| format!("priority {i} is out of range; expected low, normal, high or critical (or 1 to 4)")),
            _ => Err(format!("expected a priority (low, normal, high or critical), found {}", node.kind_name())),
        };
        r.map_err(|e| self.err(K::Priority, path, node.pos, e)).ok()
    }

    pub(super) fn text_enum<T: std::str::FromStr<Err = String>>(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        kind: K,
    ) -> Option<T> {
        let pos = node.pos;
        let s = self.string(node, path)?;
        s.parse::<T>()
            .map_err(|e| self.err(kind, path, pos, e))
            .ok()
    }

    /// A JSON object (parameters, metadata). Records the position of each string
    /// holding `${` when `step` is given.
    pub(super) fn object(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        step: Option<u32>,
    ) -> Option<Map<String, Value>> {
        if !matches!(node.value, NodeValue::Map(_)) {
            self.wrong_type(path, &node, "a map");
            return None;
        }
        if let Some(i) = step {
            self.record_refs(&node, path, i);
        }
        match node.into_json() {
            Ok(Value::Object(m)) => Some(m),
            Ok(_) => None,
            Err((pos, msg)) => {
                self.err(K::InvalidValue, path, pos, msg);
                None
            }
        }
    }

    pub(super) fn string_list(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        max: Option<(usize, &str)>,
    ) -> Vec<String> {
        let pos = node.pos;
        let NodeValue::Seq(items) = node.value else {
            self.wrong_type(
                path,
                &Node {
                    pos,
                    value: node.value,
                },
                "a list of strings",
            );
            return Vec::new();
        };
        if let Some((max, limit)) = max {
            if items.len() > max {
                let msg = format!(
                    "{} entries exceed the limit of {max} (limit {limit})",
                    items.len()
                );
                self.err(K::Limit, path, pos, msg);
                return Vec::new();
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if let Some(s) = self.string(item, &Path::Index(path, i)) {
                out.push(s);
            }
        }
        out
    }
}
