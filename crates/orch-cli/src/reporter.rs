//! The printing of a run: live progress on standard error (a bar on a
//! terminal, lines otherwise), then the final table or JSON on standard output.

use crate::term::{Table, escape_line};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use orch_model::TaskStatus;
use orch_tasks::{Event, RunReport};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

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

fn print_table(report: &RunReport) {
    let row = |s: &orch_tasks::StepReport| {
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
    Table::new(&["STEP", "STATUS", "ATTEMPTS", "DURATION", "CACHED", "NOTE"])
        .right(&[2, 3])
        .print_rows(report.steps.iter().map(row));
    let done = report
        .steps
        .iter()
        .filter(|s| s.status == TaskStatus::Completed)
        .count();
    let failed = report
        .steps
        .iter()
        .filter(|s| s.status == TaskStatus::Failed)
        .count();
    let skipped = report
        .steps
        .iter()
        .filter(|s| s.status == TaskStatus::Skipped)
        .count();
    println!(
        "workflow `{}` {}: {done} completed, {failed} failed, {skipped} skipped of {} steps in {} (run {})",
        report.workflow,
        report.status,
        report.steps.len(),
        fmt_duration(report.duration),
        report.run_id
    );
    if let Some(e) = &report.error {
        println!("{e}");
    }
}

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

/// Prints the final table (or, with `json`, the JSON document) of a run on
/// standard output.
pub(crate) fn print_report(report: &RunReport, json: bool) {
    if json {
        println!("{}", report_json(report));
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

/// Starts the task that shows a run's progress from its events: a bar on a
/// terminal (`terminal`), lines on standard error otherwise, nothing but the
/// bar's failures when `quiet`. It ends when the sender is dropped.
pub(crate) fn spawn_printer(
    total: usize,
    terminal: bool,
    quiet: bool,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = (terminal && !quiet).then(|| {
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
        let mut started = std::collections::HashSet::new();
        let mut failed = 0usize;
        let start = Instant::now();
        // Events arrive in batches when the printer falls behind; the
        // scheduler never waits for it (the channel is unbounded).
        let mut batch = Vec::with_capacity(256);
        while rx.recv_many(&mut batch, 256).await > 0 {
            let mut done = 0u64;
            for e in batch.drain(..) {
                match &e {
                    Event::TaskStarted { task, .. } => {
                        started.insert(*task);
                    }
                    Event::TaskFailed { .. } => failed += 1,
                    _ => {}
                }
                if matches!(e.task_status(), Some(s) if s.is_terminal()) {
                    done += 1;
                    if let Some(t) = e.task() {
                        started.remove(&t);
                    }
                }
                match &bar {
                    Some(bar) => {
                        if matches!(e, Event::TaskFailed { .. } | Event::TaskRetrying { .. }) {
                            if let Some(line) = event_line(&e) {
                                bar.println(line);
                            }
                        }
                    }
                    None if !quiet => {
                        if let Some(line) = event_line(&e) {
                            eprintln!("[{:>8}] {line}", fmt_duration(start.elapsed()));
                        }
                    }
                    None => {}
                }
            }
            if let Some(bar) = &bar {
                bar.inc(done);
                bar.set_message(format!("| {} running | {failed} failed", started.len()));
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
}
