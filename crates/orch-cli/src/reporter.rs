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

mod json;
mod progress;
mod table;

pub(crate) use json::write_report_json;
pub(crate) use progress::spawn_printer;
pub(crate) use table::{Digest, Listed, flaky_note};

use crate::term::escape_line;
use orch_engine::{Event, RunReport};
use orch_model::{TaskStatus, ValidWorkflow};
use std::time::Duration;

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
/// `n steps`, or `1 step`.
pub(crate) fn steps(n: usize) -> String {
    if n == 1 {
        "1 step".to_owned()
    } else {
        format!("{n} steps")
    }
}

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
        Event::RunStarted { run_id, total } => format!("run {run_id} started: {}", steps(*total)),
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

/// The notice of an event that is told as orch's own line (`orch: ...`,
/// without the progress's time), not as progress: a run that waits for a
/// slot of its concurrency key, and what its user can do about it.
pub(crate) fn notice_line(e: &Event) -> Option<String> {
    let Event::RunWaiting {
        run_id,
        key,
        limit,
        holders,
        on_conflict,
    } = e
    else {
        return None;
    };
    let (runs, that) = match holders.as_slice() {
        [one] => (format!("run {one}"), "that run"),
        _ => (format!("runs {}", holders.join(", ")), "one of them"),
    };
    let what = match on_conflict {
        orch_model::OnConflict::CancelRunning => format!(
            ", which {} asked to stop (on_conflict: cancel_running); it starts when {that} ends",
            if holders.len() == 1 { "was" } else { "were" }
        ),
        _ => match holders.as_slice() {
            [one] => format!("; it starts when {that} ends (`orch cancel {one}` stops that run)"),
            _ => format!("; it starts when {that} ends (`orch cancel RUN` stops one)"),
        },
    };
    Some(
        escape_line(&format!(
            "orch: run {run_id} waits for the concurrency key `{key}`, held by {runs} (limit {limit}){what}"
        ))
        .into_owned(),
    )
}

/// Prints the final table (or, with `json`, the JSON document) of a run of
/// `wf` on standard output.
pub(crate) fn print_report(report: &RunReport, wf: &ValidWorkflow, json: bool) {
    if json {
        crate::term::write_stdout(|out| write_report_json(report, out));
    } else {
        table::print_table(report, wf);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_for_a_concurrency_key_is_an_orch_notice_that_says_what_to_do() {
        let run_id = orch_model::RunId::new();
        let wait = |holders: &[&str], on_conflict| {
            notice_line(&Event::RunWaiting {
                run_id,
                key: "deploy-prod".into(),
                limit: holders.len() as u32,
                holders: holders.iter().map(|h| (*h).to_owned()).collect(),
                on_conflict,
            })
            .expect("a notice")
        };
        use orch_model::OnConflict;
        assert_eq!(
            wait(&["H"], OnConflict::Queue),
            format!(
                "orch: run {run_id} waits for the concurrency key `deploy-prod`, held by run H (limit 1); it starts when that run ends (`orch cancel H` stops that run)"
            )
        );
        assert_eq!(
            wait(&["H", "J"], OnConflict::Queue),
            format!(
                "orch: run {run_id} waits for the concurrency key `deploy-prod`, held by runs H, J (limit 2); it starts when one of them ends (`orch cancel RUN` stops one)"
            )
        );
        assert_eq!(
            wait(&["H"], OnConflict::CancelRunning),
            format!(
                "orch: run {run_id} waits for the concurrency key `deploy-prod`, held by run H (limit 1), which was asked to stop (on_conflict: cancel_running); it starts when that run ends"
            )
        );
        assert_eq!(notice_line(&Event::RunStarted { run_id, total: 1 }), None);
        assert_eq!(
            event_text(&Event::RunStarted { run_id, total: 1 }).as_deref(),
            Some(format!("run {run_id} started: 1 step").as_str())
        );
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
}
