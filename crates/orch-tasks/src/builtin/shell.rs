//! `shell.exec` (a program and its arguments, no shell) and `shell.script` (`sh -c`, values only as variables).
//!
//! Every process runs in its own process group and carries the step's marker
//! in its environment (see [`crate::process`]). On timeout or cancellation
//! the whole group and every marked process get SIGTERM, then SIGKILL after
//! the grace period, and the leader is reaped; when the leader exits on its
//! own, what it left running (in its group, or marked: a `setsid` child) is
//! killed too, so a step never leaves processes behind.
//!
//! Output is capped where it is stored: each stream keeps at most
//! `output_limit` bytes of JSON text (escapes included) in the result, so
//! 1 MiB of NUL bytes is not stored as 6 MiB of `\u0000`. With
//! `ActionContext::output`, the first `output_limit` bytes of each stream
//! are also kept in the store while the process runs, in chunks
//! (`crate::output`).

use crate::action::{Action, ActionContext, ActionError};
use crate::output::LiveStream;
use crate::process;
use crate::secrets::StreamMask;
use async_trait::async_trait;
use orch_model::store::OutputStream;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

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
/// failure (type `ExitCode`, with stderr); output that is not JSON, or an
/// answer larger than the output limit (`RunOptions::output_limit`, 1 MiB by
/// default), is a failure of type `ProtocolError`. The program runs in its
/// own process group, like every shell action.
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
        let out = capture(cmd, &shown, Some(request), ctx).await?;
        let limit = ctx.output_limit;
        if out.status.code() != Some(0) {
            return out.outcome(&shown, limit);
        }
        if out.out_truncated {
            let mut data = out.data(limit);
            // The cut answer is no use to anyone; stderr may say why it is so large.
            if let Some(m) = data.as_object_mut() {
                m.insert("stdout".into(), Value::String(String::new()));
            }
            return Err(ActionError::permanent(
                "ProtocolError",
                format!(
                    "`{shown}` answered with more than {limit} bytes on stdout, the most an answer may have \
                     (the output limit); have it write large data to a file and answer with the file's path"
                ),
            )
            .with_data(data));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str::<Value>(text.trim()).map_err(|e| {
            ActionError::permanent(
                "ProtocolError",
                format!("`{shown}` did not answer with JSON on stdout: {e}"),
            )
            .with_data(out.data(limit))
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
                if process::RESERVED_ENV.contains(&k.as_str()) {
                    return Err(ActionError::invalid_parameters(format!(
                        "`env` sets `{k}`, which orch sets on every step process (it marks the \
                         processes to stop with the step); choose another name"
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
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::EXEC)
    }

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
    fn spec(&self) -> Option<&'static orch_model::ActionSpec> {
        Some(&super::specs::SCRIPT)
    }

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

/// Reads a stream to its end, keeping at most `limit` bytes; with `live`,
/// what is kept also goes to the store in chunks as it arrives; with
/// `mask`, secrets are masked before either (see `crate::secrets`).
/// Returns the bytes kept, whether some were not, and whether a chunk was
/// sent.
async fn read_capped<R: AsyncRead + Unpin>(
    mut r: R,
    limit: usize,
    mut live: Option<LiveStream>,
    mut mask: Option<StreamMask>,
) -> (Vec<u8>, bool, bool) {
    let mut kept = Vec::new();
    // Bytes read within the limit (masking changes the length of what is kept).
    let mut taken = 0usize;
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        let deadline = live.as_ref().and_then(LiveStream::deadline);
        let read = match deadline {
            // `read` is cancel safe: a timer that fires first loses nothing.
            Some(d) => tokio::select! {
                r = r.read(&mut buf) => r,
                () = tokio::time::sleep_until(d) => {
                    if let Some(l) = &mut live {
                        l.tick();
                    }
                    continue;
                }
            },
            None => r.read(&mut buf).await,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(taken);
                let take = n.min(room);
                taken += take;
                let cut = n > room && !truncated;
                let masked;
                let piece = match &mut mask {
                    Some(m) => {
                        let mut out = m.push(&buf[..take]);
                        if cut {
                            out.extend(m.finish(true));
                        }
                        masked = out;
                        &masked[..]
                    }
                    None => &buf[..take],
                };
                kept.extend_from_slice(piece);
                if let Some(l) = &mut live {
                    l.push(piece);
                    if cut {
                        l.finish(true);
                    }
                }
                if n > room {
                    truncated = true;
                }
            }
        }
    }
    if let (Some(m), false) = (&mut mask, truncated) {
        // What was held back as the possible start of a secret.
        let tail = m.finish(false);
        kept.extend_from_slice(&tail);
        if let Some(l) = &mut live {
            l.push(&tail);
        }
    }
    let sent = match &mut live {
        Some(l) => {
            l.finish(false);
            l.sent
        }
        None => false,
    };
    (kept, truncated, sent)
}

/// The bytes `c` takes inside a JSON string as serde_json writes it
/// (`\"`, `\\`, `\n`...: 2; other control characters, `\u00XX`: 6).
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Captured output as it is stored: invalid UTF-8 becomes U+FFFD, and the
/// text is cut at a character so that its JSON form (escapes included,
/// quotes excluded) takes at most `limit` bytes. Returns the text and
/// whether anything was cut (or was already cut while reading).
pub(crate) fn stored_text(raw: &[u8], limit: usize, mut truncated: bool) -> (String, bool) {
    let mut out = String::with_capacity(raw.len().min(limit));
    let mut used = 0usize;
    let mut chunks = raw.utf8_chunks().peekable();
    'all: while let Some(chunk) = chunks.next() {
        for c in chunk.valid().chars() {
            let n = json_len(c);
            if used + n > limit {
                truncated = true;
                break 'all;
            }
            used += n;
            out.push(c);
        }
        let bad = chunk.invalid();
        if bad.is_empty() {
            continue;
        }
        // A character cut by the reading limit is dropped, not replaced.
        if truncated && chunks.peek().is_none() && bad.len() < 4 {
            break;
        }
        let n = '\u{FFFD}'.len_utf8();
        if used + n > limit {
            truncated = true;
            break;
        }
        used += n;
        out.push('\u{FFFD}');
    }
    (out, truncated)
}

/// What a finished process left: its status and raw output.
struct Captured {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    out_truncated: bool,
    err_truncated: bool,
}

impl Captured {
    /// The result data: `{exit_code, stdout, stderr, stdout_truncated,
    /// stderr_truncated}`, each stream at most `limit` bytes of JSON text.
    fn data(&self, limit: usize) -> Value {
        let (stdout, out_trunc) = stored_text(&self.stdout, limit, self.out_truncated);
        let (stderr, err_trunc) = stored_text(&self.stderr, limit, self.err_truncated);
        json!({
            "exit_code": self.status.code(),
            "stdout": stdout,
            "stderr": stderr,
            "stdout_truncated": out_trunc,
            "stderr_truncated": err_trunc,
        })
    }

    /// The data as a success (exit 0) or as the failure of a non-zero exit or a signal.
    fn outcome(&self, program: &str, limit: usize) -> Result<Value, ActionError> {
        let data = self.data(limit);
        match self.status.code() {
            Some(0) => Ok(data),
            Some(c) => Err(ActionError::retryable(
                "ExitCode",
                format!("`{program}` exited with code {c}"),
            )
            .with_data(data)),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = self.status.signal().unwrap_or(0);
                Err(ActionError::retryable(
                    "Signal",
                    format!("`{program}` was killed by signal {sig}"),
                )
                .with_data(data))
            }
        }
    }
}

