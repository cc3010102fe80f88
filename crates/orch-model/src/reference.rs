//! The `${...}` reference grammar: a small hand-written parser with spans, and its renderer.
//!
//! A *template* is text with embedded references. Inside `${` and `}` stands
//! exactly one reference, without whitespace:
//!
//! - `params.NAME` (NAME: `[A-Za-z_][A-Za-z0-9_-]*`)
//! - `STEP.result`, optionally followed by a path of `.field`
//!   (`[A-Za-z0-9_-]+`) and `[N]` (a decimal index) parts:
//!   `STEP.result.by_language.rust[0].lines`
//! - `STEP.status`
//! - `run.id`, `project.path`, `schedule.time`
//! - `env.NAME` (NAME: `[A-Za-z_][A-Za-z0-9_]*`)
//! - in a fan-out step's parameters, `item[.path]` and `matrix.KEY[.path]`
//!   (parsed by `crate::definition::fanout`)
//!
//! [`FORMS`] lists them all, for the messages that name them.
//!
//! STEP is `[A-Za-z0-9_-]+` and not one of the roots `params`, `run`,
//! `project`, `env`. There is no expression language. `secrets.NAME` is
//! refused with advice: a secret reaches a step only as an environment
//! variable (a step's `secrets:` list), never through substitution.
//!
//! Escaping: `$${` is a literal `${`. More precisely, in a run of `$` signs
//! directly followed by `{`, each pair `$$` stands for one literal `$`; if one
//! `$` is left over, it opens a reference, otherwise the `{` is literal. A `$`
//! not followed by `{` is always literal (`$$` in a shell snippet stays `$$`).
//! The renderer applies the same rule in reverse, so `parse(render(t)) == t`.

use std::fmt;

/// A byte range of the parsed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// One part of a result path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// `.field`: a key of a map.
    Field(String),
    /// `[N]`: an element of a list.
    Index(usize),
}

/// One reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `params.NAME`.
    Param(String),
    /// `STEP.result[.path]`.
    StepResult {
        /// The step.
        step: String,
        /// The path into its result (empty for the whole result).
        path: Vec<PathSegment>,
    },
    /// `STEP.status`.
    StepStatus(String),
    /// `run.id`.
    RunId,
    /// `project.path`.
    ProjectPath,
    /// `schedule.time`: the tick a scheduled run was started for (RFC 3339).
    ScheduleTime,
    /// `env.NAME`.
    Env(String),
}

impl Reference {
    /// The step a step reference names.
    pub fn step(&self) -> Option<&str> {
        match self {
            Reference::StepResult { step, .. } | Reference::StepStatus(step) => Some(step),
            _ => None,
        }
    }

    /// Whether this is a reference to a step's result.
    pub fn is_result(&self) -> bool {
        matches!(self, Reference::StepResult { .. })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Param(n) => write!(f, "params.{n}"),
            Reference::StepResult { step, path } => {
                write!(f, "{step}.result")?;
                for seg in path {
                    match seg {
                        PathSegment::Field(name) => write!(f, ".{name}")?,
                        PathSegment::Index(i) => write!(f, "[{i}]")?,
                    }
                }
                Ok(())
            }
            Reference::StepStatus(step) => write!(f, "{step}.status"),
            Reference::RunId => f.write_str("run.id"),
            Reference::ProjectPath => f.write_str("project.path"),
            Reference::ScheduleTime => f.write_str("schedule.time"),
            Reference::Env(n) => write!(f, "env.{n}"),
        }
    }
}

/// A part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text (already unescaped).
    Literal(String),
    /// A reference, with the span of its whole `${...}`.
    Ref {
        /// The reference.
        reference: Reference,
        /// Where `${...}` stands in the input.
        span: Span,
    },
}

/// A parsed template. Canonical: no empty literal, no two adjacent literals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// The parts, in order.
    pub segments: Vec<Segment>,
}

