//! Waking idle workers: `LISTEN orch_ready` on a connection of its own,
//! with polling as the fallback.

use crate::error::{db_err, store_err};
use crate::{Inner, PostgresStore};
use orch_model::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel the store notifies when tasks become ready; the payload is
/// the schema's name (empty for the connection's default schema), so that
/// stores of other schemas of one database ignore it.
pub const CHANNEL: &str = "orch_ready";

/// The listener of one store: its connection, and the waiters to wake.
#[derive(Default)]
pub(crate) struct Wake {
    notify: tokio::sync::Notify,
    listener: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl PostgresStore {
    /// Starts listening for new work now (the first
    /// [`wait_for_work`](Self::wait_for_work) does it otherwise), so that a
    /// notification sent from now on wakes the next wait.
    ///
    /// # Errors
    /// `Store` when the listening connection cannot be opened.
    pub async fn listen(&self) -> Result<()> {
        let inner = self.inner.clone();
        self.call(async move { ensure_listening(&inner).await })
            .await
    }

    /// Waits until tasks may have become ready (another process created a
    /// run, a completion released dependents, leases were reclaimed, a run
    /// was requeued), at most `timeout`: true when woken by a notification,
    /// false when the timeout passed (then poll: claim anyway). A
    /// notification that came while no one waited wakes the next wait at
    /// once; a wake-up may be spurious (the claim then finds nothing).
    ///
    /// When the listening connection cannot be opened, this sleeps for
    /// `timeout` and returns false: workers fall back to polling.
    ///
    /// # Errors
    /// None today; a `Result` so that a later version may report one.
    pub async fn wait_for_work(&self, timeout: Duration) -> Result<bool> {
        let inner = self.inner.clone();
        self.call(async move {
            let notified = inner.wake.notify.notified();
            if ensure_listening(&inner).await.is_err() {
                tokio::time::sleep(timeout).await;
                return Ok(false);
            }
            Ok(tokio::time::timeout(timeout, notified).await.is_ok())
        })
        .await
    }
}

/// Opens the listening connection unless it is open.
async fn ensure_listening(inner: &Arc<Inner>) -> Result<()> {
    let mut listener = inner.wake.listener.lock().await;
    if listener.as_ref().is_some_and(|c| !c.is_closed()) {
        return Ok(());
    }
    let (client, mut conn) = inner
        .pg
        .connect(NoTls)
        .await
        .map_err(|e| db_err("wait_for_work: connect for LISTEN", &e))?;
    // The task holds the store weakly: dropping the store ends it.
    let weak = Arc::downgrade(inner);
    let tag = inner.tag.clone();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == CHANNEL && n.payload() == tag {
                        let Some(inner) = weak.upgrade() else { break };
                        // Wake every waiter, and keep one wake-up for the
                        // next wait (no wake-up lost between a claim and a wait).
                        inner.wake.notify.notify_waiters();
                        inner.wake.notify.notify_one();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        // The connection is gone: let the waiters poll; the next wait reconnects.
        if let Some(inner) = weak.upgrade() {
            inner.wake.notify.notify_waiters();
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| db_err("wait_for_work: LISTEN", &e))?;
    if client.is_closed() {
        return Err(store_err(
            "wait_for_work",
            "the listening connection closed",
        ));
    }
    *listener = Some(client);
    Ok(())
}
