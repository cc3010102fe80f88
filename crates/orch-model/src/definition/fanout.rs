//! Fan-out: a step run once per item of a list (`for_each:`) or per combination of named lists (`matrix:`), and how its items are made.
//!
//! A fan-out step is expanded into one step per item, appended after the
//! definition's own steps (so that a definition step keeps its index), named
//! `STEP[0]`, `STEP[1]`, ... (or `STEP[os=linux,py=3.12]` for a matrix
//! whose values are short and plain). Each item is a copy of the step with
//! `${item}` (and `${matrix.KEY}`) substituted in its parameters; the step
//! itself stays in the graph as the *gathering* step: it depends on its
//! items, runs no action, and its result is the list of the items' results,
//! in item order (the scheduler's gathering rule).
//!
//! Literal lists and matrices are expanded when the definition is validated
//! (`validate.rs` calls [`plan`] and [`expand_literal`]); a list from
//! `${STEP.result...}` or `${params.NAME}` is known only at run time, when
//! the scheduler calls [`expand_items`] with the resolved list.
//!
//! An item's value is data: a `${...}` inside it is never resolved (the
//! value is escaped where it is substituted).

use super::WorkflowStep;
use crate::map::CompactMap;
use crate::reference::{PathSegment, is_source_parameter};
use compact_str::{CompactString, format_compact};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// How a step runs once per item (`for_each:` or `matrix:`), or which item a
/// generated step is.
#[derive(Debug, Clone, PartialEq)]
pub enum FanOut {
    /// `for_each:` a literal list: one item per element, expanded when the
    /// definition is validated.
    List(Vec<Value>),
    /// `for_each: "${STEP.result...}"` (or `"${params.NAME}"`): one item per
    /// element of the list the reference resolves to, expanded when the step
    /// is released at run time.
    Ref(String),
    /// `matrix:` named lists: one item per combination, the first key
    /// outermost (its value changes slowest); expanded when validated.
    Matrix(Vec<(String, Vec<Value>)>),
    /// A generated step: item `index` of the fan-out step at index `of`.
    /// Never written out: saving a workflow writes its fan-out step, and
    /// loading it expands the items again.
    Item {
        /// The fan-out (gathering) step's index.
        of: u32,
        /// The item's position in the list (or matrix order).
        index: u32,
    },
}

impl FanOut {
    /// Whether this is a generated item step.
    pub fn is_item(&self) -> bool {
        matches!(self, FanOut::Item { .. })
    }

    /// How many items a literal list or matrix has (saturating); `None` for
    /// a list known only at run time and for an item.
    pub fn literal_len(&self) -> Option<usize> {
        match self {
            FanOut::List(v) => Some(v.len()),
            FanOut::Matrix(keys) => Some(
                keys.iter()
                    .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
                    .unwrap_or(usize::MAX),
            ),
            FanOut::Ref(_) | FanOut::Item { .. } => None,
        }
    }
}

impl Serialize for FanOut {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            FanOut::List(v) => m.serialize_entry("for_each", v)?,
            FanOut::Ref(r) => m.serialize_entry("for_each", r)?,
            FanOut::Matrix(keys) => m.serialize_entry("matrix", &MatrixOut(keys))?,
            FanOut::Item { .. } => {}
        }
        m.end()
    }
}

struct MatrixOut<'a>(&'a [(String, Vec<Value>)]);

impl Serialize for MatrixOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Writes a workflow's steps without its generated items (they are made
/// again when the definition is loaded).
pub(crate) fn written_steps<S: Serializer>(
    steps: &[WorkflowStep],
    s: S,
) -> Result<S::Ok, S::Error> {
    let end = first_item(steps);
    let mut seq = s.serialize_seq(Some(end))?;
    for step in &steps[..end] {
        seq.serialize_element(step)?;
    }
    seq.end()
}

/// Where the generated items start (they follow every definition step).
pub fn first_item(steps: &[WorkflowStep]) -> usize {
    steps
        .iter()
        .position(|s| s.fan_out.as_deref().is_some_and(FanOut::is_item))
        .unwrap_or(steps.len())
}

// ----- `${item}` and `${matrix.KEY}` -----

