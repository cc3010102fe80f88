//! `fs.read`, `fs.write`, `fs.copy`, `fs.mkdir`, `fs.list`: file actions confined to the work directory.
//!
//! Paths are relative to the run's work directory. Absolute paths, `..`
//! components and symbolic links anywhere along the path are refused, so an
//! action can neither read nor write outside the directory. Writes go to a
//! temporary file in the same directory that is then renamed into place: a
//! reader never sees a half-written file.

use crate::action::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::path::{Component, Path, PathBuf};

/// Resolves `rel` inside `root`, refusing anything that could leave it.
///
/// # Errors
/// A permanent `PermissionDenied` failure for absolute paths, `..`, and
/// symbolic links; `InvalidParameters` for an empty path.
pub fn confine(root: &Path, rel: &str) -> Result<PathBuf, ActionError> {
    if rel.is_empty() {
        return Err(ActionError::invalid_parameters("the path is empty"));
    }
    let denied = |why: String| ActionError::permanent("PermissionDenied", why);
    let p = Path::new(rel);
    let mut out = root.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(part) => {
                out.push(part);
                if let Ok(meta) = std::fs::symlink_metadata(&out) {
                    if meta.file_type().is_symlink() {
                        return Err(denied(format!(
                            "`{rel}`: `{}` is a symbolic link; file actions do not follow links",
                            out.strip_prefix(root).unwrap_or(&out).display()
                        )));
                    }
                }
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(denied(format!(
                    "`{rel}` contains `..`; paths must stay inside the work directory"
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(denied(format!(
                    "`{rel}` is absolute; use a path relative to the work directory"
                )));
            }
        }
    }
    Ok(out)
}

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

/// Writes `bytes` to `target` through a temporary sibling and a rename.
pub fn write_atomically(target: &Path, bytes: &[u8], create_dirs: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = target.parent().unwrap_or_else(|| Path::new("."));
    if create_dirs {
        std::fs::create_dir_all(dir)?;
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and per write, so concurrent writers never share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.orch-tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = path_param(&params, "path")?.to_owned();
        let full = confine(&ctx.work_dir, &rel)?;
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
            let f = std::fs::File::open(&full).map_err(|e| io_error("cannot read", &rel, &e))?;
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
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = path_param(&params, "path")?.to_owned();
        let full = confine(&ctx.work_dir, &rel)?;
        let content = match params.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            None => return Err(ActionError::invalid_parameters("`content` is required")),
        };
        let create_dirs = params
            .get("create_dirs")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        blocking(move || {
            write_atomically(&full, content.as_bytes(), create_dirs)
                .map_err(|e| io_error("cannot write", &rel, &e))?;
            Ok(json!({"path": rel, "bytes": content.len()}))
        })
        .await
    }
}

/// `fs.copy {from, to}` → `{from, to, bytes}`.
#[derive(Debug)]
pub struct Copy;

#[async_trait]
impl Action for Copy {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let from = path_param(&params, "from")?.to_owned();
        let to = path_param(&params, "to")?.to_owned();
        let src = confine(&ctx.work_dir, &from)?;
        let dst = confine(&ctx.work_dir, &to)?;
        blocking(move || {
            let bytes = std::fs::read(&src).map_err(|e| io_error("cannot read", &from, &e))?;
            write_atomically(&dst, &bytes, true).map_err(|e| io_error("cannot write", &to, &e))?;
            Ok(json!({"from": from, "to": to, "bytes": bytes.len()}))
        })
        .await
    }
}

/// `fs.mkdir {path}` → `{path, created}` (parents included; an existing directory is fine).
#[derive(Debug)]
pub struct Mkdir;

#[async_trait]
impl Action for Mkdir {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = path_param(&params, "path")?.to_owned();
        let full = confine(&ctx.work_dir, &rel)?;
        blocking(move || {
            let existed = full.is_dir();
            std::fs::create_dir_all(&full).map_err(|e| io_error("cannot create", &rel, &e))?;
            Ok(json!({"path": rel, "created": !existed}))
        })
        .await
    }
}

/// `fs.list {path = "."}` → `{path, entries: [{name, kind, bytes}]}`, sorted by name.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Action for List {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let rel = params
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(".")
            .to_owned();
        let full = confine(&ctx.work_dir, &rel)?;
        blocking(move || {
            let mut entries = Vec::new();
            for e in std::fs::read_dir(&full).map_err(|e| io_error("cannot list", &rel, &e))? {
                let e = e.map_err(|e| io_error("cannot list", &rel, &e))?;
                let meta = e.path().symlink_metadata().map_err(|er| io_error("cannot list", &rel, &er))?;
                let kind = if meta.file_type().is_symlink() {
                    "symlink"
                } else if meta.is_dir() {
                    "dir"
                } else {
                    "file"
                };
                entries.push(json!({"name": e.file_name().to_string_lossy(), "kind": kind, "bytes": meta.len()}));
            }
            entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            Ok(json!({"path": rel, "entries": entries}))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        assert!(confine(root, "a/b.txt").is_ok());
        assert!(confine(root, "./a").is_ok());
        for bad in ["/etc/passwd", "../x", "a/../../x", ""] {
            assert!(confine(root, bad).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/tmp", root.join("link")).expect("symlink");
        let err = confine(root, "link/x").expect_err("through a link");
        assert!(err.message.contains("symbolic link"), "{err}");
    }
}
