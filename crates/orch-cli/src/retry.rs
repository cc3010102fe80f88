//! `orch retry RUN [--from STEP]`: a new attempt of a failed or cancelled run that keeps its completed steps.

use crate::run::{RunArgs, execute};
use orch_engine::{RunRequest, RunTarget};

/// Finds the run, then hands the retry to the engine, which records the
/// new run (linked to the old one) with the kept steps completed and runs
/// the rest, with progress and the table as `orch run` shows them.
pub fn retry(id: &str, from: Option<String>, args: &RunArgs) -> u8 {
    let engine = match crate::manage::engine_with(args.config.as_deref(), None) {
        Ok(e) => e,
        Err(f) => return f.report(),
    };
    let rt = match crate::manage::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let store = engine.store().clone();
    let r = match rt.block_on(crate::runs::find_run(&store, id)) {
        Ok(r) => r,
        Err(f) => return f.report(),
    };
    drop(rt);
    execute(
        &engine,
        RunRequest::new(RunTarget::Retry { run: r.id, from }),
        args,
    )
}
