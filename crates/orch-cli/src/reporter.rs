//! The printing of a run: live progress on standard error (a bar on a
//! terminal, lines otherwise), then the final table or JSON on standard output.
//!
//! What is printed scales with the run (the thresholds and their reasons are
//! in docs/cli.md, "What a run prints"):
//!
//! - A run of at most [`SMALL_RUN`] steps prints as it always did: off a
//!   terminal a line per event, and a table row per step.
//! - A larger run, off a terminal, prints its start and end, every failure,
//!   retry and slow step (one running longer than [`SLOW_STEP`]), up to
//!   [`NOTICES`] of them, and otherwise a progress line every
//!   [`PROGRESS_EVERY`] while steps finish ([`HEARTBEAT`] when none does).
//!   Its table lists only the steps that did not simply complete (failed,
//!   retried, cancelled, slow, skipped, still pending), at most
//!   [`TABLE_ROWS`], then the summary line; `orch runs show RUN --all` lists
//!   every step.
//! - On a terminal a live bar shows done/total, the running steps (the names
//!   of the longest-running few) and the failures; failures and retries are
//!   printed above it.
//! - `--json` writes the report to standard output a step at a time, never
//!   holding the whole document.

use crate::term::{Table, escape_line};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use orch_engine::{Event, RunReport, StepReport};
use orch_model::TaskStatus;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Runs of at most this many steps print every event and every step.
pub(crate) const SMALL_RUN: usize = 50;
/// A step running at least this long is reported as slow.
pub(crate) const SLOW_STEP: Duration = Duration::from_secs(10);
/// How often a larger run prints a progress line while steps finish.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often it prints one when no step finished since the last.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);
/// How many failures, retries and slow steps a larger run prints one by one.
pub(crate) const NOTICES: usize = 100;
/// How many rows a larger run's table (and `orch runs show`) lists at most.
pub(crate) const TABLE_ROWS: usize = 100;
/// How many running steps the bar names.
const BAR_NAMES: usize = 3;
/// How often the bar's message is rebuilt.
const BAR_MESSAGE_EVERY: Duration = Duration::from_millis(100);

fn status_word(s: TaskStatus) -> &'static str {
    s.as_str()
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else if d.as_millis() >= 1000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn short(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// An event as one line, escaped (a message may hold anything).
fn event_line(e: &Event) -> Option<String> {
    event_text(e).map(|l| escape_line(&l).into_owned())
}

fn event_text(e: &Event) -> Option<String> {
    Some(match e {
        Event::RunStarted { run_id, total } => format!("run {run_id} started: {total} steps"),
        Event::TaskReady { .. } => return None,
        Event::TaskStarted { name, attempt, .. } if *attempt > 1 => {
            format!("{name}: started (attempt {attempt})")
        }
        Event::TaskStarted { name, .. } => format!("{name}: started"),
        Event::TaskSucceeded { name, duration, .. } => {
            format!("{name}: completed in {}", fmt_duration(*duration))
        }
        Event::TaskFailed {
            name,
            error_type,
            message,
            ..
        } => format!("{name}: failed: {error_type}: {}", short(message, 200)),
        Event::TaskRetrying {
            name,
            attempt,
            delay,
            message,
            ..
        } => {
            format!(
                "{name}: attempt {attempt} failed ({}); retrying in {}",
                short(message, 120),
                fmt_duration(*delay)
            )
        }
        Event::TaskSkipped { name, reason, .. } => format!("{name}: skipped: {reason}"),
        Event::TaskCancelled { name, .. } => format!("{name}: cancelled"),
        Event::TaskCached { name, .. } => format!("{name}: result from cache"),
        Event::RunFinished {
            status, duration, ..
        } => format!("run {status} in {}", fmt_duration(*duration)),
        _ => return None,
    })
}

/// Why a step is listed in a larger run's table, in the order in which
/// rows are kept when there are more than [`TABLE_ROWS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listed {
    /// It failed.
    Failed,
    /// It did not end: pending, ready or running (an interrupted run).
    Unfinished,
    /// It took more than one attempt.
    Retried,
    /// It was cancelled.
    Cancelled,
    /// It ran for at least [`SLOW_STEP`].
    Slow,
    /// It was skipped.
    Skipped,
}

impl Listed {
    const ALL: [Listed; 6] = [
        Listed::Failed,
        Listed::Unfinished,
        Listed::Retried,
        Listed::Cancelled,
        Listed::Slow,
        Listed::Skipped,
    ];

