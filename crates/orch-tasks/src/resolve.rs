//! Resolving `${...}` references in parameters and evaluating `when` conditions.
//!
//! A string that is exactly one reference takes the referenced JSON value
//! (keeping its type); references inside longer strings are rendered as text.
//! Values are only ever placed into parameter values, never into source text:
//! [`resolve_parameters`] refuses a reference in a parameter that is program
//! source (`shell.script`'s `script`).

use orch_model::reference::{
    PathSegment, Reference, Template, is_source_parameter, parse_template, source_reference_error,
};
use orch_model::{ConditionOp, TaskStatus, When};
use serde_json::{Map, Value};

/// What references can see while a step is released.
pub trait Scope {
    /// `params.NAME`.
    fn param(&self, name: &str) -> Option<&Value>;
    /// The result of a finished step.
    fn result(&self, step: &str) -> Option<&Value>;
    /// The status of a step.
    fn status(&self, step: &str) -> Option<TaskStatus>;
    /// `run.id`.
    fn run_id(&self) -> String;
    /// `project.path`, when the run belongs to a project.
    fn project_path(&self) -> Option<String>;
}

/// Resolves one reference to a JSON value.
///
/// # Errors
/// A message naming the reference when it cannot be resolved (a missing
/// parameter, a result without that path, an unset environment variable).
pub fn resolve(r: &Reference, scope: &dyn Scope) -> Result<Value, String> {
    match r {
        Reference::Param(n) => scope
            .param(n)
            .cloned()
            .ok_or_else(|| format!("`${{{r}}}`: parameter `{n}` has no value")),
        Reference::StepResult { step, path } => {
            let mut v = scope.result(step).ok_or_else(|| {
                format!("`${{{r}}}`: step `{step}` has no result (it did not succeed)")
            })?;
            for seg in path {
                v = match (seg, v) {
                    (PathSegment::Field(f), Value::Object(m)) => m.get(f),
                    (PathSegment::Index(i), Value::Array(a)) => a.get(*i),
                    _ => None,
                }
                .ok_or_else(|| {
                    format!(
                        "`${{{r}}}`: the result of `{step}` has no `{}`",
                        describe(seg)
                    )
                })?;
            }
            Ok(v.clone())
        }
        Reference::StepStatus(step) => scope
            .status(step)
            .map(|s| Value::String(s.as_str().to_owned()))
            .ok_or_else(|| format!("`${{{r}}}`: unknown step `{step}`")),
        Reference::RunId => Ok(Value::String(scope.run_id())),
        Reference::ProjectPath => scope
            .project_path()
            .map(Value::String)
            .ok_or_else(|| format!("`${{{r}}}`: this run does not belong to a project")),
        Reference::ScheduleTime => scope
            .param(orch_model::definition::schedule::SCHEDULE_TIME_PARAM)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "`${{{r}}}`: this run was not started by a schedule; start it with `orch schedule trigger`, `orch backfill` or -p schedule.time=TIME"
                )
            }),
        Reference::Env(n) => std::env::var(n)
            .map(Value::String)
            .map_err(|_| format!("`${{{r}}}`: environment variable `{n}` is not set")),
    }
}

