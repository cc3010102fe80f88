//! The built-in actions: `core` (noop, sleep, fail, set) and `shell` (exec, script).

mod core;
mod shell;

use crate::action::ActionRegistry;
use std::sync::Arc;

pub use shell::{Exec, Script};

/// Registers every built-in action.
pub fn register(r: &mut ActionRegistry) {
    r.register("core", "noop", Arc::new(core::Noop));
    r.register("core", "sleep", Arc::new(core::Sleep));
    r.register("core", "fail", Arc::new(core::Fail));
    r.register("core", "set", Arc::new(core::Set));
    r.register("shell", "exec", Arc::new(shell::Exec));
    r.register("shell", "script", Arc::new(shell::Script));
}
