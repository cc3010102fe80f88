//! The `orch` command-line tool: run, validate and draw workflows; projects from templates; status and health.

// Every `println!`, `print!`, `eprintln!` and `eprint!` of this crate is one
// of these, not std's: they print through `term`, which escapes control
// characters (values from users, steps and files must not drive the
// terminal) and ends orch quietly when its standard output is closed. Being
// defined before the modules, they shadow std's in all of them.
macro_rules! println {
    () => { $crate::term::print($crate::term::Stream::Out, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::term::print($crate::term::Stream::Out, format_args!($($arg)*), true) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::term::print($crate::term::Stream::Out, format_args!($($arg)*), false) };
}
macro_rules! eprintln {
    () => { $crate::term::print($crate::term::Stream::Err, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::term::print($crate::term::Stream::Err, format_args!($($arg)*), true) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::term::print($crate::term::Stream::Err, format_args!($($arg)*), false) };
}

mod authoring;
mod commands;
mod interrupt;
mod logs;
mod manage;
mod mcp;
mod phases;
mod reporter;
mod retry;
mod run;
mod runs;
mod schedule;
mod serve;
mod telemetry;
mod term;
mod worker;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes, documented in docs/cli.md.
pub mod exit {
    /// Everything succeeded.
    pub const OK: u8 = 0;
    /// A workflow ran and failed.
    pub const FAILED: u8 = 1;
    /// The input was invalid (bad file, bad definition, bad arguments).
    pub const INVALID: u8 = 2;
    /// orch itself failed unexpectedly (a bug: please report it).
    pub const INTERNAL: u8 = 70;
    /// A run was interrupted by a signal: 128 plus its number (SIGHUP 129,
    /// SIGINT 130, SIGTERM 143); the run can be resumed.
    pub const SIGNAL_BASE: u8 = 128;
}

/// orch: a workflow and task orchestration engine.
#[derive(Debug, Parser)]
#[command(name = "orch", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The engine's configuration file (JSON: max_workers, workflows_dir, projects_dir, templates_dir,
    /// resource_config, ...; see docs/cli.md); default `$ORCH_CONFIG`, else none.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where runs are recorded: sqlite://PATH (default sqlite://$ORCH_HOME/orch.db),
    /// postgres://USER@HOST/DB[?schema=NAME] (shared with workers) or memory://;
    /// default `$ORCH_STORE_URL`.
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    /// Log what orch does on standard error: -v runs (INFO), -vv attempts (DEBUG), -vvv TRACE;
    /// `RUST_LOG` (e.g. RUST_LOG=orch_tasks=debug), when set, decides instead.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Print less: no live progress during a run (its table, errors and failures still print),
    /// and only errors in the log.
    #[arg(short = 'q', long = "quiet", global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// `orch runs` subcommands.
#[derive(Debug, Subcommand)]
enum RunsAction {
    /// List runs, newest first (a run whose process died shows as `interrupted`).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Most runs shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show a run's steps: state, attempts, start, duration, cached mark, error.
    Show {
        /// The run's id, a unique prefix of it, or `last` (the newest run started by `orch run`).
        run: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// List every step (a run of more than 50 steps otherwise lists those that did not simply complete).
        #[arg(long)]
        all: bool,
    },
}

/// `orch project` subcommands.
#[derive(Debug, Subcommand)]
enum ProjectAction {
    /// Create a project from a template (built in: ai_analysis, data_pipeline, web_application; `custom` for none).
    New {
        /// The project's name (letters, digits, `_`, `-`, `.`).
        name: String,
        /// The template.
        #[arg(long, short = 't')]
        template: String,
        /// Where to create it (default `$ORCH_HOME/projects/NAME`); its parent must exist.
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// What the project is.
        #[arg(long, default_value = "")]
        description: String,
        /// Who makes it.
        #[arg(long, default_value = "")]
        author: String,
        /// A tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// List projects.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a project's status, milestones and metrics.
    Status {
        /// The project.
        name: String,
        /// Print JSON (every field of the project's status).
        #[arg(long)]
        json: bool,
    },
    /// Record a milestone with its data.
    Milestone {
        /// The project.
        name: String,
        /// The milestone's key.
        key: String,
        /// Its data, as JSON.
        #[arg(long, value_name = "JSON")]
        data: String,
    },
    /// Write a tar.gz of the project and mark it archived.
    Archive {
        /// The project.
        name: String,
        /// Where to write it (default `$ORCH_HOME/projects/archives/NAME.tar.gz`).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Run one of a project's workflows in the project's directory (same options as `orch run`).
    Run {
        /// The project.
        name: String,
        /// The workflow.
        workflow: String,
        /// A parameter value, KEY=VALUE (repeatable); the project's config gives the rest.
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Execution mode.
        #[arg(long, value_enum, default_value = "parallel")]
        mode: Mode,
        /// Most steps running at once in parallel mode (default: the config's `max_workers`, else `$ORCH_MAX_WORKERS`, else 4).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        max_parallel: Option<u16>,
        /// Limit on the whole run, e.g. 30s, 5m, 1h30m.
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout_arg)]
        timeout: Option<std::time::Duration>,
        /// Print the run's report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options shared by commands that read definitions.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadOptions {
    /// Read the files as this format instead of guessing from the extension.
    #[arg(long = "input-format", value_name = "FORMAT")]
    pub input_format: Option<InputFormat>,
    /// Override an input limit, e.g. `--limit max_steps=2000000` (repeatable; see docs/workflow-format.md).
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    pub limits: Vec<String>,
}

/// The definition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// TOML.
    Toml,
}

/// `orch cache` subcommands.
#[derive(Debug, Subcommand)]
enum CacheAction {
    /// List the cached results: key and size.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove every cached result.
    Clear,
}

/// Execution modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One step at a time.
    Sequential,
    /// Up to --max-parallel steps at once.
    Parallel,
    /// Parallel, and a step starts only when its resource request fits.
    #[value(name = "resource_aware")]
    ResourceAware,
}

impl From<Mode> for orch_model::ExecutionMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Sequential => Self::Sequential,
            Mode::Parallel => Self::Parallel,
            Mode::ResourceAware => Self::ResourceAware,
        }
    }
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    orch_model::duration::parse_duration(s)
}

