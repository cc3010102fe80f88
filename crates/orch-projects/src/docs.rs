//! README.md and AGENTS.md for a new project's root and nested directories,
//! as the original's `DocumentationGenerator` wrote them.
//!
//! Document templates are plain text with `{{name}}` placeholders; the user
//! may provide their own in `<templates_dir>/doc_templates/`
//! (`<template>_README.template.md`, `README.template.md`,
//! `README.nested.template.md`, and the same for AGENTS). Substitution is
//! the only thing done to them: nothing in a template runs.

use std::collections::BTreeMap;
use std::path::Path;

const ROOT_README: &str = "# {{project_name}}

{{description}}

- **Type**: {{project_type}}
- **Version**: {{version}}
- **Author**: {{author}}
- **Created**: {{created_at}}

## Layout

{{layout}}

## Workflows

{{workflows}}
";

const ROOT_AGENTS: &str = "# Agents: {{project_name}}

Project type: {{project_type}}

{{description}}

## Active components

{{active_components}}
";

const NESTED_README: &str = "# {{directory_name}}

{{purpose}} for the {{project_name}} project ({{project_type}}).

This directory holds {{purpose_lower}}.
{{parent_link}}
";

const NESTED_AGENTS: &str = "# Agents: {{directory_name}}

{{purpose}}.
{{parent_link}}
";

/// The purpose of a well-known directory (the original's map); the first key
/// contained in the directory's name wins (`data/raw` is data).
const PURPOSES: &[(&str, &str)] = &[
    ("src", "Source code and implementation files"),
    ("config", "Configuration files and settings"),
    ("data", "Data files and datasets"),
    ("output", "Generated output files and artifacts"),
    ("reports", "Analysis reports and documentation"),
    ("tests", "Test files and test data"),
    ("docs", "Documentation files"),
    ("frontend", "Frontend application code"),
    ("backend", "Backend application code"),
    ("database", "Database schemas and migrations"),
    ("deploy", "Deployment configuration and scripts"),
    ("pipelines", "Data processing pipelines"),
    ("notebooks", "Jupyter notebooks and analysis scripts"),
];

/// What a directory is for.
pub fn purpose(dir: &str) -> String {
    let lower = dir.to_ascii_lowercase();
    PURPOSES
        .iter()
        .find(|(k, _)| lower == *k)
        .or_else(|| PURPOSES.iter().find(|(k, _)| lower.contains(k)))
        .map_or_else(
            || format!("Files and resources for {dir}"),
            |(_, p)| (*p).to_owned(),
        )
}

