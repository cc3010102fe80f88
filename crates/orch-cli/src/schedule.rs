//! `orch schedule list | pause | resume | trigger` and `orch backfill`: the
//! schedules of the workflows directory (docs/schedules.md). `orch serve`
//! and `orch worker` fire them; these commands read and change what the
//! store records about them, so that every process sees the same.

use crate::exit;
use crate::run::run_error;
use crate::term::{Table, escape_line};
use chrono::{DateTime, NaiveDate, SecondsFormat, SubsecRound, Utc};
use clap::Subcommand;
use orch_engine::OrchestrationEngine;
use orch_engine::schedule::{BackfillOptions, ScheduleInfo, TickRecord, TickState};
use serde_json::json;
use std::path::Path;

/// `orch schedule` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// List the scheduled workflows of the workflows directory: the schedule, its catch-up
    /// policy, active or paused, the next tick, the last tick and counts; with a NAME, that
    /// workflow's recent ticks (fired, missed, failed), newest first.
    List {
        /// A scheduled workflow: list its ticks.
        name: Option<String>,
        /// Most ticks listed for NAME.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule: no tick fires until it is resumed (in every process: the pause is
    /// kept in the store); ticks that pass meanwhile are recorded as missed, not caught up.
    Pause {
        /// The scheduled workflow.
        name: String,
    },
    /// Resume a paused schedule: its next tick fires.
    Resume {
        /// The scheduled workflow.
        name: String,
    },
    /// Run a scheduled workflow now, with ${schedule.time} set to now (recorded as a
    /// triggered tick; paused or not). Waits for the run and prints its table.
    Trigger {
        /// The scheduled workflow.
        name: String,
        /// Print the run's report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `orch backfill` arguments.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// A scheduled workflow of the workflows directory.
    pub workflow: String,
    /// The first time of the range (included): RFC 3339 (2024-05-01T02:00:00Z) or a date
    /// (2024-05-01, midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: DateTime<Utc>,
    /// The last time of the range (included), not in the future.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: DateTime<Utc>,
    /// List the ticks and what would run, and start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Most ticks the range may hold (the limit max_schedule_runs, 1000 by default, caps it).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max: u32,
    /// Print JSON lines (one per tick).
    #[arg(long)]
    pub json: bool,
}

/// An RFC 3339 time, or a date (midnight UTC).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "`{s}` is not a time: write RFC 3339 (2024-05-01T02:00:00Z, 2024-05-01T04:00:00+02:00) or a date (2024-05-01)"
    ))
}

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn engine_and_runtime(
    config: Option<&Path>,
    read_only: bool,
) -> Result<(OrchestrationEngine, tokio::runtime::Runtime), u8> {
    let engine = if read_only {
        crate::manage::engine_read_only(config)
    } else {
        crate::manage::engine(config)
    }
    .map_err(|f| f.report())?;
    let rt = crate::manage::runtime()?;
    Ok((engine, rt))
}

/// Runs `orch schedule ACTION`.
pub fn schedule(config: Option<&Path>, action: ScheduleAction) -> u8 {
    // `list` only reads: it opens the store read-only.
    let read_only = matches!(action, ScheduleAction::List { .. });
    let (engine, rt) = match engine_and_runtime(config, read_only) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let now = Utc::now();
    match action {
        ScheduleAction::List { name, limit, json } => match name {
            None => list(&engine, &rt, json),
            Some(n) => ticks(&engine, &rt, &n, limit, json),
        },
        ScheduleAction::Pause { name } => match rt.block_on(engine.pause_schedule(&name, now)) {
            Ok(true) => {
                println!("paused `{name}`: no tick fires until `orch schedule resume {name}`");
                exit::OK
            }
            Ok(false) => {
                println!("`{name}` was paused already");
                exit::OK
            }
            Err(e) => run_error(&e),
        },
        ScheduleAction::Resume { name } => match rt.block_on(engine.resume_schedule(&name)) {
            Ok(true) => {
                println!("resumed `{name}`: its next tick fires");
                exit::OK
            }
            Ok(false) => {
                println!("`{name}` was not paused");
                exit::OK
            }
            Err(e) => run_error(&e),
        },
        ScheduleAction::Trigger { name, json } => {
            let handle = match rt.block_on(engine.trigger_schedule(&name, now)) {
                Ok(h) => h,
                Err(e) => return run_error(&e),
            };
            if !json {
                eprintln!(
                    "orch: run {} of `{name}` for {}",
                    handle.run_id(),
                    text(now.trunc_subsecs(0))
                );
            }
            finish(&rt, handle, json)
        }
    }
}