/// A run's `--timeout`: a duration that must be positive.
fn parse_timeout_arg(s: &str) -> Result<std::time::Duration, String> {
    orch_model::duration::parse_timeout(s)
}

/// Graph output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Mermaid flowchart text.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check workflow definitions and report every problem with file, line and column.
    Validate {
        /// Definition files (.yaml, .yml, .json, .toml); `-` reads standard input (give --input-format).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Input format (same as --input-format).
        #[arg(long, value_name = "FORMAT", conflicts_with = "input_format")]
        format: Option<InputFormat>,
        #[command(flatten)]
        read: ReadOptions,
        /// A module served by an external program (as `orch run --module` and `orch worker
        /// --module` give it): its steps may name any action with any parameters (repeatable).
        #[arg(long = "module", value_name = "NAME[=PROGRAM]")]
        modules: Vec<String>,
        /// Print machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow: live progress, then a table of its steps (exit 0 success, 1 failed, 2 invalid input).
    ///
    /// The argument is a definition file, or a workflow's name: one of the
    /// project the current directory is in, or of the workflows directory
    /// (which also offers the template workflows, e.g. ai-analysis).
    Run {
        /// A definition file, or a workflow name.
        #[arg(value_name = "FILE|NAME")]
        file: String,
        /// A parameter value, KEY=VALUE (repeatable); VALUE is JSON when it parses as JSON, else text.
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Execution mode.
        #[arg(long, value_enum, default_value = "parallel")]
        mode: Mode,
        /// Most steps running at once in parallel mode (default: the config's `max_workers`, else `$ORCH_MAX_WORKERS`, else 4).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        max_parallel: Option<u16>,
        /// Run `cache: true` steps even when a cached result exists (results are still stored).
        #[arg(long)]
        no_cache: bool,
        /// Serve a module by an external program, NAME=PROGRAM (repeatable): it gets
        /// {"action","parameters"} as JSON on stdin and answers JSON on stdout.
        #[arg(long = "module", value_name = "NAME=PROGRAM")]
        modules: Vec<String>,
        /// A resources file (JSON, as `orch resources --file` reads it) for `resource_aware` mode;
        /// default: the machine's capacities.
        #[arg(long = "resources", value_name = "PATH")]
        resources: Option<PathBuf>,
        /// Limit on the whole run, e.g. 30s, 5m, 1h30m.
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout_arg)]
        timeout: Option<std::time::Duration>,
        /// How long `finally` and `run_if: always` steps may still run after a cancel or the
        /// run's timeout (default: the workflow's `cancel_grace`, else 30s; 0: not at all).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        cancel_grace: Option<std::time::Duration>,
        #[command(flatten)]
        read: ReadOptions,
        /// Print the run's report as JSON instead of progress and a table.
        #[arg(long)]
        json: bool,
        /// Submit the run for `orch worker`s of the store and print its id at once
        /// (follow it with `orch runs show ID`).
        #[arg(long)]
        detach: bool,
    },
    /// Inspect recorded runs.
    Runs {
        #[command(subcommand)]
        action: RunsAction,
    },
    /// Print a step's captured output (stdout and stderr of commands, else its result).
    ///
    /// Control characters in it are shown escaped (as \u001b), so that the
    /// output cannot drive the terminal; --raw prints it as it was captured.
    /// A running step shows what it printed so far; --follow prints its new
    /// output as it comes, until the step ends (exit 0: completed or
    /// skipped, 1: failed or cancelled).
    Logs {
        /// The run's id, a unique prefix of it, or `last` (the newest run started by `orch run`).
        run: String,
        /// The step.
        step: String,
        /// Print the step's stdout and stderr as captured, unescaped, on orch's
        /// stdout and stderr (for a file or a pipe; escape sequences reach a terminal).
        #[arg(long)]
        raw: bool,
        /// Keep printing the step's output as it is produced until the step ends;
        /// the exit status then says how it ended.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Finish an interrupted run: finished steps keep their results, interrupted ones run again.
    Resume {
        /// The run's id, a unique prefix of it, or `last` (the newest run started by `orch run`).
        run: String,
        /// Execution mode.
        #[arg(long, value_enum, default_value = "parallel")]
        mode: Mode,
        /// Most steps running at once in parallel mode (default: the config's `max_workers`, else `$ORCH_MAX_WORKERS`, else 4).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        max_parallel: Option<u16>,
        /// Limit on the rest of the run.
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout_arg)]
        timeout: Option<std::time::Duration>,
        /// Print the run's report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retry a failed or cancelled run as a new run: completed steps keep their results; failed,
    /// cancelled and skipped steps (and, with --from, that step) run again with what depends on them.
    Retry {
        /// The run's id, a unique prefix of it, or `last` (the newest run started by `orch run`).
        run: String,
        /// Also run this step again, and everything that depends on it, even if it completed.
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
        /// Execution mode.
        #[arg(long, value_enum, default_value = "parallel")]
        mode: Mode,
        /// Most steps running at once in parallel mode (default: what the run had).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        max_parallel: Option<u16>,
        /// Limit on the new run.
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout_arg)]
        timeout: Option<std::time::Duration>,
        /// Print the run's report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run from another terminal: its running processes stop, nothing new starts.
    Cancel {
        /// The run's id, a unique prefix of it, or `last` (the newest run started by `orch run`).
        run: String,
        /// How long to wait for the run to stop.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_arg)]
        wait: std::time::Duration,
    },
    /// List or clear cached step results (kept in the store).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Show the resources `resource_aware` runs allocate from: the machine's, or a resources file's.
    Resources {
        /// A resources file instead of the machine's capacities: JSON,
        /// `{"resources": {ID: {"id", "name", "type", "capacity": {NAME: AMOUNT}}}}`.
        #[arg(long = "file", value_name = "PATH")]
        file: Option<PathBuf>,
        /// Print JSON (the resources and a usage summary).
        #[arg(long)]
        json: bool,
    },
    /// List the project templates.
    Templates {
        /// Print JSON (the templates as template files hold them).
        #[arg(long)]
        json: bool,
    },
    /// Create and manage projects.
    Project {
        #[command(subcommand)]
        action: ProjectAction,
    },
    /// Show the system's status: workflows, projects, tasks, resources.
    Status {
        /// Print JSON (workflows, projects, tasks, resources and performance).
        #[arg(long)]
        json: bool,
    },
    /// Check every component; exit 0 when healthy, 1 when degraded or unhealthy.
    Health {
        /// Print JSON (the overall status, each component's, and the issues).
        #[arg(long)]
        json: bool,
    },
    /// Claim and run the steps of runs submitted to a shared store (`orch run --detach`,
    /// or any run on postgres://), until SIGTERM or SIGINT.
    Worker {
        /// Most steps it runs at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
        slots: u16,
        /// What it can hold at once, e.g. cpu=4,memory=8GiB (a step asking for more is left for
        /// another worker); default: unlimited.
        #[arg(long, value_name = "NAME=AMOUNT,...")]
        capacity: Option<String>,
        /// Serve a module by an external program, NAME=PROGRAM (repeatable), as `orch run --module`.
        #[arg(long = "module", value_name = "NAME=PROGRAM")]
        modules: Vec<String>,
        /// The lease of each claimed step, renewed every third of it; a worker silent for two
        /// leases is shown as lost, and its steps are taken over.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout_arg)]
        lease: std::time::Duration,
        /// On SIGTERM or SIGINT, how long running steps may go on before they are stopped and
        /// handed back to other workers.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_arg)]
        grace: std::time::Duration,
        /// How often an idle worker looks for work.
        #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_timeout_arg)]
        poll: std::time::Duration,
        /// The worker's id (default HOST-PID-RANDOM).
        #[arg(long)]
        id: Option<String>,
        /// Where steps work (default: the directory the run was submitted from when it exists
        /// here, else the current directory).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Once this worker is lost (killed outright: silent for two leases), how long status and
        /// health still show it; then it is forgotten and its record removed. Default: 10
        /// leases, at least 1m.
        #[arg(long, value_name = "DURATION", value_parser = parse_timeout_arg)]
        forget_after: Option<std::time::Duration>,
    },
    /// The schedules of the workflows directory (docs/schedules.md), which `orch serve` and
    /// `orch worker` fire: list them and their ticks, pause, resume, trigger a run now.
    Schedule {
        #[command(subcommand)]
        action: schedule::ScheduleAction,
    },
    /// Run a scheduled workflow once per tick of its schedule from --from to --to (past ticks
    /// only, one run after another, each with ${schedule.time} set to its tick).
    Backfill(schedule::BackfillArgs),
    /// Serve the Model Context Protocol on stdin/stdout (for AI agents): the tools of docs/mcp.md.
    Mcp,
    /// Serve the HTTP API (docs/server.md): workflows, runs, live events, projects, status; until
    /// SIGINT or SIGTERM. Every route but /health needs the token of $ORCH_HOME/server-token.
    Serve {
        /// Where to listen; an address other machines can reach prints a warning.
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        bind: std::net::SocketAddr,
        /// Allow this one origin (e.g. http://localhost:3000) to call the API from a browser;
        /// default: no CORS.
        #[arg(long, value_name = "ORIGIN")]
        cors: Option<String>,
        /// The largest request body, in bytes (default 16 MiB).
        #[arg(long, value_name = "BYTES", default_value_t = orch_server::DEFAULT_BODY_LIMIT)]
        body_limit: usize,
        /// How many threads answer requests, apart from the runs' threads (default 1: one thread
        /// answers tens of thousands of small requests a second; more help with slow requests).
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u16).range(1..=256))]
        api_threads: u16,
    },
    /// Print the JSON Schema of the workflow format, for editors (docs/workflow-format.md):
    /// every field, and the parameters of each built-in action.
    Schema,
    /// Print a shell's completion script: `orch completions bash > ~/.local/share/bash-completion/completions/orch`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a workflow's dependency graph as Mermaid or Graphviz DOT.
    ///
    /// The argument is a definition file (`-` for standard input, with
    /// --input-format), or a workflow's name, found as `orch run` finds it.
    Graph {
        /// A definition file, or a workflow name.
        #[arg(value_name = "FILE|NAME")]
        file: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
        #[command(flatten)]
        read: ReadOptions,
        /// Print JSON with the graph text and the execution levels.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a command; a panic that escapes it is a bug: the hook has printed
/// one line, and orch exits with [`exit::INTERNAL`]. (The hook itself does
/// not exit: a panicking action is caught and fails its step.)
fn guarded(command: impl FnOnce() -> u8) -> u8 {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)).unwrap_or(exit::INTERNAL)
}

