//! What actions a definition may name and what parameters each takes: the
//! declarations ([`ActionSpec`], [`ParamSpec`], [`ParamType`]), the catalog
//! a definition is checked against ([`ActionCatalog`]), and the check itself.
//!
//! The registry of runnable actions lives in orch-tasks; it describes itself
//! as an [`ActionCatalog`] (data only), so that this crate can check a
//! definition's `module.action` and parameters where it decodes them, with
//! the line and column of each key.

use crate::diagnostic::DiagnosticKind;
use crate::node::{Node, NodeValue, Pos};
use crate::reference::parse_template;
use compact_str::CompactString;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The JSON types a parameter accepts: a set, written with `|`, e.g.
/// `ParamType::STRING | ParamType::ARRAY`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParamType(u8);

impl ParamType {
    /// A string.
    pub const STRING: Self = Self(1);
    /// A whole number.
    pub const INTEGER: Self = Self(2);
    /// Any number, whole or not.
    pub const NUMBER: Self = Self(2 | 4);
    /// `true` or `false`.
    pub const BOOLEAN: Self = Self(8);
    /// A list.
    pub const ARRAY: Self = Self(16);
    /// A map (JSON object).
    pub const OBJECT: Self = Self(32);
    /// Any value at all.
    pub const ANY: Self = Self(63);

    /// Both sets (`a | b` in a `const`).
    #[must_use]
    pub const fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every value of `other` is accepted.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The JSON Schema `type` names of the set, in a fixed order.
    pub fn json_types(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.contains(Self::STRING) {
            out.push("string");
        }
        if self.contains(Self::NUMBER) {
            out.push("number");
        } else if self.contains(Self::INTEGER) {
            out.push("integer");
        }
        if self.contains(Self::BOOLEAN) {
            out.push("boolean");
        }
        if self.contains(Self::ARRAY) {
            out.push("array");
        }
        if self.contains(Self::OBJECT) {
            out.push("object");
        }
        out
    }

    /// The set in words, as messages say it: "a string or a list".
    pub fn describe(self) -> String {
        if self == Self::ANY {
            return "any value".to_owned();
        }
        let words: Vec<&str> = self
            .json_types()
            .into_iter()
            .map(|t| match t {
                "string" => "a string",
                "number" => "a number",
                "integer" => "a whole number",
                "boolean" => "true or false",
                "array" => "a list",
                _ => "a map",
            })
            .collect();
        match words.as_slice() {
            [] => "nothing".to_owned(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        }
    }

    /// Whether a value of this kind is accepted.
    fn accepts(self, kind: Kind) -> bool {
        let bit = match kind {
            Kind::Null => return true,
            Kind::Bool => Self::BOOLEAN,
            Kind::Int => Self::INTEGER,
            Kind::Float => Self(4),
            Kind::Str => Self::STRING,
            Kind::Seq => Self::ARRAY,
            Kind::Map => Self::OBJECT,
        };
        self.contains(bit)
    }
}

impl std::ops::BitOr for ParamType {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.or(rhs)
    }
}

impl std::fmt::Debug for ParamType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParamType({})", self.json_types().join("|"))
    }
}

/// One parameter an action declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its key in the step's `parameters`.
    pub name: &'static str,
    /// The JSON types it accepts (`null` always counts as not given).
    pub ty: ParamType,
    /// Whether a step must give it.
    pub required: bool,
    /// What it is, for people (shown in `orch schema` and in messages).
    pub description: &'static str,
}

impl ParamSpec {
    /// A parameter a step must give.
    pub const fn required(name: &'static str, ty: ParamType, description: &'static str) -> Self {
        Self {
            name,
            ty,
            required: true,
            description,
        }
    }

    /// A parameter a step may leave out.
    pub const fn optional(name: &'static str, ty: ParamType, description: &'static str) -> Self {
        Self {
            name,
            ty,
            required: false,
            description,
        }
    }
}

/// What an action declares about its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    /// What the action does, in one line.
    pub description: &'static str,
    /// Its parameters (at most 32).
    pub params: &'static [ParamSpec],
    /// Whether keys other than `params` are accepted (`core.noop` takes
    /// anything); `false`: an unknown key is an error.
    pub open: bool,
}

impl ActionSpec {
    /// The declaration of `name`.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    fn has_required(&self) -> bool {
        self.params.iter().any(|p| p.required)
    }
}

/// The declared actions of one module.
#[derive(Debug, Clone, Default)]
struct Module {
    /// action → its declaration (`None`: declares nothing; any parameters).
    actions: BTreeMap<CompactString, Option<&'static ActionSpec>>,
    /// Served whole by one implementation (an external program): any action, any parameters.
    open: bool,
}

