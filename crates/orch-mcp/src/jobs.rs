//! The runs and tasks this server started: each goes on as a task of the
//! runtime whatever its caller does, so that a tool call never has to wait
//! for the end of long work; `get_run` reads them, `cancel_run` stops them.

use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// How many ended jobs are remembered (the oldest are forgotten first; the
/// store still holds the runs).
const KEEP_ENDED: usize = 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Live counts of a running workflow's steps, fed by its events.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Progress {
    pub(crate) total: usize,
    pub(crate) completed: usize,
    pub(crate) failed: usize,
    pub(crate) skipped: usize,
    pub(crate) cancelled: usize,
    pub(crate) running: usize,
}

/// One run or task.
pub(crate) struct Job {
    /// What a tool returns while it runs (progress is added to it).
    running: Value,
    /// Live step counts (runs only).
    pub(crate) progress: Mutex<Progress>,
    /// `None` while it runs; then what a tool returns.
    done: watch::Sender<Option<Value>>,
    /// Stops it.
    cancel: Box<dyn Fn() + Send + Sync>,
    started: std::time::Instant,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job that runs now; `running` is its description while it runs.
    pub(crate) fn new(running: Value, cancel: Box<dyn Fn() + Send + Sync>) -> Arc<Self> {
        let (done, _) = watch::channel(None);
        Arc::new(Self {
            running,
            progress: Mutex::new(Progress::default()),
            done,
            cancel,
            started: std::time::Instant::now(),
        })
    }

    /// It ended with this result.
    pub(crate) fn finish(&self, data: Value) {
        self.done.send_replace(Some(data));
    }

    /// Whether it ended.
    pub(crate) fn ended(&self) -> bool {
        self.done.borrow().is_some()
    }

    /// Asks it to stop.
    pub(crate) fn cancel(&self) {
        (self.cancel)();
    }

    /// Its result when it ended, else its state now (`status: running`).
    pub(crate) fn snapshot(&self) -> Value {
        if let Some(v) = self.done.borrow().as_ref() {
            return v.clone();
        }
        let mut v = self.running.clone();
        if let Value::Object(m) = &mut v {
            m.insert("status".into(), json!("running"));
            m.insert(
                "elapsed_seconds".into(),
                json!(self.started.elapsed().as_secs_f64()),
            );
            let p = *lock(&self.progress);
            if p.total > 0 {
                m.insert("steps_total".into(), json!(p.total));
                m.insert("steps_completed".into(), json!(p.completed));
                m.insert("steps_failed".into(), json!(p.failed));
                m.insert("steps_skipped".into(), json!(p.skipped));
                m.insert("steps_running".into(), json!(p.running));
            }
        }
        v
    }

    /// Waits up to `wait` for it to end; then [`Job::snapshot`].
    pub(crate) async fn wait(&self, wait: Duration) -> Value {
        let mut rx = self.done.subscribe();
        // An error means the sender is gone, which cannot happen while
        // `self` lives; the snapshot says what is known either way.
        let _ = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        self.snapshot()
    }
}

/// The jobs, by id (a run's id, or a task's).
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    state: Mutex<JobsState>,
}

#[derive(Debug, Default)]
struct JobsState {
    by_id: HashMap<String, Arc<Job>>,
    order: VecDeque<String>,
}

impl Jobs {
    /// Remembers a job; forgets the oldest ended ones beyond [`KEEP_ENDED`].
    pub(crate) fn insert(&self, id: String, job: Arc<Job>) {
        let mut st = lock(&self.state);
        st.by_id.insert(id.clone(), job);
        st.order.push_back(id);
        let ended = st.by_id.values().filter(|j| j.ended()).count();
        let mut extra = ended.saturating_sub(KEEP_ENDED);
        let mut i = 0;
        while extra > 0 && i < st.order.len() {
            let ended_here = st
                .order
                .get(i)
                .and_then(|id| st.by_id.get(id))
                .is_some_and(|j| j.ended());
            if ended_here {
                if let Some(id) = st.order.remove(i) {
                    st.by_id.remove(&id);
                }
                extra -= 1;
            } else {
                i += 1;
            }
        }
    }

    /// The job of that id.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.state).by_id.get(id).cloned()
    }
}

/// The `metadata` of a result: which tool, when, and `extra`.
pub(crate) fn metadata(tool: &str, extra: Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("tool".into(), json!(tool));
    m.insert("timestamp".into(), json!(chrono::Utc::now()));
    m.extend(extra);
    Value::Object(m)
}
