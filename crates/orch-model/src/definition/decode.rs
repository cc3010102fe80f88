//! Decoding a [`Node<'_>`] tree into a [`Workflow`], reporting every problem with its path and position.

use super::names::display_snippet;
use super::{Conditions, RetryPolicy, StepDefaults, When, Workflow, WorkflowStep};
use crate::diagnostic::{DiagnosticKind as K, Diagnostics};
use crate::duration::{check_timeout, parse_duration, seconds};
use crate::enums::{BackoffKind, ConditionOp, ResourceType, RunIf, TaskPriority, WorkflowStatus};
use crate::limits::Limits;
use crate::node::{Format, Key, Node, NodeValue, Pos, non_finite_value, parse_with_step_sink};
use crate::resources::{ResourceRequest, check_amount};
use compact_str::CompactString;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Where the parts of a definition stand in its source text, kept compactly so
/// that validation can point at a line and column after the tree is gone.
/// Built from Rust code, a workflow has an empty map and messages carry paths only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceMap {
    /// Start of each step.
    pub step: Vec<Pos>,
    /// Each step's `name` value.
    pub name: Vec<Pos>,
    /// Each step's `module` value.
    pub module: Vec<Pos>,
    /// Each dependency entry, flattened in step order.
    pub dep: Vec<Pos>,
    /// Where each step's dependencies start in `dep`.
    pub dep_start: Vec<u32>,
    /// Strings holding `${`, by `(step index, path relative to the step)`.
    pub refs: HashMap<(u32, String), Pos>,
    /// Top-level places by path: `name`, `parameters.NAME` (the key), `env[i]`.
    pub top: HashMap<String, Pos>,
}

impl SourceMap {
    fn get(v: &[Pos], i: usize) -> Pos {
        v.get(i).copied().unwrap_or(Pos::UNKNOWN)
    }

    /// Position of step `i`.
    pub fn step_pos(&self, i: usize) -> Pos {
        Self::get(&self.step, i)
    }

    /// Position of step `i`'s name.
    pub fn name_pos(&self, i: usize) -> Pos {
        Self::get(&self.name, i)
    }

    /// Position of step `i`'s module.
    pub fn module_pos(&self, i: usize) -> Pos {
        Self::get(&self.module, i)
    }

    /// Position of dependency `d` of step `i`.
    pub fn dep_pos(&self, i: usize, d: usize) -> Pos {
        match self.dep_start.get(i) {
            Some(start) => Self::get(&self.dep, *start as usize + d),
            None => Pos::UNKNOWN,
        }
    }

    /// Position of a top-level place (`name`, `parameters.NAME`, `env[i]`).
    pub fn top_pos(&self, path: &str) -> Pos {
        self.top.get(path).copied().unwrap_or(Pos::UNKNOWN)
    }

    /// Position of a string holding a reference, by step and path within the step.
    pub fn ref_pos(&self, i: usize, path: &str) -> Pos {
        let key = (u32::try_from(i).unwrap_or(u32::MAX), path.to_owned());
        self.refs
            .get(&key)
            .copied()
            .unwrap_or_else(|| self.step_pos(i))
    }
}

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
    match decode_partial(text, format, limits, source) {
        (Some(ok), d) if d.is_empty() => Ok(ok),
        (_, d) => Err(d),
    }
}

/// Parses and decodes as far as possible: the workflow decoded so far (absent
/// when the text could not be parsed or is not a map) and every problem found.
/// Validation can then add its own problems to the same list.
pub(crate) fn decode_partial(
    text: &str,
    format: Format,
    limits: &Limits,
    source: Option<&str>,
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

struct Decoder<'l> {
    limits: &'l Limits,
    diags: Diagnostics,
    map: SourceMap,
    /// Steps already decoded while parsing (JSON), in order, and how many
    /// the list held (decoding stops at the limit; the parsed list is empty).
    streamed: Option<(Vec<WorkflowStep>, usize)>,
    /// Per step, which defaultable fields it sets itself (`SET_*` bits).
    explicit: Vec<u8>,
}

const SET_TIMEOUT: u8 = 1;
const SET_MAX_RETRIES: u8 = 2;
const SET_RETRY: u8 = 4;
const SET_PRIORITY: u8 = 8;
const SET_CACHE: u8 = 16;
const SET_RESOURCES: u8 = 32;