/// Every `module.action` a definition may name, with what each declares:
/// the data a definition is checked against (built from the action
/// registry by orch-tasks; `ActionRegistry::catalog`).
#[derive(Debug, Clone, Default)]
pub struct ActionCatalog {
    modules: BTreeMap<CompactString, Module>,
}

/// What the catalog says about a `module.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// A known action, with its declaration when it has one.
    Known(Option<&'a ActionSpec>),
    /// The module is known but has no such action.
    UnknownAction,
    /// No such module.
    UnknownModule,
}

impl ActionCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `module.action` with its declaration.
    pub fn add_action(&mut self, module: &str, action: &str, spec: Option<&'static ActionSpec>) {
        self.modules
            .entry(module.into())
            .or_default()
            .actions
            .insert(action.into(), spec);
    }

    /// Adds a module served whole by one implementation: every action of
    /// it is known and takes any parameters (actions added by name keep
    /// their declarations).
    pub fn add_module(&mut self, module: &str) {
        self.modules.entry(module.into()).or_default().open = true;
    }

    /// What the catalog knows of `module.action`.
    pub fn lookup(&self, module: &str, action: &str) -> Lookup<'_> {
        match self.modules.get(module) {
            None => Lookup::UnknownModule,
            Some(m) => match m.actions.get(action) {
                Some(spec) => Lookup::Known(*spec),
                None if m.open => Lookup::Known(None),
                None => Lookup::UnknownAction,
            },
        }
    }

    /// Every declared `module.action` with its declaration, sorted.
    pub fn actions(&self) -> impl Iterator<Item = (&str, &str, Option<&'static ActionSpec>)> {
        self.modules.iter().flat_map(|(m, module)| {
            module
                .actions
                .iter()
                .map(move |(a, spec)| (m.as_str(), a.as_str(), *spec))
        })
    }

    /// Every module, sorted.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(CompactString::as_str)
    }

    /// Whether `module` is served whole (any action).
    pub fn is_open_module(&self, module: &str) -> bool {
        self.modules.get(module).is_some_and(|m| m.open)
    }

    /// The message for a `module.action` that [`lookup`](Self::lookup) does
    /// not know, with a "did you mean" where one is close.
    pub fn unknown_message(&self, module: &str, action: &str) -> String {
        let shown = |s: &str| crate::definition::display_snippet(s);
        match self.modules.get(module) {
            Some(m) => {
                let names: Vec<&str> = m.actions.keys().map(CompactString::as_str).collect();
                let mut msg = format!("module `{module}` has no action {}", shown(action));
                match closest(action, &names) {
                    Some(n) => {
                        let _ = write!(msg, "; did you mean `{n}`?");
                    }
                    None => {
                        let _ = write!(msg, "; its actions: {}", names.join(", "));
                    }
                }
                msg
            }
            None => {
                let names: Vec<&str> = self.modules().collect();
                let mut msg = format!("unknown module {} (in `{module}.{action}`)", shown(module));
                if let Some(n) = closest(module, &names) {
                    let _ = write!(msg, "; did you mean `{n}`?");
                } else {
                    let _ = write!(msg, "; known modules: {}", names.join(", "));
                }
                msg.push_str(
                    "; a module served by a program is registered with --module NAME=PROGRAM",
                );
                msg
            }
        }
    }
}

/// The name among `names` closest to `name` by edit distance, when close
/// enough to be a typo (at most 2 edits, or a third of the longer name), or
/// else the one `name` abbreviates (`params` for `parameters`).
pub(crate) fn closest<'a>(name: &str, names: &[&'a str]) -> Option<&'a str> {
    if name.len() > 64 {
        return None;
    }
    names
        .iter()
        .map(|n| (strsim::levenshtein(name, n), *n))
        .filter(|(d, n)| *d > 0 && *d <= 2.max(n.len().max(name.len()) / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
        .or_else(|| {
            let mut shortened = names.iter().filter(|n| abbreviates(name, n));
            match (shortened.next(), shortened.next()) {
                (Some(n), None) => Some(*n),
                _ => None,
            }
        })
}

/// Whether `short` (3 characters or more) is `long` with letters left out,
/// starting with the same letter: `params` of `parameters`, `dir` of `directory`.
fn abbreviates(short: &str, long: &str) -> bool {
    if short.len() < 3 || long.len() <= short.len() || short.get(..1) != long.get(..1) {
        return false;
    }
    let mut rest = long.chars();
    short.chars().all(|c| rest.any(|l| l == c))
}

/// The JSON kind of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Seq,
    Map,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Float => "number",
            Kind::Str => "string",
            Kind::Seq => "list",
            Kind::Map => "map",
        }
    }
}