/// Waits for a run and prints its table (or JSON report); its exit code.
fn finish(rt: &tokio::runtime::Runtime, handle: orch_engine::RunHandle, json: bool) -> u8 {
    let wf = handle.workflow().clone();
    match rt.block_on(handle.report()) {
        Ok(report) => {
            crate::reporter::print_report(&report, &wf, json);
            if report.succeeded() {
                exit::OK
            } else {
                exit::FAILED
            }
        }
        Err(e) => run_error(&e),
    }
}

fn list(engine: &OrchestrationEngine, rt: &tokio::runtime::Runtime, json: bool) -> u8 {
    let now = Utc::now();
    let (infos, leader) = match rt.block_on(async {
        let infos = engine.schedules(now).await?;
        let leader = engine.schedule_leader(now).await?;
        Ok::<_, orch_model::OrchestrationError>((infos, leader))
    }) {
        Ok(v) => v,
        Err(e) => return run_error(&e),
    };
    if json {
        println!(
            "{}",
            json!({
                "schedules": infos,
                "leader": leader.map(|(holder, until)| json!({"holder": holder, "until": until})),
            })
        );
        return exit::OK;
    }
    if infos.is_empty() {
        println!(
            "no workflow of {} has a schedule (add `schedule:` to one; docs/schedules.md)",
            engine.workflow_manager().workflows_dir().display()
        );
        return exit::OK;
    }
    let mut t = Table::new(&[
        "WORKFLOW", "SCHEDULE", "CATCH-UP", "STATE", "NEXT", "LAST", "FIRED", "MISSED", "FAILED",
    ]);
    for i in &infos {
        t.row([
            i.workflow.clone(),
            i.schedule.clone(),
            i.catch_up.clone(),
            state_word(i),
            i.next.map_or_else(|| "-".to_owned(), text),
            i.last.as_ref().map_or_else(|| "-".to_owned(), last_word),
            i.state.fired.to_string(),
            i.state.missed.to_string(),
            i.state.failed.to_string(),
        ]);
    }
    t.print();
    match leader {
        Some((holder, until)) => println!("fired by {holder} (its lease runs to {})", text(until)),
        None => println!(
            "no scheduler runs now: `orch serve` or `orch worker` fires schedules (missed ticks are caught up by each one's policy)"
        ),
    }
    exit::OK
}

fn state_word(i: &ScheduleInfo) -> String {
    match &i.paused {
        Some(p) => format!("paused by {} at {}", p.by, text(p.at)),
        None if i.state.mark.is_none() => "active (not seen by a scheduler yet)".to_owned(),
        None => "active".to_owned(),
    }
}

fn last_word(r: &TickRecord) -> String {
    match (r.state, r.run) {
        (TickState::Missed, _) => format!(
            "{} {} missed",
            text(r.last.unwrap_or(r.tick)),
            if r.more {
                format!("({}+)", r.count)
            } else {
                format!("({})", r.count)
            }
        ),
        (s, Some(run)) => format!(
            "{} {} {}",
            text(r.tick),
            s.as_str(),
            crate::runs::short_id(&run.to_string())
        ),
        (s, None) => format!("{} {}", text(r.tick), s.as_str()),
    }
}

