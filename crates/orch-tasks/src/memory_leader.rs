//! The memory store's named leases (`LeaderStore`): one holder at a time
//! among the callers that share the store in this process.

use crate::memory_store::MemoryStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::Result;
use orch_model::store::{LeaderStore, lease_end};
use std::collections::HashMap;
use std::time::Duration;

/// Leases by name: their holder and end (microseconds since the epoch).
pub(crate) type Leases = HashMap<String, (String, i64)>;

#[async_trait]
impl LeaderStore for MemoryStore {
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut leases = self.leases();
        let t = now.timestamp_micros();
        match leases.get(name) {
            Some((h, until)) if h != holder && *until > t => Ok(false),
            _ => {
                leases.insert(name.to_owned(), (holder.to_owned(), lease_end(now, ttl)));
                Ok(true)
            }
        }
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<bool> {
        let mut leases = self.leases();
        if leases.get(name).is_some_and(|(h, _)| h == holder) {
            leases.remove(name);
            return Ok(true);
        }
        Ok(false)
    }

    async fn leader(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>> {
        let t = now.timestamp_micros();
        Ok(self.leases().get(name).and_then(|(h, until)| {
            (*until > t).then(|| {
                (
                    h.clone(),
                    DateTime::from_timestamp_micros(*until).unwrap_or(now),
                )
            })
        }))
    }
}
