//! Project templates: the three built-in ones and the user's, with their paths checked.

use chrono::{DateTime, Utc};
use orch_model::ProjectType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// How a template's documentation is generated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentationConfig {
    /// Directories that get their own README.md and AGENTS.md.
    pub nested_docs: Vec<String>,
    /// `{enabled, parent_link, child_links}`; nested docs are written when `enabled` is not false.
    pub doc_links: Map<String, Value>,
    /// Accepted for compatibility with the seed's files; unused.
    pub doc_templates: Value,
    /// Accepted for compatibility with the seed's files; unused.
    pub doc_variables: Value,
}

/// A project template (seed: `ProjectTemplate`), read from `<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectTemplate {
    /// The template's name, as `create_project` takes it.
    pub name: String,
    /// The kind of project it makes.
    #[serde(rename = "type")]
    pub project_type: ProjectType,
    /// What it is for.
    pub description: String,
    /// Its version.
    pub version: String,
    /// Directories to create, relative to the project (a trailing `/` is allowed).
    pub directory_structure: Vec<String>,
    /// Files to copy: a glob pattern in `<templates_dir>/<name>/` → a
    /// directory of the project. Files are copied as data; nothing in them runs.
    pub template_files: BTreeMap<String, String>,
    /// Names of the workflows a project gets.
    pub workflows: Vec<String>,
    /// Modules its workflows need.
    pub required_modules: Vec<String>,
    /// Modules that add to it.
    pub optional_modules: Vec<String>,
    /// The project's initial configuration.
    pub default_config: Map<String, Value>,
    /// Documentation settings.
    pub documentation_config: DocumentationConfig,
    /// Accepted for compatibility with the seed's files; unused.
    pub template_generators: Map<String, Value>,
    /// Links between generated documents (when `documentation_config.doc_links` is empty).
    pub doc_links: Map<String, Value>,
    /// Who made it.
    pub author: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl Default for ProjectTemplate {
    fn default() -> Self {
        Self {
            name: String::new(),
            project_type: ProjectType::Custom,
            description: String::new(),
            version: "1.0".into(),
            directory_structure: Vec::new(),
            template_files: BTreeMap::new(),
            workflows: Vec::new(),
            required_modules: Vec::new(),
            optional_modules: Vec::new(),
            default_config: Map::new(),
            documentation_config: DocumentationConfig::default(),
            template_generators: Map::new(),
            doc_links: Map::new(),
            author: String::new(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }
}

/// The built-in templates' JSON, by name.
pub(crate) const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("ai_analysis", include_str!("../templates/ai_analysis.json")),
    (
        "data_pipeline",
        include_str!("../templates/data_pipeline.json"),
    ),
    (
        "web_application",
        include_str!("../templates/web_application.json"),
    ),
];

/// The built-in workflow definitions that templates name, by name.
pub const BUILTIN_WORKFLOWS: &[(&str, &str)] = &[
    ("ai-analysis", include_str!("../workflows/ai-analysis.yaml")),
    (
        "build-and-test",
        include_str!("../workflows/build-and-test.yaml"),
    ),
    (
        "data-processing",
        include_str!("../workflows/data-processing.yaml"),
    ),
    (
        "visualization",
        include_str!("../workflows/visualization.yaml"),
    ),
    ("deploy", include_str!("../workflows/deploy.yaml")),
];

/// A relative path from a template, checked: not empty, not absolute, no
/// `..`, no NUL. `.` and trailing slashes are allowed. Returns the clean path.
///
/// # Errors
/// A message naming the path and what is wrong with it.
pub fn safe_relative(p: &str) -> Result<PathBuf, String> {
    if p.contains('\0') {
        return Err(format!("`{}` contains a NUL byte", p.escape_debug()));
    }
    let path = Path::new(p);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("`{p}` contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{p}` is absolute; template paths are relative to the project"
                ));
            }
        }
    }
    Ok(out)
}

