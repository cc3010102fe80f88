//! A step's output while it runs: `GET /runs/{id}/steps/{step}/logs` of a
//! running step (its output so far, from the store's chunks), and
//! `GET /runs/{id}/steps/{step}/logs/stream`, its chunks as Server-Sent
//! Events as they are stored, with a cursor (`Last-Event-ID`), until the
//! step ends.

use crate::AppState;
use crate::error::ApiResult;
use crate::runs::run_state;
use crate::runs::{RawQuery, find_step, num, query};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use orch_engine::RunState;
use orch_model::store::{OutputChunk, OutputSoFar, TaskRecord};
use orch_model::{OrchestrationError, RunId, Store};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks waiting for a slow client, at most (each up to 64 KiB); the
/// reader of the store waits for it beyond that.
const BUFFER: usize = 16;

/// Most chunks read from the store at once.
const READ: usize = 64;

/// Chunks after `after`; none from a store that does not keep output.
async fn read_after(
    store: &Arc<dyn Store>,
    run: RunId,
    task: u32,
    after: u64,
) -> Result<Vec<OutputChunk>, OrchestrationError> {
    match store.output(run, task, after, READ).await {
        Err(OrchestrationError::Unsupported { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// The answer of `GET .../logs` for a step that has not ended: the
/// output of its latest attempt so far, and `next`, the cursor after it
/// (for `.../logs/stream?after=NEXT`).
pub(crate) async fn running_logs(
    store: &Arc<dyn Store>,
    run: RunId,
    t: &TaskRecord,
) -> ApiResult<Value> {
    let mut out = OutputSoFar::default();
    loop {
        let chunks = read_after(store, run, t.index, out.next).await?;
        let more = chunks.len() == READ;
        out.extend(&chunks);
        if !more {
            break;
        }
    }
    let text = |b: &[u8]| (!out.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
    Ok(json!({
        "run_id": run,
        "step": t.name,
        "status": t.status,
        "ended": false,
        "attempt": (!out.is_empty()).then_some(out.attempt),
        "stdout": text(&out.stdout),
        "stderr": text(&out.stderr),
        "stdout_truncated": out.stdout_truncated,
        "stderr_truncated": out.stderr_truncated,
        "exit_code": null,
        "success": null,
        "error_type": null,
        "error_message": null,
        "next": out.next,
    }))
}

/// `GET /runs/{id}/steps/{step}/logs/stream`: the step's output chunks
/// after the cursor (`?after=N`, or the `Last-Event-ID` of a reconnecting
/// client), each as an SSE event whose `id` is its number, `event` its
/// stream (`stdout` or `stderr`) and `data` `{seq, attempt, stream, text,
/// truncated, at}`; when the step has ended (or its run stopped without
/// it), one `end` event with the step's state and result, and the stream
/// closes.
pub(crate) async fn stream(
    State(st): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
    q: RawQuery,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let q = query(q, &["after"])?;
    let mut after = num(&q, "after", 0, u64::MAX)?;
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        after = after.max(last);
    }
    let (r, t) = find_step(&st, &id, &step).await?;
    let (tx, rx) = mpsc::channel::<Event>(BUFFER);
    tokio::spawn(follow(st, r.id, t.index, after, tx));
    let events =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Sends step `task`'s chunks after `after` until the step ends, its run
/// stops without it, the client goes away or the server stops.
async fn follow(st: AppState, run: RunId, task: u32, mut after: u64, tx: mpsc::Sender<Event>) {
    let store = st.engine().store().clone();
    let mut stopping = st.stopping();
    // Set once the run was seen ended with the step not: the step's record
    // (read before the run's) is read once more, since the step may have
    // ended in between.
    let mut last_look = false;
    loop {
        let ended = st.ended().notified();
        // The step's state is read before its chunks: everything it printed
        // before it ended is sent before `end`.
        let t = match store.task_records(run, &[task]).await {
            Ok(mut v) if !v.is_empty() => v.swap_remove(0),
            Ok(_) => {
                let _ = tx
                    .send(error_event(format!("run {run} is no longer in the store")))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(error_event(e.to_string())).await;
                return;
            }
        };
        loop {
            let chunks = match read_after(&store, run, task, after).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(error_event(e.to_string())).await;
                    return;
                }
            };
            let full = chunks.len() == READ;
            for c in chunks {
                after = c.seq;
                if tx.send(chunk_event(&c)).await.is_err() {
                    return;
                }
            }
            if !full {
                break;
            }
        }
        let run_state = if t.status.is_terminal() {
            None
        } else {
            match store.get_run_brief(run).await {
                Ok(Some(r)) if st.is_driven(run) || run_state(&r) == RunState::Running => {
                    Some(RunState::Running)
                }
                Ok(Some(r)) => Some(run_state(&r)),
                Ok(None) => {
                    let _ = tx
                        .send(error_event(format!("run {run} is no longer in the store")))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(error_event(e.to_string())).await;
                    return;
                }
            }
        };
        if run_state.is_some() && run_state != Some(RunState::Running) && !last_look {
            last_look = true;
            continue;
        }
        if run_state != Some(RunState::Running) {
            let end = Event::default()
                .event("end")
                .json_data(end_json(run, &t, run_state))
                .unwrap_or_else(|err| error_event(err.to_string()));
            let _ = tx.send(end).await;
            return;
        }
        tokio::select! {
            () = ended => {}
            () = tokio::time::sleep(st.poll()) => {}
            () = tx.closed() => return,
            _ = stopping.changed() => {
                let _ = tx.send(error_event("the server is stopping".into())).await;
                return;
            }
        }
    }
}

fn chunk_event(c: &OutputChunk) -> Event {
    Event::default()
        .id(c.seq.to_string())
        .event(c.stream.as_str())
        .json_data(json!({
            "seq": c.seq,
            "attempt": c.attempt,
            "stream": c.stream,
            "text": String::from_utf8_lossy(&c.data),
            "truncated": c.truncated,
            "at": c.at,
        }))
        .unwrap_or_else(|err| error_event(err.to_string()))
}

/// The `end` event's data: the step's state and result (without its
/// output, which the events before it carried); `run_state` when the step
/// did not end but its run stopped.
fn end_json(run: RunId, t: &TaskRecord, run_state: Option<RunState>) -> Value {
    let data = t.result.as_ref().map(|x| &x.data);
    json!({
        "run_id": run,
        "step": t.name,
        "status": t.status,
        "ended": t.status.is_terminal(),
        "run_state": run_state.map(|s| s.as_str()),
        "attempt": t.attempt,
        "exit_code": data.and_then(|d| d.get("exit_code")),
        "success": t.result.as_ref().map(|x| x.success),
        "error_type": t.result.as_ref().and_then(|x| x.error_type.clone()),
        "error_message": t.result.as_ref().and_then(|x| x.error_message.clone()),
        "note": t.note,
    })
}

fn error_event(message: String) -> Event {
    Event::default()
        .event("error")
        .data(json!({ "error": message }).to_string())
}