/// A parameter's value as the check sees it: its kind, and its text when it is a string.
pub(crate) trait ParamValue {
    fn kind(&self) -> Kind;
    fn text(&self) -> Option<&str>;
}

impl ParamValue for Node<'_> {
    fn kind(&self) -> Kind {
        match &self.value {
            NodeValue::Null => Kind::Null,
            NodeValue::Bool(_) => Kind::Bool,
            NodeValue::Int(_) | NodeValue::UInt(_) => Kind::Int,
            NodeValue::Float(_) => Kind::Float,
            NodeValue::Str(_) => Kind::Str,
            NodeValue::Seq(_) => Kind::Seq,
            NodeValue::Map(_) => Kind::Map,
        }
    }

    fn text(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl ParamValue for Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Int,
            Value::Number(_) => Kind::Float,
            Value::String(_) => Kind::Str,
            Value::Array(_) => Kind::Seq,
            Value::Object(_) => Kind::Map,
        }
    }

    fn text(&self) -> Option<&str> {
        self.as_str()
    }
}

/// A string whose type is only known when the run resolves it: exactly one
/// `${...}` reference (it keeps the JSON type of what it names), or a
/// malformed one (reported by the reference check, not here).
fn resolved_later(s: &str) -> bool {
    if !s.contains("${") {
        return false;
    }
    match parse_template(s) {
        Ok(t) => t.single_reference().is_some(),
        Err(_) => true,
    }
}

/// One problem with a step's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamProblem {
    pub(crate) kind: DiagnosticKind,
    /// The parameter's key; `None` for a missing one (reported at the map).
    pub(crate) key: Option<String>,
    pub(crate) pos: Pos,
    pub(crate) message: String,
}

/// Checks a step's parameters against its action's declaration: unknown
/// keys (when the set is closed), values of the wrong type (a `${...}`
/// reference standing alone is accepted: its type is known only when it
/// resolves; `null` counts as not given), and missing required ones.
/// `entries` are the keys in source order with their values and positions
/// (a missing parameter is reported at `map_pos`); nothing is allocated
/// unless there is a problem.
pub(crate) fn check_params<'v, V: ParamValue + 'v>(
    action: (&str, &str),
    spec: &ActionSpec,
    entries: impl IntoIterator<Item = (&'v str, &'v V, Pos)>,
    map_pos: Pos,
    report: &mut dyn FnMut(ParamProblem),
) {
    debug_assert!(spec.params.len() <= 32, "at most 32 declared parameters");
    let mut given: u32 = 0;
    for (key, value, pos) in entries {
        let Some(i) = spec.params.iter().position(|p| p.name == key) else {
            if !spec.open {
                report(ParamProblem {
                    kind: DiagnosticKind::UnknownField,
                    key: Some(key.to_owned()),
                    pos,
                    message: unknown_param(action, spec, key),
                });
            }
            continue;
        };
        let p = &spec.params[i];
        let kind = value.kind();
        if kind != Kind::Null {
            given |= 1 << i;
        }
        if p.ty.accepts(kind) || value.text().is_some_and(resolved_later) {
            continue;
        }
        report(ParamProblem {
            kind: DiagnosticKind::WrongType,
            key: Some(key.to_owned()),
            pos,
            message: format!(
                "parameter `{key}` of `{}.{}` must be {}, found {}",
                action.0,
                action.1,
                p.ty.describe(),
                kind.name()
            ),
        });
    }
    missing(action, spec, given, map_pos, report);
}

/// Reports each required parameter whose bit is not in `given`, at `pos`.
pub(crate) fn missing(
    action: (&str, &str),
    spec: &ActionSpec,
    given: u32,
    pos: Pos,
    report: &mut dyn FnMut(ParamProblem),
) {
    if !spec.has_required() {
        return;
    }
    for (i, p) in spec.params.iter().enumerate() {
        if p.required && given & (1 << i) == 0 {
            report(ParamProblem {
                kind: DiagnosticKind::MissingField,
                key: None,
                pos,
                message: format!(
                    "missing parameter `{}`, which `{}.{}` needs: {}",
                    p.name, action.0, action.1, p.description
                ),
            });
        }
    }
}