/// A malformed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceError {
    /// What is wrong and how to fix it.
    pub message: String,
    /// Where, in bytes of the input.
    pub span: Span,
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReferenceError {}

/// Every form a reference takes, with an instance of it: the one list
/// the messages that name the forms are made from (the tests parse each
/// instance, and name the form of every [`Reference`]).
pub const FORMS: &[(&str, &str)] = &[
    ("params.NAME", "params.n"),
    ("STEP.result[.path]", "s.result.a[0]"),
    ("STEP.status", "s.status"),
    ("run.id", "run.id"),
    ("project.path", "project.path"),
    ("schedule.time", "schedule.time"),
    ("env.NAME", "env.N"),
    ("item[.path]", "item.a"),
    ("matrix.KEY", "matrix.k"),
];

/// `expected A, B, ... or Z`: every form of [`FORMS`].
fn expected() -> String {
    let forms: Vec<&str> = FORMS.iter().map(|(form, _)| *form).collect();
    match forms.split_last() {
        Some((last, rest)) if !rest.is_empty() => {
            format!("expected {} or {last}", rest.join(", "))
        }
        _ => format!("expected {}", forms.join("")),
    }
}

/// Whether the text contains `${` at all; strings without it need no parsing.
pub fn contains_reference_syntax(input: &str) -> bool {
    input.contains("${")
}

/// Parses a template, reporting every malformed reference.
///
/// # Errors
/// One [`ReferenceError`] per malformed reference; scanning continues after
/// each, except after an unterminated `${`, which ends the input.
pub fn parse_template(input: &str) -> Result<Template, Vec<ReferenceError>> {
    let (template, errors) = parse_template_partial(input);
    if errors.is_empty() {
        Ok(template)
    } else {
        Err(errors)
    }
}

/// Parses as much as possible: the template of every well-formed part (a
/// malformed reference is left out) and every error, so that callers can
/// check the good references and report the bad ones in one pass.
pub fn parse_template_partial(input: &str) -> (Template, Vec<ReferenceError>) {
    let bytes = input.as_bytes();
    let mut segments: Vec<Segment> = Vec::new();
    let mut literal = String::new();
    let mut errors = Vec::new();
    let mut i = 0;
    let mut lit_start = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < bytes.len() && bytes[i] == b'$' {
            i += 1;
        }
        let k = i - run_start;
        if i >= bytes.len() || bytes[i] != b'{' {
            continue; // Dollars not before `{` are literal; they stay in the pending slice.
        }
        literal.push_str(&input[lit_start..run_start]);
        literal.extend(std::iter::repeat_n('$', k / 2));
        if k % 2 == 0 {
            literal.push('{');
            i += 1;
            lit_start = i;
            continue;
        }
        // A reference opens at the last `$`.
        let open = i - 1;
        let body_start = i + 1;
        match input[body_start..].find('}') {
            None => {
                errors.push(ReferenceError {
                    message: "`${` is never closed with `}`; write `$${` for a literal `${`".into(),
                    span: Span {
                        start: open,
                        end: bytes.len(),
                    },
                });
                lit_start = bytes.len();
                i = bytes.len();
            }
            Some(rel) => {
                let close = body_start + rel;
                let span = Span {
                    start: open,
                    end: close + 1,
                };
                match parse_reference(&input[body_start..close]) {
                    Ok(reference) => {
                        if !literal.is_empty() {
                            segments.push(Segment::Literal(std::mem::take(&mut literal)));
                        }
                        segments.push(Segment::Ref { reference, span });
                    }
                    Err(message) => errors.push(ReferenceError { message, span }),
                }
                i = close + 1;
                lit_start = i;
            }
        }
    }
    literal.push_str(&input[lit_start.min(bytes.len())..]);
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    (Template { segments }, errors)
}

