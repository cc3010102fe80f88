//! `orch logs RUN STEP [--raw] [--follow]`: a step's output: its result once
//! it ended, what it printed so far while it runs (the store keeps a
//! running step's output in chunks), and with `--follow` each new chunk as
//! it is stored, until the step ends.

use crate::exit;
use crate::manage::Failure;
use crate::runs::{find_run, open_read_only};
use crate::term::{Stream, print_raw};
use orch_model::store::{OutputChunk, OutputSoFar, OutputStream, TaskRecord};
use orch_model::{OrchestrationError, RunId, Store, TaskStatus};
use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often `--follow` looks in the store for new output.
const POLL: Duration = Duration::from_millis(100);

/// Most chunks read at once (64 KiB each at most).
const READ: usize = 64;

/// `orch logs RUN STEP`: the step's captured output, escaped; with `raw`,
/// a command's standard output and error as they were captured, unescaped,
/// on orch's standard output and error; with `follow`, new output as it is
/// stored until the step ends, then an exit status that says how it ended.
pub fn logs(config: Option<&Path>, id: &str, step: &str, raw: bool, follow: bool) -> u8 {
    let (_engine, store, rt) = match open_read_only(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let found = rt.block_on(async {
        let r = find_run(&store, id).await?;
        let tasks = store.tasks(r.id).await.map_err(|e| Failure::of(&e))?;
        Ok::<_, Failure>((r, tasks))
    });
    let (r, tasks) = match found {
        Ok(x) => x,
        Err(f) => return f.report(),
    };
    let Some(t) = tasks.into_iter().find(|t| t.name == step) else {
        let names: Vec<String> = rt
            .block_on(store.tasks(r.id))
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.name)
            .collect();
        eprintln!(
            "orch: run {} has no step `{step}`; its steps: {}",
            r.id,
            names.join(", ")
        );
        return exit::INVALID;
    };
    if t.status.is_terminal() {
        print_final(&t, step, raw);
        return if follow { ended(&t) } else { exit::OK };
    }
    if follow {
        return rt.block_on(follow_step(&store, r.id, t, step, raw));
    }
    match rt.block_on(so_far(&store, r.id, t.index)) {
        Ok(out) => print_so_far(&t, step, &out, raw, &r.id.to_string()),
        Err(e) => {
            eprintln!("orch: {e}");
            return exit::INVALID;
        }
    }
    exit::OK
}

/// The exit code `--follow` ends with: 0 when the step completed or was
/// skipped, 1 when it failed or was cancelled.
fn ended(t: &TaskRecord) -> u8 {
    match t.status {
        TaskStatus::Completed | TaskStatus::Skipped => exit::OK,
        _ => exit::FAILED,
    }
}

/// Every chunk of step `task` stored so far, as text so far.
async fn so_far(
    store: &Arc<dyn Store>,
    run: RunId,
    task: u32,
) -> Result<OutputSoFar, OrchestrationError> {
    let mut out = OutputSoFar::default();
    loop {
        let chunks = read_after(store, run, task, out.next).await?;
        let more = chunks.len() == READ;
        out.extend(&chunks);
        if !more {
            return Ok(out);
        }
    }
}