    /// Why a step with this state, attempt count and duration is listed, or
    /// `None` when it simply completed.
    pub(crate) fn of(status: TaskStatus, attempts: u32, ran: Option<Duration>) -> Option<Self> {
        Some(match status {
            TaskStatus::Failed => Listed::Failed,
            TaskStatus::Cancelled => Listed::Cancelled,
            TaskStatus::Skipped => Listed::Skipped,
            TaskStatus::Completed if attempts > 1 => Listed::Retried,
            TaskStatus::Completed if ran.is_some_and(|d| d >= SLOW_STEP) => Listed::Slow,
            TaskStatus::Completed => return None,
            _ => Listed::Unfinished,
        })
    }

    fn word(self) -> &'static str {
        match self {
            Listed::Failed => "failed",
            Listed::Unfinished => "unfinished",
            Listed::Retried => "retried",
            Listed::Cancelled => "cancelled",
            Listed::Slow => "slow",
            Listed::Skipped => "skipped",
        }
    }
}

/// Which steps of a larger run get a row: at most [`TABLE_ROWS`], given to
/// the kinds in [`Listed::ALL`]'s order, printed in definition order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Digest {
    counts: [usize; 6],
    budget: [usize; 6],
}

impl Digest {
    /// Counts what the steps are (one `Option<Listed>` a step).
    pub(crate) fn new(kinds: impl Iterator<Item = Option<Listed>>) -> Self {
        let mut d = Digest::default();
        for k in kinds.flatten() {
            d.counts[k as usize] += 1;
        }
        let mut left = TABLE_ROWS;
        for k in Listed::ALL {
            let n = d.counts[k as usize].min(left);
            d.budget[k as usize] = n;
            left -= n;
        }
        d
    }

    /// Whether a step of this kind gets a row (call once a step, in order).
    pub(crate) fn take(&mut self, kind: Option<Listed>) -> bool {
        match kind {
            Some(k) if self.budget[k as usize] > 0 => {
                self.budget[k as usize] -= 1;
                true
            }
            _ => false,
        }
    }

    /// The items that get a row, in order. The iterator can be cloned (a
    /// table iterates its rows twice: to measure, then to print); each
    /// clone goes on from its own copy of the budget.
    pub(crate) fn select<'a, T>(
        &self,
        items: &'a [T],
        kind: impl Fn(&T) -> Option<Listed> + Clone,
    ) -> impl Iterator<Item = &'a T> + Clone {
        items
            .iter()
            .scan(self.clone(), move |d, t| Some((d.take(kind(t)), t)))
            .filter_map(|(keep, t)| keep.then_some(t))
    }

    /// How many steps are listed (or would be, but for [`TABLE_ROWS`]).
    pub(crate) fn listed(&self) -> usize {
        self.counts.iter().sum()
    }

    /// The line after a larger run's table: what is not listed, and where
    /// to see it.
    pub(crate) fn hint(&self, total: usize, run: &str) -> String {
        let listed = self.listed();
        let mut text = format!(
            "{} of {total} steps completed without retry in under {}s and are not listed",
            total - listed,
            SLOW_STEP.as_secs()
        );
        if listed > TABLE_ROWS {
            let kinds: Vec<String> = Listed::ALL
                .iter()
                .filter(|k| self.counts[**k as usize] > 0)
                .map(|k| format!("{} {}", self.counts[*k as usize], k.word()))
                .collect();
            text.push_str(&format!(
                "; {TABLE_ROWS} of the {listed} others are ({})",
                kinds.join(", ")
            ));
        }
        text.push_str(&format!("; `orch runs show {run} --all` lists every step"));
        text
    }
}