/// The most fields any map of the format has.
const MAX_FIELDS: usize = 16;

const WORKFLOW_FIELDS: &[&str] = &[
    "name",
    "description",
    "version",
    "parameters",
    "env",
    "defaults",
    "steps",
    "status",
    "metadata",
];
const STEP_FIELDS: &[&str] = &[
    "name",
    "module",
    "action",
    "description",
    "parameters",
    "dependencies",
    "conditions",
    "timeout",
    "retry_count",
    "max_retries",
    "retry",
    "priority",
    "resources",
    "cache",
];
const DEFAULTS_FIELDS: &[&str] = &[
    "timeout",
    "max_retries",
    "retry",
    "priority",
    "cache",
    "resources",
];
const RETRY_FIELDS: &[&str] = &[
    "backoff",
    "initial_delay",
    "max_delay",
    "multiplier",
    "jitter",
];
const CONDITIONS_FIELDS: &[&str] = &["run_if", "when"];
const WHEN_FIELDS: &[&str] = &["ref", "op", "value"];

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

impl<'l> Decoder<'l> {
    fn new(limits: &'l Limits, diags: Diagnostics) -> Self {
        Decoder {
            limits,
            diags,
            map: SourceMap::default(),
            streamed: None,
            explicit: Vec::new(),
        }
    }

    fn err(&mut self, kind: K, path: &Path<'_>, pos: Pos, msg: impl Into<String>) {
        self.diags.push(kind, path.to_string(), pos, msg);
    }

    fn wrong_type(&mut self, path: &Path<'_>, node: &Node<'_>, expected: &str) {
        let msg = format!("expected {expected}, found {}", node.kind_name());
        self.err(K::WrongType, path, node.pos, msg);
    }

    /// Takes a map node apart: reports unknown and duplicate keys; returns the
    /// known entries in declaration order of `fields`.
    fn fields<'n>(
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

