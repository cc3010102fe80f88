//! `tasks_started` events: a claimed step's start is told when its attempt
//! starts (or, for a fan-out over a list known at run time, when its items'
//! run is made), not when it is claimed. A step its worker skips at release
//! (its trigger rule, `run_if` or `when` said no), one whose references do
//! not resolve, one served from the cache and the step that gathers a
//! literal fan-out's items make no attempt: their followers see them end
//! without a start, as in a run one process drives.
//!
//! The starts that come together (the claims of one batch decide at about
//! the same time) are appended together, one event per run; a claim waits
//! until its event is appended, so that its `tasks_finished` event never
//! comes before it.

use orch_model::store::StoredEvent;
use orch_model::{Claim, RunId, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Most starts in one batch.
const MAX_BATCH: usize = 512;

/// A start waiting for its batch: the run, the step, its attempt, and who
/// waits for it to be appended.
type Start = (RunId, u32, u32, oneshot::Sender<()>);

/// Where a worker's claims tell their starts.
#[derive(Debug)]
pub(crate) struct Starts {
    tx: mpsc::UnboundedSender<Start>,
    /// Taken by the first start, which spawns the task that appends them
    /// (there is a runtime then).
    rx: Mutex<Option<mpsc::UnboundedReceiver<Start>>>,
    store: Arc<dyn Store>,
    worker: String,
}

impl Starts {
    pub(crate) fn new(store: Arc<dyn Store>, worker: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            store,
            worker,
        }
    }

    /// Tells that `claim`'s attempt starts; returns once its event is
    /// appended (or could not be: it is progress only, the completion is
    /// what counts).
    pub(crate) async fn started(&self, claim: &Claim) {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(rx) = rx {
            // It ends when the worker (the sender) goes away.
            tokio::spawn(append(self.store.clone(), self.worker.clone(), rx));
        }
        let (reply, appended) = oneshot::channel();
        if self
            .tx
            .send((claim.run, claim.index, claim.attempt, reply))
            .is_ok()
        {
            let _ = appended.await;
        }
    }
}

/// Appends what arrives on `rx` in batches until every sender is gone.
async fn append(store: Arc<dyn Store>, worker: String, mut rx: mpsc::UnboundedReceiver<Start>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut by_run: BTreeMap<RunId, Vec<Value>> = BTreeMap::new();
        for (run, index, attempt, _) in &batch {
            by_run
                .entry(*run)
                .or_default()
                .push(json!([index, attempt]));
        }
        let now = chrono::Utc::now();
        for (run, list) in by_run {
            let task = (list.len() == 1)
                .then(|| list[0].get(0).and_then(Value::as_u64))
                .flatten()
                .and_then(|i| u32::try_from(i).ok());
            let e = StoredEvent {
                seq: 0,
                at: now,
                kind: orch_model::store::TASKS_STARTED.into(),
                task,
                data: json!({"tasks": list, "worker": worker}),
            };
            let _ = store.append_events(run, vec![e]).await;
        }
        for (_, _, _, reply) in batch.drain(..) {
            let _ = reply.send(());
        }
    }
}