/// The arguments, or the exit code after clap's message (printed through
/// `term`, as the message may quote what the user typed).
fn parse_args() -> Result<Cli, u8> {
    Cli::try_parse().map_err(|e| {
        if e.use_stderr() {
            eprint!("{}", e.render());
        } else {
            print!("{}", e.render());
        }
        u8::try_from(e.exit_code()).unwrap_or(exit::INVALID)
    })
}

fn main() -> ExitCode {
    // A panic is a bug; report it in one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("orch: internal error{at}: {msg} (this is a bug; please report it)");
    }));
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let _telemetry = match telemetry::init(cli.verbose, cli.quiet) {
        Ok(t) => t,
        Err(code) => return ExitCode::from(code),
    };
    let config = cli.config.as_deref();
    if let Some(url) = &cli.store {
        let _ = manage::STORE_URL.set(url.clone());
    }
    // Debug builds only: a panic on request, so that the tests can see the
    // hook's one line and exit code 70.
    #[cfg(debug_assertions)]
    if std::env::var_os("ORCH_DEBUG_PANIC").is_some() {
        return ExitCode::from(guarded(|| panic!("ORCH_DEBUG_PANIC is set")));
    }
    let code = guarded(|| match cli.command {
        Command::Runs { action } => match action {
            RunsAction::List { json, limit } => runs::list(config, json, limit),
            RunsAction::Show { run, json, all } => runs::show(config, &run, json, all),
        },
        Command::Logs {
            run,
            step,
            raw,
            follow,
        } => logs::logs(config, &run, &step, raw, follow),
        Command::Cancel { run, wait } => runs::cancel(config, &run, wait),
        Command::Resume {
            run,
            mode,
            max_parallel,
            timeout,
            json,
        } => {
            let args = run::RunArgs::of_recorded_run(
                mode.into(),
                max_parallel.map(usize::from),
                timeout,
                json,
                cli.config.clone(),
            );
            runs::resume(&run, &args)
        }
        Command::Retry {
            run,
            from,
            mode,
            max_parallel,
            timeout,
            json,
        } => {
            let args = run::RunArgs::of_recorded_run(
                mode.into(),
                max_parallel.map(usize::from),
                timeout,
                json,
                cli.config.clone(),
            );
            retry::retry(&run, from, &args)
        }
        Command::Templates { json } => manage::templates(config, json),
        Command::Status { json } => manage::status(config, json),
        Command::Health { json } => manage::health(config, json),
        Command::Project { action } => match action {
            ProjectAction::New {
                name,
                template,
                path,
                description,
                author,
                tags,
            } => manage::project_new(
                config,
                &name,
                &template,
                path.as_deref(),
                orch_engine::CreateOptions {
                    description,
                    author,
                    tags,
                },
            ),
            ProjectAction::List { json } => manage::project_list(config, json),
            ProjectAction::Status { name, json } => manage::project_status(config, &name, json),
            ProjectAction::Milestone { name, key, data } => {
                manage::project_milestone(config, &name, &key, &data)
            }
            ProjectAction::Archive { name, output } => {
                manage::project_archive(config, &name, output.as_deref())
            }
            ProjectAction::Run {
                name,
                workflow,
                params,
                mode,
                max_parallel,
                timeout,
                json,
            } => {
                let args = run::RunArgs {
                    params,
                    mode: mode.into(),
                    max_parallel: max_parallel.map(usize::from),
                    no_cache: false,
                    modules: Vec::new(),
                    resources: None,
                    timeout,
                    json,
                    config: cli.config.clone(),
                    detach: false,
                    cancel_grace: None,
                };
                let read = ReadOptions {
                    input_format: None,
                    limits: Vec::new(),
                };
                run::run(&workflow, Some(&name), &read, &args)
            }
        },
        Command::Validate {
            files,
            format,
            mut read,
            modules,
            json,
        } => {
            if format.is_some() {
                read.input_format = format;
            }
            commands::validate(&files, &read, &modules, json)
        }
        Command::Schedule { action } => schedule::schedule(config, action),
        Command::Backfill(args) => schedule::backfill(config, &args),
        Command::Mcp => mcp::mcp(config),
        Command::Schema => authoring::schema(),
        Command::Completions { shell } => authoring::completions(shell),
        Command::Serve {
            bind,
            cors,
            body_limit,
            api_threads,
        } => serve::serve(
            config,
            &serve::ServeArgs {
                bind,
                cors,
                body_limit,
                api_threads: usize::from(api_threads),
            },
        ),
        Command::Graph {
            file,
            format,
            read,
            json,
        } => commands::graph(config, &file, format, &read, json),
        Command::Resources { file, json } => run::resources(file.as_deref(), json),
        Command::Cache { action } => match action {
            CacheAction::List { json } => runs::cache_list(config, json),
            CacheAction::Clear => runs::cache_clear(config),
        },
        Command::Run {
            file,
            params,
            mode,
            max_parallel,
            no_cache,
            modules,
            resources,
            timeout,
            cancel_grace,
            read,
            json,
            detach,
        } => {
            let args = run::RunArgs {
                params,
                mode: mode.into(),
                max_parallel: max_parallel.map(usize::from),
                no_cache,
                modules,
                resources,
                timeout,
                json,
                config: cli.config.clone(),
                detach,
                cancel_grace,
            };
            run::run(&file, None, &read, &args)
        }
        Command::Worker {
            slots,
            capacity,
            modules,
            lease,
            grace,
            poll,
            id,
            work_dir,
            forget_after,
        } => worker::worker(
            config,
            &worker::WorkerArgs {
                slots: usize::from(slots),
                capacity,
                modules,
                lease,
                grace,
                poll,
                id,
                work_dir,
                forget_after,
            },
        ),
    });
    ExitCode::from(code)
}
