//! Helpers shared by the integration tests that drive the `orch` binary with
//! a home beside the test's files (every test file that declares this module
//! uses both).

use std::path::Path;
use std::process::Command;

/// `orch` in `dir`, its home `DIR/.orch`, no configuration or store from the
/// environment.
pub fn orch_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orch"));
    // The home beside the test's files, never the user's.
    c.current_dir(dir)
        .env("ORCH_HOME", dir.join(".orch"))
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .env_remove("CODOMYRMEX_ORCHESTRATION_DIR");
    c
}

/// Runs `orch ARGS` in `dir` to its end: exit code (-1 for a signal), stdout, stderr.
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = orch_cmd(dir).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
