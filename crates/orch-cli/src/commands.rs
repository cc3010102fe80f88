//! The implementations of `orch validate` and `orch graph`.

use crate::{GraphFormat, InputFormat, ReadOptions, exit};
use orch_model::{Diagnostics, Format, Limits, ValidWorkflow, load_workflow};
use serde_json::json;
use std::io::Read;
use std::path::Path;

pub(crate) fn limits(read: &ReadOptions) -> Result<Limits, String> {
    let mut limits = Limits::default();
    for kv in &read.limits {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            format!("--limit `{kv}`: expected KEY=VALUE, e.g. --limit max_steps=2000000")
        })?;
        limits
            .set(k.trim(), v)
            .map_err(|e| format!("--limit: {e}"))?;
    }
    Ok(limits)
}

/// Why a file could not be checked: not readable, or not a valid definition.
pub(crate) enum LoadError {
    /// One line: the file could not be read or its format guessed.
    File(String),
    /// Every problem of the definition.
    Invalid(Diagnostics),
}

pub(crate) fn load(
    path: &Path,
    read: &ReadOptions,
    limits: &Limits,
) -> Result<ValidWorkflow, LoadError> {
    let shown = path.display().to_string();
    let format = match read.input_format {
        Some(InputFormat::Json) => Format::Json,
        Some(InputFormat::Yaml) => Format::Yaml,
        Some(InputFormat::Toml) => Format::Toml,
        None => Format::from_path(path).ok_or_else(|| {
            LoadError::File(format!(
                "{shown}: cannot tell the format from the extension; use .yaml, .yml, .json or .toml, or pass --input-format"
            ))
        })?,
    };
    let text = read_text(path, limits).map_err(|e| LoadError::File(format!("{shown}: {e}")))?;
    load_workflow(&text, format, limits, Some(&shown)).map_err(LoadError::Invalid)
}

/// Reads a file as UTF-8, refusing it before reading when it exceeds the size limit.
fn read_text(path: &Path, limits: &Limits) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {}", io_reason(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read: {}", io_reason(&e)))?;
    if meta.is_dir() {
        return Err("is a directory; give a definition file".into());
    }
    if meta.len() > limits.max_definition_bytes {
        return Err(format!(
            "the file is {} bytes; the limit is {} (raise it with --limit max_definition_bytes=N)",
            meta.len(),
            limits.max_definition_bytes
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // Read at most one byte past the limit, in case the file grows while we read.
    file.take(limits.max_definition_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {}", io_reason(&e)))?;
    if bytes.len() as u64 > limits.max_definition_bytes {
        return Err(format!(
            "the file exceeds the limit of {} bytes",
            limits.max_definition_bytes
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "is not valid UTF-8 (first bad byte at offset {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn summarize_path(path: &[&str]) -> String {
    if path.len() <= 6 {
        path.join(" -> ")
    } else {
        format!(
            "{} -> {} -> {} -> ... -> {}",
            path[0],
            path[1],
            path[2],
            path[path.len() - 1]
        )
    }
}

/// `orch validate FILE...`: a summary line per valid file, every problem of invalid ones.
pub fn validate(files: &[std::path::PathBuf], read: &ReadOptions, json_out: bool) -> u8 {
    let limits = match limits(read) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let mut code = exit::OK;
    let mut reports = Vec::new();
    for path in files {
        let shown = path.display().to_string();
        match load(path, read, &limits) {
            Ok(wf) => {
                let longest = wf.longest_path();
                let w = wf.workflow();
                if json_out {
                    reports.push(json!({
                        "file": shown,
                        "valid": true,
                        "name": w.name,
                        "steps": w.steps.len(),
                        "levels": wf.levels().len(),
                        "longest_path": longest,
                        "problems": [],
                    }));
                } else {
                    println!(
                        "{shown}: ok: workflow `{}`, {} step{}, {} level{}, longest path {} ({})",
                        w.name,
                        w.steps.len(),
                        if w.steps.len() == 1 { "" } else { "s" },
                        wf.levels().len(),
                        if wf.levels().len() == 1 { "" } else { "s" },
                        longest.len(),
                        summarize_path(&longest)
                    );
                }
            }
            Err(LoadError::File(msg)) => {
                code = exit::INVALID;
                if json_out {
                    reports.push(json!({"file": shown, "valid": false, "problems": [{"kind": "file", "path": "", "message": msg}]}));
                } else {
                    eprintln!("{msg}");
                }
            }
            Err(LoadError::Invalid(diags)) => {
                code = exit::INVALID;
                if json_out {
                    reports
                        .push(json!({"file": shown, "valid": false, "problems": diags.problems}));
                } else {
                    for line in diags.lines() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
    if json_out {
        println!("{}", serde_json::Value::Array(reports));
    } else if code != exit::OK && files.len() > 1 {
        eprintln!("orch: some definitions are invalid");
    }
    code
}

/// `orch graph FILE --format mermaid|dot`.
pub fn graph(path: &Path, format: GraphFormat, read: &ReadOptions, json_out: bool) -> u8 {
    let limits = match limits(read) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    match load(path, read, &limits) {
        Ok(wf) => {
            let text = match format {
                GraphFormat::Mermaid => wf.to_mermaid(),
                GraphFormat::Dot => wf.to_dot(),
            };
            if json_out {
                let out = json!({
                    "name": wf.workflow().name,
                    "format": match format { GraphFormat::Mermaid => "mermaid", GraphFormat::Dot => "dot" },
                    "graph": text,
                    "levels": wf.execution_order(),
                });
                println!("{out}");
            } else {
                print!("{text}");
            }
            exit::OK
        }
        Err(LoadError::File(msg)) => {
            eprintln!("{msg}");
            exit::INVALID
        }
        Err(LoadError::Invalid(diags)) => {
            for line in diags.lines() {
                eprintln!("{line}");
            }
            exit::INVALID
        }
    }
}