fn describe(seg: &PathSegment) -> String {
    match seg {
        PathSegment::Field(f) => format!(".{f}"),
        PathSegment::Index(i) => format!("[{i}]"),
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a template; its errors joined into one message.
fn parse(s: &str) -> Result<Template, String> {
    parse_template(s).map_err(|e| {
        e.iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Resolves every reference in a string.
///
/// # Errors
/// The first reference that cannot be resolved.
pub fn resolve_string(s: &str, scope: &dyn Scope) -> Result<Value, String> {
    if !s.contains('$') {
        return Ok(Value::String(s.to_owned()));
    }
    let t = parse(s)?;
    if let Some(r) = t.single_reference() {
        return resolve(r, scope);
    }
    t.render_with(|r| resolve(r, scope).map(|v| as_text(&v)))
        .map(Value::String)
}

/// Resolves every reference in a JSON value, recursively.
///
/// # Errors
/// The first reference that cannot be resolved.
pub fn resolve_value(v: &Value, scope: &dyn Scope) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => resolve_string(s, scope)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve_value(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), resolve_value(i, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Resolves every reference in the parameters of a step or task that runs
/// `module.action`.
///
/// A parameter that is program source text (`shell.script`'s `script`, see
/// [`SOURCE_PARAMETERS`](orch_model::reference::SOURCE_PARAMETERS)) is never
/// substituted into: validation refuses a `${...}` there, and should one
/// arrive anyway (a task built in code, a definition from an older orch), it
/// is refused here too. Its `$${` escapes still become `${`.
///
/// # Errors
/// The first reference that cannot be resolved, or a reference in source text.
pub fn resolve_parameters(
    module: &str,
    action: &str,
    m: &Map<String, Value>,
    scope: &dyn Scope,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::with_capacity(m.len());
    for (k, item) in m {
        let v = if is_source_parameter(module, action, k) {
            source_literal(module, action, k, item)?
        } else {
            resolve_value(item, scope)?
        };
        out.insert(k.clone(), v);
    }
    Ok(out)
}

/// A source parameter's value with its `$${` escapes undone and nothing
/// substituted.
fn source_literal(module: &str, action: &str, key: &str, v: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            if let Some(msg) = source_reference_error(module, action, key, s) {
                return Err(msg);
            }
            if !s.contains('$') {
                return Ok(v.clone());
            }
            let t = parse(s)?;
            let text = t.render_with(|r| {
                Err(format!(
                    "`${{{r}}}` in the `{key}` of a {module}.{action} step is never substituted"
                ))
            })?;
            Value::String(text)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| source_literal(module, action, key, i))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), source_literal(module, action, key, i)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Evaluates a `when` condition.
///
/// `exists` is true when the reference resolves to a non-null value; every
/// other operator needs the reference to resolve.
///
/// # Errors
/// A message when the reference cannot be resolved (except for `exists`).
pub fn evaluate(when: &When, scope: &dyn Scope) -> Result<bool, String> {
    let got = resolve_string(&when.reference, scope);
    if when.op == ConditionOp::Exists {
        return Ok(matches!(got, Ok(ref v) if !v.is_null()));
    }
    let got = got?;
    let want = when.value.clone().unwrap_or(Value::Null);
    use std::cmp::Ordering::{Equal, Greater, Less};
    Ok(match when.op {
        ConditionOp::Eq => got == want,
        ConditionOp::Ne => got != want,
        ConditionOp::Gt => compare(&got, &want) == Some(Greater),
        ConditionOp::Ge => matches!(compare(&got, &want), Some(Greater | Equal)),
        ConditionOp::Lt => compare(&got, &want) == Some(Less),
        ConditionOp::Le => matches!(compare(&got, &want), Some(Less | Equal)),
        ConditionOp::Contains => match (&got, &want) {
            (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
            (Value::Array(items), w) => items.contains(w),
            (Value::Object(m), Value::String(k)) => m.contains_key(k),
            _ => false,
        },
        ConditionOp::Truthy => truthy(&got),
        ConditionOp::Exists => true,
    })
}

/// Why a step whose `when` is false is skipped: the condition as written,
/// with the value it was compared with, and the value the reference had:
/// ``condition `${params.dry_run} eq false` is false (the value is true)``.
/// Values are shown as JSON, at most 80 characters each.
#[must_use]
pub fn skip_reason(when: &When, scope: &dyn Scope) -> String {
    fn short(v: &Value) -> String {
        let text = v.to_string();
        match text.char_indices().nth(80) {
            Some((at, _)) => format!("{}...", &text[..at]),
            None => text,
        }
    }
    let condition = match &when.value {
        Some(v) => format!("{} {} {}", when.reference, when.op, short(v)),
        None => format!("{} {}", when.reference, when.op),
    };
    let got = match resolve_string(&when.reference, scope) {
        Ok(v) => format!("the value is {}", short(&v)),
        Err(e) => format!("it does not resolve: {e}"),
    };
    format!("condition `{condition}` is false ({got})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_skip_reason_shows_the_compared_value_and_the_actual_one() {
        // Issue 10: the reason read `condition ${params.dry_run} eq is false`.
        let s = scope();
        assert_eq!(
            skip_reason(&w("${params.n}", ConditionOp::Eq, Some(json!(false))), &s),
            "condition `${params.n} eq false` is false (the value is 3)"
        );
        assert_eq!(
            skip_reason(
                &w("${a.result.files}", ConditionOp::Gt, Some(json!("x"))),
                &s
            ),
            "condition `${a.result.files} gt \"x\"` is false (the value is 4)"
        );
        let r = skip_reason(&w("${a.result.nope}", ConditionOp::Exists, None), &s);
        assert!(
            r.starts_with("condition `${a.result.nope} exists` is false (it does not resolve: "),
            "{r}"
        );
        let long = json!("x".repeat(500));
        let r = skip_reason(&w("${params.n}", ConditionOp::Eq, Some(long)), &s);
        assert!(r.len() < 200 && r.contains("..."), "{r}");
    }

    /// A condition on `reference`.
    fn w(reference: &str, op: ConditionOp, value: Option<Value>) -> When {
        When {
            reference: reference.into(),
            op,
            value,
        }
    }

    struct S(Map<String, Value>, Map<String, Value>);

    impl Scope for S {
        fn param(&self, name: &str) -> Option<&Value> {
            self.0.get(name)
        }
        fn result(&self, step: &str) -> Option<&Value> {
            self.1.get(step)
        }
        fn status(&self, step: &str) -> Option<TaskStatus> {
            self.1.contains_key(step).then_some(TaskStatus::Completed)
        }
        fn run_id(&self) -> String {
            "run-1".into()
        }
        fn project_path(&self) -> Option<String> {
            None
        }
    }

    fn scope() -> S {
        let params = json!({"n": 3, "path": "./src"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let results = json!({"a": {"by_language": {"rust": [10, 20]}, "files": 4}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        S(params, results)
    }

    #[test]
    fn single_references_keep_their_type_and_others_render_as_text() {
        let s = scope();
        assert_eq!(resolve_string("${params.n}", &s), Ok(json!(3)));
        assert_eq!(
            resolve_string("${a.result.by_language}", &s),
            Ok(json!({"rust": [10, 20]}))
        );
        assert_eq!(
            resolve_string("n=${params.n}, first=${a.result.by_language.rust[0]}", &s),
            Ok(json!("n=3, first=10"))
        );
        assert_eq!(
            resolve_string("${a.status} in ${run.id}", &s),
            Ok(json!("completed in run-1"))
        );
        assert_eq!(resolve_string("cost $${x}", &s), Ok(json!("cost ${x}")));
        let err = resolve_string("${a.result.missing}", &s).expect_err("no such path");
        assert!(err.contains("has no `.missing`"), "{err}");
        let v = resolve_value(&json!({"args": ["-l", "${params.path}"], "k": 1}), &s)
            .expect("resolves");
        assert_eq!(v, json!({"args": ["-l", "./src"], "k": 1}));
    }

    #[test]
    fn a_script_is_never_substituted_into() {
        let s = scope();
        let m = json!({
            "script": "echo ${params.path}",
            "env": {"P": "${params.path}"},
        });
        let m = m.as_object().cloned().unwrap_or_default();
        // Validation refuses this; the resolver refuses it again.
        let err = resolve_parameters("shell", "script", &m, &s).expect_err("refused");
        assert!(
            err.contains("env:") && err.contains("`${params.path}`"),
            "{err}"
        );
        // Escapes are undone, nothing is substituted; other parameters resolve.
        let m = json!({"script": "echo \"$${HOME}\" $$ \"$P\"", "env": {"P": "${params.path}"}});
        let m = m.as_object().cloned().unwrap_or_default();
        assert_eq!(
            resolve_parameters("shell", "script", &m, &s).map(Value::Object),
            Ok(json!({"script": "echo \"${HOME}\" $$ \"$P\"", "env": {"P": "./src"}}))
        );
        // The same key of another action is an ordinary template.
        let m = json!({"script": "echo ${params.path}"});
        let m = m.as_object().cloned().unwrap_or_default();
        assert_eq!(
            resolve_parameters("core", "set", &m, &s).map(Value::Object),
            Ok(json!({"script": "echo ./src"}))
        );
    }

    #[test]
    fn conditions() {
        let s = scope();
        assert_eq!(
            evaluate(&w("${a.result.files}", ConditionOp::Gt, Some(json!(3))), &s),
            Ok(true)
        );
        assert_eq!(
            evaluate(&w("${a.result.files}", ConditionOp::Lt, Some(json!(3))), &s),
            Ok(false)
        );
        assert_eq!(
            evaluate(
                &w(
                    "${a.result.by_language}",
                    ConditionOp::Contains,
                    Some(json!("rust"))
                ),
                &s
            ),
            Ok(true)
        );
        assert_eq!(
            evaluate(&w("${a.result.nope}", ConditionOp::Exists, None), &s),
            Ok(false)
        );
        assert_eq!(
            evaluate(&w("${params.n}", ConditionOp::Truthy, None), &s),
            Ok(true)
        );
        assert!(evaluate(&w("${a.result.nope}", ConditionOp::Eq, Some(json!(1))), &s).is_err());
    }
}
