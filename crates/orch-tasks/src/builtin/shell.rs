//! `shell.exec` (a program and its arguments, no shell) and `shell.script` (`sh -c`, values only as variables).
//!
//! Every process runs in its own process group. On timeout or cancellation
//! the whole group gets SIGTERM, then SIGKILL after the grace period, and the
//! leader is reaped; when the leader exits on its own, what it left running in
//! its group is killed too, so a step never leaves processes behind.

use crate::action::{Action, ActionContext, ActionError};
use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Runs `program` with `args` directly (no shell): each argument is passed as
/// one argv entry, byte for byte, whatever it contains.
///
/// Parameters: `program` (string), `args` (list; strings as they are, other
/// values as JSON text), `env` (map of strings), `cwd` (relative to the work
/// directory, or absolute), `stdin` (string). Result: `{exit_code, stdout,
/// stderr, stdout_truncated, stderr_truncated}`; a non-zero exit is a
/// (retryable) failure of type `ExitCode` carrying the same data.
#[derive(Debug)]
pub struct Exec;

/// A module served by an external program (how a Python module plugs in):
/// the program gets `{"action", "parameters"}` as JSON on stdin and answers
/// with JSON on stdout, which becomes the step's result. A non-zero exit is a
/// failure (type `ExitCode`, with stderr); output that is not JSON is a
/// failure of type `ProtocolError`. The program runs in its own process
/// group, like every shell action.
#[derive(Debug, Clone)]
pub struct External {
    /// The program.
    pub program: PathBuf,
    /// Arguments before nothing else: the request travels on stdin only.
    pub args: Vec<String>,
}

#[async_trait]
impl Action for External {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let action = ctx.action.to_string();
        let request = json!({"action": action, "parameters": params}).to_string();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(&*ctx.work_dir);
        let shown = self.program.display().to_string();
        let out = run_process(cmd, &shown, Some(request), ctx).await?;
        let stdout = out
            .get("stdout")
            .and_then(Value::as_str)
            .unwrap_or_default();
        serde_json::from_str::<Value>(stdout.trim()).map_err(|e| {
            ActionError::permanent(
                "ProtocolError",
                format!("`{shown}` did not answer with JSON on stdout: {e}"),
            )
            .with_data(out.clone())
        })
    }
}

/// Runs `script` with `sh -c`. Values reach the script only as environment
/// variables (`env`) or positional parameters (`args`, as `$1`, `$2`, ...),
/// never as part of its source text.
#[derive(Debug)]
pub struct Script;

fn arg_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn params_map(params: &Value) -> Result<&Map<String, Value>, ActionError> {
    params
        .as_object()
        .ok_or_else(|| ActionError::invalid_parameters("parameters must be a map"))
}

fn string_list(p: &Map<String, Value>, key: &str) -> Result<Vec<String>, ActionError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().map(arg_text).collect()),
        Some(_) => Err(ActionError::invalid_parameters(format!(
            "`{key}` must be a list"
        ))),
    }
}

fn env_map(p: &Map<String, Value>) -> Result<Vec<(String, String)>, ActionError> {
    match p.get("env") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m {
                let ok = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(ActionError::invalid_parameters(format!(
                        "environment variable name `{k}` must match [A-Za-z_][A-Za-z0-9_]*"
                    )));
                }
                out.push((k.clone(), arg_text(v)));
            }
            Ok(out)
        }
        Some(_) => Err(ActionError::invalid_parameters(
            "`env` must be a map of names to values",
        )),
    }
}

fn configure(
    cmd: &mut Command,
    p: &Map<String, Value>,
    ctx: &ActionContext,
) -> Result<Option<String>, ActionError> {
    for (k, v) in env_map(p)? {
        cmd.env(k, v);
    }
    let cwd = match p.get("cwd") {
        None | Some(Value::Null) => ctx.work_dir.to_path_buf(),
        Some(Value::String(c)) => {
            let c = PathBuf::from(c);
            if c.is_absolute() {
                c
            } else {
                ctx.work_dir.join(c)
            }
        }
        Some(_) => return Err(ActionError::invalid_parameters("`cwd` must be a string")),
    };
    cmd.current_dir(cwd);
    let stdin = match p.get("stdin") {
        None | Some(Value::Null) => None,
        Some(v) => Some(arg_text(v)),
    };
    Ok(stdin)
}

