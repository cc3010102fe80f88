//! The name rules for steps, workflows and projects (SPEC §9), shared by every crate.

use crate::limits::Limits;

/// What a name names; the rules differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A step: letters, digits, `_` and `-`, so that `${STEP.result}` can name it.
    Step,
    /// A workflow: letters, digits, `_`, `-` and `.` (not first, never `..`).
    Workflow,
    /// A project: the same rules as a workflow; the name becomes a directory name.
    Project,
    /// A parameter or environment variable: `[A-Za-z_][A-Za-z0-9_]*` (parameters may also hold `-`).
    Parameter,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Step => "step name",
            NameKind::Workflow => "workflow name",
            NameKind::Project => "project name",
            NameKind::Parameter => "parameter name",
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            NameKind::Step => "ASCII letters, digits, `_` and `-`",
            NameKind::Workflow | NameKind::Project => {
                "ASCII letters, digits, `_`, `-` and `.` (not at the start, never `..`)"
            }
            NameKind::Parameter => {
                "ASCII letters, digits, `_` and `-`, not starting with a digit or `-`"
            }
        }
    }
}

/// Step names that would be ambiguous in `${...}` references.
pub const RESERVED_STEP_NAMES: &[&str] = &["params", "run", "project", "env"];

/// The project name that is taken: projects live in `<projects_dir>/<name>`
/// and archives in `<projects_dir>/archives` (compared ignoring ASCII case,
/// for case-insensitive file systems).
pub const RESERVED_PROJECT_NAME: &str = "archives";

/// Checks a name against the rules of its kind and the length limit.
///
/// # Errors
/// A message saying exactly what is wrong (the offending character, the
/// length) and what is allowed. The name itself is quoted only in shortened,
/// escaped form, so a hostile name cannot flood or corrupt a terminal.
pub fn check_name(kind: NameKind, name: &str, limits: &Limits) -> Result<(), String> {
    // Fast path for the common case: a short step name of safe characters.
    if kind == NameKind::Step
        && !name.is_empty()
        && name.len() <= limits.max_name_len
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !RESERVED_STEP_NAMES.contains(&name)
    {
        return Ok(());
    }
    let noun = kind.noun();
    if name.is_empty() {
        return Err(format!("{noun} is empty; use {}", kind.allowed()));
    }
    if name.len() > limits.max_name_len {
        return Err(format!(
            "{noun} {} is {} bytes long; the limit is {} (limit max_name_len)",
            display_snippet(name),
            name.len(),
            limits.max_name_len
        ));
    }
    let bad = |what: String| {
        Err(format!(
            "{noun} {} {what}; use {}",
            display_snippet(name),
            kind.allowed()
        ))
    };
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        let what = if c == '\0' {
            "contains a NUL character".to_owned()
        } else {
            format!("contains the control character {:?}", c)
        };
        return bad(what);
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a path separator".to_owned());
    }
    if name.contains("..") {
        return bad("contains `..`".to_owned());
    }
    let ok_char = |c: char| match kind {
        NameKind::Step | NameKind::Parameter => c.is_ascii_alphanumeric() || c == '_' || c == '-',
        NameKind::Workflow | NameKind::Project => {
            c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
        }
    };
    if let Some(c) = name.chars().find(|c| !ok_char(*c)) {
        return bad(format!("contains {c:?}"));
    }
    match kind {
        NameKind::Workflow | NameKind::Project if name.starts_with('.') => {
            return bad("starts with `.`".to_owned());
        }
        NameKind::Parameter if name.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            return bad("starts with a digit or `-`".to_owned());
        }
        NameKind::Project if name.eq_ignore_ascii_case(RESERVED_PROJECT_NAME) => {
            return Err(format!(
                "project name `{name}` is reserved (the projects directory's `{RESERVED_PROJECT_NAME}/` holds project archives); choose another name"
            ));
        }
        NameKind::Step if RESERVED_STEP_NAMES.contains(&name) => {
            return Err(format!(
                "step name `{name}` is reserved (it is a root of `${{...}}` references: {}); choose another name",
                RESERVED_STEP_NAMES.join(", ")
            ));
        }
        _ => {}
    }
    Ok(())
}

/// A short, escaped rendering of user text for messages: at most 40
/// characters, control characters escaped, quoted in backticks.
pub fn display_snippet(s: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::from("`");
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_per_kind() {
        let l = Limits::default();
        assert!(check_name(NameKind::Step, "analyze_code-2", &l).is_ok());
        assert!(check_name(NameKind::Workflow, "ai-analysis.v2", &l).is_ok());
        // Only projects share a directory with the archives.
        assert!(check_name(NameKind::Workflow, "archives", &l).is_ok());
        assert!(check_name(NameKind::Project, "archives2", &l).is_ok());
        for (kind, name, needle) in [
            (NameKind::Step, "", "empty"),
            (NameKind::Step, "a/b", "path separator"),
            (NameKind::Step, "a.b", "contains '.'"),
            (NameKind::Workflow, "a..b", "`..`"),
            (NameKind::Workflow, ".hidden", "starts with `.`"),
            (NameKind::Project, "x\0y", "NUL"),
            (NameKind::Project, "x\ny", "control character"),
            (NameKind::Step, "params", "reserved"),
            (NameKind::Parameter, "1x", "starts with a digit"),
            (NameKind::Project, "a b", "contains ' '"),
            (NameKind::Project, "archives", "reserved"),
            (NameKind::Project, "Archives", "holds project archives"),
        ] {
            let err = check_name(kind, name, &l).expect_err(name);
            assert!(err.contains(needle), "{name:?}: {err}");
        }
        let long = "x".repeat(100_000);
        let err = check_name(NameKind::Step, &long, &l).expect_err("long");
        assert!(err.contains("100000 bytes long; the limit is 256"), "{err}");
        assert!(err.len() < 200, "the message does not echo the whole name");
    }
}