fn is_step_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_ident(name: &str, what: &str, allow_dash: bool, full: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dash && c == '-'));
    if ok {
        Ok(())
    } else {
        let allowed = if allow_dash {
            "[A-Za-z_][A-Za-z0-9_-]*"
        } else {
            "[A-Za-z_][A-Za-z0-9_]*"
        };
        Err(format!(
            "`{full}`: `{name}` is not a valid {what} name (it must match {allowed})"
        ))
    }
}

fn parse_reference(body: &str) -> Result<Reference, String> {
    if body.is_empty() {
        return Err(format!("empty reference `${{}}`; {}", expected()));
    }
    if body.contains("${") || body.contains('{') {
        return Err(format!(
            "`{body}`: a reference cannot contain another `${{`; references do not nest"
        ));
    }
    if body.chars().any(char::is_whitespace) {
        return Err(format!("`{body}`: remove the whitespace inside `${{...}}`"));
    }
    if body
        .chars()
        .any(|c| !(is_step_char(c) || c == '.' || c == '[' || c == ']'))
    {
        return Err(format!(
            "`{body}` is not a reference: orch has no expression language; {}",
            expected()
        ));
    }
    let root_end = body.find(['.', '[']).unwrap_or(body.len());
    let root = &body[..root_end];
    let rest = &body[root_end..];
    if root.is_empty() {
        return Err(format!(
            "`{body}` is not a reference: it has no root; {}",
            expected()
        ));
    }
    let member = |rest: &str| -> Option<String> { rest.strip_prefix('.').map(str::to_owned) };
    match root {
        "params" => {
            let name = member(rest)
                .ok_or_else(|| format!("`{body}`: write `params.NAME` to use a parameter"))?;
            check_ident(&name, "parameter", true, body)?;
            Ok(Reference::Param(name))
        }
        "env" => {
            let name = member(rest).ok_or_else(|| {
                format!("`{body}`: write `env.NAME` to use an environment variable")
            })?;
            check_ident(&name, "environment variable", false, body)?;
            Ok(Reference::Env(name))
        }
        "run" => match rest {
            ".id" => Ok(Reference::RunId),
            _ => Err(format!("`{body}`: the only member of `run` is `run.id`")),
        },
        "project" => match rest {
            ".path" => Ok(Reference::ProjectPath),
            _ => Err(format!(
                "`{body}`: the only member of `project` is `project.path`"
            )),
        },
        "secrets" if !is_step_member(rest) => Err(secret_reference_error(body, rest)),
        // A step named `schedule` keeps its `.result` and `.status`.
        "schedule" if rest == ".time" => Ok(Reference::ScheduleTime),
        step => {
            if rest.is_empty() {
                return Err(format!(
                    "`{body}` is not a reference: use `{step}.result` for a step's result or `{step}.status` for its status; {}",
                    expected()
                ));
            }
            if let Some(after) = rest.strip_prefix(".result") {
                if after.is_empty() || after.starts_with(['.', '[']) {
                    let path = parse_path(after, body)?;
                    return Ok(Reference::StepResult {
                        step: step.to_owned(),
                        path,
                    });
                }
            }
            if rest == ".status" {
                return Ok(Reference::StepStatus(step.to_owned()));
            }
            let got = rest
                .trim_start_matches('.')
                .split(['.', '['])
                .next()
                .unwrap_or("");
            Err(format!(
                "`{body}`: a step has `result` and `status`, not `{got}`; write `{step}.result` or `{step}.status`"
            ))
        }
    }
}

