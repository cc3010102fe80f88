//! Named leases (`LeaderStore`): one holder at a time among the processes
//! that share the database (table `leases`, schema version 11).

use crate::SqliteStore;
use crate::error::sql_err;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::Result;
use orch_model::store::{LeaderStore, lease_end};
use rusqlite::{OptionalExtension, params};
use std::time::Duration;

#[async_trait]
impl LeaderStore for SqliteStore {
    async fn lead(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call_small(move |conn| {
            // One statement: taken when free, run out or already the caller's
            // (the write transaction makes it atomic among processes).
            let n = conn
                .prepare_cached(
                    "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                     WHERE leases.holder = excluded.holder OR leases.until <= ?4",
                )
                .and_then(|mut s| {
                    s.execute(params![name, holder, lease_end(now, ttl), now.timestamp_micros()])
                })
                .map_err(sql_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call_small(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                    params![name, holder],
                )
                .map_err(sql_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn leader(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>> {
        let name = name.to_owned();
        self.call_keeping(
            move |conn| {
                let row: Option<(String, i64)> = conn
                    .query_row(
                        "SELECT holder, until FROM leases WHERE name = ?1 AND until > ?2",
                        params![name, now.timestamp_micros()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(sql_err)?;
                Ok(
                    row.map(|(h, until)| {
                        (h, DateTime::from_timestamp_micros(until).unwrap_or(now))
                    }),
                )
            },
            true,
        )
        .await
    }
}
