//! Decoding a step's `for_each:` (a list, or a `${...}` reference to one) and `matrix:` (named lists), with the item limit.

use super::fields::Fields;
use super::{Decoder, Path};
use crate::definition::FanOut;
use crate::definition::fanout::check_matrix_key;
use crate::diagnostic::DiagnosticKind as K;
use crate::node::{Node, NodeValue, Pos};
use serde_json::Value;

impl Decoder<'_> {
    /// A step's fan-out, from its `for_each` or `matrix` field (at most one
    /// of the two).
    pub(super) fn fan_out(
        &mut self,
        f: &mut Fields<'_>,
        path: &Path<'_>,
        index: u32,
    ) -> Option<Box<FanOut>> {
        let for_each = f.take("for_each");
        let matrix = f.take("matrix");
        match (for_each, matrix) {
            (None, None) => None,
            (Some((_, n)), None) => self
                .for_each(n, &Path::Field(path, "for_each"), index)
                .map(Box::new),
            (None, Some((_, n))) => self
                .matrix(n, &Path::Field(path, "matrix"), index)
                .map(Box::new),
            (Some(_), Some((k, _))) => {
                self.err(
                    K::InvalidValue,
                    &Path::Field(path, "matrix"),
                    k.pos,
                    "a step has `for_each:` or `matrix:`, not both; for the cross product of several lists, use `matrix:` alone",
                );
                None
            }
        }
    }

    fn for_each(&mut self, node: Node<'_>, path: &Path<'_>, index: u32) -> Option<FanOut> {
        self.map.refs.insert((index, "for_each".into()), node.pos);
        match node.value {
            NodeValue::Str(s) => Some(FanOut::Ref(s.into_owned())),
            NodeValue::Seq(_) => {
                let pos = node.pos;
                let list = self.json_list(node, path)?;
                self.check_items(list.len(), path, pos)?;
                Some(FanOut::List(list))
            }
            _ => {
                self.wrong_type(
                    path,
                    &node,
                    "a list of items, or a reference to one such as \"${STEP.result.files}\"",
                );
                None
            }
        }
    }

    fn matrix(&mut self, node: Node<'_>, path: &Path<'_>, index: u32) -> Option<FanOut> {
        self.map.refs.insert((index, "matrix".into()), node.pos);
        let pos = node.pos;
        let NodeValue::Map(entries) = node.value else {
            self.wrong_type(
                path,
                &node,
                "a map of named lists, such as {os: [linux, mac], python: [\"3.11\", \"3.12\"]}",
            );
            return None;
        };
        if entries.is_empty() {
            self.err(
                K::InvalidValue,
                path,
                pos,
                "a matrix needs at least one key with a list of values",
            );
            return None;
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut ok = true;
        for (k, v) in entries {
            let p = Path::Field(path, &k.name);
            if let Err(m) = check_matrix_key(&k.name) {
                self.err(K::Name, &p, k.pos, m);
                ok = false;
                continue;
            }
            if !matches!(v.value, NodeValue::Seq(_)) {
                self.wrong_type(&p, &v, "a list of values");
                ok = false;
                continue;
            }
            match self.json_list(v, &p) {
                Some(list) => keys.push((k.name.into_owned(), list)),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let fan = FanOut::Matrix(keys);
        self.check_items(fan.literal_len().unwrap_or(usize::MAX), path, pos)?;
        Some(fan)
    }

    fn json_list(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<Vec<Value>> {
        match node.into_json() {
            Ok(Value::Array(list)) => Some(list),
            Ok(_) => None,
            Err((pos, msg)) => {
                self.err(K::InvalidValue, path, pos, msg);
                None
            }
        }
    }

    fn check_items(&mut self, n: usize, path: &Path<'_>, pos: Pos) -> Option<()> {
        if n <= self.limits.max_fanout_items {
            return Some(());
        }
        let count = if n == usize::MAX {
            "more than can be counted".to_owned()
        } else {
            n.to_string()
        };
        let msg = format!(
            "{count} items exceed the limit of {} (limit max_fanout_items)",
            self.limits.max_fanout_items
        );
        self.err(K::Limit, path, pos, msg);
        None
    }
}