/// Replaces `{{ key }}` placeholders; unknown ones stay as they are.
pub fn substitute(text: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match vars.get(key) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[at..at + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// What the documents say about one project.
pub(crate) struct DocInfo<'a> {
    pub(crate) name: &'a str,
    pub(crate) project_type: &'a str,
    pub(crate) description: &'a str,
    pub(crate) version: &'a str,
    pub(crate) author: &'a str,
    pub(crate) created_at: String,
    pub(crate) template: Option<&'a str>,
    pub(crate) workflows: &'a [String],
}

/// The text of a document template: the user's for this template, the
/// user's generic one, or the built-in.
fn template_text(
    user_dir: Option<&Path>,
    template: Option<&str>,
    file: &str,
    builtin: &str,
) -> String {
    if let Some(dir) = user_dir {
        let dir = dir.join("doc_templates");
        let mut candidates = Vec::new();
        if let Some(t) = template {
            candidates.push(dir.join(format!("{t}_{file}")));
        }
        candidates.push(dir.join(file));
        for c in candidates {
            // Only regular files: a link in the templates directory is not followed.
            if std::fs::symlink_metadata(&c).is_ok_and(|m| m.is_file()) {
                if let Ok(t) = std::fs::read_to_string(&c) {
                    return t;
                }
            }
        }
    }
    builtin.to_owned()
}

/// Every document to write: (path relative to the project, content).
pub(crate) fn documents(
    info: &DocInfo<'_>,
    nested: &[String],
    user_dir: Option<&Path>,
) -> Vec<(String, String)> {
    let description = if info.description.is_empty() {
        let mut words: Vec<String> = info
            .project_type
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        words.push("project".into());
        words.join(" ")
    } else {
        info.description.to_owned()
    };
    let components = if nested.is_empty() {
        "No active components specified".to_owned()
    } else {
        nested
            .iter()
            .map(|d| format!("- `{d}/` – {}", purpose(d)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let workflows = if info.workflows.is_empty() {
        "None yet.".to_owned()
    } else {
        info.workflows
            .iter()
            .map(|w| format!("- `{w}`: `orch project run {} {w}`", info.name))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("project_name", info.name.to_owned());
    vars.insert("project_type", info.project_type.to_owned());
    vars.insert("description", description);
    vars.insert("version", info.version.to_owned());
    vars.insert(
        "author",
        if info.author.is_empty() {
            "-".into()
        } else {
            info.author.to_owned()
        },
    );
    vars.insert("created_at", info.created_at.clone());
    vars.insert("active_components", components.clone());
    vars.insert("layout", components);
    vars.insert("workflows", workflows);
    let t = info.template;
    let mut out = vec![
        (
            "README.md".to_owned(),
            substitute(
                &template_text(user_dir, t, "README.template.md", ROOT_README),
                &vars,
            ),
        ),
        (
            "AGENTS.md".to_owned(),
            substitute(
                &template_text(user_dir, t, "AGENTS.template.md", ROOT_AGENTS),
                &vars,
            ),
        ),
    ];
    let nested_readme = template_text(user_dir, t, "README.nested.template.md", NESTED_README);
    let nested_agents = template_text(user_dir, t, "AGENTS.nested.template.md", NESTED_AGENTS);
    for d in nested {
        let depth = d.split('/').filter(|s| !s.is_empty()).count();
        let parent = Path::new(d)
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(
                || info.name.to_owned(),
                |p| p.to_string_lossy().into_owned(),
            );
        let p = purpose(d);
        let mut v = vars.clone();
        v.insert("directory_name", d.clone());
        v.insert("purpose_lower", p.to_lowercase());
        v.insert(
            "parent_link",
            format!(
                "\n- **Parent Directory**: [{parent}]({}README.md)",
                "../".repeat(depth)
            ),
        );
        v.insert("purpose", p.clone());
        out.push((format!("{d}/README.md"), substitute(&nested_readme, &v)));
        let mut a = v.clone();
        a.insert(
            "purpose",
            format!(
                "Agent surface for {} components in {}",
                d.replace(['_', '/'], " "),
                info.name
            ),
        );
        a.insert(
            "parent_link",
            format!(
                "\n- **Parent Agents**: [{parent} AGENTS.md]({}AGENTS.md)",
                "../".repeat(depth)
            ),
        );
        out.push((format!("{d}/AGENTS.md"), substitute(&nested_agents, &a)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_follow_the_original_map() {
        assert_eq!(purpose("src"), "Source code and implementation files");
        assert_eq!(purpose("data/raw"), "Data files and datasets");
        assert_eq!(purpose("misc"), "Files and resources for misc");
    }

    #[test]
    fn placeholders_are_replaced_and_unknown_ones_kept() {
        let mut v = BTreeMap::new();
        v.insert("a", "1".to_owned());
        assert_eq!(substitute("{{a}} {{ a }} {{b}} {{", &v), "1 1 {{b}} {{");
    }

    #[test]
    fn nested_documents_link_to_their_parents() {
        let info = DocInfo {
            name: "p",
            project_type: "data_pipeline",
            description: "",
            version: "1.0.0",
            author: "",
            created_at: "now".into(),
            template: None,
            workflows: &[],
        };
        let docs = documents(&info, &["data/raw".to_owned()], None);
        let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "README.md",
                "AGENTS.md",
                "data/raw/README.md",
                "data/raw/AGENTS.md"
            ]
        );
        assert!(docs[0].1.contains("Data Pipeline project"));
        assert!(
            docs[2].1.contains("[data](../../README.md)"),
            "{}",
            docs[2].1
        );
        assert!(
            docs[3]
                .1
                .contains("Agent surface for data raw components in p")
        );
    }
}
