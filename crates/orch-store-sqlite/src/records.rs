//! Records of the layers above (`RecordStore`: sessions, projects) and the
//! result cache (`CacheStore`).

use crate::SqliteStore;
use crate::error::{sql_err, store_err};
use crate::rows::{micros, time};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::Result;
use orch_model::store::{CacheEntry, CacheStore, Record, RecordKind, RecordStore};
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl RecordStore for SqliteStore {
    async fn put_record(&self, record: Record) -> Result<()> {
        self.call(move |conn| {
            let data = serde_json::to_string(&record.data).map_err(|e| store_err("record", e))?;
            conn.execute(
                "INSERT OR REPLACE INTO records (kind, key, data, updated_at, seq)
                 VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM records))",
                params![
                    record.kind.as_str(),
                    record.key,
                    data,
                    micros(record.updated_at)
                ],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .await
    }

    async fn create_record(&self, record: Record) -> Result<bool> {
        self.call(move |conn| {
            let data = serde_json::to_string(&record.data).map_err(|e| store_err("record", e))?;
            conn.execute(
                "INSERT OR IGNORE INTO records (kind, key, data, updated_at, seq)
                 VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM records))",
                params![
                    record.kind.as_str(),
                    record.key,
                    data,
                    micros(record.updated_at)
                ],
            )
            .map(|n| n > 0)
            .map_err(sql_err)
        })
        .await
    }

    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM records WHERE kind = ?1 AND key = ?2",
                params![kind.as_str(), key],
            )
            .map(|n| n > 0)
            .map_err(sql_err)
        })
        .await
    }

    async fn remove_record_before(
        &self,
        kind: RecordKind,
        key: &str,
        before: DateTime<Utc>,
    ) -> Result<bool> {
        let key = key.to_owned();
        self.call(move |conn| {
            conn.execute(
                "DELETE FROM records WHERE kind = ?1 AND key = ?2 AND updated_at < ?3",
                params![kind.as_str(), key, micros(before)],
            )
            .map(|n| n > 0)
            .map_err(sql_err)
        })
        .await
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>> {
        self.call(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT key, data, updated_at FROM records WHERE kind = ?1 ORDER BY seq",
                )
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![kind.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (key, data, at) = row.map_err(sql_err)?;
                // A record that does not parse is skipped and reported, not fatal.
                match serde_json::from_str(&data) {
                    Ok(data) => out.push(Record {
                        kind,
                        key,
                        data,
                        updated_at: time(at),
                    }),
                    // Read-only: skipped, and not written down.
                    Err(_) if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true) => {}
                    Err(e) => conn
                        .execute(
                            "INSERT INTO quarantine (tbl, key, reason, at)
                             SELECT 'records', ?1, ?2, ?3 WHERE NOT EXISTS
                                 (SELECT 1 FROM quarantine WHERE tbl = 'records' AND key = ?1)",
                            params![
                                format!("{}:{key}", kind.as_str()),
                                format!("bad record JSON: {e}"),
                                micros(Utc::now())
                            ],
                        )
                        .map(|_| ())
                        .map_err(sql_err)?,
                }
            }
            Ok(out)
        })
        .await
    }

    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<Record>> {
        let key = key.to_owned();
        self.call(move |conn| {
            let row: Option<(String, i64)> = conn
                .prepare_cached("SELECT data, updated_at FROM records WHERE kind = ?1 AND key = ?2")
                .and_then(|mut s| {
                    s.query_row(params![kind.as_str(), key], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(sql_err)?;
            let Some((data, at)) = row else {
                return Ok(None);
            };
            let data = serde_json::from_str(&data)
                .map_err(|e| store_err(&format!("record {}:{key}", kind.as_str()), e))?;
            Ok(Some(Record {
                kind,
                key,
                data,
                updated_at: time(at),
            }))
        })
        .await
    }
}

#[async_trait]
impl CacheStore for SqliteStore {
    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let key = key.to_owned();
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "SELECT value, created_at FROM cache WHERE key = ?1",
                    params![key],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()
                .map_err(sql_err)?;
            Ok(row.and_then(|(v, at)| {
                // An unreadable entry is a miss; it is overwritten by the next put.
                serde_json::from_str(&v).ok().map(|value| CacheEntry {
                    key,
                    value,
                    created_at: time(at),
                })
            }))
        })
        .await
    }

    async fn cache_put(&self, entry: CacheEntry) -> Result<()> {
        self.call(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO cache (key, value, created_at) VALUES (?1, ?2, ?3)",
                params![
                    entry.key,
                    serde_json::to_string(&entry.value).map_err(|e| store_err("cache value", e))?,
                    micros(entry.created_at)
                ],
            )
            .map_err(sql_err)?;
            Ok(())
        })
        .await
    }

    async fn cache_list(&self) -> Result<Vec<CacheEntry>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare("SELECT key, value, created_at FROM cache ORDER BY key")
                .map_err(sql_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_err)?;
            Ok(rows
                .into_iter()
                .filter_map(|(key, v, at)| {
                    serde_json::from_str(&v).ok().map(|value| CacheEntry {
                        key,
                        value,
                        created_at: time(at),
                    })
                })
                .collect())
        })
        .await
    }

    async fn cache_clear(&self) -> Result<usize> {
        self.call(|conn| conn.execute("DELETE FROM cache", []).map_err(sql_err))
            .await
    }
}