/// What a `${item...}` or `${matrix.KEY...}` reference names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemRef {
    /// `None` for `item`, the key for `matrix.KEY`.
    pub(crate) key: Option<String>,
    pub(crate) path: Vec<PathSegment>,
}

/// A `${...}` found by [`scan`]: its byte range and what it names (or why
/// it is malformed).
pub(crate) struct Found {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) body: String,
    pub(crate) parsed: Result<ItemRef, String>,
}

/// Finds every `${item...}` and `${matrix...}` of a string, with the `$${`
/// escaping rule of the reference grammar. Outside a fan-out step
/// (`in_fan_out` false), `${item.result...}` and `${item.status}` are left
/// to the reference grammar: they name a step called `item`.
pub(crate) fn scan(s: &str, in_fan_out: bool) -> Vec<Found> {
    let mut out = Vec::new();
    if !(s.contains("${item") || s.contains("${matrix")) {
        return out;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let run = i;
        while i < b.len() && b[i] == b'$' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'{' || (i - run) % 2 == 0 {
            continue;
        }
        let open = i - 1;
        let Some(rel) = s[i + 1..].find('}') else {
            break;
        };
        let close = i + 1 + rel;
        let body = &s[i + 1..close];
        i = close + 1;
        let root_end = body.find(['.', '[']).unwrap_or(body.len());
        let (root, rest) = body.split_at(root_end);
        if root != "item" && root != "matrix" {
            continue;
        }
        if !in_fan_out && names_step_member(rest) {
            continue;
        }
        out.push(Found {
            start: open,
            end: close + 1,
            body: body.to_owned(),
            parsed: parse_item_ref(root, rest, body),
        });
    }
    out
}

fn names_step_member(rest: &str) -> bool {
    rest == ".status"
        || rest
            .strip_prefix(".result")
            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
}

fn parse_item_ref(root: &str, rest: &str, body: &str) -> Result<ItemRef, String> {
    if root == "item" {
        return Ok(ItemRef {
            key: None,
            path: crate::reference::parse_path(rest, body)?,
        });
    }
    let Some(after) = rest.strip_prefix('.') else {
        return Err(format!(
            "`{body}`: write `matrix.KEY` to use the value of one of the matrix's keys"
        ));
    };
    let end = after.find(['.', '[']).unwrap_or(after.len());
    let key = &after[..end];
    if key.is_empty() || !key.chars().all(is_key_char) {
        return Err(format!(
            "`{body}`: `{key}` is not a matrix key (letters, digits, `_`, `-`)"
        ));
    }
    Ok(ItemRef {
        key: Some(key.to_owned()),
        path: crate::reference::parse_path(&after[end..], body)?,
    })
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Checks a matrix key name (`[A-Za-z_][A-Za-z0-9_-]*`, at most 64 bytes).
pub(crate) fn check_matrix_key(key: &str) -> Result<(), String> {
    if key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(is_key_char)
    {
        Ok(())
    } else {
        Err(format!(
            "matrix key {} must match [A-Za-z_][A-Za-z0-9_-]* (at most 64 bytes)",
            super::names::display_snippet(key)
        ))
    }
}

/// What is wrong with an item reference in a step with fan-out `fan`
/// (`None`: the step has none), if anything.
pub(crate) fn check_ref(r: &Found, fan: Option<&FanOut>) -> Option<String> {
    let body = &r.body;
    let item = match &r.parsed {
        Err(e) => return Some(e.clone()),
        Ok(item) => item,
    };
    match (fan, &item.key) {
        (None | Some(FanOut::Item { .. }), _) => Some(format!(
            "`${{{body}}}` is defined only in the parameters of a step with `for_each:` or `matrix:`"
        )),
        (Some(FanOut::Matrix(keys)), Some(k)) if !keys.iter().any(|(name, _)| name == k) => {
            let known: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
            Some(format!(
                "`${{{body}}}`: the matrix has no key `{k}` (its keys: {})",
                known.join(", ")
            ))
        }
        (Some(FanOut::List(_) | FanOut::Ref(_)), Some(_)) => Some(format!(
            "`${{{body}}}`: `matrix.KEY` is defined only in a step with `matrix:`; this step has `for_each:`, use `${{item}}`"
        )),
        _ => None,
    }
}

/// The string with each item reference replaced by a neutral literal, so
/// that the reference grammar checks the rest.
pub(crate) fn masked(s: &str, found: &[Found]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut from = 0;
    for f in found {
        out.push_str(&s[from..f.start]);
        out.push('x');
        from = f.end;
    }
    out.push_str(&s[from..]);
    out
}

// ----- Substitution -----

/// What `${item}` and `${matrix.KEY}` stand for in one item.
pub(crate) struct ItemValue<'a> {
    /// The item (for a matrix: the combination as a map).
    pub(crate) item: &'a Value,
}

