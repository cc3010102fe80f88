//! Named leases (`LeaderStore`): one holder at a time among the processes
//! that share the database (table `leases`, migration 4).

use crate::PostgresStore;
use crate::error::db;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::Result;
use orch_model::store::{LeaderStore, lease_end};
use std::time::Duration;

/// `now + ttl` as a time (saturating at the far future).
fn end(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(lease_end(now, ttl)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[async_trait]
impl LeaderStore for PostgresStore {
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let inner = self.inner.clone();
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call(async move {
            let client = inner.client("lead").await?;
            // One statement: the row lock of ON CONFLICT makes concurrent
            // callers take turns, and the WHERE lets only a renewal or a
            // take-over of a lapsed lease through.
            let n = client
                .execute(
                    "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
                     WHERE leases.holder = EXCLUDED.holder OR leases.until <= $4",
                    &[&name, &holder, &end(now, ttl), &now],
                )
                .await
                .map_err(db("lead: INSERT INTO leases .. ON CONFLICT"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<bool> {
        let inner = self.inner.clone();
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call(async move {
            let client = inner.client("resign").await?;
            let n = client
                .execute(
                    "DELETE FROM leases WHERE name = $1 AND holder = $2",
                    &[&name, &holder],
                )
                .await
                .map_err(db("resign: DELETE FROM leases"))?;
            Ok(n == 1)
        })
        .await
    }

    async fn leader(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>> {
        let inner = self.inner.clone();
        let name = name.to_owned();
        self.call(async move {
            let client = inner.client("leader").await?;
            let row = client
                .query_opt(
                    "SELECT holder, until FROM leases WHERE name = $1 AND until > $2",
                    &[&name, &now],
                )
                .await
                .map_err(db("leader: SELECT FROM leases"))?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
        .await
    }
}
