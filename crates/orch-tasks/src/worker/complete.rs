//! Completions in batches: the outcomes that arrive together are completed
//! in one `complete_many` (one transaction on stores that can), with the
//! `tasks_finished` event of each run in it.

use super::Shared;
use chrono::Utc;
use orch_model::store::StoredEvent;
use orch_model::{Claim, OrchestrationError, RunId, TaskOutcome, TaskStatus};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most completions in one batch.
const MAX_BATCH: usize = 512;

/// How often a batch is tried again after a retryable store failure.
const RETRIES: usize = 4;

/// A claim's outcome, waiting for its batch.
pub(crate) struct Completion {
    pub(crate) claim: Claim,
    pub(crate) outcome: TaskOutcome,
    /// The store's answer for this claim.
    pub(crate) reply: oneshot::Sender<Result<(), OrchestrationError>>,
}

/// The queue claims put their outcomes in.
pub(crate) type Queue = mpsc::UnboundedSender<Completion>;

/// Completes what arrives on `rx` in batches until every sender is gone.
pub(crate) async fn batches(sh: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Completion>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        complete(&sh, std::mem::take(&mut batch)).await;
    }
}

/// One `tasks_finished` event per run of `done`, naming the worker.
fn finished_events(worker: &str, done: &[(&Claim, TaskStatus)]) -> Vec<(RunId, StoredEvent)> {
    let mut by_run: BTreeMap<RunId, Vec<Value>> = BTreeMap::new();
    for (c, status) in done {
        by_run
            .entry(c.run)
            .or_default()
            .push(json!([c.index, status.as_str(), c.attempt]));
    }
    let now = Utc::now();
    by_run
        .into_iter()
        .map(|(run, list)| {
            let task = (list.len() == 1)
                .then(|| list[0].get(0).and_then(Value::as_u64))
                .flatten()
                .and_then(|i| u32::try_from(i).ok());
            let e = StoredEvent {
                seq: 0,
                at: now,
                kind: "tasks_finished".into(),
                task,
                data: json!({"tasks": list, "worker": worker}),
            };
            (run, e)
        })
        .collect()
}

async fn complete(sh: &Shared, batch: Vec<Completion>) {
    let statuses: Vec<TaskStatus> = batch.iter().map(|c| c.outcome.status()).collect();
    let events = finished_events(
        &sh.opts.id,
        &batch
            .iter()
            .zip(&statuses)
            .map(|(c, s)| (&c.claim, *s))
            .collect::<Vec<_>>(),
    );
    let mut replies = Vec::with_capacity(batch.len());
    let mut done = Vec::with_capacity(batch.len());
    for c in batch {
        replies.push(c.reply);
        done.push((c.claim, c.outcome));
    }
    let claims: Vec<Claim> = done.iter().map(|(c, _)| c.clone()).collect();
    let mut answer = sh
        .store
        .complete_many(done.clone(), events.clone(), Utc::now())
        .await;
    // A retryable failure (a deadlock or serialization failure the store
    // rolled back, a connection lost) is tried again: the fencing makes a
    // replay of a batch that did commit answer "no longer current", never
    // complete twice.
    let mut wait = std::time::Duration::from_millis(5);
    for _ in 0..RETRIES {
        match &answer {
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(wait).await;
                wait *= 4;
                answer = sh
                    .store
                    .complete_many(done.clone(), events.clone(), Utc::now())
                    .await;
            }
            _ => break,
        }
    }
    match answer {
        Ok(answers) => {
            if answers.iter().any(Result::is_err) {
                // Some went stale: the events were not appended; these
                // describe the ones that completed.
                let ok: Vec<(&Claim, TaskStatus)> = claims
                    .iter()
                    .zip(&statuses)
                    .zip(&answers)
                    .filter(|(_, a)| a.is_ok())
                    .map(|((c, s), _)| (c, *s))
                    .collect();
                for (run, e) in finished_events(&sh.opts.id, &ok) {
                    // Progress only: the completion is what counts.
                    let _ = sh.store.append_events(run, vec![e]).await;
                }
            }
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
