//! `report.markdown`: a Markdown report from a template string and upstream results.
//!
//! The template's `{{name}}` placeholders are replaced by `values.name`
//! (`{{name.key}}` reaches into objects). A string is inserted as it is, a
//! number or boolean as text, an object of scalars as a two-column table,
//! a list of objects as a table with one column per key, and anything else
//! as a fenced JSON block. An unknown placeholder is an error that names it,
//! not an empty hole in the report. Upstream results reach `values` through
//! `${step.result...}` references, which the scheduler resolves first.
//! `output` is written atomically beneath the work directory without
//! following links (see [`crate::confined`]): absolute paths, `..` and links
//! are refused.

use super::fs::{blocking, confined_error, path_param, work_root};
use crate::action::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;

/// Escapes a table cell: pipes and line breaks would break the table.
fn cell(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

/// Renders one value as Markdown.
fn render_value(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "_none_".to_owned(),
        Value::Array(a) if a.is_empty() => "_none_".to_owned(),
        // An object of records (`{Rust: {files, code}, ...}`): a table with a row per key.
        Value::Object(m)
            if m.values().all(
                |r| matches!(r, Value::Object(o) if !o.is_empty() && o.values().all(is_scalar)),
            ) =>
        {
            let rows: Vec<Value> = m
                .iter()
                .map(|(k, r)| {
                    let mut row = Map::new();
                    row.insert("name".into(), Value::String(k.clone()));
                    if let Value::Object(o) = r {
                        row.extend(o.clone());
                    }
                    Value::Object(row)
                })
                .collect();
            render_value(&Value::Array(rows))
        }
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Object(m) if !m.is_empty() && m.values().all(is_scalar) => {
            let mut t = String::from("| key | value |\n|---|---|\n");
            for (k, v) in m {
                let _ = writeln!(t, "| {} | {} |", cell(&Value::String(k.clone())), cell(v));
            }
            t
        }
        Value::Array(rows)
            if !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| matches!(r, Value::Object(o) if o.values().all(is_scalar))) =>
        {
            let mut cols: Vec<&str> = Vec::new();
            for r in rows {
                if let Value::Object(o) = r {
                    for k in o.keys() {
                        if !cols.contains(&k.as_str()) {
                            cols.push(k);
                        }
                    }
                }
            }
            let mut t = String::new();
            let _ = writeln!(
                t,
                "| {} |",
                cols.iter()
                    .map(|c| cell(&Value::String((*c).to_owned())))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(t, "|{}", "---|".repeat(cols.len()));
            for r in rows {
                let line: Vec<String> = cols
                    .iter()
                    .map(|c| cell(r.get(*c).unwrap_or(&Value::Null)))
                    .collect();
                let _ = writeln!(t, "| {} |", line.join(" | "));
            }
            t
        }
        Value::Array(items) if items.iter().all(is_scalar) => {
            let mut t = String::new();
            for i in items {
                let _ = writeln!(t, "- {}", render_value(i));
            }
            t
        }
        other => format!(
            "```json\n{}\n```\n",
            serde_json::to_string_pretty(other).unwrap_or_default()
        ),
    }
}

/// Looks `a.b.c` up in `values`.
fn lookup<'v>(values: &'v Map<String, Value>, path: &str) -> Option<&'v Value> {
    let mut parts = path.split('.');
    let mut cur = values.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Fills the `{{name}}` placeholders of `template`.