/// How long a step ran, from its start and end.
fn ran(
    started: Option<chrono::DateTime<chrono::Utc>>,
    finished: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<Duration> {
    (finished? - started?).to_std().ok()
}

fn print_table(report: &RunReport) {
    let row = |s: &StepReport| {
        let duration = match (s.started_at, s.finished_at) {
            (Some(a), Some(b)) => (b - a).to_std().map(fmt_duration).unwrap_or_default(),
            _ => "-".into(),
        };
        let cached = s.result.as_ref().is_some_and(|r| r.cached);
        let note = match (&s.result, &s.note) {
            (Some(r), _) if !r.success => {
                format!(
                    "{}: {}",
                    r.error_type.as_deref().unwrap_or("Error"),
                    short(r.error_message.as_deref().unwrap_or(""), 80)
                )
            }
            (_, Some(n)) => short(n, 80),
            _ => String::new(),
        };
        [
            s.name.to_string(),
            status_word(s.status).to_owned(),
            s.attempts.to_string(),
            duration,
            if cached { "yes" } else { "-" }.to_owned(),
            note,
        ]
    };
    let table =
        Table::new(&["STEP", "STATUS", "ATTEMPTS", "DURATION", "CACHED", "NOTE"]).right(&[2, 3]);
    let kind = |s: &StepReport| Listed::of(s.status, s.attempts, ran(s.started_at, s.finished_at));
    let total = report.steps.len();
    let digest = if total <= SMALL_RUN {
        table.print_rows(report.steps.iter().map(row));
        None
    } else {
        let digest = Digest::new(report.steps.iter().map(kind));
        if digest.listed() > 0 {
            table.print_rows(digest.select(&report.steps, kind).map(row));
        }
        Some(digest)
    };
    let mut counts = [0usize; 4];
    for s in &report.steps {
        match s.status {
            TaskStatus::Completed => counts[0] += 1,
            TaskStatus::Failed => counts[1] += 1,
            TaskStatus::Skipped => counts[2] += 1,
            TaskStatus::Cancelled => counts[3] += 1,
            _ => {}
        }
    }
    let [done, failed, skipped, cancelled] = counts;
    let cancelled = if cancelled > 0 {
        format!(", {cancelled} cancelled")
    } else {
        String::new()
    };
    println!(
        "workflow `{}` {}: {done} completed, {failed} failed, {skipped} skipped{cancelled} of {total} steps in {} (run {})",
        report.workflow,
        report.status,
        fmt_duration(report.duration),
        report.run_id
    );
    if let Some(d) = digest {
        println!("{}", d.hint(total, &report.run_id.to_string()));
    }
    if let Some(e) = &report.error {
        println!("{e}");
    }
}

/// One step of `--json`, in the order and shape of the report's `steps`.
#[derive(Serialize)]
struct StepJson<'a> {
    name: &'a str,
    status: TaskStatus,
    attempts: u32,
    created_at: chrono::DateTime<chrono::Utc>,
    ready_at: Option<chrono::DateTime<chrono::Utc>>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    result: &'a Option<orch_model::TaskResult>,
    note: &'a Option<String>,
}

/// Writes the report's JSON document to `out` a step at a time: `{run_id,
/// workflow, status, success, execution_time, error, steps: [...]}`, the
/// document docs/cli.md describes.
pub(crate) fn write_report_json(
    report: &RunReport,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    use serde_json::to_writer;
    out.write_all(b"{\"run_id\":")?;
    to_writer(&mut *out, &report.run_id)?;
    out.write_all(b",\"workflow\":")?;
    to_writer(&mut *out, &report.workflow)?;
    out.write_all(b",\"status\":")?;
    to_writer(&mut *out, &report.status)?;
    out.write_all(b",\"success\":")?;
    to_writer(&mut *out, &report.succeeded())?;
    out.write_all(b",\"execution_time\":")?;
    to_writer(&mut *out, &report.duration.as_secs_f64())?;
    out.write_all(b",\"error\":")?;
    to_writer(&mut *out, &report.error)?;
    out.write_all(b",\"steps\":[")?;
    for (i, s) in report.steps.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        to_writer(
            &mut *out,
            &StepJson {
                name: &s.name,
                status: s.status,
                attempts: s.attempts,
                created_at: s.created_at,
                ready_at: s.ready_at,
                started_at: s.started_at,
                finished_at: s.finished_at,
                result: &s.result,
                note: &s.note,
            },
        )?;
    }
    out.write_all(b"]}")
}

/// Prints the final table (or, with `json`, the JSON document) of a run on
/// standard output.
pub(crate) fn print_report(report: &RunReport, json: bool) {
    if json {
        crate::term::write_stdout(|out| write_report_json(report, out));
    } else {
        print_table(report);
    }
}