pub(crate) fn parse_path(mut s: &str, body: &str) -> Result<Vec<PathSegment>, String> {
    let mut out = Vec::new();
    while !s.is_empty() {
        if let Some(after) = s.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            if field.is_empty() || !field.chars().all(is_step_char) {
                return Err(format!(
                    "`{body}`: expected a field name after `.` (letters, digits, `_`, `-`)"
                ));
            }
            out.push(PathSegment::Field(field.to_owned()));
            s = &after[end..];
        } else if let Some(after) = s.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("`{body}`: `[` is never closed with `]`"))?;
            let digits = &after[..end];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{body}`: `[{digits}]` is not a list index; write a number such as `[0]`"
                ));
            }
            let n = digits
                .parse::<usize>()
                .map_err(|_| format!("`{body}`: the index `{digits}` is too large"))?;
            out.push(PathSegment::Index(n));
            s = &after[end + 1..];
        } else {
            return Err(format!(
                "`{body}`: expected `.field` or `[index]` in the result path"
            ));
        }
    }
    Ok(out)
}

impl Template {
    /// The reference, when the template is exactly one reference (it then keeps
    /// the JSON type of the value when substituted).
    pub fn single_reference(&self) -> Option<&Reference> {
        match self.segments.as_slice() {
            [Segment::Ref { reference, .. }] => Some(reference),
            _ => None,
        }
    }

    /// Every reference, in order.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Ref { reference, .. } => Some(reference),
            Segment::Literal(_) => None,
        })
    }

    /// Whether the template holds no reference.
    pub fn is_literal(&self) -> bool {
        self.references().next().is_none()
    }

    /// Renders the template to text, replacing each reference by `f`'s text.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn render_with<E>(
        &self,
        mut f: impl FnMut(&Reference) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Ref { reference, .. } => out.push_str(&f(reference)?),
            }
        }
        Ok(out)
    }
}

/// Writes literal text so that it parses back unchanged: every run of `$`
/// directly before `{` (or, at the end, before a following reference) is doubled.
fn write_literal(f: &mut fmt::Formatter<'_>, s: &str, before_ref: bool) -> fmt::Result {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut from = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] == b'$' {
            i += 1;
        }
        let doubled = if i < bytes.len() {
            bytes[i] == b'{'
        } else {
            before_ref
        };
        if doubled {
            f.write_str(&s[from..i])?;
            f.write_str(&s[start..i])?;
            from = i;
        }
    }
    f.write_str(&s[from..])
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Literal(s) => {
                    let before_ref = matches!(self.segments.get(k + 1), Some(Segment::Ref { .. }));
                    write_literal(f, s, before_ref)?;
                }
                Segment::Ref { reference, .. } => write!(f, "${{{reference}}}")?,
            }
        }
        Ok(())
    }
}

/// Whether `rest` (what follows a root) is a step's `.result...` or `.status`,
/// so that a step named `secrets` keeps its references.
fn is_step_member(rest: &str) -> bool {
    rest == ".status"
        || rest
            .strip_prefix(".result")
            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
}

/// Why `${secrets.NAME}` is refused everywhere: a substituted value could
/// reach a command line (argv is readable by every user of the machine), a
/// stored parameter or a result.
fn secret_reference_error(body: &str, rest: &str) -> String {
    let name = rest.trim_start_matches('.');
    let name = if name.is_empty() { "NAME" } else { name };
    format!(
        "`{body}`: secrets are never substituted into parameters, where a value could reach a command line, \
         a log or the store; give the secret to the step with `secrets: [{name}]` and the step's process reads \
         it from the environment variable `{name}` (in a script: \"${name}\")"
    )
}

/// Parameters whose value is program source text, as `(module, action,
/// parameter)`: a value spliced into them would become code (`$(...)`,
/// backticks, `;` in a shell script). A `${...}` reference in them is refused
/// by validation and, again, when parameters are resolved; values reach such
/// programs through other parameters (`env`, `args`) instead.
pub const SOURCE_PARAMETERS: &[(&str, &str, &str)] = &[("shell", "script", "script")];

/// Whether parameter `key` of `module.action` is program source text (see
/// [`SOURCE_PARAMETERS`]), where references are not allowed.
pub fn is_source_parameter(module: &str, action: &str, key: &str) -> bool {
    SOURCE_PARAMETERS
        .iter()
        .any(|&(m, a, k)| m == module && a == action && k == key)
}

/// Why `text`, the value of a source parameter (see [`SOURCE_PARAMETERS`]),
/// cannot be used: it holds a `${...}` (well-formed or not) that orch would
/// read as a reference. `None` when it holds none (`$${` escapes are fine:
/// `$${HOME}` reaches the program as `${HOME}`). The message names the
/// first reference and says how to pass the value instead.
pub fn source_reference_error(module: &str, action: &str, key: &str, text: &str) -> Option<String> {
    if !text.contains("${") {
        return None;
    }
    let (template, errors) = parse_template_partial(text);
    let first_ref = template.segments.iter().find_map(|s| match s {
        Segment::Ref { reference, span } => Some((span.start, Some(reference), *span)),
        Segment::Literal(_) => None,
    });
    let first_err = errors.first().map(|e| (e.span.start, None, e.span));
    let (_, reference, span) = match (first_ref, first_err) {
        (Some(r), Some(e)) => {
            if r.0 <= e.0 {
                r
            } else {
                e
            }
        }
        (Some(r), None) => r,
        (None, Some(e)) => e,
        (None, None) => return None,
    };
    let shown: String = text
        .get(span.start..span.end)
        .unwrap_or("${")
        .chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect();
    let count = template.references().count() + errors.len();
    let more = if count > 1 {
        format!(" (and {} more)", count - 1)
    } else {
        String::new()
    };
    let var = reference.map_or_else(|| "VALUE".to_owned(), suggested_variable);
    let example = match reference {
        Some(r) => format!("`env: {{ {var}: \"${{{r}}}\" }}`"),
        None => format!("`env: {{ {var}: \"${{...}}\" }}`"),
    };
    Some(format!(
        "`{shown}`{more} in the `{key}` of a {module}.{action} step would be pasted into the program's source text, \
         where a value can become code; orch never does that. Pass the value through `env:` \
         (e.g. {example}, then use \"${var}\" in the script) or through `args:` (as \"$1\"); \
         for the shell's own `${{...}}` syntax write `$${{` (e.g. `$${{HOME}}`)"
    ))
}

/// Checks the parameters of a step or task that runs `module.action`: every
/// string inside a source parameter (see [`SOURCE_PARAMETERS`]) must hold no
/// `${...}`. For callers without a definition's positions, such as the
/// `TaskOrchestrator`; workflow validation reports each string at its place.
///
/// # Errors
/// The first offending parameter, named, with [`source_reference_error`]'s advice.
pub fn check_source_parameters(
    module: &str,
    action: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    fn first(module: &str, action: &str, key: &str, v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) => source_reference_error(module, action, key, s),
            serde_json::Value::Array(items) => {
                items.iter().find_map(|i| first(module, action, key, i))
            }
            serde_json::Value::Object(m) => m.values().find_map(|i| first(module, action, key, i)),
            _ => None,
        }
    }
    for (key, value) in params {
        if is_source_parameter(module, action, key) {
            if let Some(m) = first(module, action, key, value) {
                return Err(format!("parameter `{key}`: {m}"));
            }
        }
    }
    Ok(())
}

