//! Taking a map apart: the known fields of each kind of map, unknown and duplicate keys, and the suggestion for a misspelled field.

use super::{Decoder, Path};
use crate::definition::names::display_snippet;
use crate::diagnostic::DiagnosticKind as K;
use crate::node::{Key, Node, NodeValue};

/// The most fields any map of the format has.
pub(super) const MAX_FIELDS: usize = 24;

pub(crate) const WORKFLOW_FIELDS: &[&str] = &[
    "name",
    "description",
    "version",
    "parameters",
    "env",
    "secrets",
    "concurrency",
    "defaults",
    "steps",
    "status",
    "metadata",
    "schedule",
    "on_failure",
    "finally",
    "cancel_grace",
];

pub(crate) const STEP_FIELDS: &[&str] = &[
    "name",
    "module",
    "action",
    "description",
    "parameters",
    "dependencies",
    "conditions",
    "phase",
    "timeout",
    "retry_count",
    "max_retries",
    "retry",
    "priority",
    "resources",
    "cache",
    "secrets",
    "for_each",
    "matrix",
];

pub(crate) const DEFAULTS_FIELDS: &[&str] = &[
    "timeout",
    "max_retries",
    "retry",
    "priority",
    "cache",
    "resources",
];

pub(crate) const RETRY_FIELDS: &[&str] = &[
    "backoff",
    "initial_delay",
    "max_delay",
    "multiplier",
    "jitter",
];

pub(crate) const CONDITIONS_FIELDS: &[&str] = &["run_if", "when"];

pub(crate) const WHEN_FIELDS: &[&str] = &["ref", "op", "value"];

/// One entry of the top-level `secrets:` (exactly one of them).
pub(crate) const SECRET_FIELDS: &[&str] = &["env", "file"];

/// A step's `cache:` written as a map.
pub(crate) const CACHE_FIELDS: &[&str] = &["files", "ttl"];

/// A workflow's `concurrency:`.
pub(crate) const CONCURRENCY_FIELDS: &[&str] = &["key", "limit", "on_conflict"];

pub(super) struct Fields<'a> {
    fields: &'static [&'static str],
    /// For each field of `fields`, the index of its slot (`u32::MAX`: absent).
    by_field: [u32; MAX_FIELDS],
    slots: Vec<Option<(Key<'a>, Node<'a>)>>,
    /// Present fields not taken yet: at 0, every other `take` returns at once
    /// (a typical step sets 4 of its 14 fields).
    left: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn take(&mut self, name: &str) -> Option<(Key<'a>, Node<'a>)> {
        if self.left == 0 {
            return None;
        }
        // Field lists are short and fixed: find the field's index, then its slot.
        let fi = self.fields.iter().position(|f| *f == name)?;
        let slot = *self.by_field.get(fi)?;
        let taken = self.slots.get_mut(slot as usize)?.take();
        if taken.is_some() {
            self.left -= 1;
        }
        taken
    }
}

impl Decoder<'_> {
    /// Takes a map node apart: reports unknown and duplicate keys; returns the
    /// known entries in declaration order of `fields`.
    pub(super) fn fields<'n>(
        &mut self,
        node: Node<'n>,
        path: &Path<'_>,
        fields: &'static [&'static str],
        what: &str,
    ) -> Option<Fields<'n>> {
        let pos = node.pos;
        let NodeValue::Map(entries) = node.value else {
            self.wrong_type(
                path,
                &Node {
                    pos,
                    value: node.value,
                },
                &format!("{what} (a map)"),
            );
            return None;
        };
        // Reuse the entries' allocation: known entries stay, unknown and
        // duplicate ones are reported and emptied.
        let mut slots: Vec<Option<(Key<'n>, Node<'n>)>> = entries.into_iter().map(Some).collect();
        let mut by_field = [u32::MAX; MAX_FIELDS];
        for (n, slot) in slots.iter_mut().enumerate() {
            let Some((key, _)) = slot.as_ref() else {
                continue;
            };
            match fields.iter().position(|f| *f == key.name) {
                Some(i) if by_field[i] == u32::MAX => by_field[i] = n as u32,
                Some(_) => {
                    let msg = format!("duplicate key `{}`; each key may appear once", key.name);
                    self.err(K::Duplicate, &Path::Field(path, &key.name), key.pos, msg);
                    *slot = None;
                }
                None => {
                    let hint = match closest(&key.name, fields) {
                        Some(f) => format!("did you mean `{f}`?"),
                        None => format!("known fields: {}", fields.join(", ")),
                    };
                    let msg = format!(
                        "unknown field {} in {what}; {hint}",
                        display_snippet(&key.name)
                    );
                    self.err(K::UnknownField, &Path::Field(path, &key.name), key.pos, msg);
                    *slot = None;
                }
            }
        }
        let left = by_field.iter().filter(|&&n| n != u32::MAX).count();
        Some(Fields {
            fields,
            by_field,
            slots,
            left,
        })
    }
}

/// The known field closest to a misspelled one, if it is close enough to be
/// a typo (at most 2 edits, or a quarter of the field's length). A name of
/// more than 64 bytes is no typo of a field and is not compared.
pub(super) fn closest<'a>(name: &str, fields: &[&'a str]) -> Option<&'a str> {
    if name.len() > 64 {
        return None;
    }
    fields
        .iter()
        .map(|f| (strsim::levenshtein(name, f), *f))
        .filter(|(d, f)| *d <= 2.max(f.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn typo_suggestions() {
        assert_eq!(closest("dependecies", STEP_FIELDS), Some("dependencies"));
        assert_eq!(closest("modul", STEP_FIELDS), Some("module"));
        assert_eq!(closest("zzzzzz", STEP_FIELDS), None);
        assert_eq!(closest(&"m".repeat(65), STEP_FIELDS), None);
    }
}