fn unknown_param(action: (&str, &str), spec: &ActionSpec, key: &str) -> String {
    let names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
    let shown = crate::definition::display_snippet(key);
    let hint = match closest(key, &names) {
        Some(n) => format!("did you mean `{n}`?"),
        None if names.is_empty() => "it takes no parameters".to_owned(),
        None => format!("its parameters: {}", names.join(", ")),
    };
    format!(
        "unknown parameter {shown} of `{}.{}`; {hint}",
        action.0, action.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EXEC: ActionSpec = ActionSpec {
        description: "run a program",
        params: &[
            ParamSpec::required("program", ParamType::STRING, "the program"),
            ParamSpec::optional("args", ParamType::ARRAY, "its arguments"),
            ParamSpec::optional("ms", ParamType::INTEGER, "a count"),
        ],
        open: false,
    };

    fn problems(params: &Value) -> Vec<ParamProblem> {
        let mut out = Vec::new();
        let map = params.as_object().expect("a map");
        check_params(
            ("shell", "exec"),
            &EXEC,
            map.iter().map(|(k, v)| (k.as_str(), v, Pos::UNKNOWN)),
            Pos::UNKNOWN,
            &mut |p| out.push(p),
        );
        out
    }

    #[test]
    fn suggestions_catch_typos_and_abbreviations() {
        let names = ["workflow", "parameters"];
        assert_eq!(closest("workflw", &names), Some("workflow"));
        assert_eq!(closest("params", &names), Some("parameters"));
        assert_eq!(closest("zzz", &names), None);
        assert_eq!(closest("pa", &names), None, "too short to abbreviate");
    }

    #[test]
    fn types_are_described_in_words_and_schema_names() {
        assert_eq!(ParamType::STRING.describe(), "a string");
        assert_eq!(
            (ParamType::STRING | ParamType::ARRAY).describe(),
            "a string or a list"
        );
        assert_eq!(
            (ParamType::NUMBER | ParamType::STRING).json_types(),
            vec!["string", "number"]
        );
        assert_eq!(ParamType::INTEGER.json_types(), vec!["integer"]);
        assert_eq!(ParamType::ANY.describe(), "any value");
    }

    #[test]
    fn good_parameters_have_no_problem() {
        assert!(problems(&json!({"program": "ls", "args": ["-l"], "ms": 3})).is_empty());
        // null is "not given" for an optional parameter.
        assert!(problems(&json!({"program": "ls", "args": null})).is_empty());
        // A lone reference may resolve to anything.
        assert!(problems(&json!({"program": "ls", "ms": "${params.n}"})).is_empty());
    }

    #[test]
    fn each_kind_of_problem_is_reported() {
        let p = problems(&json!({"progam": "ls", "ms": 1.5, "args": "x ${params.n}"}));
        let kinds: Vec<DiagnosticKind> = p.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            vec![
                DiagnosticKind::UnknownField,
                DiagnosticKind::WrongType,
                DiagnosticKind::WrongType,
                DiagnosticKind::MissingField
            ],
            "{p:?}"
        );
        assert!(p[0].message.contains("did you mean `program`?"), "{p:?}");
        assert_eq!(
            p[1].message,
            "parameter `ms` of `shell.exec` must be a whole number, found number"
        );
        assert!(
            p[2].message.contains("must be a list, found string"),
            "{p:?}"
        );
        assert_eq!(
            p[3].message,
            "missing parameter `program`, which `shell.exec` needs: the program"
        );
        // A null required parameter is missing.
        let p = problems(&json!({"program": null}));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, DiagnosticKind::MissingField);
    }

    #[test]
    fn the_catalog_knows_modules_actions_and_open_modules() {
        static SPEC: ActionSpec = EXEC;
        let mut c = ActionCatalog::new();
        c.add_action("shell", "exec", Some(&SPEC));
        c.add_action("core", "noop", None);
        c.add_module("stats");
        assert_eq!(c.lookup("shell", "exec"), Lookup::Known(Some(&SPEC)));
        assert_eq!(c.lookup("core", "noop"), Lookup::Known(None));
        assert_eq!(c.lookup("stats", "anything"), Lookup::Known(None));
        assert_eq!(c.lookup("shell", "exce"), Lookup::UnknownAction);
        assert_eq!(c.lookup("nosuch", "thing"), Lookup::UnknownModule);
        assert_eq!(
            c.unknown_message("shell", "exce"),
            "module `shell` has no action `exce`; did you mean `exec`?"
        );
        assert!(
            c.unknown_message("shel", "exec")
                .starts_with("unknown module `shel` (in `shel.exec`); did you mean `shell`?"),
            "{}",
            c.unknown_message("shel", "exec")
        );
        assert!(
            c.unknown_message("nosuch", "thing")
                .contains("known modules: core, shell, stats"),
            "{}",
            c.unknown_message("nosuch", "thing")
        );
    }
}
