//! Decoding a [`Node<'_>`] tree into a [`Workflow`], reporting every problem with its path and position.
//!
//! The entry points and the `Decoder` live here; `fields` takes maps apart
//! (unknown and duplicate keys, typo suggestions), `scalars` reads leaf
//! values, `workflow` the workflow and its steps, `blocks` a step's nested
//! `retry`, `resources` and `conditions`, and `source_map` keeps positions.

mod actions;
mod blocks;
mod concurrency;
mod fanout;
pub(crate) mod fields;
mod hooks;
mod scalars;
pub(crate) mod schedule;
mod secrets;
mod source_map;
mod workflow;

pub use source_map::SourceMap;

use crate::actions::ActionCatalog;
use crate::definition::{Workflow, WorkflowStep};
use crate::diagnostic::{DiagnosticKind as K, Diagnostics};
use crate::limits::Limits;
use crate::node::{Format, Key, Node, NodeValue, Pos, parse_with_step_sink};
use serde_json::Value;
use std::fmt;

/// Parses and decodes a definition: checks the byte size first, parses with
/// the format's limits, decodes every field, and validates nothing else
/// (see [`validate_with_sources`](super::validate_with_sources) for that).
///
/// # Errors
/// Every problem found, each with its path, line and column.
pub fn parse_definition(
    text: &str,
    format: Format,
    limits: &Limits,
) -> Result<(Workflow, SourceMap), Diagnostics> {
    parse_definition_with_source(text, format, limits, None)
}

/// Like [`parse_definition`], naming the file in the diagnostics.
///
/// # Errors
/// Every problem found, each with its path, line and column.
pub fn parse_definition_with_source(
    text: &str,
    format: Format,
    limits: &Limits,
    source: Option<&str>,
) -> Result<(Workflow, SourceMap), Diagnostics> {
    match decode_partial(text, format, limits, source, None) {
        (Some(ok), d) if d.is_empty() => Ok(ok),
        (_, d) => Err(d),
    }
}

/// Parses and decodes as far as possible: the workflow decoded so far (absent
/// when the text could not be parsed or is not a map) and every problem found.
/// Validation can then add its own problems to the same list. With a
/// catalog, each step's `module.action` and parameters are checked against it.
pub(crate) fn decode_partial(
    text: &str,
    format: Format,
    limits: &Limits,
    source: Option<&str>,
    actions: Option<&ActionCatalog>,
) -> (Option<(Workflow, SourceMap)>, Diagnostics) {
    let mut diags = Diagnostics::new(source.map(str::to_owned));
    if text.len() as u64 > limits.max_definition_bytes {
        diags.push(
            K::Limit,
            "",
            Pos::UNKNOWN,
            format!(
                "the definition is {} bytes; the limit is {} (limit max_definition_bytes)",
                text.len(),
                limits.max_definition_bytes
            ),
        );
        return (None, diags);
    }
    let mut d = Decoder::new(limits, diags);
    d.actions = actions;
    // JSON steps are decoded while they are parsed (see `parse_with_step_sink`).
    let mut streamed: Vec<WorkflowStep> = Vec::new();
    let mut total = 0usize;
    let parsed = {
        let steps_path = Path::Field(&Path::Root, "steps");
        let mut sink = |node: Node<'_>| {
            total += 1;
            if streamed.len() < limits.max_steps {
                let i = streamed.len();
                let step = d.step(node, &Path::Index(&steps_path, i), i as u32);
                streamed.push(step);
            }
        };
        parse_with_step_sink(text, format, limits, Some(&mut sink))
    };
    let root = match parsed {
        Ok(root) => root,
        Err(e) => {
            d.diags.push(
                K::Syntax,
                "",
                e.pos,
                format!("invalid {format}: {}", e.message),
            );
            return (None, d.diags);
        }
    };
    if format == Format::Json {
        d.streamed = Some((streamed, total));
    }
    let wf = d.workflow(root);
    (wf.map(|wf| (wf, d.map)), d.diags)
}

/// Decodes a workflow from a JSON value (as an API receives it); positions are unknown.
///
/// # Errors
/// Every problem found, each with its path.
pub fn from_value(value: &Value, limits: &Limits) -> Result<(Workflow, SourceMap), Diagnostics> {
    decode_root(value_to_node(value), limits, Diagnostics::new(None))
}

fn value_to_node(v: &Value) -> Node<'_> {
    let value = match v {
        Value::Null => NodeValue::Null,
        Value::Bool(b) => NodeValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                NodeValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                NodeValue::UInt(u)
            } else {
                NodeValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => NodeValue::Str(std::borrow::Cow::Borrowed(s)),
        Value::Array(a) => NodeValue::Seq(a.iter().map(value_to_node).collect()),
        Value::Object(o) => NodeValue::Map(
            o.iter()
                .map(|(k, v)| {
                    (
                        Key {
                            name: std::borrow::Cow::Borrowed(k.as_str()),
                            pos: Pos::UNKNOWN,
                        },
                        value_to_node(v),
                    )
                })
                .collect(),
        ),
    };
    Node {
        pos: Pos::UNKNOWN,
        value,
    }
}

fn decode_root(
    root: Node<'_>,
    limits: &Limits,
    diags: Diagnostics,
) -> Result<(Workflow, SourceMap), Diagnostics> {
    let mut d = Decoder::new(limits, diags);
    let wf = d.workflow(root);
    if d.diags.is_empty() {
        if let Some(wf) = wf {
            return Ok((wf, d.map));
        }
    }
    d.diags.sort();
    Err(d.diags)
}

/// A path into the definition, built on the stack and rendered only for errors.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(parent, name) => {
                if matches!(parent, Path::Root) {
                    write!(f, "{name}")
                } else {
                    write!(f, "{parent}.{name}")
                }
            }
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

pub(super) struct Decoder<'l> {
    limits: &'l Limits,
    diags: Diagnostics,
    map: SourceMap,
    /// Steps already decoded while parsing (JSON), in order, and how many
    /// the list held (decoding stops at the limit; the parsed list is empty).
    streamed: Option<(Vec<WorkflowStep>, usize)>,
    /// Per step, which defaultable fields it sets itself (`SET_*` bits).
    explicit: Vec<u8>,
    /// What steps may run, when they are checked while decoding.
    actions: Option<&'l ActionCatalog>,
    /// The last `module.action` looked up in `actions`.
    last_action: actions::LastAction<'l>,
}

impl<'l> Decoder<'l> {
    fn new(limits: &'l Limits, diags: Diagnostics) -> Self {
        Decoder {
            limits,
            diags,
            map: SourceMap::default(),
            streamed: None,
            explicit: Vec::new(),
            actions: None,
            last_action: None,
        }
    }

    fn err(&mut self, kind: K, path: &Path<'_>, pos: Pos, msg: impl Into<String>) {
        self.diags.push(kind, path.to_string(), pos, msg);
    }

    fn wrong_type(&mut self, path: &Path<'_>, node: &Node<'_>, expected: &str) {
        let msg = format!("expected {expected}, found {}", node.kind_name());
        self.err(K::WrongType, path, node.pos, msg);
    }
}
