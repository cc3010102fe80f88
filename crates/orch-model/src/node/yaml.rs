//! YAML through serde-saphyr, with its budget and alias limits set from [`Limits`].

use super::non_finite;
use super::{Key, Node, NodeValue, ParseError, Pos, depth_error};
use crate::limits::Limits;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

thread_local! {
    static MAX_STRING: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A node without its own position (the parent's `Spanned` carries it).
struct Raw(NodeValue<'static>);

fn pos_of<T>(s: &Spanned<T>) -> Pos {
    let l = s.referenced;
    Pos::new(
        u32::try_from(l.line()).unwrap_or(u32::MAX),
        u32::try_from(l.column()).unwrap_or(u32::MAX),
    )
}

fn node(s: Spanned<Raw>) -> Node<'static> {
    let pos = pos_of(&s);
    Node {
        pos,
        value: s.value.0,
    }
}

fn check_len<E: de::Error>(s: &str) -> Result<(), E> {
    let max = MAX_STRING.with(Cell::get);
    if s.len() > max {
        Err(E::custom(format!(
            "a string of {} bytes exceeds the limit of {max} bytes (limit max_string_bytes)",
            s.len()
        )))
    } else {
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(NodeValue::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(NodeValue::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw(match i64::try_from(v) {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::UInt(v),
        }))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Raw, E> {
        i64::try_from(v)
            .map(|i| Raw(NodeValue::Int(i)))
            .or_else(|_| u64::try_from(v).map(|u| Raw(NodeValue::UInt(u))))
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("the integer {v} is out of range")))
            .and_then(|u| self.visit_u64(u))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(NodeValue::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        check_len(v)?;
        Ok(Raw(NodeValue::Str(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        check_len(&v)?;
        Ok(Raw(NodeValue::Str(Cow::Owned(v))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw(NodeValue::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw(NodeValue::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(node(item));
        }
        Ok(Raw(NodeValue::Seq(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let kpos = pos_of(&k);
            let name = k.value;
            check_len(&name)?;
            let v: Spanned<Raw> = map.next_value()?;
            entries.push((
                Key {
                    name: Cow::Owned(name),
                    pos: kpos,
                },
                node(v),
            ));
        }
        Ok(Raw(NodeValue::Map(entries)))
    }
}

pub(super) fn parse(text: &str, limits: &Limits) -> Result<Node<'static>, ParseError> {
    let mut options = Options::default();
    options.budget = Some(budget(limits));
    options.duplicate_keys = DuplicateKeyPolicy::LastWins;
    options.strict_booleans = true;
    // `1e400`, `.inf` and `.nan` reach the decoder, which reports each
    // where it stands (with every other problem) without printing `inf`.
    options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::PassThrough;
    options.alias_limits.max_total_replayed_events = limits.max_yaml_alias_expansion;
    options.alias_limits.max_alias_expansions_per_anchor = usize::MAX;
    options.alias_limits.max_replay_stack_depth = limits.max_depth;
    MAX_STRING.with(|c| c.set(limits.max_string_bytes));
    let result = serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options);
    MAX_STRING.with(|c| c.set(usize::MAX));
    match result {
        Ok(root) => Ok(node(root)),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| {
                    Pos::new(
                        u32::try_from(l.line()).unwrap_or(u32::MAX),
                        u32::try_from(l.column()).unwrap_or(u32::MAX),
                    )
                })
                .unwrap_or(Pos::UNKNOWN);
            let message = explain(&e, limits);
            Err(ParseError { message, pos })
        }
    }
}

/// serde-saphyr's budget, derived from [`Limits`] so that each of its
/// checks is one of our documented limits and its message can name it.
///
/// Aliases are bounded by what they replay (`max_yaml_alias_expansion`),
/// which is what an alias bomb inflates; the number of alias references,
/// merge keys and retained anchor events follow the same limit. The
/// library's alias/anchor *ratio* heuristic is off: using one anchor many
/// times is ordinary YAML (a shared block of parameters, `<<: *defaults`
/// on every step) and costs no more than the events it replays, which are
/// counted.
pub(super) fn budget(limits: &Limits) -> Budget {
    let mut budget = Budget::default();
    budget.max_depth = limits.max_depth;
    budget.flow_nesting_limit = limits.max_depth;
    let nodes = nodes_budget(limits);
    budget.max_nodes = nodes;
    budget.max_events = nodes.saturating_mul(2);
    budget.max_anchors = nodes;
    budget.max_aliases = limits.max_yaml_alias_expansion.max(1);
    budget.max_merge_keys = limits.max_yaml_alias_expansion.max(1);
    budget.max_recorded_anchor_events = limits
        .max_yaml_alias_expansion
        .max(Budget::default().max_recorded_anchor_events);
    budget.enforce_alias_anchor_ratio = false;
    budget.max_total_scalar_bytes =
        usize::try_from(limits.max_definition_bytes).unwrap_or(usize::MAX);
    budget.max_reader_input_bytes = usize::try_from(limits.max_definition_bytes).ok();
    budget
}

/// Nodes (maps, lists and scalars) a document may hold: 16 a step.
fn nodes_budget(limits: &Limits) -> usize {
    limits.max_steps.saturating_mul(16).max(250_000)
}

fn alias_error(limits: &Limits) -> String {
    format!(
        "aliases (`*name`) replay more than {} YAML events; this looks like an alias bomb \
         (a \"billion laughs\"). If the document is legitimate, raise the limit with \
         `--limit max_yaml_alias_expansion=N`",
        limits.max_yaml_alias_expansion
    )
}

fn too_large(what: &str, limits: &Limits) -> String {
    format!(
        "the document holds too many {what} for a workflow of at most {} steps; \
         if it is legitimate, raise `--limit max_steps=N`",
        limits.max_steps
    )
}

/// One error of serde-saphyr in words for the author of the definition:
/// which of our limits was hit (and the `--limit` key that raises it), or
/// what is wrong with the YAML, never the library's API names.
pub(super) fn explain(e: &serde_saphyr::Error, limits: &Limits) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::MessageFormatter as _;
    use serde_saphyr::budget::BudgetBreach as B;
    let mut e = e.without_snippet();
    while let E::AliasError { error, .. } = e {
        e = error.without_snippet();
    }
    match e {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => depth_error(limits),
            B::Aliases { .. } | B::MergeKeys { .. } | B::RecordedAnchorEvents { .. } => {
                alias_error(limits)
            }
            B::Anchors { .. } => too_large("anchors (`&name`)", limits),
            B::Events { .. } | B::Nodes { .. } => too_large("values", limits),
            B::ScalarBytes { .. } | B::InputBytes { .. } | B::RecordedAnchorBytes { .. } => {
                format!(
                    "the document's text exceeds the limit of {} bytes; if it is legitimate, \
                     raise `--limit max_definition_bytes=N`",
                    limits.max_definition_bytes
                )
            }
            B::Documents { .. } => multiple_documents(),
            _ => "the YAML is malformed or too complex to read safely".to_owned(),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasExpansionLimitExceeded { .. } => alias_error(limits),
        E::AliasReplayStackDepthExceeded { .. } => format!(
            "aliases nest inside each other deeper than {} levels (limit max_depth); \
             if the document is legitimate, raise `--limit max_depth=N`",
            limits.max_depth
        ),
        E::RecursiveReferencesRequireWeakTypes { .. } => "an alias (`*name`) is used inside \
             the value its own anchor (`&name`) marks, which makes the value infinite; \
             a workflow definition cannot hold a recursive value: write the value out instead"
            .to_owned(),
        E::UnknownAnchor { .. } => "an alias (`*name`) refers to an anchor that is not \
             defined before it; mark the value with `&name` first, or fix the name"
            .to_owned(),
        E::MultipleDocuments { .. } => multiple_documents(),
        E::NonFiniteFloat { value, .. } => non_finite(value),
        E::InvalidScalar { .. } => "this value does not match its YAML tag (such as \
             `!!int` or `!!float`); remove the tag or fix the value"
            .to_owned(),
        E::Unexpected { expected, .. } if expected.contains("string") => {
            "a key must be a plain string (YAML complex keys, lists or maps as keys, \
             are not part of the workflow format)"
                .to_owned()
        }
        E::Eof { .. } => "the document ends in the middle of a value".to_owned(),
        E::MergeValueNotMapOrSeqOfMaps { .. } => {
            "the value of a merge key (`<<`) must be a map or a list of maps, such as \
             `<<: *defaults`"
                .to_owned()
        }
        E::InvalidBinaryBase64 { .. } => {
            "this `!!binary` value is not valid base64; remove the tag to mean text".to_owned()
        }
        E::BinaryNotUtf8 { .. } => "this `!!binary` value does not decode to UTF-8 text, \
             which is all a workflow definition can hold; remove the tag to mean text"
            .to_owned(),
        E::UnsupportedTag { tag, .. } => format!(
            "the YAML tag {} is not supported in a workflow definition; remove it \
             (quote the value to mean text)",
            crate::definition::display_snippet(tag)
        ),
        E::TaggedScalarCannotDeserializeIntoString { .. } => {
            "this YAML tag (`!!...` or `!...`) is not supported in a workflow definition; \
             remove it (quote the value to mean text)"
                .to_owned()
        }
        E::Message { msg, .. } => first_line(msg),
        other => {
            let text = serde_saphyr::UserMessageFormatter.format_message(other);
            let first = first_line(&text);
            let lower = first.to_ascii_lowercase();
            if lower.contains("depth") || lower.contains("nesting") || lower.contains("recursion") {
                depth_error(limits)
            } else if LIBRARY_WORDS.iter().any(|w| lower.contains(w)) {
                // A message written for the library's users, not ours.
                "this YAML cannot be read as part of a workflow definition".to_owned()
            } else {
                first
            }
        }
    }
}

/// Words that mark a message about the library's API rather than the document.
const LIBRARY_WORDS: &[&str] = &[
    "deserializ",
    "serializ",
    "serde",
    "option<",
    "options",
    "from_str",
    "from_slice",
    "weak",
    "cow<",
    "&str",
    "policy",
    "struct",
    "enum",
    "budget",
];

fn first_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or(text).trim();
    // serde-saphyr may repeat the position in its message; ours is in front already.
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

fn multiple_documents() -> String {
    "the file holds more than one YAML document (a `---` or `...` line after the first \
     document); a workflow definition is one document: remove the extra separator, or put \
     each workflow in its own file"
        .to_owned()
}