impl ItemValue<'_> {
    fn get(&self, r: &ItemRef) -> Option<&Value> {
        let mut v = self.item;
        if let Some(k) = &r.key {
            v = v.get(k)?;
        }
        for seg in &r.path {
            v = match seg {
                PathSegment::Field(f) => v.get(f)?,
                PathSegment::Index(i) => v.get(*i)?,
            };
        }
        Some(v)
    }
}

/// Writes literal text so that the reference grammar reads it back
/// unchanged: each run of `$` before `{` is doubled, and a trailing run too
/// when `then_brace` (the text that follows starts with `{`).
fn escape_text(s: &str, then_brace: bool, out: &mut String) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut from = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] == b'$' {
            i += 1;
        }
        let brace = if i < b.len() {
            b[i] == b'{'
        } else {
            then_brace
        };
        if brace {
            out.push_str(&s[from..i]);
            out.push_str(&s[start..i]);
            from = i;
        }
    }
    out.push_str(&s[from..]);
}

/// A copy of `v` whose strings read back unchanged through the reference
/// grammar (data never becomes a reference).
fn escape_value(v: &Value) -> Value {
    match v {
        Value::String(s) if s.contains('$') => {
            let mut out = String::with_capacity(s.len() + 2);
            escape_text(s, false, &mut out);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(escape_value).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), escape_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Substitutes the item into one value; `Err` names the reference that the
/// item cannot answer.
fn substitute_value(v: &Value, item: &ItemValue<'_>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let found = scan(s, true);
            if found.is_empty() {
                return Ok(v.clone());
            }
            let lookup = |f: &Found| -> Result<&Value, String> {
                let r = f.parsed.as_ref().map_err(Clone::clone)?;
                item.get(r).ok_or_else(|| {
                    format!(
                        "`${{{}}}`: the item {} has no such value",
                        f.body,
                        super::names::display_snippet(&item.item.to_string())
                    )
                })
            };
            if let [f] = found.as_slice() {
                if f.start == 0 && f.end == s.len() {
                    // Exactly one reference: the value keeps its JSON type.
                    return Ok(escape_value(lookup(f)?));
                }
            }
            let mut out = String::with_capacity(s.len() + 16);
            let mut from = 0;
            let mut text = String::new();
            for f in &found {
                let then_brace = s.as_bytes().get(f.end) == Some(&b'{');
                text.clear();
                match lookup(f)? {
                    Value::String(t) => escape_text(t, then_brace, &mut text),
                    other => escape_text(&other.to_string(), then_brace, &mut text),
                }
                // The `$$` pairs before the reference stand for literal `$`s:
                // still paired when what follows opens a `{`, single otherwise.
                let piece = &s[from..f.start];
                let pairs = piece.len() - piece.trim_end_matches('$').len();
                out.push_str(&piece[..piece.len() - pairs]);
                let lead = text.trim_start_matches('$');
                let brace = lead.starts_with('{') || (lead.is_empty() && then_brace);
                let dollars = if brace { pairs } else { pairs / 2 };
                out.extend(std::iter::repeat_n('$', dollars));
                out.push_str(&text);
                from = f.end;
            }
            out.push_str(&s[from..]);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| substitute_value(i, item))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), substitute_value(i, item)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The parameters of one item: `${item...}` and `${matrix.KEY...}`
/// substituted (program source such as `shell.script`'s `script` is left
/// alone: validation refuses any reference there). `Err`: the parameter's
/// path and the message.
pub(crate) fn item_parameters(
    t: &WorkflowStep,
    item: &Value,
) -> Result<CompactMap, (String, String)> {
    let iv = ItemValue { item };
    let mut out = Map::with_capacity(t.parameters.len());
    for (k, v) in &t.parameters {
        let v = if is_source_parameter(&t.module, &t.action, k) {
            v.clone()
        } else {
            substitute_value(v, &iv).map_err(|m| (format!("parameters.{k}"), m))?
        };
        out.insert(k.clone(), v);
    }
    Ok(out.into())
}

/// A fan-out step's parameters with every reference but `${item...}` and
/// `${matrix...}` resolved by `resolve` (which answers one template, as the
/// scheduler resolves a string: a lone reference keeps its JSON type) and
/// written back as literal text, so that only the item references are left:
/// what a list known at run time is expanded with. Program source (see
/// [`is_source_parameter`]) is left alone.
///
/// # Errors
/// The first error of `resolve`.
pub fn resolve_outside_items(
    t: &WorkflowStep,
    resolve: &mut dyn FnMut(&str) -> Result<Value, String>,
) -> Result<CompactMap, String> {
    let mut out = Map::with_capacity(t.parameters.len());
    for (k, v) in &t.parameters {
        let v = if is_source_parameter(&t.module, &t.action, k) {
            v.clone()
        } else {
            outside_items(v, resolve)?
        };
        out.insert(k.clone(), v);
    }
    Ok(out.into())
}

fn outside_items(
    v: &Value,
    resolve: &mut dyn FnMut(&str) -> Result<Value, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let found = scan(s, true);
            if found.is_empty() {
                return Ok(escape_value(&resolve(s)?));
            }
            let mut out = String::with_capacity(s.len());
            let mut from = 0;
            for f in &found {
                // The `$$` pairs just before the reference stay as they are.
                let piece = &s[from..f.start];
                let pairs = piece.len() - piece.trim_end_matches('$').len();
                let core = &piece[..piece.len() - pairs];
                if !core.is_empty() {
                    let text = match resolve(core)? {
                        Value::String(t) => t,
                        other => other.to_string(),
                    };
                    // A `$` at the end runs into the reference's: doubled.
                    escape_text(&text, true, &mut out);
                }
                out.push_str(&piece[core.len()..]);
                out.push_str(&s[f.start..f.end]);
                from = f.end;
            }
            let rest = &s[from..];
            if !rest.is_empty() {
                let text = match resolve(rest)? {
                    Value::String(t) => t,
                    other => other.to_string(),
                };
                escape_text(&text, false, &mut out);
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| outside_items(i, resolve))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), outside_items(i, resolve)?)))
                .collect::<Result<Map<_, _>, String>>()?,
        ),
        other => other.clone(),
    })
}