#[async_trait]
impl Action for Exec {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let p = params_map(&params)?;
        let program = match p.get("program") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ActionError::invalid_parameters(
                    "`program` (a non-empty string) is required",
                ));
            }
        };
        let mut cmd = Command::new(&program);
        cmd.args(string_list(p, "args")?);
        let stdin = configure(&mut cmd, p, ctx)?;
        run_process(cmd, &program, stdin, ctx).await
    }
}

#[async_trait]
impl Action for Script {
    async fn run(&self, params: Value, ctx: &ActionContext) -> Result<Value, ActionError> {
        let p = params_map(&params)?;
        let script = match p.get("script") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ActionError::invalid_parameters(
                    "`script` (a non-empty string) is required",
                ));
            }
        };
        let mut cmd = Command::new("sh");
        // `sh -c SCRIPT NAME ARG...`: the arguments become $1, $2, ... and are never parsed as code.
        cmd.arg("-c")
            .arg(&script)
            .arg("orch-script")
            .args(string_list(p, "args")?);
        let stdin = configure(&mut cmd, p, ctx)?;
        run_process(cmd, "sh", stdin, ctx).await
    }
}

async fn read_capped<R: AsyncRead + Unpin>(mut r: R, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

fn signal_group(pgid: i32, sig: Signal) {
    // ESRCH (the group is gone) is the normal outcome of a race with exit.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

/// SIGTERM to the group, up to `grace` for the leader to exit, SIGKILL to the group, reap.
async fn terminate(child: &mut Child, pgid: Option<i32>, grace: Duration) {
    if let Some(pgid) = pgid {
        signal_group(pgid, Signal::SIGTERM);
        let _ = tokio::time::timeout(grace, child.wait()).await;
        signal_group(pgid, Signal::SIGKILL);
    } else {
        let _ = child.start_kill();
    }
    let _ = child.wait().await;
}

pub(crate) async fn run_process(
    mut cmd: Command,
    program: &str,
    stdin: Option<String>,
    ctx: &ActionContext,
) -> Result<Value, ActionError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        let retryable = e.kind() != std::io::ErrorKind::NotFound
            && e.kind() != std::io::ErrorKind::PermissionDenied;
        let msg = format!("cannot start `{program}`: {e}");
        if retryable {
            ActionError::retryable("SpawnError", msg)
        } else {
            ActionError::permanent("SpawnError", msg)
        }
    })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(text.as_bytes()).await;
        });
    }
    let limit = ctx.output_limit;
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_capped(s, limit)));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_capped(s, limit)));
    let status = tokio::select! {
        s = child.wait() => s,
        () = ctx.cancel.cancelled() => {
            terminate(&mut child, pgid, ctx.kill_grace).await;
            return Err(ActionError::retryable("Cancelled", format!("`{program}` was stopped (timeout or cancellation)")));
        }
    };
    // The leader is done; anything it left in its group goes too, so that the
    // pipes close and nothing outlives the step.
    if let Some(pgid) = pgid {
        signal_group(pgid, Signal::SIGKILL);
    }
    let collect = |h: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>| async move {
        match h {
            Some(h) => h.await.unwrap_or_default(),
            None => (Vec::new(), false),
        }
    };
    let (stdout, out_trunc) = collect(out).await;
    let (stderr, err_trunc) = collect(err).await;
    let status = status.map_err(|e| {
        ActionError::retryable("SpawnError", format!("waiting for `{program}` failed: {e}"))
    })?;
    let code = status.code();
    let data = json!({
        "exit_code": code,
        "stdout": String::from_utf8_lossy(&stdout),
        "stderr": String::from_utf8_lossy(&stderr),
        "stdout_truncated": out_trunc,
        "stderr_truncated": err_trunc,
    });
    match code {
        Some(0) => Ok(data),
        Some(c) => Err(ActionError::retryable(
            "ExitCode",
            format!("`{program}` exited with code {c}"),
        )
        .with_data(data)),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let sig = status.signal().unwrap_or(0);
            Err(
                ActionError::retryable("Signal", format!("`{program}` was killed by signal {sig}"))
                    .with_data(data),
            )
        }
    }
}
