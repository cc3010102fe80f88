//! Giving capacity back: releasing allocations (by the user, or when they expire), and the periodic cleanup.

use crate::{ResourceManager, State};
use orch_model::AllocationId;
use std::time::{Duration, Instant};

impl ResourceManager {
    /// Gives one allocation back; returns whether it existed.
    pub(crate) fn release(st: &mut State, id: &AllocationId, now: Instant) -> bool {
        let Some(held) = st.allocations.remove(id) else {
            return false;
        };
        for (i, want) in &held.parts {
            let Some(slot) = st.slots.get_mut(*i) else {
                continue;
            };
            slot.refill(now);
            // Rate-limited budgets come back with time, not on release.
            if !slot.rate_limited() {
                for (k, w) in want {
                    if let Some(u) = slot.used.get_mut(k) {
                        *u = u.saturating_sub(*w);
                    }
                }
            }
            slot.sync_record();
        }
        // A user stays a current user of a resource while any allocation of theirs holds it.
        let user = held.alloc.user_id;
        for (i, _) in &held.parts {
            let still = st
                .allocations
                .values()
                .any(|h| h.alloc.user_id == user && h.parts.iter().any(|(s, _)| s == i));
            if !still {
                if let Some(slot) = st.slots.get_mut(*i) {
                    slot.resource.current_users.retain(|u| *u != user);
                }
            }
        }
        true
    }

    /// Releases allocations of `user_id`: the given ones, or all of the
    /// user's (seed: `deallocate_resources`). Returns whether anything was released.
    pub fn deallocate_resources(
        &self,
        user_id: &str,
        allocation_ids: Option<&[AllocationId]>,
    ) -> bool {
        let mut st = self.lock();
        let now = Instant::now();
        // Expired allocations are released first, so that they do not count here.
        let mut changed = Self::tidy(&mut st, now);
        let ids: Vec<AllocationId> = st
            .allocations
            .iter()
            .filter(|(id, h)| {
                h.alloc.user_id == user_id && allocation_ids.is_none_or(|ids| ids.contains(id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            Self::release(&mut st, id, now);
        }
        if !ids.is_empty() {
            Self::serve(&mut st);
            changed = true;
        }
        drop(st);
        if changed {
            self.changed.notify_waiters();
        }
        !ids.is_empty()
    }

    /// Releases expired allocations and serves waiters; returns whether
    /// anything changed (then waiters must be woken).
    pub(crate) fn tidy(st: &mut State, now: Instant) -> bool {
        let released = Self::release_expired_in(st, now);
        Self::serve(st) || released > 0
    }

    /// Releases the allocations whose time is up at `now` (without serving
    /// waiters); returns how many.
    pub(crate) fn release_expired_in(st: &mut State, now: Instant) -> usize {
        let expired: Vec<AllocationId> = st
            .allocations
            .iter()
            .filter(|(_, h)| h.expires.is_some_and(|e| e <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            Self::release(st, id, now);
        }
        expired.len()
    }

    /// Releases every allocation whose `expires_at` has passed and serves
    /// the waiters that now fit; returns how many were released (seed: the
    /// cleanup thread's work, `cleanup_expired_allocations`). Every other
    /// call to the manager does this first, too.
    pub fn release_expired(&self) -> usize {
        let mut st = self.lock();
        let released = Self::release_expired_in(&mut st, Instant::now());
        let served = Self::serve(&mut st);
        drop(st);
        if served || released > 0 {
            self.changed.notify_waiters();
        }
        released
    }

    /// Calls [`ResourceManager::release_expired`] every `every` on the
    /// current tokio runtime, until the manager is dropped (the seed's
    /// cleanup thread, at the engine's `cleanup_interval`). `None` outside a
    /// runtime.
    pub fn spawn_cleanup(
        self: &std::sync::Arc<Self>,
        every: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let weak = std::sync::Arc::downgrade(self);
        let every = every.max(Duration::from_millis(1));
        Some(handle.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(rm) = weak.upgrade() else { break };
                rm.release_expired();
            }
        }))
    }
}
