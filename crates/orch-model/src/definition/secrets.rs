//! Secrets in a definition: the top-level `secrets:` section (a name for each value and where it is read from), a step's `secrets:` list, and the checks that keep their values out of parameters.
//!
//! A definition only *names* secrets; their values are read when a run
//! starts (orch-tasks' `secrets` module), never stored, and reach a step only
//! as environment variables of the process it starts. No `${...}` reference
//! can name a secret (`${secrets.X}` is refused by the reference grammar), so
//! a value cannot reach a command line, a parameter or a result through
//! substitution.

use super::Workflow;
use super::decode::SourceMap;
use super::names::display_snippet;
use crate::diagnostic::{DiagnosticKind as K, Diagnostics};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// One entry of the `secrets:` section: the secret's name (also the name of
/// the environment variable a step gets it in) and where its value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDecl {
    /// `[A-Za-z_][A-Za-z0-9_]*`, not starting with `ORCH_`.
    pub name: String,
    /// Where the value comes from.
    pub source: SecretSource,
}

/// Where a secret's value is read when a run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// An environment variable of the process that runs the step (`{env: NAME}`).
    Env(String),
    /// A file (`{file: PATH}`) readable by its owner only (mode 0600 or
    /// stricter); a relative path is taken from the run's work directory.
    /// One trailing newline is not part of the value.
    File(String),
}

/// Serializes the section as the map it is written as: `{NAME: {env: VAR}}`.
pub(crate) fn serialize_decls<S: Serializer>(
    decls: &[SecretDecl],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(decls.len()))?;
    for d in decls {
        m.serialize_entry(&d.name, &d.source)?;
    }
    m.end()
}

/// Modules whose actions run in orch's own process: a step of theirs starts
/// no process, so it has no environment to receive a secret in.
pub const IN_PROCESS_MODULES: &[&str] = &[
    "core", "fs", "code", "chart", "report", "data", "workflow", "http",
];

/// Whether `name` may name a secret: an environment variable name that does
/// not start with `ORCH_` (orch's own variables on step processes).
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256;
    if !ok {
        return Err(format!(
            "secret name {} must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most 256 bytes): \
             a step receives the secret in the variable of that name",
            display_snippet(name)
        ));
    }
    if name.starts_with("ORCH_") {
        return Err(format!(
            "secret name `{name}` starts with `ORCH_`, which orch keeps for the variables it sets on step processes; choose another name"
        ));
    }
    Ok(())
}

/// The semantic checks of secrets (the decoder checked their shape):
/// names, what steps may use, and that no declared value can reach a
/// parameter through `${env.NAME}` or a step's own `env`.
pub(crate) fn check(wf: &Workflow, map: &SourceMap, d: &mut Diagnostics) {
    for s in &wf.secrets {
        let path = format!("secrets.{}", s.name);
        if let Err(m) = check_secret_name(&s.name) {
            d.push(K::Name, path.clone(), map.top_pos(&path), m);
        }
        if let SecretSource::Env(var) = &s.source {
            if let Some(i) = wf.env.iter().position(|e| e == var) {
                let at = format!("env[{i}]");
                d.push(
                    K::InvalidValue,
                    at.clone(),
                    map.top_pos(&at),
                    format!(
                        "`{var}` is the source of secret `{}`, so it cannot be in `env:`, where `${{env.{var}}}` would put \
                         its value into parameters; remove it from `env:` and give the secret to the steps that need it \
                         with `secrets: [{}]`",
                        s.name, s.name
                    ),
                );
            }
        }
    }
    for (i, step) in wf.steps.iter().enumerate() {
        if let Some(spec) = &step.cache {
            cache_refs(wf, i, &spec.files, map, d);
        }
        if step.secrets.is_empty() {
            continue;
        }
        let in_process = IN_PROCESS_MODULES.contains(&step.module.as_str());
        let env_keys = step
            .parameters
            .get("env")
            .and_then(serde_json::Value::as_object);
        for (k, name) in step.secrets.iter().enumerate() {
            let rel = format!("secrets[{k}]");
            let pos = map.ref_pos(i, &rel);
            let path = format!("steps[{i}].{rel}");
            if !wf.secrets.iter().any(|s| s.name == *name) {
                let declared = if wf.secrets.is_empty() {
                    "the workflow declares none".to_owned()
                } else {
                    let names: Vec<&str> = wf.secrets.iter().map(|s| s.name.as_str()).collect();
                    format!("declared: {}", names.join(", "))
                };
                d.push(
                    K::Reference,
                    path,
                    pos,
                    format!(
                        "secret {} is not declared; declare it under the top-level `secrets:` ({declared})",
                        display_snippet(name)
                    ),
                );
                continue;
            }
            if in_process {
                d.push(
                    K::InvalidValue,
                    path,
                    pos,
                    format!(
                        "a {}.{} step starts no process, and secrets reach steps only as environment variables of \
                         the process they start; give `{name}` to a shell.exec, shell.script or external-module step",
                        step.module, step.action
                    ),
                );
                continue;
            }
            if env_keys.is_some_and(|m| m.contains_key(name.as_str())) {
                d.push(
                    K::Duplicate,
                    path,
                    pos,
                    format!(
                        "the step's `env` parameter also sets `{name}`; the secret is that variable, so remove `{name}` from `env`"
                    ),
                );
            }
        }
    }
}

/// A `cache.files` glob may hold `${params.NAME}` (a declared parameter),
/// resolved when the step is about to run; nothing else, since the files
/// are hashed before the step's dependencies' results are read.
fn cache_refs(wf: &Workflow, i: usize, globs: &[String], map: &SourceMap, d: &mut Diagnostics) {
    for (k, g) in globs.iter().enumerate() {
        if !g.contains("${") {
            continue;
        }
        let rel = format!("cache.files[{k}]");
        let (template, errors) = crate::reference::parse_template_partial(g);
        let mut problems: Vec<String> = errors.into_iter().map(|e| e.message).collect();
        for r in template.references() {
            match r {
                crate::reference::Reference::Param(name) if wf.parameters.contains_key(name) => {}
                crate::reference::Reference::Param(_) => problems.push(format!(
                    "`${{{r}}}` names an undeclared parameter; declare it under `parameters:`"
                )),
                other => problems.push(format!(
                    "`${{{other}}}`: a `cache.files` glob may only use `${{params.NAME}}`"
                )),
            }
        }
        for m in problems {
            d.push(
                K::Reference,
                format!("steps[{i}].{rel}"),
                map.ref_pos(i, &rel),
                m,
            );
        }
    }
}