// ----- Items -----

/// The items of a fan-out, in order: each one's value (for a matrix, the
/// combination as a map) and name.
#[derive(Debug)]
pub struct Items<'a> {
    step: &'a str,
    kind: ItemsOf<'a>,
    keyed: bool,
}

#[derive(Debug)]
enum ItemsOf<'a> {
    List(&'a [Value]),
    Matrix(&'a [(String, Vec<Value>)]),
}

impl<'a> Items<'a> {
    /// The items of a literal list, a matrix, or (for `for_each: "${...}"`)
    /// the list it resolved to, given as `resolved`.
    pub fn new(step: &'a str, fan: &'a FanOut, resolved: Option<&'a [Value]>) -> Self {
        let kind = match (fan, resolved) {
            (_, Some(list)) => ItemsOf::List(list),
            (FanOut::List(list), None) => ItemsOf::List(list),
            (FanOut::Matrix(keys), None) => ItemsOf::Matrix(keys),
            (FanOut::Ref(_) | FanOut::Item { .. }, None) => ItemsOf::List(&[]),
        };
        let keyed = match &kind {
            ItemsOf::Matrix(keys) => keys.iter().all(|(_, vals)| {
                let mut seen: Vec<String> = Vec::with_capacity(vals.len());
                vals.iter().all(|v| match plain_text(v) {
                    Some(t) if !seen.contains(&t) => {
                        seen.push(t);
                        true
                    }
                    _ => false,
                })
            }),
            ItemsOf::List(_) => false,
        };
        Items { step, kind, keyed }
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        match &self.kind {
            ItemsOf::List(v) => v.len(),
            ItemsOf::Matrix(keys) => keys
                .iter()
                .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
                .unwrap_or(usize::MAX),
        }
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `k`'s value (a borrowed list element, or a matrix combination).
    pub fn value(&self, k: usize) -> std::borrow::Cow<'a, Value> {
        match &self.kind {
            ItemsOf::List(v) => std::borrow::Cow::Borrowed(&v[k]),
            ItemsOf::Matrix(keys) => {
                let mut m = Map::with_capacity(keys.len());
                for (key, j) in keys.iter().zip(matrix_indices(keys, k)) {
                    m.insert(key.0.clone(), key.1[j].clone());
                }
                std::borrow::Cow::Owned(Value::Object(m))
            }
        }
    }

    /// Item `k`'s step name: `STEP[k]`, or `STEP[key=value,...]` for a matrix
    /// whose values are all short plain scalars, distinct per key.
    pub fn name(&self, k: usize) -> CompactString {
        match &self.kind {
            ItemsOf::Matrix(keys) if self.keyed => {
                let mut name = CompactString::from(self.step);
                name.push('[');
                for (n, (key, j)) in keys.iter().zip(matrix_indices(keys, k)).enumerate() {
                    if n > 0 {
                        name.push(',');
                    }
                    let _ = write!(
                        name,
                        "{}={}",
                        key.0,
                        plain_text(&key.1[j]).unwrap_or_default()
                    );
                }
                name.push(']');
                name
            }
            _ => format_compact!("{}[{k}]", self.step),
        }
    }
}

/// The index into each key's list of matrix combination `k` (the last key
/// changes fastest).
fn matrix_indices(keys: &[(String, Vec<Value>)], mut k: usize) -> Vec<usize> {
    let mut idx = vec![0; keys.len()];
    for (slot, (_, vals)) in idx.iter_mut().zip(keys).rev() {
        let n = vals.len().max(1);
        *slot = k % n;
        k /= n;
    }
    idx
}

/// A matrix value as it appears in an item's name: a scalar of at most 40
/// bytes without separators, brackets, quotes, whitespace or control
/// characters.
fn plain_text(v: &Value) -> Option<String> {
    let t = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    let ok = !t.is_empty()
        && t.len() <= 40
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | ':'));
    ok.then_some(t)
}

