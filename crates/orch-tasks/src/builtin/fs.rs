//! `fs.read`, `fs.write`, `fs.copy`, `fs.mkdir`, `fs.list`: file actions confined to the work directory.
//!
//! Paths are relative to the run's work directory. Absolute paths, `..`
//! components and symbolic links anywhere along the path are refused, so an
//! action can neither read nor write outside the directory. The actions go
//! through [`crate::confined::Root`]: the work directory is opened once and
//! every path is resolved beneath its descriptor one component at a time
//! without following links, at the moment it is used (no check-then-open
//! race). Writes go to a temporary file in the same directory (by
//! descriptor) that is then synced and renamed into place, and the directory
//! synced (`orch_resources::atomic`): a reader never sees a half-written
//! file. `fs.read` and `fs.copy` read only regular files with a
//! single link (a hard link may be a name of a file outside); `fs.copy`
//! streams, so the file is never held in memory.

use crate::action::{Action, ActionContext, ActionError};
use crate::confined::{self, EntryKind, Root};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::path::{Component, Path};

pub(crate) fn path_param<'a>(params: &'a Value, key: &str) -> Result<&'a str, ActionError> {
    params.get(key).and_then(Value::as_str).ok_or_else(|| {
        ActionError::invalid_parameters(format!("`{key}` (a relative path) is required"))
    })
}

pub(crate) fn io_error(what: &str, path: &str, e: &std::io::Error) -> ActionError {
    let kind = e.kind();
    let msg = format!("{what} `{path}`: {e}");
    match kind {
        std::io::ErrorKind::NotFound
        | std::io::ErrorKind::PermissionDenied
        | std::io::ErrorKind::AlreadyExists => ActionError::permanent("IoError", msg),
        _ => ActionError::retryable("IoError", msg),
    }
}

/// An action's failure for a refused or failed confined operation.
pub(crate) fn confined_error(what: &str, rel: &str, e: &confined::Error) -> ActionError {
    if e.is_escape() {
        ActionError::permanent("PermissionDenied", e.to_string())
    } else if e.is_invalid() {
        ActionError::invalid_parameters(e.to_string())
    } else if let Some(io) = e.io() {
        io_error(what, rel, io)
    } else {
        ActionError::permanent("IoError", format!("{what} {e}"))
    }
}

/// The run's work directory, opened as the root that file actions resolve beneath.
pub(crate) fn work_root(ctx: &ActionContext) -> Result<Root, ActionError> {
    Root::open(&ctx.work_dir)
        .map(|r| r.named("the work directory"))
        .map_err(|e| {
            io_error(
                "cannot open the work directory",
                &ctx.work_dir.display().to_string(),
                &e,
            )
        })
}

