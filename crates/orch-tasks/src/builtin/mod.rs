//! The built-in actions: `core` (noop, sleep, fail, set, coalesce), `shell` (exec,
//! script), `fs` (read, write, copy, mkdir, list), `code` (stats), `chart`
//! (bar, line), `report` (markdown), `data` (aggregate) and `http` (request). `workflow.run`
//! belongs to the `WorkflowManager` of orch-workflows, which registers it.

mod chart;
mod code;
mod core;
mod data;
pub mod fs;
pub mod http;
mod report;
mod shell;
pub mod specs;

use crate::action::ActionRegistry;
use std::sync::Arc;

pub use shell::{Exec, External, Script};

/// Registers every built-in action.
pub fn register(r: &mut ActionRegistry) {
    r.register("core", "noop", Arc::new(core::Noop));
    r.register("core", "sleep", Arc::new(core::Sleep));
    r.register("core", "fail", Arc::new(core::Fail));
    r.register("core", "set", Arc::new(core::Set));
    r.register("core", "coalesce", Arc::new(core::Coalesce));
    r.register("shell", "exec", Arc::new(shell::Exec));
    r.register("shell", "script", Arc::new(shell::Script));
    r.register("fs", "read", Arc::new(fs::Read));
    r.register("fs", "write", Arc::new(fs::Write));
    r.register("fs", "copy", Arc::new(fs::Copy));
    r.register("fs", "mkdir", Arc::new(fs::Mkdir));
    r.register("fs", "list", Arc::new(fs::List));
    r.register("code", "stats", Arc::new(code::Stats));
    r.register("chart", "bar", Arc::new(chart::Bar));
    r.register("chart", "line", Arc::new(chart::Line));
    r.register("report", "markdown", Arc::new(report::Markdown));
    r.register("data", "aggregate", Arc::new(data::Aggregate));
    r.register("http", "request", Arc::new(http::Request));
}