/// Whether progress is a bar rather than a line per event: a bar needs a
/// terminal that can move the cursor, so not a pipe and not `TERM=dumb`
/// (where the bar stays hidden, and nothing would show until the end).
pub(crate) fn progress_bar_wanted(
    stderr_is_terminal: bool,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    stderr_is_terminal && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// A step that is running, as the printer knows it.
#[derive(Debug)]
struct Running {
    name: String,
    since: Instant,
    /// Whether it was reported as slow.
    slow: bool,
}

/// What the printer knows of a run, and the lines it prints (without their
/// time prefix); [`Progress::event`] and [`Progress::tick`] take the time,
/// so that the rules can be tested without waiting.
#[derive(Debug)]
struct Progress {
    total: usize,
    /// A line per event (a small run, off a terminal).
    every_event: bool,
    running: HashMap<u32, Running>,
    done: usize,
    failed: usize,
    retries: usize,
    slow: usize,
    notices: usize,
    /// When the next progress line is due, and `done` at the last one.
    next_line: Instant,
    done_at_last_line: usize,
    finished: bool,
}

impl Progress {
    fn new(total: usize, every_event: bool, now: Instant) -> Self {
        Progress {
            total,
            every_event,
            running: HashMap::new(),
            done: 0,
            failed: 0,
            retries: 0,
            slow: 0,
            notices: 0,
            next_line: now + PROGRESS_EVERY,
            done_at_last_line: 0,
            finished: false,
        }
    }

    /// A failure, retry or slow step: printed while fewer than [`NOTICES`]
    /// were; then once a line that says the rest are only counted.
    fn notice(&mut self, line: String, out: &mut Vec<String>) {
        self.notices += 1;
        if self.notices <= NOTICES {
            out.push(line);
        } else if self.notices == NOTICES + 1 {
            out.push(format!(
                "(more than {NOTICES} failures, retries and slow steps: the progress lines count them, the final table lists them)"
            ));
        }
    }

    /// Takes in one event; pushes the lines to print.
    fn event(&mut self, e: &Event, now: Instant, out: &mut Vec<String>) {
        match e {
            Event::TaskStarted { task, name, .. } => {
                self.running.insert(
                    *task,
                    Running {
                        name: name.to_string(),
                        since: now,
                        slow: false,
                    },
                );
            }
            Event::TaskRetrying { task, .. } => {
                self.retries += 1;
                self.running.remove(task);
            }
            Event::TaskFailed { .. } => self.failed += 1,
            Event::RunFinished { .. } => self.finished = true,
            _ => {}
        }
        let mut was_slow = false;
        if matches!(e.task_status(), Some(s) if s.is_terminal()) {
            self.done += 1;
            if let Some(r) = e.task().and_then(|t| self.running.remove(&t)) {
                was_slow = r.slow;
            }
        }
        if self.every_event {
            out.extend(event_line(e));
            return;
        }
        match e {
            Event::RunStarted { .. } | Event::RunFinished { .. } => out.extend(event_line(e)),
            Event::TaskFailed { .. } | Event::TaskRetrying { .. } => {
                if let Some(line) = event_line(e) {
                    self.notice(line, out);
                }
            }
            // A slow step's end, once its slowness was told.
            Event::TaskSucceeded { .. } if was_slow => {
                if let Some(line) = event_line(e) {
                    self.notice(line, out);
                }
            }
            _ => {}
        }
    }

    /// What is due at `now`: slow steps, and a progress line.
    fn tick(&mut self, now: Instant, out: &mut Vec<String>) {
        if self.every_event || self.finished {
            return;
        }
        let mut slow: Vec<(Instant, String)> = Vec::new();
        for r in self.running.values_mut() {
            if !r.slow && now.saturating_duration_since(r.since) >= SLOW_STEP {
                r.slow = true;
                slow.push((r.since, r.name.clone()));
            }
        }
        slow.sort();
        for (since, name) in slow {
            self.slow += 1;
            let line = escape_line(&format!(
                "{name}: still running after {}",
                fmt_duration(now.saturating_duration_since(since))
            ))
            .into_owned();
            self.notice(line, out);
        }
        if now < self.next_line {
            return;
        }
        let changed = self.done != self.done_at_last_line;
        if !changed && now < self.next_line + (HEARTBEAT - PROGRESS_EVERY) {
            return;
        }
        out.push(self.progress_line());
        self.done_at_last_line = self.done;
        self.next_line = now + PROGRESS_EVERY;
    }

    fn progress_line(&self) -> String {
        let pct = if self.total == 0 {
            100
        } else {
            self.done * 100 / self.total
        };
        format!(
            "progress: {}/{} steps done ({pct}%), {} running, {} failed, {} retries, {} slow",
            self.done,
            self.total,
            self.running.len(),
            self.failed,
            self.retries,
            self.slow
        )
    }

    /// The bar's message: how many run, the longest-running few by name,
    /// and the failures.
    fn bar_message(&self) -> String {
        // The earliest started, the first in the definition among equals.
        let mut oldest: Vec<((Instant, u32), &str)> = Vec::with_capacity(BAR_NAMES + 1);
        for (task, r) in &self.running {
            let key = (r.since, *task);
            let at = oldest.partition_point(|(k, _)| *k <= key);
            if at < BAR_NAMES {
                oldest.insert(at, (key, &r.name));
                oldest.truncate(BAR_NAMES);
            }
        }
        let mut names: Vec<String> = oldest
            .iter()
            .map(|(_, n)| escape_line(&short(n, 24)).into_owned())
            .collect();
        if self.running.len() > names.len() {
            names.push("…".to_owned());
        }
        let names = if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        };
        format!(
            "| {} running{names} | {} failed",
            self.running.len(),
            self.failed
        )
    }
}