/// Writes `bytes` to `target` through a temporary sibling, a rename and a
/// sync of the directory: [`crate::confined::Root::write_bytes`] on
/// `target`'s directory, which is [`orch_resources::atomic::write_in_dir`]
/// (the workspace's one atomic write) after the root's checks, so a link at
/// `target` is a `PermissionDenied` error.
///
/// The temporary file is created and renamed relative to a descriptor of
/// `target`'s directory, so both happen in the same directory even if its
/// path is changed meanwhile, and a link at `target` is refused rather than
/// written through. Links in the directory's own path are followed (and
/// `create_dirs` creates it by path): this is for directories the caller
/// chose itself (a configured directory). A path that comes from elsewhere,
/// or that lies beneath a directory whose content others may change, goes
/// through [`write_atomically_beneath`] (or [`crate::confined::Root`]).
///
/// # Errors
/// The operating system's error; `InvalidInput` when `target` names no file.
pub fn write_atomically(target: &Path, bytes: &[u8], create_dirs: bool) -> std::io::Result<()> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = match target.components().next_back() {
        Some(Component::Normal(n)) => n,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{}` does not name a file", target.display()),
            ));
        }
    };
    if create_dirs {
        std::fs::create_dir_all(dir)?;
    }
    Root::open(dir)?.write_bytes(Path::new(name), bytes, false)?;
    Ok(())
}

/// Writes `bytes` to `rel` beneath the directory `root` atomically, as
/// [`crate::confined::Root::write_bytes`] does: `rel` is resolved from a
/// descriptor of `root` one component at a time without following links, so
/// a link along `rel` (or at its end) is refused, never written through, and
/// nothing is written outside `root`. Links in `root`'s own path are
/// followed: the caller chose that directory.
///
/// # Errors
/// A refused path ([`confined::Error::is_escape`] for absolute paths, `..`
/// and links), or the operating system's error (also when `root` cannot be
/// opened).
pub fn write_atomically_beneath(
    root: &Path,
    rel: &Path,
    bytes: &[u8],
    create_dirs: bool,
) -> Result<(), confined::Error> {
    let dir = Root::open(root).map_err(|e| confined::Error {
        path: root.to_path_buf(),
        kind: confined::ErrorKind::Io(e),
        base: "the directory",
    })?;
    dir.write_bytes(rel, bytes, create_dirs)
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ActionError> + Send + 'static,
) -> Result<T, ActionError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ActionError::retryable("IoError", format!("the file operation did not finish: {e}"))
    })?
}

/// `fs.read {path, parse}` → `{path, content, bytes, truncated}` (content as
/// UTF-8 text, capped); with `parse: "json"` the result also has `data`, the
/// parsed document (a file that is not JSON is a permanent failure).
#[derive(Debug)]
pub struct Read;

#[async_trait]
impl Action for Read {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::READ)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = path_param(&params, "path")?.to_owned();
        let root = work_root(ctx)?;
        let limit = ctx.output_limit;
        let parse = match params.get("parse") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) if s == "json" => true,
            Some(other) => {
                return Err(ActionError::invalid_parameters(format!(
                    "`parse` may only be \"json\", not {other}"
                )));
            }
        };
        blocking(move || {
            use std::io::Read as _;
            let f = root.open_file(&rel).map_err(|e| confined_error("cannot read", &rel, &e))?;
            let mut buf = Vec::new();
            f.take(limit as u64 + 1).read_to_end(&mut buf).map_err(|e| io_error("cannot read", &rel, &e))?;
            let truncated = buf.len() > limit;
            buf.truncate(limit);
            let mut out = json!({"path": rel, "content": String::from_utf8_lossy(&buf), "bytes": buf.len(), "truncated": truncated});
            if parse {
                let data: Value = serde_json::from_slice(&buf).map_err(|e| {
                    ActionError::permanent("ParseError", format!("`{rel}` is not valid JSON: {e}"))
                })?;
                out["data"] = data;
            }
            Ok(out)
        })
        .await
    }
}

/// `fs.write {path, content, create_dirs = true}` → `{path, bytes}`; non-string content is written as JSON.
#[derive(Debug)]
pub struct Write;

#[async_trait]
impl Action for Write {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::WRITE)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = path_param(&params, "path")?.to_owned();
        let content = match params.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            None => return Err(ActionError::invalid_parameters("`content` is required")),
        };
        let create_dirs = params
            .get("create_dirs")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let root = work_root(ctx)?;
        blocking(move || {
            root.write_bytes(&rel, content.as_bytes(), create_dirs)
                .map_err(|e| confined_error("cannot write", &rel, &e))?;
            Ok(json!({"path": rel, "bytes": content.len()}))
        })
        .await
    }
}

/// `fs.copy {from, to}` → `{from, to, bytes}`: streamed, `to` written atomically.
#[derive(Debug)]
pub struct Copy;

#[async_trait]
impl Action for Copy {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::COPY)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let from = path_param(&params, "from")?.to_owned();
        let to = path_param(&params, "to")?.to_owned();
        let root = work_root(ctx)?;
        blocking(move || {
            let mut src = root
                .open_file(&from)
                .map_err(|e| confined_error("cannot read", &from, &e))?;
            let bytes = root
                .write_with(&to, true, |dst| std::io::copy(&mut src, dst))
                .map_err(|e| confined_error("cannot copy to", &to, &e))?;
            Ok(json!({"from": from, "to": to, "bytes": bytes}))
        })
        .await
    }
}

/// `fs.mkdir {path}` → `{path, created}` (parents included; an existing directory is fine).
#[derive(Debug)]
pub struct Mkdir;

#[async_trait]
impl Action for Mkdir {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::MKDIR)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = path_param(&params, "path")?.to_owned();
        let root = work_root(ctx)?;
        blocking(move || {
            let (_, created) = root
                .create_dir_all(&rel)
                .map_err(|e| confined_error("cannot create", &rel, &e))?;
            Ok(json!({"path": rel, "created": created}))
        })
        .await
    }
}

/// `fs.list {path = "."}` → `{path, entries: [{name, kind, bytes}]}`, sorted by name.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Action for List {
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::LIST)
    }

    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = params
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(".")
            .to_owned();
        let root = work_root(ctx)?;
        blocking(move || {
            let mut listed = root
                .list(&rel)
                .map_err(|e| confined_error("cannot list", &rel, &e))?;
            listed.sort_by(|a, b| a.name.cmp(&b.name));
            let entries: Vec<Value> = listed
                .iter()
                .map(|e| {
                    let kind = match e.kind {
                        EntryKind::Symlink => "symlink",
                        EntryKind::Dir => "dir",
                        EntryKind::File | EntryKind::Other => "file",
                    };
                    json!({"name": e.name.to_string_lossy(), "kind": kind, "bytes": e.bytes})
                })
                .collect();
            Ok(json!({"path": rel, "entries": entries}))
        })
        .await
    }
}
