//! Leadership: one holder at a time of a named lease kept in the store, so
//! that of many processes sharing a store exactly one does a periodic job
//! (reclaiming lapsed claims, firing a schedule's tick).
//!
//! A lease is a row `(name, holder, until)`. [`LeaderStore::lead`] is one
//! atomic compare-and-set: it takes the lease when nobody holds it, when
//! its holder's time ran out (`until <= now`), or when the caller already
//! holds it (a renewal), and sets `until = now + ttl`; otherwise it changes
//! nothing and says no. A holder renews before `ttl` ends to keep it; one
//! that stops renewing (a crashed process) loses it at `until`, and the
//! next caller takes over. Times are the callers' clocks: processes whose
//! clocks disagree by more than a small part of `ttl` may briefly both
//! believe they lead, so a job run under a lease must still be safe to run
//! twice (reclaiming is; a schedule records each tick once).

use crate::error::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The optional store concern of named leases ([`crate::store::Store::leaders`]).
#[async_trait]
pub trait LeaderStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`;
    /// true when `holder` holds it afterwards, false (and nothing changed)
    /// when someone else holds it and their time has not run out.
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Gives the lease up if `holder` holds it (the next caller takes it at
    /// once); true when it was held by `holder`.
    async fn resign(&self, name: &str, holder: &str) -> Result<bool>;
    /// Who holds the lease `name` and until when, if anyone's time has not
    /// run out at `now`.
    async fn leader(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>>;
}

/// A lease's end as microseconds since the epoch, as the stores keep it
/// (`now + ttl`, saturating).
pub fn lease_end(now: DateTime<Utc>, ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    now.timestamp_micros().saturating_add(ttl)
}
