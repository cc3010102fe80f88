//! Helpers of the tests that run `orch worker` processes on a shared
//! SQLite file (worker.rs, worker_steps.rs; each uses all of them).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Waits up to 60 s for `cond`, failing the test with `what` after that.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A worker process (killed when the test ends).
pub struct WorkerProc(pub Child);

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The store URL of the SQLite file `db`.
pub fn store(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}