/// Makes the steps of every item of fan-out step `t` (at index `of`), in
/// order, into `out`: copies of `t` named for their item, with the item
/// substituted in their parameters. `Err`: the parameter's path and why an
/// item cannot fill it (then nothing more is made).
pub fn expand_items(
    t: &WorkflowStep,
    of: u32,
    items: &Items<'_>,
    out: &mut Vec<WorkflowStep>,
) -> Result<(), (String, String)> {
    let mut base = t.clone();
    base.fan_out = None;
    base.parameters = CompactMap::default();
    let n = items.len();
    out.reserve(n);
    for k in 0..n {
        let value = items.value(k);
        let mut step = base.clone();
        step.name = items.name(k);
        step.parameters = item_parameters(t, &value)?;
        step.fan_out = Some(Box::new(FanOut::Item {
            of,
            index: u32::try_from(k).unwrap_or(u32::MAX),
        }));
        out.push(step);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(template: &str, item: Value) -> Value {
        let mut t = WorkflowStep::new("s", "core", "noop");
        t.parameters
            .insert("p".into(), Value::String(template.into()));
        let p = item_parameters(&t, &item).expect("substitutes");
        p.get("p").cloned().unwrap_or(Value::Null)
    }

    #[test]
    fn a_lone_item_reference_keeps_its_type_and_text_is_rendered() {
        assert_eq!(sub("${item}", json!({"a": 1})), json!({"a": 1}));
        assert_eq!(sub("${item.a[1]}", json!({"a": [1, 2]})), json!(2));
        assert_eq!(sub("n=${item}!", json!(3)), json!("n=3!"));
        assert_eq!(sub("${item}-${item}", json!("x")), json!("x-x"));
        // Other references are left to the run; escapes are kept.
        assert_eq!(
            sub("${params.a} $${item} ${item}", json!("v")),
            json!("${params.a} $${item} v")
        );
        assert_eq!(sub("$$${item}", json!("1")), json!("$1"));
        let kept = sub("$$${item}", json!("{a}"));
        let t = crate::reference::parse_template(kept.as_str().expect("text")).expect("parses");
        assert_eq!(t.render_with(|_| Err(())), Ok("${a}".to_owned()));
    }

    #[test]
    fn item_values_are_data_that_never_becomes_a_reference() {
        use crate::reference::parse_template;
        let text = sub("<${item}>", json!("${env.HOME}"));
        let s = text.as_str().expect("text");
        let t = parse_template(s).expect("parses");
        assert!(t.is_literal(), "{s}");
        assert_eq!(t.to_string(), s);
        // A `$` at the end of the value before a `{` of the template.
        let text = sub("${item}{x}", json!("a$"));
        let t = parse_template(text.as_str().expect("text")).expect("parses");
        assert!(t.is_literal());
        // A lone reference: every string inside the value is escaped.
        let v = sub("${item}", json!({"k": "${run.id}"}));
        let t = parse_template(v["k"].as_str().expect("text")).expect("parses");
        assert!(t.is_literal());
    }

    #[test]
    fn references_outside_items_are_resolved_and_kept_literal() {
        use crate::reference::parse_template;
        let mut t = WorkflowStep::new("s", "core", "noop");
        t.parameters
            .insert("a".into(), json!("${x.result} and ${item} $$${item}!"));
        t.parameters.insert("b".into(), json!("${x.result}"));
        let mut resolve = |s: &str| -> Result<Value, String> {
            let t = parse_template(s).map_err(|_| "bad".to_owned())?;
            Ok(match t.single_reference() {
                Some(_) => json!({"v": "${env.NOPE}"}),
                None => json!(t.render_with(|_| Ok::<_, String>("R$".to_owned()))?),
            })
        };
        let p = resolve_outside_items(&t, &mut resolve).expect("resolves");
        let a = p.get("a").and_then(Value::as_str).expect("text");
        assert_eq!(sub(a, json!(1)), json!("R$ and 1 $1!"));
        // A lone reference keeps its type; its strings stay data.
        let b = p.get("b").expect("b");
        let inner = b["v"].as_str().expect("text");
        assert!(parse_template(inner).expect("parses").is_literal());
    }

    #[test]
    fn matrix_items_come_in_order_with_readable_names() {
        let fan = FanOut::Matrix(vec![
            ("os".into(), vec![json!("linux"), json!("mac")]),
            ("py".into(), vec![json!("3.11"), json!(3.12)]),
        ]);
        let items = Items::new("test", &fan, None);
        assert_eq!(items.len(), 4);
        let names: Vec<_> = (0..4).map(|k| items.name(k).to_string()).collect();
        assert_eq!(
            names,
            [
                "test[os=linux,py=3.11]",
                "test[os=linux,py=3.12]",
                "test[os=mac,py=3.11]",
                "test[os=mac,py=3.12]"
            ]
        );
        assert_eq!(*items.value(2), json!({"os": "mac", "py": "3.11"}));
        // Values that do not make plain names: indices.
        let fan = FanOut::Matrix(vec![("v".into(), vec![json!("a b"), json!("c")])]);
        assert_eq!(Items::new("t", &fan, None).name(1), "t[1]");
        // An empty key: no item.
        let fan = FanOut::Matrix(vec![("a".into(), vec![json!(1)]), ("b".into(), vec![])]);
        assert_eq!(Items::new("t", &fan, None).len(), 0);
    }

    #[test]
    fn item_references_are_found_and_checked() {
        let found = scan("${item.result} ${matrix.os} $${item}", false);
        assert_eq!(found.len(), 1, "a step named item keeps its result");
        let list = FanOut::List(vec![]);
        assert!(check_ref(&found[0], None).is_some());
        assert!(check_ref(&found[0], Some(&list)).is_some());
        let m = FanOut::Matrix(vec![("os".into(), vec![])]);
        assert!(check_ref(&found[0], Some(&m)).is_none());
        let bad = scan("${matrix.py}", true);
        let msg = check_ref(&bad[0], Some(&m)).expect("unknown key");
        assert!(msg.contains("no key `py`"), "{msg}");
        assert_eq!(
            masked("a${item}b", &scan("a${item}b", true)),
            "axb".to_owned()
        );
    }
}