impl ProjectTemplate {
    /// Checks every path the template would create or copy to.
    ///
    /// # Errors
    /// Every problem, one per line, each naming the field.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Err(e) = orch_model::definition::check_name(
            orch_model::definition::NameKind::Project,
            &self.name,
            &orch_model::Limits::default(),
        ) {
            problems.push(format!("name: {e}"));
        }
        let check = |problems: &mut Vec<String>, field: String, p: &str, allow_root: bool| {
            match safe_relative(p) {
                Ok(clean) if clean.as_os_str().is_empty() && !allow_root => {
                    problems.push(format!("{field}: `{p}` names the project root itself"));
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{field}: {e}")),
            }
        };
        for (i, d) in self.directory_structure.iter().enumerate() {
            check(&mut problems, format!("directory_structure[{i}]"), d, false);
        }
        for (i, d) in self.documentation_config.nested_docs.iter().enumerate() {
            check(
                &mut problems,
                format!("documentation_config.nested_docs[{i}]"),
                d,
                false,
            );
        }
        for (pattern, dest) in &self.template_files {
            check(
                &mut problems,
                format!("template_files[{pattern:?}] (pattern)"),
                pattern,
                false,
            );
            check(
                &mut problems,
                format!("template_files[{pattern:?}] (destination)"),
                dest,
                true,
            );
            if let Err(e) = glob::Pattern::new(pattern) {
                problems.push(format!("template_files: bad glob pattern `{pattern}`: {e}"));
            }
        }
        for (i, w) in self.workflows.iter().enumerate() {
            if let Err(e) = orch_model::definition::check_name(
                orch_model::definition::NameKind::Workflow,
                w,
                &orch_model::Limits::default(),
            ) {
                problems.push(format!("workflows[{i}]: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// Templates by name, and the template files that could not be used.
#[derive(Debug, Clone, Default)]
pub(crate) struct Templates {
    pub(crate) ok: BTreeMap<String, (ProjectTemplate, Option<PathBuf>)>,
    pub(crate) bad: BTreeMap<String, String>,
}

/// Reads the built-in templates, then every `*.json` of `dir` (a user
/// template replaces a built-in one of the same name). The source directory
/// of a user template's files is `<dir>/<name>/`.
pub(crate) fn load_templates(dir: Option<&Path>) -> Templates {
    let mut t = Templates::default();
    for (name, text) in BUILTIN_TEMPLATES {
        // The built-ins are part of this crate and tested; a failure here is a build defect.
        match serde_json::from_str::<ProjectTemplate>(text) {
            Ok(tpl) => {
                t.ok.insert((*name).to_owned(), (tpl, None));
            }
            Err(e) => {
                t.bad
                    .insert((*name).to_owned(), format!("built-in template: {e}"));
            }
        }
    }
    let Some(dir) = dir else { return t };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return t;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shown = p.display();
        // A link could point anywhere; templates are read only from real files.
        if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_file()) {
            t.bad.insert(
                stem,
                format!("{shown}: not a regular file (links are not followed)"),
            );
            continue;
        }
        let parsed = std::fs::read_to_string(&p)
            .map_err(|e| format!("{shown}: {e}"))
            .and_then(|text| {
                serde_json::from_str::<ProjectTemplate>(&text).map_err(|e| format!("{shown}: {e}"))
            })
            .and_then(|tpl| {
                tpl.check()
                    .map_err(|e| format!("{shown}: {}", e.replace('\n', &format!("\n{shown}: "))))
                    .map(|()| tpl)
            });
        match parsed {
            Ok(tpl) => {
                let name = if tpl.name.is_empty() {
                    stem
                } else {
                    tpl.name.clone()
                };
                t.bad.remove(&name);
                t.ok.insert(name.clone(), (tpl, Some(dir.join(&name))));
            }
            Err(e) => {
                t.ok.remove(&stem);
                t.bad.insert(stem, e);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_templates_load_and_pass_their_checks() {
        let t = load_templates(None);
        assert!(t.bad.is_empty(), "{:?}", t.bad);
        assert_eq!(
            t.ok.keys().collect::<Vec<_>>(),
            vec!["ai_analysis", "data_pipeline", "web_application"]
        );
        for (tpl, _) in t.ok.values() {
            tpl.check().expect("valid");
            for w in &tpl.workflows {
                assert!(
                    BUILTIN_WORKFLOWS.iter().any(|(n, _)| n == w),
                    "{w} is shipped"
                );
            }
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(safe_relative("../x").is_err());
        assert!(safe_relative("a/../../x").is_err());
        assert!(safe_relative("/etc").is_err());
        assert!(safe_relative("a\0b").is_err());
        assert_eq!(safe_relative("src/").expect("ok"), PathBuf::from("src"));
        assert_eq!(
            safe_relative("./data/raw/").expect("ok"),
            PathBuf::from("data/raw")
        );
    }
}