pub(crate) async fn run_process(
    cmd: Command,
    program: &str,
    stdin: Option<String>,
    ctx: &ActionContext,
) -> Result<Value, ActionError> {
    capture(cmd, program, stdin, ctx)
        .await?
        .outcome(program, ctx.output_limit)
}

/// How long a stopped step waits for its output readers to end.
const STOPPED_READERS: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `cmd` as a step process (see [`crate::process`]) and collects its
/// output, at most `ctx.output_limit` bytes of each stream; with
/// `ctx.output`, also kept in the store as it arrives (`crate::output`).
async fn capture(
    mut cmd: Command,
    program: &str,
    stdin: Option<String>,
    ctx: &ActionContext,
) -> Result<Captured, ActionError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(s) = &ctx.secrets {
        // Only as environment variables, never in argv.
        s.apply(&mut cmd);
    }
    let mark = process::StepMark {
        run_id: ctx.run_id,
        step: &ctx.step,
        attempt: ctx.attempt,
    };
    if ctx.cancel.is_cancelled() {
        return Err(ActionError::retryable(
            "Cancelled",
            format!("`{program}` was not started (timeout or cancellation)"),
        ));
    }
    // Not raced with cancellation: starting takes a moment, and a
    // cancellation that comes meanwhile stops the process below.
    let mut spawned = process::spawn(cmd, mark).await.map_err(|e| {
        let retryable = e.kind() != std::io::ErrorKind::NotFound
            && e.kind() != std::io::ErrorKind::PermissionDenied;
        let msg = format!("cannot start `{program}`: {e}");
        if retryable {
            ActionError::retryable("SpawnError", msg)
        } else {
            ActionError::permanent("SpawnError", msg)
        }
    })?;
    let child = &mut spawned.child;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(text.as_bytes()).await;
        });
    }
    let limit = ctx.output_limit;
    let live = |stream| ctx.output.as_ref().map(|o| o.live(stream, ctx.attempt));
    let mask = || ctx.secrets.as_ref().map(|s| s.masker().stream());
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(read_capped(s, limit, live(OutputStream::Stdout), mask())));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(read_capped(s, limit, live(OutputStream::Stderr), mask())));
    let collect = |h: Option<tokio::task::JoinHandle<(Vec<u8>, bool, bool)>>| async move {
        match h {
            Some(h) => h.await.unwrap_or_default(),
            None => (Vec::new(), false, false),
        }
    };
    let status = tokio::select! {
        s = child.wait() => s,
        () = ctx.cancel.cancelled() => {
            process::terminate(&mut spawned, ctx.kill_grace).await;
            if let Some(o) = &ctx.output {
                // The group is gone, so the pipes close: what the readers
                // had goes to the store before the step is told stopped
                // (bounded, in case something still holds a pipe open).
                let _ = tokio::time::timeout(STOPPED_READERS, async {
                    collect(out).await;
                    collect(err).await;
                    o.flush().await;
                })
                .await;
            }
            return Err(ActionError::retryable("Cancelled", format!("`{program}` was stopped (timeout or cancellation)")));
        }
    };
    // The leader is done; anything it left in its group or marked with its
    // token (a `setsid` child) goes too, so that the pipes close and nothing
    // outlives the step.
    process::kill_rest(&spawned);
    spawned.guard.disarm();
    let (stdout, out_truncated, out_sent) = collect(out).await;
    let (stderr, err_truncated, err_sent) = collect(err).await;
    if out_sent || err_sent {
        if let Some(o) = &ctx.output {
            // Written before the step's outcome is: whoever sees the step
            // ended has all of its output.
            o.flush().await;
        }
    }
    let status = status.map_err(|e| {
        ActionError::retryable("SpawnError", format!("waiting for `{program}` failed: {e}"))
    })?;
    Ok(Captured {
        status,
        stdout,
        stderr,
        out_truncated,
        err_truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::stored_text;

    /// The bytes `s` takes as stored: its JSON string without the quotes.
    fn stored_len(s: &str) -> usize {
        serde_json::to_string(s).map_or(usize::MAX, |j| j.len() - 2)
    }

    #[test]
    fn the_limit_counts_escapes() {
        let (s, cut) = stored_text(&[0u8; 100], 60, false);
        assert_eq!((s.len(), cut), (10, true));
        assert_eq!(stored_len(&s), 60);
        let (s, cut) = stored_text(b"\"\\\n\t", 8, false);
        assert_eq!((s.as_str(), cut), ("\"\\\n\t", false));
        let (s, cut) = stored_text(b"\"\\\n\t", 7, false);
        assert_eq!((s.as_str(), cut), ("\"\\\n", true));
    }

    #[test]
    fn a_character_is_never_split() {
        // "é" takes 2 bytes: with 3 bytes of room, one "é" fits and the second does not.
        let (s, cut) = stored_text("éé".as_bytes(), 3, false);
        assert_eq!((s.as_str(), cut), ("é", true));
        // Reading stopped inside a character: the partial character is dropped, not replaced.
        let (s, cut) = stored_text(&"aé".as_bytes()[..2], 100, true);
        assert_eq!((s.as_str(), cut), ("a", true));
        // An invalid byte that was not cut by reading is a replacement character.
        let (s, cut) = stored_text(b"a\xffb", 100, false);
        assert_eq!((s.as_str(), cut), ("a\u{FFFD}b", false));
    }

    #[test]
    fn what_fits_is_kept_whole() {
        let text = "plain text with ünïcode and a \u{1} control";
        let (s, cut) = stored_text(text.as_bytes(), stored_len(text), false);
        assert_eq!((s.as_str(), cut), (text, false));
    }
}