    fn string(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<String> {
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
    fn compact(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<CompactString> {
        match node.value {
            NodeValue::Str(s) => Some(CompactString::from(s)),
            _ => {
                self.wrong_type(path, &node, "a string");
                None
            }
        }
    }

    /// A string, or a number written where a version-like string was meant.
    fn lenient_string(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<String> {
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

    fn boolean(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<bool> {
        match node.value {
            NodeValue::Bool(b) => Some(b),
            _ => {
                self.wrong_type(path, &node, "true or false");
                None
            }
        }
    }

    fn count(&mut self, node: Node<'_>, path: &Path<'_>, max: u32, limit: &str) -> Option<u32> {
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

    fn duration(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<Option<Duration>> {
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
    fn timeout(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<Option<Duration>> {
        let pos = node.pos;
        let d = self.duration(node, path)?;
        if let Some(Err(e)) = d.map(check_timeout) {
            self.err(K::Duration, path, pos, e);
            return None;
        }
        Some(d)
    }

    fn priority(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<TaskPriority> {
        let r = match &node.value {
            NodeValue::Str(s) => s.parse::<TaskPriority>(),
            NodeValue::Int(i) => TaskPriority::from_value(*i)
                .ok_or_else(|| format!("priority {i} is out of range; expected low, normal, high or critical (or 1 to 4)")),
            _ => Err(format!("expected a priority (low, normal, high or critical), found {}", node.kind_name())),
        };
        r.map_err(|e| self.err(K::Priority, path, node.pos, e)).ok()
    }

    fn text_enum<T: std::str::FromStr<Err = String>>(
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
    fn object(
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

    fn record_refs(&mut self, node: &Node<'_>, path: &Path<'_>, step: u32) {
        match &node.value {
            NodeValue::Str(s) if s.contains("${") => {
                let rel = relative_to_step(&path.to_string());
                self.map.refs.insert((step, rel), node.pos);
            }
            NodeValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.record_refs(item, &Path::Index(path, i), step);
                }
            }
            NodeValue::Map(entries) => {
                for (k, v) in entries {
                    self.record_refs(v, &Path::Field(path, &k.name), step);
                }
            }
            _ => {}
        }
    }

    fn workflow(&mut self, root: Node<'_>) -> Option<Workflow> {
        let path = Path::Root;
        let root_pos = root.pos;
        let mut f = self.fields(root, &path, WORKFLOW_FIELDS, "a workflow")?;
        let mut wf = Workflow::new(String::new(), String::new());
        match f.take("name") {
            Some((_, n)) => {
                self.map.top.insert("name".into(), n.pos);
                if let Some(s) = self.string(n, &Path::Field(&path, "name")) {
                    wf.name = s;
                }
            }
            None => self.err(
                K::MissingField,
                &path,
                root_pos,
                "missing field `name`: every workflow needs a name",
            ),
        }
        if let Some((_, n)) = f.take("description") {
            wf.description = self
                .string(n, &Path::Field(&path, "description"))
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("version") {
            wf.version = self
                .lenient_string(n, &Path::Field(&path, "version"))
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("parameters") {
            if let NodeValue::Map(entries) = &n.value {
                for (k, _) in entries {
                    self.map.top.insert(format!("parameters.{}", k.name), k.pos);
                }
            }
            wf.parameters = self
                .object(n, &Path::Field(&path, "parameters"), None)
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("env") {
            if let NodeValue::Seq(items) = &n.value {
                for (i, item) in items.iter().enumerate() {
                    self.map.top.insert(format!("env[{i}]"), item.pos);
                }
            }
            wf.env = self.string_list(n, &Path::Field(&path, "env"), None);
        }
        if let Some((_, n)) = f.take("defaults") {
            if let Some(d) = self.defaults(n, &Path::Field(&path, "defaults")) {
                wf.defaults = d;
            }
        }
        if let Some((_, n)) = f.take("status") {
            if let Some(s) =
                self.text_enum::<WorkflowStatus>(n, &Path::Field(&path, "status"), K::InvalidValue)
            {
                wf.status = s;
            }
        }
        if let Some((_, n)) = f.take("metadata") {
            wf.metadata = self
                .object(n, &Path::Field(&path, "metadata"), None)
                .unwrap_or_default();
        }
        match f.take("steps") {
            Some((_, n)) => {
                wf.steps = self.steps(n, &Path::Field(&path, "steps"));
                self.apply_defaults(&mut wf.steps, &wf.defaults);
            }
            None => self.err(
                K::MissingField,
                &path,
                root_pos,
                "missing field `steps`: a workflow needs at least one step",
            ),
        }
        Some(wf)
    }

    fn string_list(
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

    fn defaults(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<StepDefaults> {
        let mut f = self.fields(node, path, DEFAULTS_FIELDS, "step defaults")?;
        let mut d = StepDefaults::default();
        if let Some((_, n)) = f.take("timeout") {
            d.timeout = self.timeout(n, &Path::Field(path, "timeout")).flatten();
        }
        if let Some((_, n)) = f.take("max_retries") {
            d.max_retries = self.count(
                n,
                &Path::Field(path, "max_retries"),
                self.limits.max_retries,
                "max_retries",
            );
        }
        if let Some((_, n)) = f.take("retry") {
            d.retry = self.retry(n, &Path::Field(path, "retry"), &RetryPolicy::default());
        }
        if let Some((_, n)) = f.take("priority") {
            d.priority = self.priority(n, &Path::Field(path, "priority"));
        }
        if let Some((_, n)) = f.take("cache") {
            d.cache = self.boolean(n, &Path::Field(path, "cache"));
        }
        if let Some((_, n)) = f.take("resources") {
            d.resources = self.resources(n, &Path::Field(path, "resources"));
        }
        Some(d)
    }

    fn retry(
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

    fn resources(&mut self, node: Node<'_>, path: &Path<'_>) -> Option<ResourceRequest> {
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

    fn conditions(&mut self, node: Node<'_>, path: &Path<'_>, step: u32) -> Option<Conditions> {
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

    fn mark(&mut self, bit: u8) {
        if let Some(b) = self.explicit.last_mut() {
            *b |= bit;
        }
    }

    /// Gives every step the defaults for the fields it does not set itself.
    fn apply_defaults(&self, steps: &mut [WorkflowStep], d: &StepDefaults) {
        if d.is_empty() {
            return;
        }
        for (s, &set) in steps.iter_mut().zip(&self.explicit) {
            if set & SET_TIMEOUT == 0 && d.timeout.is_some() {
                s.timeout = d.timeout;
            }
            if let (0, Some(m)) = (set & SET_MAX_RETRIES, d.max_retries) {
                s.max_retries = m;
            }
            if let (0, Some(r)) = (set & SET_RETRY, &d.retry) {
                s.retry = r.clone();
            }
            if let (0, Some(p)) = (set & SET_PRIORITY, d.priority) {
                s.priority = p;
            }
            if let (0, Some(c)) = (set & SET_CACHE, d.cache) {
                s.cache = c;
            }
            if let (0, Some(r)) = (set & SET_RESOURCES, &d.resources) {
                s.resources = r.clone();
            }
        }
    }

    fn steps(&mut self, node: Node<'_>, path: &Path<'_>) -> Vec<WorkflowStep> {
        let pos = node.pos;
        let NodeValue::Seq(items) = node.value else {
            self.wrong_type(
                path,
                &Node {
                    pos,
                    value: node.value,
                },
                "a list of steps",
            );
            return Vec::new();
        };
        let count = self.streamed.as_ref().map_or(items.len(), |(_, n)| *n);
        if count == 0 {
            self.err(
                K::MissingField,
                path,
                pos,
                "a workflow needs at least one step",
            );
            return Vec::new();
        }
        if count > self.limits.max_steps {
            let msg = format!(
                "{} steps exceed the limit of {} (limit max_steps)",
                count, self.limits.max_steps
            );
            self.err(K::Limit, path, pos, msg);
            return Vec::new();
        }
        if let Some((streamed, _)) = self.streamed.take() {
            // The steps were decoded while parsing; `items` is empty.
            return streamed;
        }
        let n = items.len();
        self.map.step.reserve_exact(n);
        self.map.name.reserve_exact(n);
        self.map.module.reserve_exact(n);
        self.map.dep_start.reserve_exact(n);
        let mut out = Vec::with_capacity(n);
        // Consuming the list drops each step's subtree once decoded, keeping peak memory low.
        for (i, item) in items.into_iter().enumerate() {
            let step = self.step(item, &Path::Index(path, i), i as u32);
            out.push(step);
        }
        out
    }

    fn step(&mut self, node: Node<'_>, path: &Path<'_>, index: u32) -> WorkflowStep {
        let pos = node.pos;
        self.map.step.push(pos);
        self.map
            .dep_start
            .push(u32::try_from(self.map.dep.len()).unwrap_or(u32::MAX));
        let mut s = WorkflowStep::new("", "", "");
        self.explicit.push(0);
        let Some(mut f) = self.fields(node, path, STEP_FIELDS, "a step") else {
            self.map.name.push(pos);
            self.map.module.push(pos);
            return s;
        };
        for (field, target) in [("name", 0u8), ("module", 1), ("action", 2)] {
            match f.take(field) {
                Some((_, n)) => {
                    let vpos = n.pos;
                    let v = self
                        .compact(n, &Path::Field(path, field))
                        .unwrap_or_default();
                    match target {
                        0 => {
                            self.map.name.push(vpos);
                            s.name = v;
                        }
                        1 => {
                            self.map.module.push(vpos);
                            s.module = v;
                        }
                        _ => s.action = v,
                    }
                }
                None => {
                    match target {
                        0 => self.map.name.push(pos),
                        1 => self.map.module.push(pos),
                        _ => {}
                    }
                    let msg = format!(
                        "missing field `{field}`: every step needs a name, a module and an action"
                    );
                    self.err(K::MissingField, path, pos, msg);
                }
            }
        }
        if let Some((_, n)) = f.take("description") {
            s.description = self
                .string(n, &Path::Field(path, "description"))
                .unwrap_or_default();
        }
        if let Some((_, n)) = f.take("parameters") {
            let p = Path::Field(path, "parameters");
            if !matches!(n.value, NodeValue::Null) {
                s.parameters = self.object(n, &p, Some(index)).unwrap_or_default().into();
            }
        }
        if let Some((_, n)) = f.take("dependencies") {
            let p = Path::Field(path, "dependencies");
            match n.value {
                NodeValue::Null => {}
                NodeValue::Seq(items) => {
                    if items.len() > self.limits.max_dependencies {
                        let msg = format!(
                            "{} dependencies exceed the limit of {} (limit max_dependencies)",
                            items.len(),
                            self.limits.max_dependencies
                        );
                        self.err(K::Limit, &p, n.pos, msg);
                    } else {
                        s.dependencies.reserve_exact(items.len());
                        for (i, item) in items.into_iter().enumerate() {
                            let ipos = item.pos;
                            if let Some(d) = self.compact(item, &Path::Index(&p, i)) {
                                self.map.dep.push(ipos);
                                s.dependencies.push(d);
                            }
                        }
                    }
                }
                other => self.wrong_type(
                    &p,
                    &Node {
                        pos: n.pos,
                        value: other,
                    },
                    "a list of step names",
                ),
            }
        }
        if let Some((_, n)) = f.take("conditions") {
            if !matches!(n.value, NodeValue::Null) {
                if let Some(c) = self.conditions(n, &Path::Field(path, "conditions"), index) {
                    s.conditions = c;
                }
            }
        }
        if let Some((_, n)) = f.take("timeout") {
            self.mark(SET_TIMEOUT);
            if let Some(t) = self.timeout(n, &Path::Field(path, "timeout")) {
                s.timeout = t;
            }
        }
        if let Some((_, n)) = f.take("retry_count") {
            self.count(
                n,
                &Path::Field(path, "retry_count"),
                self.limits.max_retries,
                "max_retries",
            );
        }
        if let Some((_, n)) = f.take("max_retries") {
            self.mark(SET_MAX_RETRIES);
            if let Some(m) = self.count(
                n,
                &Path::Field(path, "max_retries"),
                self.limits.max_retries,
                "max_retries",
            ) {
                s.max_retries = m;
            }
        }
        if let Some((_, n)) = f.take("retry") {
            self.mark(SET_RETRY);
            if let Some(r) = self.retry(n, &Path::Field(path, "retry"), &RetryPolicy::default()) {
                s.retry = r;
            }
        }
        if let Some((_, n)) = f.take("priority") {
            self.mark(SET_PRIORITY);
            if let Some(p) = self.priority(n, &Path::Field(path, "priority")) {
                s.priority = p;
            }
        }
        if let Some((_, n)) = f.take("resources") {
            self.mark(SET_RESOURCES);
            if let Some(r) = self.resources(n, &Path::Field(path, "resources")) {
                s.resources = r;
            }
        }
        if let Some((_, n)) = f.take("cache") {
            self.mark(SET_CACHE);
            if let Some(c) = self.boolean(n, &Path::Field(path, "cache")) {
                s.cache = c;
            }
        }
        s
    }
}

/// `steps[3].parameters.x` → `parameters.x`.
fn relative_to_step(path: &str) -> String {
    match path.find("].") {
        Some(i) if path.starts_with("steps[") => path[i + 2..].to_owned(),
        _ => path.to_owned(),
    }
}

struct Fields<'a> {
    fields: &'static [&'static str],
    /// For each field of `fields`, the index of its slot (`u32::MAX`: absent).
    by_field: [u32; MAX_FIELDS],
    slots: Vec<Option<(Key<'a>, Node<'a>)>>,
    /// Present fields not taken yet: at 0, every other `take` returns at once
    /// (a typical step sets 4 of its 14 fields).
    left: usize,
}

impl<'a> Fields<'a> {
    fn take(&mut self, name: &str) -> Option<(Key<'a>, Node<'a>)> {
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

/// The known field closest to a misspelled one, if it is close enough to be a typo.
fn closest<'a>(name: &str, fields: &[&'a str]) -> Option<&'a str> {
    fields
        .iter()
        .map(|f| (levenshtein(name, f), *f))
        .filter(|(d, f)| *d <= 2.max(f.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

fn levenshtein(a: &str, b: &str) -> usize {
    if a.len() > 64 {
        return usize::MAX;
    }
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggestions() {
        assert_eq!(closest("dependecies", STEP_FIELDS), Some("dependencies"));
        assert_eq!(closest("modul", STEP_FIELDS), Some("module"));
        assert_eq!(closest("zzzzzz", STEP_FIELDS), None);
        assert_eq!(
            relative_to_step("steps[12].parameters.a[0]"),
            "parameters.a[0]"
        );
    }
}
