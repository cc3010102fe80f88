//! A workflow's `concurrency: {key, limit, on_conflict}`.

use super::fields::CONCURRENCY_FIELDS;
use super::{Decoder, Path};
use crate::definition::concurrency::{Concurrency, MAX_CONCURRENCY_LIMIT, OnConflict};
use crate::diagnostic::DiagnosticKind as K;
use crate::node::{Node, NodeValue};

impl Decoder<'_> {
    pub(super) fn concurrency(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<Concurrency> {
        let pos = node.pos;
        if matches!(node.value, NodeValue::Null) {
            return None;
        }
        let mut f = self.fields(node, path, CONCURRENCY_FIELDS, "concurrency settings")?;
        let key = match f.take("key") {
            Some((_, n)) => {
                let kp = Path::Field(path, "key");
                let kpos = n.pos;
                self.map.top.insert("concurrency.key".into(), kpos);
                match self.string(n, &kp) {
                    Some(k) if k.trim().is_empty() => {
                        self.err(
                            K::InvalidValue,
                            &kp,
                            kpos,
                            "the concurrency key cannot be empty",
                        );
                        None
                    }
                    Some(k) if k.len() > 1024 => {
                        self.err(
                            K::Limit,
                            &kp,
                            kpos,
                            "the concurrency key is longer than 1024 bytes",
                        );
                        None
                    }
                    other => other,
                }
            }
            None => {
                self.err(
                    K::MissingField,
                    path,
                    pos,
                    "missing field `key`: the runs that share a key share its slots (e.g. key: \"deploy-${params.env}\")",
                );
                None
            }
        };
        let limit = match f.take("limit") {
            Some((_, n)) => {
                let lp = Path::Field(path, "limit");
                let lpos = n.pos;
                match self.count(n, &lp, MAX_CONCURRENCY_LIMIT, "concurrency.limit") {
                    Some(0) => {
                        self.err(K::InvalidValue, &lp, lpos, "the limit must be at least 1");
                        None
                    }
                    other => other,
                }
            }
            None => Some(1),
        };
        let on_conflict = match f.take("on_conflict") {
            Some((_, n)) => {
                self.text_enum::<OnConflict>(n, &Path::Field(path, "on_conflict"), K::InvalidValue)
            }
            None => Some(OnConflict::Queue),
        };
        // A bad limit or policy is reported; the key is still checked.
        Some(Concurrency {
            key: key?,
            limit: limit.unwrap_or(1),
            on_conflict: on_conflict.unwrap_or_default(),
        })
    }
}
