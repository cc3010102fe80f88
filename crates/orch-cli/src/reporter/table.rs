//! The final table of a run: every step of a small run; for a larger one,
//! the steps that did not simply complete (at most [`TABLE_ROWS`]), then the
//! summary line and where to see the rest.

use super::{SLOW_STEP, SMALL_RUN, TABLE_ROWS, fmt_duration, short, status_word, steps};
use crate::term::Table;
use orch_engine::{RunReport, StepReport};
use orch_model::{Phase, TaskStatus, ValidWorkflow};
use std::collections::HashMap;
use std::time::Duration;

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

/// The note of a step that passed after failed attempts (a flaky step).
pub(crate) fn flaky_note(attempts: u32, r: &orch_model::TaskResult) -> String {
    let failed = r.flaky().unwrap_or(1);
    let s = if failed == 1 { "" } else { "s" };
    format!("flaky: passed on attempt {attempts} after {failed} failed attempt{s}")
}

/// How long a step ran, from its start and end.
fn ran(
    started: Option<chrono::DateTime<chrono::Utc>>,
    finished: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<Duration> {
    (finished? - started?).to_std().ok()
}

pub(super) fn print_table(report: &RunReport, wf: &ValidWorkflow) {
    // The steps outside the main graph are named with their phase, as
    // `orch runs show` names them (`cleanup (finally)`).
    let phases: HashMap<&str, Phase> = wf
        .workflow()
        .steps
        .iter()
        .filter(|s| !s.phase.is_main())
        .map(|s| (s.name.as_str(), s.phase))
        .collect();
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
            (Some(r), _) if r.flaky().is_some() => flaky_note(s.attempts, r),
            (_, Some(n)) => short(n, 80),
            _ => String::new(),
        };
        [
            match phases.get(s.name.as_str()) {
                Some(p) => crate::phases::named(&s.name, *p),
                None => s.name.to_string(),
            },
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
    let mut cancelled = if cancelled > 0 {
        format!(", {cancelled} cancelled")
    } else {
        String::new()
    };
    let flaky = report
        .steps
        .iter()
        .filter(|s| s.result.as_ref().is_some_and(|r| r.flaky().is_some()))
        .count();
    if flaky > 0 {
        cancelled.push_str(&format!(" ({flaky} flaky)"));
    }
    println!(
        "workflow `{}` {}: {done} completed, {failed} failed, {skipped} skipped{cancelled} of {} in {} (run {})",
        report.workflow,
        report.status,
        steps(total),
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

#[cfg(test)]
mod tests {
    use super::*;

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
