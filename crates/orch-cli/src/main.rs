//! The `orch` command-line tool: validate and draw workflow definitions (more commands arrive with later issues).

mod commands;
mod run;

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
}

/// orch: a workflow and task orchestration engine.
#[derive(Debug, Parser)]
#[command(name = "orch", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
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

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    orch_model::duration::parse_duration(s)
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
        /// Definition files (.yaml, .yml, .json, .toml).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Input format (same as --input-format).
        #[arg(long, value_name = "FORMAT", conflicts_with = "input_format")]
        format: Option<InputFormat>,
        #[command(flatten)]
        read: ReadOptions,
        /// Print machine-readable JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow: live progress, then a table of its steps (exit 0 success, 1 failed, 2 invalid input).
    Run {
        /// The definition file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// A parameter value, KEY=VALUE (repeatable); VALUE is JSON when it parses as JSON, else text.
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Execution mode.
        #[arg(long, value_enum, default_value = "parallel")]
        mode: Mode,
        /// Most steps running at once in parallel mode.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
        max_parallel: u16,
        /// Run `cache: true` steps even when a cached result exists (results are still stored).
        #[arg(long)]
        no_cache: bool,
        /// Serve a module by an external program, NAME=PROGRAM (repeatable): it gets
        /// {"action","parameters"} as JSON on stdin and answers JSON on stdout.
        #[arg(long = "module", value_name = "NAME=PROGRAM")]
        modules: Vec<String>,
        /// A resources file (seed JSON format) for `resource_aware` mode; default: the machine's capacities.
        #[arg(long = "resources", value_name = "PATH")]
        resources: Option<PathBuf>,
        /// Limit on the whole run, e.g. 30s, 5m, 1h30m.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        timeout: Option<std::time::Duration>,
        #[command(flatten)]
        read: ReadOptions,
        /// Print the run's report as JSON instead of progress and a table.
        #[arg(long)]
        json: bool,
    },
    /// List or clear cached step results ($ORCH_HOME/cache, ORCH_HOME defaults to ./.orch).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Show the resources `resource_aware` runs allocate from: the machine's, or a resources file's.
    Resources {
        /// A resources file in the seed's JSON format instead of the machine's capacities.
        #[arg(long = "file", value_name = "PATH")]
        file: Option<PathBuf>,
        /// Print JSON (the resources and the seed's usage summary).
        #[arg(long)]
        json: bool,
    },
    /// Print a workflow's dependency graph as Mermaid or Graphviz DOT.
    Graph {
        /// The definition file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
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
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate {
            files,
            format,
            mut read,
            json,
        } => {
            if format.is_some() {
                read.input_format = format;
            }
            commands::validate(&files, &read, json)
        }
        Command::Graph {
            file,
            format,
            read,
            json,
        } => commands::graph(&file, format, &read, json),
        Command::Resources { file, json } => run::resources(file.as_deref(), json),
        Command::Cache { action } => match action {
            CacheAction::List { json } => run::cache_list(json),
            CacheAction::Clear => run::cache_clear(),
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
            read,
            json,
        } => {
            let mode = match mode {
                Mode::Sequential => orch_model::ExecutionMode::Sequential,
                Mode::Parallel => orch_model::ExecutionMode::Parallel,
                Mode::ResourceAware => orch_model::ExecutionMode::ResourceAware,
            };
            let args = run::RunArgs {
                params,
                mode,
                max_parallel: usize::from(max_parallel),
                no_cache,
                modules,
                resources,
                timeout,
                json,
            };
            run::run(&file, &read, &args)
        }
    };
    ExitCode::from(code)
}
