//! Server-Sent Events of a run's events, read from the store's event log with a cursor (so a run of another process or of the workers streams as well), until the run ends.
//!
//! A running step's output streams apart (`output.rs`:
//! `GET /runs/{id}/steps/{step}/logs/stream`).

use crate::AppState;
use crate::error::ApiResult;
use crate::params::find_run;
use crate::runs::{RawQuery, num, query, run_json, run_state};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use orch_engine::RunState;
use orch_model::RunId;
use serde_json::json;
use std::convert::Infallible;
use tokio::sync::mpsc;

/// Events waiting for a slow client, at most; the reader of the store waits
/// for it beyond that (memory stays bounded per stream).
const BUFFER: usize = 256;

/// `GET /runs/{id}/events/stream`: every stored event of the run after the
/// cursor (`?after=N`, or the `Last-Event-ID` header of a reconnecting
/// client), each as an SSE event whose `id` is its sequence number, `event`
/// its kind and `data` the stored event as JSON; then, when the run has
/// ended, one `end` event with the run, and the stream closes.
pub(crate) async fn run_events(
    State(st): State<AppState>,
    Path(id): Path<String>,
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
    let r = find_run(st.engine().store(), &id).await?;
    let (tx, rx) = mpsc::channel::<Event>(BUFFER);
    tokio::spawn(follow(st, r.id, after, tx));
    let events =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Sends run `id`'s events after `after` until the run ends, the client
/// goes away (a send fails) or the server stops.
async fn follow(st: AppState, id: RunId, mut after: u64, tx: mpsc::Sender<Event>) {
    let store = st.engine().store().clone();
    let mut stopping = st.stopping();
    loop {
        let ended = st.ended().notified();
        // The run's state is read before its events: every event stored
        // before the run ended is then sent before `end`.
        let record = match store.get_run_brief(id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let _ = tx
                    .send(error_event(format!("run {id} is no longer in the store")))
                    .await;
                return;
            }
            Err(e) => {
                let _ = tx.send(error_event(e.to_string())).await;
                return;
            }
        };
        match store.events(id, after).await {
            Ok(evs) => {
                for e in evs {
                    after = e.seq;
                    let ev = Event::default()
                        .id(e.seq.to_string())
                        .event(e.kind.clone())
                        .json_data(&e)
                        .unwrap_or_else(|err| error_event(err.to_string()));
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(error_event(e.to_string())).await;
                return;
            }
        }
        // A run driven here is going on until its task ends (the store may
        // show it without its owner for a moment after it is recorded).
        if !st.is_driven(id) && run_state(&record) != RunState::Running {
            let end = Event::default()
                .event("end")
                .json_data(run_json(&record))
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

fn error_event(message: String) -> Event {
    Event::default()
        .event("error")
        .data(json!({ "error": message }).to_string())
}
