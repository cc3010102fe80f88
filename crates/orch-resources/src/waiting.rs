//! Waiting for capacity: the first-come-first-served line, serving it in order when capacity comes back, and a waiter leaving it however its future ends.

use crate::allocate::{AllocateOptions, Allocation};
use crate::{ResourceManager, State, unavailable};
use orch_model::{OrchestrationError, ResourceRequest, Result};
use std::time::{Duration, Instant};

/// How often a waiting request looks again without being woken (rate-limited
/// budgets refill and allocations expire with time, not with a release).
const RECHECK: Duration = Duration::from_millis(100);

/// How a request begins: granted at once, or in the line with its ticket.
pub(crate) enum Start {
    Granted(Allocation),
    Queued(u64),
}

/// A request waiting in the queue for capacity.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) ticket: u64,
    pub(crate) user: String,
    pub(crate) req: ResourceRequest,
    pub(crate) expires_after: Option<Duration>,
}

/// Takes a waiting request out of the queue when its future ends for any
/// reason (granted, timed out, or dropped while waiting): a request that
/// nobody waits for any more must not block those behind it, and an
/// allocation granted to it that nobody collected is given back.
pub(crate) struct TicketGuard<'a> {
    pub(crate) rm: &'a ResourceManager,
    pub(crate) ticket: u64,
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.rm.lock();
        st.queue.retain(|w| w.ticket != self.ticket);
        if let Some(Ok(a)) = st.served.remove(&self.ticket) {
            ResourceManager::release(&mut st, &a.id, Instant::now());
        }
        ResourceManager::serve(&mut st);
        drop(st);
        self.rm.changed.notify_waiters();
    }
}

impl ResourceManager {
    /// How many requests are waiting for capacity now.
    pub fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// Grants waiting requests in arrival order while the first one fits
    /// (a request never passes one that came before it). The outcome waits
    /// in `served` for its waiter. Returns whether any waiter was served.
    pub(crate) fn serve(st: &mut State) -> bool {
        let mut any = false;
        while let Some(w) = st.queue.pop_front() {
            let outcome = match Self::plan(st, &w.req, &w.user) {
                Err(e) => Err(e),
                Ok(Ok(parts)) => Self::grant(st, &w.user, parts, w.expires_after),
                Ok(Err(_)) => {
                    st.queue.push_front(w);
                    break;
                }
            };
            st.served.insert(w.ticket, outcome);
            any = true;
        }
        any
    }

    /// Allocates a whole request or nothing, waiting (`opts.wait`) and
    /// expiring (`opts.expires_after`) as asked.
    ///
    /// A request is granted at once when it fits and nobody waits ahead of
    /// it. Otherwise, without `wait`, it is refused, saying why; with `wait`
    /// it joins the queue, is granted as soon as it is first in line and
    /// fits, and fails when `wait` passes. A waiting request whose future is
    /// dropped leaves the queue (and gives back what it was granted but
    /// never collected).
    ///
    /// # Errors
    /// As [`ResourceManager::allocate_resources`]; `InvalidParameters` for a
    /// zero `expires_after`.
    pub async fn allocate_resources_with(
        &self,
        user_id: &str,
        req: &ResourceRequest,
        opts: AllocateOptions,
    ) -> Result<Allocation> {
        if opts.expires_after == Some(Duration::ZERO) {
            return Err(OrchestrationError::invalid_parameters(
                "expires_after must be longer than 0 (leave it out for an allocation that never expires)",
            ));
        }
        let start = self.with_state(|st| -> Result<Start> {
            let plan = Self::plan(st, req, user_id)?;
            if st.queue.is_empty() {
                match plan {
                    Ok(parts) => {
                        return Self::grant(st, user_id, parts, opts.expires_after)
                            .map(Start::Granted);
                    }
                    Err(why) if opts.wait.is_none() => {
                        return Err(unavailable(format!(
                            "not enough free capacity for `{user_id}` now (no timeout given): {why}"
                        )));
                    }
                    Err(_) => {}
                }
            } else if opts.wait.is_none() {
                let n = st.queue.len();
                return Err(unavailable(format!(
                    "`{user_id}` was not granted now: {n} earlier request{} {} waiting for capacity and {} served first (give a timeout to wait in line)",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "is" } else { "are" },
                )));
            }
            let t = st.next_ticket;
            st.next_ticket += 1;
            st.queue.push_back(Waiter {
                ticket: t,
                user: user_id.to_owned(),
                req: req.clone(),
                expires_after: opts.expires_after,
            });
            Ok(Start::Queued(t))
        })?;
        let ticket = match start {
            Start::Granted(a) => return Ok(a),
            Start::Queued(t) => t,
        };
        let guard = TicketGuard { rm: self, ticket };
        let now = tokio::time::Instant::now();
        let wait = opts.wait.unwrap_or_default();
        // A wait too long to add to a clock is as good as forever: a year.
        let deadline = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.with_state(|st| st.served.remove(&ticket)) {
                drop(guard);
                return outcome;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until((now + RECHECK).min(deadline)) => {}
            }
        }
        // The guard takes the request out of the line, so that those behind
        // it are served; an outcome that arrived at the last moment is kept.
        let last = {
            let mut st = self.lock();
            st.queue.retain(|w| w.ticket != ticket);
            st.served.remove(&ticket)
        };
        drop(guard);
        match last {
            Some(outcome) => outcome,
            None => Err(unavailable(format!(
                "not enough free capacity for `{user_id}` within {}",
                orch_model::duration::format_duration(opts.wait.unwrap_or_default())
            ))),
        }
    }
}