/// Chunks after the cursor; none from a store that does not keep output.
async fn read_after(
    store: &Arc<dyn Store>,
    run: RunId,
    task: u32,
    after: u64,
) -> Result<Vec<OutputChunk>, OrchestrationError> {
    match store.output(run, task, after, READ).await {
        Err(OrchestrationError::Unsupported { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// A running step's output so far (of its latest attempt that printed).
fn print_so_far(t: &TaskRecord, step: &str, out: &OutputSoFar, raw: bool, run: &str) {
    if raw {
        print_raw(Stream::Out, &out.stdout);
        print_raw(Stream::Err, &out.stderr);
        return;
    }
    if out.is_empty() {
        println!(
            "step `{step}` has no output yet ({}); `orch logs {run} {step} --follow` follows it",
            t.status.as_str()
        );
        return;
    }
    for (label, text, cut) in [
        ("stdout", &out.stdout, out.stdout_truncated),
        ("stderr", &out.stderr, out.stderr_truncated),
    ] {
        if text.is_empty() {
            continue;
        }
        println!("--- {label} so far ---");
        let text = String::from_utf8_lossy(text);
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
        if cut {
            println!("--- {label} reached the output limit: the rest was not kept ---");
        }
    }
    println!(
        "--- step is {} (attempt {}); `orch logs {run} {step} --follow` follows it ---",
        t.status.as_str(),
        out.attempt
    );
}

/// Follows a step that has not ended: prints each new chunk as it is
/// stored (stdout's on orch's standard output, stderr's on its standard
/// error), until the step ends or its run stops without it.
async fn follow_step(
    store: &Arc<dyn Store>,
    run: RunId,
    mut t: TaskRecord,
    step: &str,
    raw: bool,
) -> u8 {
    let mut shown = Shown::default();
    let mut after = 0u64;
    loop {
        // The step's state is read before its output: all that it printed
        // before it ended is read before the end is reported.
        let now = match store.task_records(run, &[t.index]).await {
            Ok(mut v) if !v.is_empty() => v.swap_remove(0),
            Ok(_) => {
                eprintln!("orch: run {run} is no longer in the store");
                return exit::INVALID;
            }
            Err(e) => {
                eprintln!("orch: {e}");
                return exit::INVALID;
            }
        };
        loop {
            let chunks = match read_after(store, run, t.index, after).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("orch: {e}");
                    return exit::INVALID;
                }
            };
            for c in &chunks {
                after = c.seq;
                shown.chunk(c, raw);
            }
            if chunks.len() < READ {
                break;
            }
        }
        t = now;
        if t.status.is_terminal() {
            shown.end(&t, step, raw);
            return ended(&t);
        }
        // A step that has not ended, of a run whose driver is gone (or
        // that ended without it), will not end until the run is resumed.
        match store.get_run_brief(run).await {
            Ok(Some(r)) => {
                let state = orch_engine::run_state(&r);
                if state != orch_engine::RunState::Running {
                    shown.newline(raw);
                    eprintln!(
                        "orch: run {run} is {}: step `{step}` is {} and will not end unless the run is resumed (`orch resume {run}`)",
                        state.as_str(),
                        t.status.as_str()
                    );
                    return exit::FAILED;
                }
            }
            Ok(None) => {
                eprintln!("orch: run {run} is no longer in the store");
                return exit::INVALID;
            }
            Err(e) => {
                eprintln!("orch: {e}");
                return exit::INVALID;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What `--follow` has printed: to end the text where it should.
#[derive(Default)]
struct Shown {
    /// The attempt of the last chunk printed (0: none yet).
    attempt: u32,
    /// Whether the last text printed on standard output ended a line.
    open_line: bool,
    /// A carriage return that ended a chunk of each stream, held back in
    /// case a newline starts the next (so that `\r\n` is kept whole).
    held_cr: [bool; 2],
}

impl Shown {
    fn chunk(&mut self, c: &OutputChunk, raw: bool) {
        if raw {
            let to = match c.stream {
                OutputStream::Stdout => Stream::Out,
                OutputStream::Stderr => Stream::Err,
            };
            print_raw(to, &c.data);
            self.attempt = c.attempt;
            return;
        }
        if c.attempt != self.attempt && (self.attempt != 0 || c.attempt > 1) {
            self.newline(false);
            println!("--- attempt {} ---", c.attempt);
        }
        self.attempt = c.attempt;
        let k = usize::from(c.stream == OutputStream::Stderr);
        let mut text = String::new();
        if std::mem::take(&mut self.held_cr[k]) {
            text.push('\r');
        }
        text.push_str(&String::from_utf8_lossy(&c.data));
        if text.ends_with('\r') {
            text.pop();
            self.held_cr[k] = true;
        }
        match c.stream {
            OutputStream::Stdout => {
                print!("{text}");
                if !text.is_empty() {
                    self.open_line = !text.ends_with('\n');
                }
                let _ = std::io::stdout().flush();
            }
            OutputStream::Stderr => eprint!("{text}"),
        }
        if c.truncated {
            self.newline(false);
            println!(
                "--- {} reached the output limit: the rest was not kept ---",
                c.stream.as_str()
            );
        }
    }

    /// Ends an open line of standard output (escaped mode only).
    fn newline(&mut self, raw: bool) {
        if !raw && std::mem::take(&mut self.open_line) {
            println!();
        }
    }

    /// The step ended: how, after what it printed (or its result, when it
    /// printed nothing while followed).
    fn end(&mut self, t: &TaskRecord, step: &str, raw: bool) {
        if self.attempt == 0 {
            print_final(t, step, raw);
            return;
        }
        if raw {
            return;
        }
        for (k, stream) in [(0, Stream::Out), (1, Stream::Err)] {
            if std::mem::take(&mut self.held_cr[k]) {
                crate::term::print(stream, format_args!("\r"), false);
            }
        }
        self.newline(false);
        trailer(t);
    }
}

/// The lines after a step's output: its exit code, and how it failed.
fn trailer(t: &TaskRecord) {
    let Some(result) = &t.result else {
        println!(
            "--- {}{} ---",
            t.status.as_str(),
            t.note
                .as_ref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
        return;
    };
    if let Some(code) = result.data.get("exit_code") {
        println!("--- exit code {code} ---");
    }
    if !result.success {
        println!(
            "--- failed: {}: {} ---",
            result.error_type.clone().unwrap_or_default(),
            result.error_message.clone().unwrap_or_default()
        );
    }
}

/// An ended step's output, from its result.
fn print_final(t: &TaskRecord, step: &str, raw: bool) {
    let Some(result) = &t.result else {
        println!(
            "step `{step}` has no output ({}{})",
            t.status.as_str(),
            t.note
                .as_ref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
        return;
    };
    let data = &result.data;
    if raw {
        let mut printed = false;
        for (key, stream) in [("stdout", Stream::Out), ("stderr", Stream::Err)] {
            if let Some(text) = data.get(key).and_then(Value::as_str) {
                print_raw(stream, text.as_bytes());
                printed = true;
            }
        }
        if !printed && !data.is_null() {
            let text = serde_json::to_string_pretty(data).unwrap_or_default();
            print_raw(Stream::Out, format!("{text}\n").as_bytes());
        }
        return;
    }
    let mut printed = false;
    for label in ["stdout", "stderr"] {
        if let Some(text) = data.get(label).and_then(Value::as_str) {
            if !text.is_empty() {
                println!("--- {label} ---");
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
                printed = true;
            }
        }
        if data.get(format!("{label}_truncated")) == Some(&Value::Bool(true)) {
            println!("--- {label} reached the output limit: the rest was not kept ---");
        }
    }
    if !printed && !data.is_null() {
        println!("{}", serde_json::to_string_pretty(data).unwrap_or_default());
    }
    trailer(t);
}
