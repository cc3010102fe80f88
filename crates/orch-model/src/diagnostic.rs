//! Validation problems: each with a kind, a path into the definition and a source position.

use crate::node::Pos;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of problem a [`Diagnostic`] reports. Stable, serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// The text could not be parsed at all.
    Syntax,
    /// A field the format does not know (often a typo).
    UnknownField,
    /// A required field is missing.
    MissingField,
    /// A value has the wrong type (a list where a map is expected, ...).
    WrongType,
    /// A key or step name appears twice.
    Duplicate,
    /// A dependency names no step of the workflow.
    UnknownDependency,
    /// A step depends on itself.
    SelfDependency,
    /// The dependencies form a cycle.
    Cycle,
    /// A `${...}` reference is malformed or refers to something unknown.
    Reference,
    /// A duration is malformed or out of range.
    Duration,
    /// A priority is not low, normal, high or critical.
    Priority,
    /// A resource request is malformed (negative, NaN, too large, unknown type).
    Resource,
    /// A name is empty, too long or outside the allowed charset.
    Name,
    /// A limit of `Limits` is exceeded.
    Limit,
    /// A value is outside its allowed set or range.
    InvalidValue,
    /// A step names a module or action nobody provides.
    UnknownModule,
}

/// One problem found in a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// What kind of problem.
    pub kind: DiagnosticKind,
    /// Where in the definition, e.g. `steps[3].dependencies[0]`; empty for the whole document.
    pub path: String,
    /// Where in the source text, when known.
    #[serde(skip_serializing_if = "pos_unknown", default, with = "pos_serde")]
    pub pos: Pos,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn pos_unknown(p: &Pos) -> bool {
    !p.is_known()
}

mod pos_serde {
    use crate::node::Pos;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        line: u32,
        column: u32,
    }

    pub(super) fn serialize<S: Serializer>(p: &Pos, s: S) -> Result<S::Ok, S::Error> {
        Repr {
            line: p.line,
            column: p.col,
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pos, D::Error> {
        let r = Repr::deserialize(d)?;
        Ok(Pos::new(r.line, r.column))
    }
}

impl Diagnostic {
    /// A new diagnostic.
    pub fn new(
        kind: DiagnosticKind,
        path: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            path: path.into(),
            pos,
            message: message.into(),
        }
    }

    /// Formats the diagnostic as `FILE:LINE:COL: PATH: message`, leaving out
    /// whatever is unknown.
    pub fn display_with_source<'a>(&'a self, source: Option<&'a str>) -> impl fmt::Display + 'a {
        DisplayWith { diag: self, source }
    }
}

struct DisplayWith<'a> {
    diag: &'a Diagnostic,
    source: Option<&'a str>,
}

impl fmt::Display for DisplayWith<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(src) = self.source {
            write!(f, "{src}:")?;
        }
        if self.diag.pos.is_known() {
            write!(f, "{}:{}:", self.diag.pos.line, self.diag.pos.col)?;
        }
        if self.source.is_some() || self.diag.pos.is_known() {
            f.write_str(" ")?;
        }
        if !self.diag.path.is_empty() {
            write!(f, "{}: ", self.diag.path)?;
        }
        f.write_str(&self.diag.message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display_with_source(None).fmt(f)
    }
}

/// Every problem found in one definition, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Diagnostics {
    /// The file or name the definition came from, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// The problems.
    pub problems: Vec<Diagnostic>,
}

impl Diagnostics {
    /// No problems yet, for a definition read from `source`.
    pub fn new(source: Option<String>) -> Self {
        Self {
            source,
            problems: Vec::new(),
        }
    }

    /// Adds a problem.
    pub fn push(
        &mut self,
        kind: DiagnosticKind,
        path: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) {
        self.problems
            .push(Diagnostic::new(kind, path, pos, message));
    }

    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Whether a problem of `kind` was found.
    pub fn has(&self, kind: DiagnosticKind) -> bool {
        self.problems.iter().any(|d| d.kind == kind)
    }

    /// Sorts the problems by position (unknown positions last), then path, keeping
    /// the order of equal ones.
    pub fn sort(&mut self) {
        self.problems.sort_by(|a, b| {
            let ka = (!a.pos.is_known(), a.pos);
            let kb = (!b.pos.is_known(), b.pos);
            ka.cmp(&kb)
        });
    }

    /// One line per problem, `FILE:LINE:COL: PATH: message`.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems
            .iter()
            .map(|d| d.display_with_source(self.source.as_deref()).to_string())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        match self.problems.first() {
            None => f.write_str("no problems"),
            Some(first) if n == 1 => first.display_with_source(self.source.as_deref()).fmt(f),
            Some(first) => write!(
                f,
                "{} (and {} more problem{})",
                first.display_with_source(self.source.as_deref()),
                n - 1,
                if n == 2 { "" } else { "s" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_file_line_col_path_message() {
        let mut d = Diagnostics::new(Some("wf.yaml".into()));
        d.push(
            DiagnosticKind::UnknownDependency,
            "steps[3].dependencies[0]",
            Pos::new(12, 7),
            "no step named `b`",
        );
        d.push(
            DiagnosticKind::Cycle,
            "steps",
            Pos::UNKNOWN,
            "cycle a -> b -> a",
        );
        let lines: Vec<_> = d.lines().collect();
        assert_eq!(
            lines[0],
            "wf.yaml:12:7: steps[3].dependencies[0]: no step named `b`"
        );
        assert_eq!(lines[1], "wf.yaml: steps: cycle a -> b -> a");
        assert!(d.to_string().ends_with("(and 1 more problem)"));
        let json = serde_json::to_value(&d.problems[0]).expect("ser");
        assert_eq!(json["pos"]["line"], 12);
        assert_eq!(json["kind"], "unknown_dependency");
    }
}
