//! The implementations of `orch validate` and `orch graph`.

use crate::term::escape_line;
use crate::{GraphFormat, InputFormat, ReadOptions, exit};
use orch_model::{ActionCatalog, Diagnostics, Format, Limits, ValidWorkflow};
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

/// The name a definition read from standard input (`-`) is shown under.
pub(crate) const STDIN_NAME: &str = "<stdin>";

/// Reads and validates a definition file; with `actions`, each step's
/// `module.action` and parameters are checked against them too.
pub(crate) fn load(
    path: &Path,
    read: &ReadOptions,
    limits: &Limits,
    actions: Option<&ActionCatalog>,
) -> Result<ValidWorkflow, LoadError> {
    let stdin = path.as_os_str() == "-";
    let shown = if stdin {
        STDIN_NAME.to_owned()
    } else {
        path.display().to_string()
    };
    let format = match read.input_format {
        Some(InputFormat::Json) => Format::Json,
        Some(InputFormat::Yaml) => Format::Yaml,
        Some(InputFormat::Toml) => Format::Toml,
        None if stdin => {
            return Err(LoadError::File(
                "orch: a definition on standard input (`-`) has no extension to tell its format; pass --input-format json|yaml|toml".to_owned(),
            ));
        }
        None => Format::from_path(path).ok_or_else(|| {
            LoadError::File(format!(
                "{shown}: cannot tell the format from the extension; use .yaml, .yml, .json or .toml, or pass --input-format"
            ))
        })?,
    };
    let text = if stdin {
        read_limited(std::io::stdin().lock(), 0, limits)
    } else {
        read_text(path, limits)
    }
    .map_err(|e| LoadError::File(format!("{shown}: {e}")))?;
    orch_model::definition::load_with(&text, format, limits, Some(&shown), actions)
        .map_err(LoadError::Invalid)
}

/// Why `meta` is not a definition file, if it is not a regular file.
fn not_a_file(meta: &std::fs::Metadata) -> Option<String> {
    let kind = meta.file_type();
    if kind.is_file() {
        return None;
    }
    if kind.is_dir() {
        return Some("is a directory; give a definition file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some(
                "is a named pipe (FIFO), not a regular file; to read a definition from a pipe, give `-` and send it to standard input".into(),
            );
        }
        if kind.is_socket() {
            return Some("is a socket, not a regular file; give a definition file".into());
        }
        if kind.is_char_device() || kind.is_block_device() {
            return Some("is a device, not a regular file; give a definition file (or `-` for standard input)".into());
        }
    }
    Some("is not a regular file; give a definition file (or `-` for standard input)".into())
}

/// Reads a definition file as UTF-8. What is not a regular file (a FIFO, a
/// device, a directory) is refused before it is opened, and it is opened
/// without blocking, so that a FIFO swapped in meanwhile cannot hang orch;
/// a file over the size limit is refused before it is read.
fn read_text(path: &Path, limits: &Limits) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot open: {}", io_reason(&e)))?;
    if let Some(why) = not_a_file(&meta) {
        return Err(why);
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| format!("cannot open: {}", io_reason(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read: {}", io_reason(&e)))?;
    if let Some(why) = not_a_file(&meta) {
        return Err(why);
    }
    if meta.len() > limits.max_definition_bytes {
        return Err(format!(
            "the file is {} bytes; the limit is {} (raise it with --limit max_definition_bytes=N)",
            meta.len(),
            limits.max_definition_bytes
        ));
    }
    read_limited(file, meta.len(), limits)
}

/// Reads at most the definition size limit (one byte more tells it was
/// exceeded, should the file grow while it is read) as UTF-8.
fn read_limited(input: impl Read, expected: u64, limits: &Limits) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    input
        .take(limits.max_definition_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {}", io_reason(&e)))?;
    if bytes.len() as u64 > limits.max_definition_bytes {
        return Err(format!(
            "the definition exceeds the limit of {} bytes (raise it with --limit max_definition_bytes=N)",
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

/// What `orch validate` checks steps against: the built-in actions, with
/// `workflow.run`, and each `--module NAME[=PROGRAM]` as a module served
/// whole (any action, any parameters), as `orch run --module` and `orch
/// worker --module` serve it.
fn validate_catalog(modules: &[String]) -> Result<ActionCatalog, String> {
    let mut catalog = orch_engine::action_catalog(&orch_engine::ActionRegistry::with_builtins());
    for m in modules {
        let name = m.split_once('=').map_or(m.as_str(), |(n, _)| n);
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(format!(
                "--module `{m}`: expected NAME or NAME=PROGRAM, NAME of letters, digits, `_` or `-`"
            ));
        }
        catalog.add_module(name);
    }
    Ok(catalog)
}

/// `orch validate FILE...`: a summary line per valid file, every problem of invalid ones.
pub fn validate(
    files: &[std::path::PathBuf],
    read: &ReadOptions,
    modules: &[String],
    json_out: bool,
) -> u8 {
    let limits = match limits(read) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let catalog = match validate_catalog(modules) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let mut code = exit::OK;
    let mut reports = Vec::new();
    for path in files {
        let shown = if path.as_os_str() == "-" {
            STDIN_NAME.to_owned()
        } else {
            path.display().to_string()
        };
        match load(path, read, &limits, Some(&catalog)) {
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
                        "{}: ok: workflow `{}`, {} step{}, {} level{}, longest path {} ({})",
                        escape_line(&shown),
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
                    eprintln!("{}", escape_line(&msg));
                }
            }
            Err(LoadError::Invalid(diags)) => {
                code = exit::INVALID;
                if json_out {
                    reports
                        .push(json!({"file": shown, "valid": false, "problems": diags.problems}));
                } else {
                    print_problems(&diags);
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

/// Prints every problem of a definition to standard error, one line each
/// (a key or file name holding a newline cannot start a line of its own).
pub(crate) fn print_problems(diags: &Diagnostics) {
    for line in diags.lines() {
        eprintln!("{}", escape_line(&line));
    }
}

/// `orch graph FILE|NAME --format mermaid|dot`: a definition file, or a
/// workflow's name as `orch run` takes it.
pub fn graph(
    config: Option<&Path>,
    arg: &str,
    format: GraphFormat,
    read: &ReadOptions,
    json_out: bool,
) -> u8 {
    let limits = match limits(read) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    };
    let wf = if crate::run::names_a_file(arg) {
        match load(Path::new(arg), read, &limits, None) {
            Ok(wf) => std::sync::Arc::new(wf),
            Err(LoadError::File(msg)) => {
                eprintln!("{}", escape_line(&msg));
                return exit::INVALID;
            }
            Err(LoadError::Invalid(diags)) => {
                print_problems(&diags);
                return exit::INVALID;
            }
        }
    } else {
        let engine = match crate::manage::engine_read_only(config) {
            Ok(e) => e,
            Err(f) => return f.report(),
        };
        match engine.find_workflow(arg, std::env::current_dir().ok()) {
            Ok(wf) => wf,
            Err(e) => return crate::run::run_error(&e),
        }
    };
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