fn ticks(
    engine: &OrchestrationEngine,
    rt: &tokio::runtime::Runtime,
    name: &str,
    limit: usize,
    json: bool,
) -> u8 {
    let recs = match rt.block_on(engine.schedule_ticks(Some(name), limit)) {
        Ok(r) => r,
        Err(e) => return run_error(&e),
    };
    if json {
        println!("{}", json!({"workflow": name, "ticks": recs}));
        return exit::OK;
    }
    if recs.is_empty() {
        println!("`{name}` has no ticks recorded yet");
        return exit::OK;
    }
    let mut t = Table::new(&["TICK", "STATE", "CAUSE", "RUN", "BY", "NOTE"]);
    for r in &recs {
        let note = match (r.state, &r.error) {
            (_, Some(e)) => escape_line(e).into_owned(),
            (TickState::Missed, None) => format!(
                "{}{} tick(s) to {}",
                r.count,
                if r.more { "+" } else { "" },
                text(r.last.unwrap_or(r.tick))
            ),
            (TickState::Firing, None) => {
                "claimed, its run not started yet (the scheduler takes it over after its lease)"
                    .to_owned()
            }
            _ => String::new(),
        };
        t.row([
            text(r.tick),
            r.state.as_str().to_owned(),
            r.cause.as_str().to_owned(),
            r.run.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            r.by.clone(),
            note,
        ]);
    }
    t.print();
    exit::OK
}

/// Runs `orch backfill`.
pub fn backfill(config: Option<&Path>, args: &BackfillArgs) -> u8 {
    let (engine, rt) = match engine_and_runtime(config, false) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let now = Utc::now();
    let plan = match rt.block_on(engine.backfill_plan(
        &args.workflow,
        args.from,
        args.to,
        BackfillOptions { max: args.max },
        now,
    )) {
        Ok(p) => p,
        Err(e) => return run_error(&e),
    };
    if plan.is_empty() {
        eprintln!(
            "orch: no tick of `{}` from {} to {}",
            args.workflow,
            text(args.from),
            text(args.to)
        );
        return exit::OK;
    }
    let mut failed = 0usize;
    let mut ran = 0usize;
    for t in &plan {
        let tick = text(t.tick);
        if !t.runs() {
            let run = t.existing.as_ref().and_then(|r| r.run);
            say(args.json, &tick, "skipped", run, "it has a run already");
            continue;
        }
        if args.dry_run {
            say(args.json, &tick, "would run", None, "");
            continue;
        }
        match rt.block_on(engine.backfill_tick(&args.workflow, t.tick, Utc::now())) {
            Ok(None) => say(args.json, &tick, "skipped", None, "it has a run already"),
            Ok(Some(handle)) => {
                let run = handle.run_id();
                ran += 1;
                match rt.block_on(handle.report()) {
                    Ok(r) if r.succeeded() => say(args.json, &tick, "completed", Some(run), ""),
                    Ok(_) => {
                        failed += 1;
                        say(
                            args.json,
                            &tick,
                            "failed",
                            Some(run),
                            "`orch runs show` tells why",
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        say(args.json, &tick, "failed", Some(run), &e.to_string());
                    }
                }
            }
            Err(e) => {
                failed += 1;
                say(args.json, &tick, "not started", None, &e.to_string());
            }
        }
    }
    if !args.json && !args.dry_run {
        eprintln!(
            "orch: backfill of `{}`: {} tick(s), {ran} run, {failed} failed",
            args.workflow,
            plan.len()
        );
    }
    if failed > 0 { exit::FAILED } else { exit::OK }
}

fn say(json_out: bool, tick: &str, what: &str, run: Option<orch_model::RunId>, note: &str) {
    if json_out {
        println!(
            "{}",
            json!({"tick": tick, "outcome": what, "run": run, "note": note})
        );
    } else {
        let run = run.map(|r| r.to_string()).unwrap_or_default();
        let line = [tick, what, run.as_str(), note]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("  ");
        println!("{}", escape_line(&line));
    }
}

/// Starts the scheduler of `orch serve` (runs here) or `orch worker`
/// (`holder`: the worker's id; runs submitted to the workers); a store
/// without records gets none, with a note when a workflow has a schedule.
pub(crate) fn start(
    engine: &OrchestrationEngine,
    holder: Option<&str>,
) -> Option<orch_engine::schedule::SchedulerHandle> {
    let mut opts = orch_engine::schedule::SchedulerOptions {
        detach: holder.is_some(),
        ..Default::default()
    };
    if let Some(h) = holder {
        opts.holder = h.to_owned();
    }
    match engine.scheduler(opts) {
        Ok(h) => Some(h),
        Err(e) => {
            if !engine.scheduled_workflows().is_empty() {
                eprintln!(
                    "orch: schedules do not fire here: {}",
                    escape_line(&e.to_string())
                );
            }
            None
        }
    }
}

/// What `orch status` shows of the schedules: each scheduled workflow and
/// who fires them; `Err` when the store cannot say (then `orch status`
/// notes why, and only when some workflow has a schedule).
pub(crate) struct StatusSchedules(Result<(Vec<ScheduleInfo>, Option<Leader>), String>);

/// The `scheduler` lease's holder and the end of its lease.
type Leader = (String, DateTime<Utc>);

/// Reads the schedules for `orch status`.
pub(crate) fn for_status(engine: &OrchestrationEngine) -> StatusSchedules {
    let now = Utc::now();
    let read = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(async {
                // `orch status` builds the engine on a read-only opening
                // of the store: it writes nothing.
                let store = engine.store();
                let infos = engine.schedules_in(store.as_ref(), now).await?;
                let leader = OrchestrationEngine::schedule_leader_in(store.as_ref(), now).await?;
                Ok::<_, orch_model::OrchestrationError>((infos, leader))
            })
            .map_err(|e| e.to_string())
        });
    StatusSchedules(match read {
        Err(_) if engine.scheduled_workflows().is_empty() => Ok((Vec::new(), None)),
        other => other,
    })
}

