//! Records of the layers above (`RecordStore`: sessions, projects) and the
//! result cache (`CacheStore`).

use crate::PostgresStore;
use crate::error::{db, store_err};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orch_model::Result;
use orch_model::store::{CacheEntry, CacheStore, Record, RecordKind, RecordStore};

#[async_trait]
impl RecordStore for PostgresStore {
    async fn put_record(&self, record: Record) -> Result<()> {
        let inner = self.inner.clone();
        self.call(async move {
            let data = serde_json::to_string(&record.data)
                .map_err(|e| store_err("put_record: encode", e))?;
            let client = inner.client("put_record").await?;
            client
                .execute(
                    "INSERT INTO records (kind, key, data, updated_at, seq)
                     VALUES ($1, $2, $3, $4, nextval('records_seq'))
                     ON CONFLICT (kind, key) DO UPDATE
                     SET data = EXCLUDED.data, updated_at = EXCLUDED.updated_at, seq = EXCLUDED.seq",
                    &[&record.kind.as_str(), &record.key, &data, &record.updated_at],
                )
                .await
                .map_err(db("put_record: INSERT INTO records .. ON CONFLICT"))?;
            Ok(())
        })
        .await
    }

    async fn create_record(&self, record: Record) -> Result<bool> {
        let inner = self.inner.clone();
        self.call(async move {
            let data = serde_json::to_string(&record.data)
                .map_err(|e| store_err("create_record: encode", e))?;
            let client = inner.client("create_record").await?;
            let n = client
                .execute(
                    "INSERT INTO records (kind, key, data, updated_at, seq)
                     VALUES ($1, $2, $3, $4, nextval('records_seq'))
                     ON CONFLICT (kind, key) DO NOTHING",
                    &[
                        &record.kind.as_str(),
                        &record.key,
                        &data,
                        &record.updated_at,
                    ],
                )
                .await
                .map_err(db(
                    "create_record: INSERT INTO records .. ON CONFLICT DO NOTHING",
                ))?;
            Ok(n > 0)
        })
        .await
    }

    async fn remove_record(&self, kind: RecordKind, key: &str) -> Result<bool> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        self.call(async move {
            let client = inner.client("remove_record").await?;
            let n = client
                .execute(
                    "DELETE FROM records WHERE kind = $1 AND key = $2",
                    &[&kind.as_str(), &key],
                )
                .await
                .map_err(db("remove_record: DELETE FROM records"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn remove_record_before(
        &self,
        kind: RecordKind,
        key: &str,
        before: DateTime<Utc>,
    ) -> Result<bool> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        self.call(async move {
            let client = inner.client("remove_record_before").await?;
            let n = client
                .execute(
                    "DELETE FROM records WHERE kind = $1 AND key = $2 AND updated_at < $3",
                    &[&kind.as_str(), &key, &before],
                )
                .await
                .map_err(db("remove_record_before: DELETE FROM records"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn records(&self, kind: RecordKind) -> Result<Vec<Record>> {
        let inner = self.inner.clone();
        self.call(async move {
            let client = inner.client("records").await?;
            let rows = client
                .query(
                    "SELECT key, data, updated_at FROM records WHERE kind = $1 ORDER BY seq",
                    &[&kind.as_str()],
                )
                .await
                .map_err(db("records: SELECT FROM records"))?;
            // A record that does not parse is skipped, not fatal.
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let data: String = r.get(1);
                    serde_json::from_str(&data).ok().map(|data| Record {
                        kind,
                        key: r.get(0),
                        data,
                        updated_at: r.get(2),
                    })
                })
                .collect())
        })
        .await
    }

    async fn record(&self, kind: RecordKind, key: &str) -> Result<Option<Record>> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        self.call(async move {
            let client = inner.client("record").await?;
            let row = client
                .query_opt(
                    "SELECT data, updated_at FROM records WHERE kind = $1 AND key = $2",
                    &[&kind.as_str(), &key],
                )
                .await
                .map_err(db("record: SELECT FROM records WHERE kind AND key"))?;
            let Some(row) = row else { return Ok(None) };
            let data: String = row.get(0);
            let data = serde_json::from_str(&data)
                .map_err(|e| store_err(&format!("record {}:{key}", kind.as_str()), e))?;
            Ok(Some(Record {
                kind,
                key,
                data,
                updated_at: row.get(1),
            }))
        })
        .await
    }
}

#[async_trait]
impl CacheStore for PostgresStore {
    async fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        self.call(async move {
            let client = inner.client("cache_get").await?;
            let row = client
                .query_opt(
                    "SELECT value, created_at FROM cache WHERE key = $1",
                    &[&key],
                )
                .await
                .map_err(db("cache_get: SELECT FROM cache"))?;
            // An unreadable entry is a miss; the next put overwrites it.
            Ok(row.and_then(|r| {
                let value: String = r.get(0);
                serde_json::from_str(&value).ok().map(|value| CacheEntry {
                    key,
                    value,
                    created_at: r.get(1),
                })
            }))
        })
        .await
    }

    async fn cache_put(&self, entry: CacheEntry) -> Result<()> {
        let inner = self.inner.clone();
        self.call(async move {
            let value = serde_json::to_string(&entry.value)
                .map_err(|e| store_err("cache_put: encode", e))?;
            let client = inner.client("cache_put").await?;
            client
                .execute(
                    "INSERT INTO cache (key, value, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, created_at = EXCLUDED.created_at",
                    &[&entry.key, &value, &entry.created_at],
                )
                .await
                .map_err(db("cache_put: INSERT INTO cache .. ON CONFLICT"))?;
            Ok(())
        })
        .await
    }

    async fn cache_list(&self) -> Result<Vec<CacheEntry>> {
        let inner = self.inner.clone();
        self.call(async move {
            let client = inner.client("cache_list").await?;
            let rows = client
                .query("SELECT key, value, created_at FROM cache ORDER BY key", &[])
                .await
                .map_err(db("cache_list: SELECT FROM cache"))?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let value: String = r.get(1);
                    serde_json::from_str(&value).ok().map(|value| CacheEntry {
                        key: r.get(0),
                        value,
                        created_at: r.get(2),
                    })
                })
                .collect())
        })
        .await
    }

    async fn cache_clear(&self) -> Result<usize> {
        let inner = self.inner.clone();
        self.call(async move {
            let client = inner.client("cache_clear").await?;
            let n = client
                .execute("DELETE FROM cache", &[])
                .await
                .map_err(db("cache_clear: DELETE FROM cache"))?;
            Ok(n as usize)
        })
        .await
    }
}