/// An environment variable name for a reference's value, for messages.
fn suggested_variable(r: &Reference) -> String {
    let base = match r {
        Reference::Param(n) | Reference::Env(n) => n.clone(),
        Reference::StepResult { step, path } => path
            .iter()
            .rev()
            .find_map(|p| match p {
                PathSegment::Field(f) => Some(f.clone()),
                PathSegment::Index(_) => None,
            })
            .unwrap_or_else(|| format!("{step}_result")),
        Reference::StepStatus(step) => format!("{step}_status"),
        Reference::RunId => "run_id".to_owned(),
        Reference::ProjectPath => "project_path".to_owned(),
        Reference::ScheduleTime => "schedule_time".to_owned(),
    };
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert_str(0, "V_");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The form of a parsed reference: a new kind of reference needs its
    /// form here, and in [`FORMS`] (the test below checks).
    fn form_of(r: &Reference) -> &'static str {
        match r {
            Reference::Param(_) => "params.NAME",
            Reference::StepResult { .. } => "STEP.result[.path]",
            Reference::StepStatus(_) => "STEP.status",
            Reference::RunId => "run.id",
            Reference::ProjectPath => "project.path",
            Reference::ScheduleTime => "schedule.time",
            Reference::Env(_) => "env.NAME",
        }
    }

    #[test]
    fn every_form_is_listed_and_named_by_the_messages() {
        let mut fan_out = Vec::new();
        for (form, instance) in FORMS {
            match parse_reference(instance) {
                Ok(r) => assert_eq!(form_of(&r), *form, "{instance}"),
                // `item` and `matrix.KEY`: the fan-out's, checked below.
                Err(_) => fan_out.push(*instance),
            }
        }
        assert_eq!(fan_out, ["item.a", "matrix.k"]);
        let yaml = "name: f\nsteps:\n  - { name: a, module: core, action: set, for_each: [{a: 1}], parameters: { value: '${item.a}' } }\n  - { name: b, module: core, action: set, matrix: { k: [1, 2] }, parameters: { value: '${matrix.k}' } }\n";
        crate::load_workflow(yaml, crate::Format::Yaml, &crate::Limits::default(), None)
            .unwrap_or_else(|d| panic!("{d}"));
        for bad in ["${1+1}", "${}", "${.x}"] {
            let errors = parse_template(bad).expect_err(bad);
            for (form, _) in FORMS {
                assert!(
                    errors[0].message.contains(form),
                    "{bad}: {}",
                    errors[0].message
                );
            }
        }
        assert!(
            expected().ends_with(", item[.path] or matrix.KEY"),
            "{}",
            expected()
        );
    }

    fn one(s: &str) -> Reference {
        let t = parse_template(s).unwrap_or_else(|e| panic!("{s}: {e:?}"));
        t.single_reference()
            .cloned()
            .unwrap_or_else(|| panic!("{s}: not a single reference"))
    }

    fn err(s: &str) -> ReferenceError {
        let e = parse_template(s).expect_err(s);
        assert_eq!(e.len(), 1, "{s}: {e:?}");
        e.into_iter().next().expect("one error")
    }

    #[test]
    fn every_reference_form() {
        assert_eq!(
            one("${params.code_path}"),
            Reference::Param("code_path".into())
        );
        assert_eq!(
            one("${a.result}"),
            Reference::StepResult {
                step: "a".into(),
                path: vec![]
            }
        );
        assert_eq!(
            one("${analyze.result.by_language.rust[0].lines}"),
            Reference::StepResult {
                step: "analyze".into(),
                path: vec![
                    PathSegment::Field("by_language".into()),
                    PathSegment::Field("rust".into()),
                    PathSegment::Index(0),
                    PathSegment::Field("lines".into())
                ]
            }
        );
        assert_eq!(
            one("${build-1.status}"),
            Reference::StepStatus("build-1".into())
        );
        assert_eq!(one("${run.id}"), Reference::RunId);
        assert_eq!(one("${project.path}"), Reference::ProjectPath);
        assert_eq!(one("${schedule.time}"), Reference::ScheduleTime);
        assert_eq!(
            one("${schedule.result}"),
            Reference::StepResult {
                step: "schedule".into(),
                path: vec![]
            }
        );
        assert_eq!(one("${env.HOME}"), Reference::Env("HOME".into()));
        let t = parse_template("x=${a.result}, y=${params.y}!").expect("two refs");
        assert_eq!(t.references().count(), 2);
        assert_eq!(t.segments.len(), 5);
        assert!(matches!(
            &t.segments[1],
            Segment::Ref {
                span: Span { start: 2, end: 13 },
                ..
            }
        ));
    }

    #[test]
    fn escapes() {
        let t = parse_template("cost: $${price} and $$ PID $5").expect("ok");
        assert_eq!(
            t.segments,
            vec![Segment::Literal("cost: ${price} and $$ PID $5".into())]
        );
        let t = parse_template("$$${a.result}").expect("ok");
        assert_eq!(t.segments[0], Segment::Literal("$".into()));
        assert!(matches!(t.segments[1], Segment::Ref { .. }));
        assert_eq!(t.to_string(), "$$${a.result}");
    }

    #[test]
    fn errors_say_what_and_how() {
        let e = err("abc ${params.x");
        assert!(e.message.contains("never closed"), "{}", e.message);
        assert_eq!(e.span, Span { start: 4, end: 14 });
        assert!(err("${1+1}").message.contains("no expression language"));
        assert!(err("${a + b}").message.contains("whitespace"));
        assert!(err("${}").message.contains("empty"));
        assert!(err("${foo}").message.contains("`foo.result`"));
        assert!(err("${step.output}").message.contains("not `output`"));
        assert!(err("${run.name}").message.contains("only member of `run`"));
        assert!(err("${a.result[x]}").message.contains("not a list index"));
        assert!(err("${a.result.}").message.contains("field name"));
        assert!(err("${a.result..b}").message.contains("field name"));
        assert!(
            err("${a.result[99999999999999999999999]}")
                .message
                .contains("too large")
        );
        assert!(err("${params.1x}").message.contains("parameter name"));
        assert!(err("${a.${b}}").message.contains("nest"));
        let all = parse_template("${1} and ${x.y} and ${params.ok}").expect_err("two bad");
        assert_eq!(all.len(), 2);
    }

    fn reference() -> impl Strategy<Value = Reference> {
        let ident = "[A-Za-z_][A-Za-z0-9_]{0,6}";
        let step = "[A-Za-z0-9_-]{1,6}".prop_filter("not a root", |s| {
            !["params", "env", "run", "project"].contains(&s.as_str())
        });
        let seg = prop_oneof![
            "[A-Za-z0-9_-]{1,5}".prop_map(PathSegment::Field),
            (0usize..1000).prop_map(PathSegment::Index),
        ];
        prop_oneof![
            ident.prop_map(Reference::Param),
            ident.prop_map(Reference::Env),
            Just(Reference::RunId),
            Just(Reference::ProjectPath),
            Just(Reference::ScheduleTime),
            step.clone().prop_map(Reference::StepStatus),
            (step, proptest::collection::vec(seg, 0..4))
                .prop_map(|(step, path)| Reference::StepResult { step, path }),
        ]
    }

    fn template() -> impl Strategy<Value = Template> {
        let lit = "[$${}a. é]{1,6}";
        let seg = prop_oneof![
            lit.prop_map(Segment::Literal),
            reference().prop_map(|r| Segment::Ref {
                reference: r,
                span: Span { start: 0, end: 0 }
            })
        ];
        proptest::collection::vec(seg, 0..6).prop_map(|segs| {
            // Canonical: merge adjacent literals.
            let mut out: Vec<Segment> = Vec::new();
            for s in segs {
                match (out.last_mut(), s) {
                    (Some(Segment::Literal(prev)), Segment::Literal(next)) => prev.push_str(&next),
                    (_, s) => out.push(s),
                }
            }
            Template { segments: out }
        })
    }

    fn without_spans(t: &Template) -> Vec<Segment> {
        t.segments
            .iter()
            .map(|s| match s {
                Segment::Ref { reference, .. } => Segment::Ref {
                    reference: reference.clone(),
                    span: Span { start: 0, end: 0 },
                },
                other => other.clone(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn parse_render_round_trips(t in template()) {
            let text = t.to_string();
            let back = parse_template(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e:?}")))?;
            prop_assert_eq!(without_spans(&back), t.segments, "{:?}", text);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_template(&s);
        }

        #[test]
        fn text_without_syntax_is_one_literal(s in "[^$]{0,30}") {
            let t = parse_template(&s).expect("plain text parses");
            if s.is_empty() {
                prop_assert!(t.segments.is_empty());
            } else {
                prop_assert_eq!(t.segments, vec![Segment::Literal(s.clone())]);
            }
        }
    }
}
