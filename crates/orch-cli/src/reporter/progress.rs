//! Live progress on standard error: a bar on a terminal; off a terminal a
//! line per event for a small run, else failures, retries, slow steps and a
//! steady progress line.

use super::{
    HEARTBEAT, NOTICES, PROGRESS_EVERY, SLOW_STEP, SMALL_RUN, event_line, fmt_duration,
    notice_line, short,
};
use crate::term::escape_line;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use orch_engine::Event;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How many running steps the bar names.
const BAR_NAMES: usize = 3;
/// How often the bar's message is rebuilt.
const BAR_MESSAGE_EVERY: Duration = Duration::from_millis(100);

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
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
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
        // orch's own notices (`orch: ...`), printed as they are.
        let mut notices = Vec::new();
        let mut last_message = start;
        let show =
            |notices: &mut Vec<String>, lines: &mut Vec<String>, bar: &Option<ProgressBar>| {
                for line in notices.drain(..) {
                    match bar {
                        Some(bar) => bar.println(line),
                        None => eprintln!("{line}"),
                    }
                }
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
                        if let Some(notice) = notice_line(&e) {
                            notices.push(notice);
                            continue;
                        }
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
            show(&mut notices, &mut lines, &bar);
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
                duration: Duration::from_millis(5),
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
                    duration: Duration::from_millis(5),
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
}