/// Starts the task that shows a run's progress from its events: a bar on a
/// terminal (`terminal`), lines on standard error otherwise (every event
/// for a run of at most [`SMALL_RUN`] steps; else failures, retries, slow
/// steps and a steady progress line), nothing when `quiet` (`--json`). It
/// ends when the sender is dropped.
pub(crate) fn spawn_printer(
    total: usize,
    terminal: bool,
    quiet: bool,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if quiet {
            // Nothing to show: only drain, so that the sender never waits.
            let mut batch = Vec::with_capacity(256);
            while rx.recv_many(&mut batch, 256).await > 0 {
                batch.clear();
            }
            return;
        }
        let bar = terminal.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let start = Instant::now();
        let mut progress = Progress::new(total, bar.is_none() && total <= SMALL_RUN, start);
        let mut lines = Vec::new();
        let mut last_message = start;
        let show = |lines: &mut Vec<String>, bar: &Option<ProgressBar>| {
            for line in lines.drain(..) {
                match bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("[{:>8}] {line}", fmt_duration(start.elapsed())),
                }
            }
        };
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Events arrive in batches when the printer falls behind; the
        // scheduler never waits for it (the channel is unbounded).
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    let now = Instant::now();
                    let done_before = progress.done;
                    for e in batch.drain(..) {
                        let before = lines.len();
                        progress.event(&e, now, &mut lines);
                        if bar.is_some() && !matches!(e, Event::TaskFailed { .. } | Event::TaskRetrying { .. }) {
                            // Above the bar: failures and retries only.
                            lines.truncate(before);
                        }
                    }
                    if let Some(bar) = &bar {
                        bar.inc((progress.done - done_before) as u64);
                    }
                }
                _ = ticks.tick() => {
                    if bar.is_none() {
                        progress.tick(Instant::now(), &mut lines);
                    }
                }
            }
            show(&mut lines, &bar);
            if let Some(bar) = &bar {
                if last_message.elapsed() >= BAR_MESSAGE_EVERY {
                    last_message = Instant::now();
                    bar.set_message(progress.bar_message());
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The document as it was built whole before it was streamed: the
    /// reference for [`write_report_json`].
    fn report_json(report: &RunReport) -> Value {
        json!({
            "run_id": report.run_id,
            "workflow": report.workflow,
            "status": report.status,
            "success": report.succeeded(),
            "execution_time": report.duration.as_secs_f64(),
            "error": report.error,
            "steps": report.steps.iter().map(|s| json!({
                "name": &*s.name,
                "status": s.status,
                "attempts": s.attempts,
                "created_at": s.created_at,
                "ready_at": s.ready_at,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "result": s.result,
                "note": s.note,
            })).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_dumb_or_unknown_terminal_gets_a_line_per_event() {
        use std::ffi::OsStr;
        assert!(progress_bar_wanted(
            true,
            Some(OsStr::new("xterm-256color"))
        ));
        assert!(!progress_bar_wanted(true, Some(OsStr::new("dumb"))));
        assert!(!progress_bar_wanted(true, Some(OsStr::new(""))));
        assert!(!progress_bar_wanted(true, None));
        assert!(!progress_bar_wanted(false, Some(OsStr::new("xterm"))));
    }

    fn step(name: &str, status: TaskStatus, attempts: u32, secs: i64) -> StepReport {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        StepReport {
            name: name.into(),
            status,
            attempts,
            created_at: t0,
            ready_at: Some(t0),
            started_at: (attempts > 0).then_some(t0),
            finished_at: (attempts > 0).then(|| t0 + chrono::TimeDelta::seconds(secs)),
            result: match status {
                TaskStatus::Completed => Some(orch_model::TaskResult::ok(json!({"n": 1}))),
                TaskStatus::Failed => Some(orch_model::TaskResult::failed(
                    "ExitCode",
                    "boom \u{1b}[2J\u{202e}",
                )),
                _ => None,
            },
            note: (status == TaskStatus::Skipped).then(|| "a dependency failed".to_owned()),
        }
    }

    fn report(steps: Vec<StepReport>) -> RunReport {
        RunReport {
            run_id: orch_model::RunId::new(),
            workflow: "w\u{9b}".into(),
            status: orch_model::WorkflowStatus::Failed,
            duration: Duration::from_millis(1234),
            steps,
            error: Some("a step failed".into()),
        }
    }

    #[test]
    fn the_streamed_json_is_the_document_that_was_built_whole() {
        let r = report(vec![
            step("a", TaskStatus::Completed, 1, 0),
            step("b", TaskStatus::Failed, 3, 2),
            step("c", TaskStatus::Skipped, 0, 0),
        ]);
        let mut out = Vec::new();
        write_report_json(&r, &mut out).expect("writes");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            report_json(&r).to_string()
        );
    }

    fn started(task: u32, name: &str) -> Event {
        Event::TaskStarted {
            task,
            name: name.into(),
            attempt: 1,
        }
    }

    fn succeeded(task: u32, name: &str) -> Event {
        Event::TaskSucceeded {
            task,
            name: name.into(),
            attempts: 1,
            duration: Duration::from_millis(1),
        }
    }

    #[test]
    fn a_large_run_prints_failures_and_a_steady_progress_line_not_every_event() {
        let t0 = Instant::now();
        let total = 10_000;
        let mut p = Progress::new(total, false, t0);
        let mut out = Vec::new();
        p.event(
            &Event::RunStarted {
                run_id: orch_model::RunId::new(),
                total,
            },
            t0,
            &mut out,
        );
        assert_eq!(out.len(), 1, "the start: {out:?}");
        out.clear();
        // Half the steps within the first 1.9 s: nothing printed.
        for i in 0..5_000u32 {
            let at = t0 + Duration::from_micros(380 * u64::from(i));
            p.event(&started(i, "s"), at, &mut out);
            p.event(&succeeded(i, "s"), at, &mut out);
            p.tick(at, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        // A failure is printed at once.
        p.event(
            &Event::TaskFailed {
                task: 5000,
                name: "bad".into(),
                attempts: 1,
                error_type: "ExitCode".into(),
                message: "exit 3".into(),
            },
            t0 + Duration::from_millis(1950),
            &mut out,
        );
        assert_eq!(out, ["bad: failed: ExitCode: exit 3"]);
        out.clear();
        // At 2 s, one progress line.
        p.tick(t0 + Duration::from_secs(2), &mut out);
        assert_eq!(
            out,
            ["progress: 5001/10000 steps done (50%), 0 running, 1 failed, 0 retries, 0 slow"]
        );
        out.clear();
        p.tick(t0 + Duration::from_millis(3000), &mut out);
        assert!(out.is_empty(), "not before 2 s more: {out:?}");
        // Nothing finishes: only the heartbeat, every 30 s.
        p.tick(t0 + Duration::from_secs(5), &mut out);
        p.tick(t0 + Duration::from_secs(20), &mut out);
        assert!(out.is_empty(), "{out:?}");
        p.tick(t0 + Duration::from_secs(32), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn a_step_running_longer_than_the_slow_threshold_is_told_once_and_its_end_too() {
        let t0 = Instant::now();
        let mut p = Progress::new(1000, false, t0);
        let mut out = Vec::new();
        p.event(&started(7, "long"), t0, &mut out);
        p.event(&started(8, "quick"), t0 + SLOW_STEP / 2, &mut out);
        p.event(&succeeded(8, "quick"), t0 + SLOW_STEP / 2, &mut out);
        p.tick(t0 + SLOW_STEP - Duration::from_millis(1), &mut out);
        out.retain(|l| !l.starts_with("progress:"));
        assert!(out.is_empty(), "{out:?}");
        p.tick(t0 + SLOW_STEP, &mut out);
        p.tick(t0 + SLOW_STEP * 2, &mut out);
        out.retain(|l| !l.starts_with("progress:"));
        assert_eq!(out, ["long: still running after 10.00s"]);
        out.clear();
        p.event(&succeeded(7, "long"), t0 + SLOW_STEP * 2, &mut out);
        assert_eq!(out, ["long: completed in 1ms"]);
    }

    #[test]
    fn failures_past_the_cap_are_counted_not_printed() {
        let t0 = Instant::now();
        let mut p = Progress::new(100_000, false, t0);
        let mut out = Vec::new();
        for i in 0..(NOTICES as u32 + 50) {
            p.event(
                &Event::TaskRetrying {
                    task: i,
                    name: "r".into(),
                    attempt: 1,
                    delay: Duration::from_millis(10),
                    message: "m".into(),
                },
                t0,
                &mut out,
            );
        }
        assert_eq!(out.len(), NOTICES + 1, "the cap and one line that says so");
        assert!(out[NOTICES].contains("the final table lists them"));
        assert_eq!(p.retries, NOTICES + 50);
    }

    #[test]
    fn a_small_run_prints_every_event() {
        let t0 = Instant::now();
        let mut p = Progress::new(SMALL_RUN, true, t0);
        let mut out = Vec::new();
        p.event(&started(0, "a"), t0, &mut out);
        p.event(&succeeded(0, "a"), t0, &mut out);
        p.tick(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out, ["a: started", "a: completed in 1ms"]);
    }

    #[test]
    fn the_bar_names_the_longest_running_steps() {
        let t0 = Instant::now();
        let mut p = Progress::new(100, false, t0);
        let mut out = Vec::new();
        for (i, name) in ["e", "d", "c", "b", "a"].iter().enumerate() {
            p.event(
                &started(i as u32, name),
                t0 + Duration::from_secs(i as u64),
                &mut out,
            );
        }
        assert_eq!(p.bar_message(), "| 5 running: e, d, c, … | 0 failed");
        p.event(&succeeded(0, "e"), t0, &mut out);
        assert_eq!(p.bar_message(), "| 4 running: d, c, b, … | 0 failed");
        // Started together: in definition order.
        let later = t0 + Duration::from_secs(60);
        for i in (10..20u32).rev() {
            p.event(&started(i, &format!("s{i}")), later, &mut out);
        }
        for i in 1..5u32 {
            p.event(&succeeded(i, "x"), later, &mut out);
        }
        assert_eq!(p.bar_message(), "| 10 running: s10, s11, s12, … | 0 failed");
        p.running.clear();
        assert_eq!(p.bar_message(), "| 0 running | 0 failed");
    }

    #[test]
    fn a_large_table_keeps_failures_first_within_its_row_budget() {
        let kinds = (0..TABLE_ROWS + 20)
            .map(|_| Some(Listed::Skipped))
            .chain((0..5).map(|_| Some(Listed::Failed)))
            .chain((0..1000).map(|_| None));
        let mut d = Digest::new(kinds.clone());
        assert_eq!(d.listed(), TABLE_ROWS + 25);
        let kept: Vec<Option<Listed>> = kinds.filter(|k| d.take(*k)).collect();
        assert_eq!(kept.len(), TABLE_ROWS);
        assert_eq!(
            kept.iter().filter(|k| **k == Some(Listed::Failed)).count(),
            5
        );
        let hint = d.hint(TABLE_ROWS + 1025, "R");
        assert!(
            hint.starts_with("1000 of 1125 steps completed without retry"),
            "{hint}"
        );
        assert!(hint.contains("(5 failed, 120 skipped)"), "{hint}");
        assert!(
            hint.ends_with("`orch runs show R --all` lists every step"),
            "{hint}"
        );
        assert_eq!(
            Listed::of(TaskStatus::Completed, 1, Some(SLOW_STEP)),
            Some(Listed::Slow)
        );
        assert_eq!(
            Listed::of(TaskStatus::Completed, 2, None),
            Some(Listed::Retried)
        );
        assert_eq!(Listed::of(TaskStatus::Completed, 1, None), None);
        assert_eq!(
            Listed::of(TaskStatus::Running, 1, None),
            Some(Listed::Unfinished)
        );
    }
}