fn fill(template: &str, values: &Map<String, Value>) -> Result<String, ActionError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find("}}") else {
            return Err(ActionError::invalid_parameters(format!(
                "`template`: `{{{{` at byte {} has no closing `}}}}`",
                template.len() - rest.len() + at
            )));
        };
        let name = after[..end].trim();
        let v = lookup(values, name).ok_or_else(|| {
            let known: Vec<&str> = values.keys().map(String::as_str).collect();
            ActionError::invalid_parameters(format!(
                "`template` uses `{{{{{name}}}}}`, which `values` does not have; values: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        out.push_str(render_value(v).trim_end_matches('\n'));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `report.markdown {output, title, template, values, sections}` → `{path, bytes}`.
///
/// The report is `# title`, then the filled `template`, then one `## key`
/// section per entry of `sections` (each value rendered as above). At least
/// one of `template` and `sections` is required.
#[derive(Debug)]
pub struct Markdown;

#[async_trait]
impl Action for Markdown {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::MARKDOWN)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = path_param(&params, "output")?.to_owned();
        let root = work_root(ctx)?;
        root.check(&rel)
            .map_err(|e| confined_error("cannot write", &rel, &e))?;
        let empty = Map::new();
        let values = match params.get("values") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(ActionError::invalid_parameters(format!(
                    "`values` must be an object, found {other}"
                )));
            }
        };
        let template = match params.get("template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                return Err(ActionError::invalid_parameters(format!(
                    "`template` must be a string, found {other}"
                )));
            }
        };
        let sections = match params.get("sections") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                return Err(ActionError::invalid_parameters(format!(
                    "`sections` must be an object of heading: value, found {other}"
                )));
            }
        };
        if template.is_none() && sections.is_none() {
            return Err(ActionError::invalid_parameters(
                "give `template` (text with {{name}} placeholders) or `sections` (heading: value), or both",
            ));
        }
        let mut doc = String::new();
        if let Some(title) = params.get("title").and_then(Value::as_str) {
            let _ = writeln!(doc, "# {}\n", title.replace(['\n', '\r'], " "));
        }
        if let Some(t) = template {
            doc.push_str(&fill(t, values)?);
            if !doc.ends_with('\n') {
                doc.push('\n');
            }
        }
        for (heading, v) in sections.into_iter().flatten() {
            let _ = writeln!(doc, "\n## {}\n", heading.replace(['\n', '\r'], " "));
            doc.push_str(render_value(v).trim_end_matches('\n'));
            doc.push('\n');
        }
        let bytes = doc.len();
        blocking(move || {
            root.write_bytes(&rel, doc.as_bytes(), true)
                .map_err(|e| confined_error("cannot write", &rel, &e))?;
            Ok(json!({"path": rel, "bytes": bytes}))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn placeholders_are_filled_by_type() {
        let v = values(
            json!({"n": 3, "name": "x", "langs": {"Rust": 10, "Py": 2}, "stats": {"files": 4}}),
        );
        let out = fill(
            "{{name}} has {{ n }} files ({{stats.files}})\n{{langs}}",
            &v,
        )
        .expect("filled");
        assert_eq!(
            out,
            "x has 3 files (4)\n| key | value |\n|---|---|\n| Rust | 10 |\n| Py | 2 |"
        );
    }

    #[test]
    fn a_list_of_objects_is_a_table_and_cells_are_escaped() {
        let out = render_value(&json!([{"a": "x|y", "b": 1}, {"a": "z\nw"}]));
        assert_eq!(out, "| a | b |\n|---|---|\n| x\\|y | 1 |\n| z w |  |\n");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_errors() {
        let e = fill("{{missing}}", &values(json!({"a": 1}))).expect_err("unknown");
        assert!(
            e.message.contains("`{{missing}}`") && e.message.contains("values: a"),
            "{}",
            e.message
        );
        let e = fill("x {{ y", &Map::new()).expect_err("unclosed");
        assert!(e.message.contains("no closing"), "{}", e.message);
    }

    #[test]
    fn records_become_a_table_and_deeper_structures_json_blocks() {
        let out =
            render_value(&json!({"Rust": {"files": 2, "code": 10}, "Go": {"files": 1, "code": 3}}));
        assert_eq!(
            out,
            "| name | files | code |\n|---|---|---|\n| Rust | 2 | 10 |\n| Go | 1 | 3 |\n"
        );
        let out = render_value(&json!({"a": {"b": {"c": 1}}}));
        assert!(
            out.starts_with("```json\n") && out.ends_with("```\n"),
            "{out}"
        );
        assert_eq!(render_value(&json!([])), "_none_");
    }
}
