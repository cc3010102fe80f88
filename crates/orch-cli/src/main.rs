//! The `orch` command-line tool: validate and draw workflow definitions (more commands arrive with later issues).

mod commands;

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
    };
    ExitCode::from(code)
}
