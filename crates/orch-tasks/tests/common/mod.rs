//! Helpers shared by this crate's integration tests. Each test file is its
//! own binary and uses only some of them, hence the `dead_code` allowance.
#![allow(dead_code)]

use orch_model::{Format, Limits, ValidWorkflow, load_workflow};
use orch_tasks::ActionError;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A runtime with two worker threads.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A JSON object as task parameters (anything else gives none).
pub fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// A valid workflow from YAML text; panics with the diagnostics otherwise.
pub fn yaml(text: &str) -> ValidWorkflow {
    load_workflow(text, Format::Yaml, &Limits::default(), None).unwrap_or_else(|d| panic!("{d}"))
}

pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie awaiting its reaper is dead too.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Whether `pid` is gone within a bounded wait (10 s).
pub fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The names of the entries of `dir`.
pub fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Exchanges `work/d` (a directory) and `work/lnk` (a link to the outside)
/// atomically, over and over, until stopped. Neither name is ever missing, so
/// an action never recreates `d` on its own.
pub struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Swapper {
    pub fn start(work: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (a, b) = (work.join("d"), work.join("lnk"));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !flag.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &a,
                    rustix::fs::CWD,
                    &b,
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .expect("exchange");
                swaps += 1;
            }
            swaps
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops swapping; the number of swaps made.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("swapper"))
            .unwrap_or(0)
    }
}

/// A failure under the race must be a refusal or an ordinary I/O error, never a success outside.
pub fn allowed_failure(e: &ActionError) -> bool {
    e.error_type == "PermissionDenied" || e.error_type == "IoError"
}