impl StatusSchedules {
    /// Adds `schedules` (and `scheduler`, who fires them, or
    /// `schedules_error`) to `orch status --json`'s object.
    pub(crate) fn add_to(&self, v: &mut serde_json::Value) {
        let serde_json::Value::Object(m) = v else {
            return;
        };
        match &self.0 {
            Ok((infos, leader)) => {
                m.insert("schedules".into(), json!(infos));
                m.insert(
                    "scheduler".into(),
                    json!(
                        leader
                            .as_ref()
                            .map(|(h, u)| json!({"holder": h, "until": u}))
                    ),
                );
            }
            Err(e) => {
                m.insert("schedules_error".into(), json!(e));
            }
        }
    }

    /// Prints the schedules' lines of `orch status` (nothing when no
    /// workflow has a schedule).
    pub(crate) fn print(&self) {
        let (infos, leader) = match &self.0 {
            Ok((infos, _)) if infos.is_empty() => return,
            Ok(v) => v,
            Err(e) => {
                println!("  schedules:  cannot be read: {}", escape_line(e));
                return;
            }
        };
        println!(
            "  schedules:  {} ({})",
            infos.len(),
            match leader {
                Some((h, u)) => format!("fired by {h}, its lease runs to {}", text(*u)),
                None => "no scheduler runs now: `orch serve` or `orch worker` fires them".into(),
            }
        );
        let mut t = Table::new(&[
            "WORKFLOW",
            "SCHEDULE",
            "STATE",
            "NEXT",
            "LAST FIRED",
            "LAST MISSED",
        ]);
        for i in infos {
            t.row([
                i.workflow.clone(),
                i.schedule.clone(),
                if i.paused.is_some() {
                    "paused".to_owned()
                } else {
                    "active".to_owned()
                },
                i.next.map_or_else(|| "-".to_owned(), text),
                i.last_fired
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), last_word),
                i.last_missed
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), last_word),
            ]);
        }
        for line in t.lines() {
            println!("    {}", escape_line(&line));
        }
    }
}
