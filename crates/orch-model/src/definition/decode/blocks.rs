//! A step's (or the defaults') nested blocks: `retry`, `resources` and `conditions`.

use super::fields::{CONDITIONS_FIELDS, RETRY_FIELDS, WHEN_FIELDS};
use super::{Decoder, Path};
use crate::definition::names::display_snippet;
use crate::definition::{Conditions, RetryPolicy, When};
use crate::diagnostic::DiagnosticKind as K;
use crate::enums::{BackoffKind, ConditionOp, ResourceType, RunIf};
use crate::node::{Node, NodeValue};
use crate::resources::{ResourceRequest, check_amount};
use std::collections::BTreeMap;

impl Decoder<'_> {
    pub(super) fn retry(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        base: &RetryPolicy,
    ) -> Option<RetryPolicy> {
        let mut f = self.fields(node, path, RETRY_FIELDS, "a retry policy")?;
        let mut r = base.clone();
        if let Some((_, n)) = f.take("backoff") {
            if let Some(b) =
                self.text_enum::<BackoffKind>(n, &Path::Field(path, "backoff"), K::InvalidValue)
            {
                r.backoff = b;
            }
        }
        if let Some((_, n)) = f.take("initial_delay") {
            if let Some(Some(d)) = self.duration(n, &Path::Field(path, "initial_delay")) {
                r.initial_delay = d;
            }
        }
        if let Some((_, n)) = f.take("max_delay") {
            if let Some(Some(d)) = self.duration(n, &Path::Field(path, "max_delay")) {
                r.max_delay = d;
            }
        }
        if let Some((_, n)) = f.take("multiplier") {
            let p = Path::Field(path, "multiplier");
            match n.value {
                NodeValue::Int(i) if (1..=100).contains(&i) => r.multiplier = i as f64,
                NodeValue::Float(x) if (1.0..=100.0).contains(&x) => r.multiplier = x,
                NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::UInt(_) => {
                    self.err(
                        K::InvalidValue,
                        &p,
                        n.pos,
                        "the multiplier must be a number from 1 to 100",
                    );
                }
                _ => self.wrong_type(&p, &n, "a number"),
            }
        }
        if let Some((_, n)) = f.take("jitter") {
            if let Some(b) = self.boolean(n, &Path::Field(path, "jitter")) {
                r.jitter = b;
            }
        }
        Some(r)
    }

    pub(super) fn resources(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<ResourceRequest> {
        let pos = node.pos;
        let NodeValue::Map(entries) = node.value else {
            self.wrong_type(
                path,
                &Node {
                    pos,
                    value: node.value,
                },
                "a resource request such as {cpu: {cores: 1}}",
            );
            return None;
        };
        let mut req = BTreeMap::new();
        let mut ok = true;
        for (key, value) in entries {
            let p = Path::Field(path, &key.name);
            let kind = match key.name.parse::<ResourceType>() {
                Ok(k) => k,
                Err(_) => {
                    let msg = format!(
                        "unknown resource type {}; expected one of: {}",
                        display_snippet(&key.name),
                        ResourceType::expected()
                    );
                    self.err(K::Resource, &p, key.pos, msg);
                    ok = false;
                    continue;
                }
            };
            if req.contains_key(&kind) {
                self.err(
                    K::Duplicate,
                    &p,
                    key.pos,
                    format!("duplicate resource type `{kind}`"),
                );
                ok = false;
                continue;
            }
            let vpos = value.pos;
            let NodeValue::Map(units) = value.value else {
                let msg = format!(
                    "expected amounts per unit such as {{cores: 2}}, found {}",
                    Node {
                        pos: vpos,
                        value: value.value
                    }
                    .kind_name()
                );
                self.err(K::Resource, &p, vpos, msg);
                ok = false;
                continue;
            };
            let mut amounts = BTreeMap::new();
            for (unit, amount) in units {
                let up = Path::Field(&p, &unit.name);
                let valid_unit = !unit.name.is_empty()
                    && unit.name.len() <= 64
                    && unit
                        .name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid_unit {
                    let msg = format!(
                        "unit {} must be lowercase letters, digits and `_` (e.g. cores, gb, count)",
                        display_snippet(&unit.name)
                    );
                    self.err(K::Resource, &up, unit.pos, msg);
                    ok = false;
                    continue;
                }
                let v = match amount.value {
                    NodeValue::Int(i) => i as f64,
                    NodeValue::UInt(u) => u as f64,
                    NodeValue::Float(x) => x,
                    _ => {
                        let msg = format!("expected a number, found {}", amount.kind_name());
                        self.err(K::Resource, &up, amount.pos, msg);
                        ok = false;
                        continue;
                    }
                };
                if let Err(m) = check_amount(v) {
                    self.err(K::Resource, &up, amount.pos, m);
                    ok = false;
                    continue;
                }
                if amounts.insert(unit.name.to_string(), v).is_some() {
                    self.err(
                        K::Duplicate,
                        &up,
                        unit.pos,
                        format!("duplicate unit `{}`", unit.name),
                    );
                    ok = false;
                }
            }
            req.insert(kind, amounts);
        }
        ok.then_some(ResourceRequest(req))
    }

    pub(super) fn conditions(
        &mut self,
        node: Node<'_>,
        path: &Path<'_>,
        step: u32,
    ) -> Option<Conditions> {
        let mut f = self.fields(node, path, CONDITIONS_FIELDS, "conditions")?;
        let mut c = Conditions::default();
        if let Some((_, n)) = f.take("run_if") {
            if let Some(r) =
                self.text_enum::<RunIf>(n, &Path::Field(path, "run_if"), K::InvalidValue)
            {
                c.run_if = r;
            }
        }
        if let Some((_, n)) = f.take("when") {
            let wp = Path::Field(path, "when");
            let wpos = n.pos;
            if let Some(mut w) = self.fields(n, &wp, WHEN_FIELDS, "a `when` condition") {
                let reference = match w.take("ref") {
                    Some((_, n)) => {
                        self.record_refs(&n, &Path::Field(&wp, "ref"), step);
                        self.string(n, &Path::Field(&wp, "ref"))
                    }
                    None => {
                        self.err(
                            K::MissingField,
                            &wp,
                            wpos,
                            "missing field `ref`: the `${...}` reference to test",
                        );
                        None
                    }
                };
                let op = match w.take("op") {
                    Some((_, n)) => {
                        self.text_enum::<ConditionOp>(n, &Path::Field(&wp, "op"), K::InvalidValue)
                    }
                    None => Some(ConditionOp::Truthy),
                };
                let value = match w.take("value") {
                    Some((_, n)) => {
                        let vp = Path::Field(&wp, "value");
                        match n.into_json() {
                            Ok(v) => Some(v),
                            Err((pos, m)) => {
                                self.err(K::InvalidValue, &vp, pos, m);
                                None
                            }
                        }
                    }
                    None => None,
                };
                if let (Some(reference), Some(op)) = (reference, op) {
                    if value.is_none() && !matches!(op, ConditionOp::Exists | ConditionOp::Truthy) {
                        self.err(
                            K::MissingField,
                            &wp,
                            wpos,
                            format!("missing field `value`: `{op}` compares with a value"),
                        );
                    }
                    c.when = Some(Box::new(When {
                        reference,
                        op,
                        value,
                    }));
                }
            }
        }
        Some(c)
    }
}
