//! Steps' output kept while it is produced (`OutputStore`): table `output`
//! (migration 10), one row a chunk, keyed by the run's `ord`, the step's
//! index and the chunk's number.

use crate::SqliteStore;
use crate::error::{sql_err, store_err};
use crate::rows::{micros, require_run, run_ord, time};
use async_trait::async_trait;
use orch_model::store::{OutputChunk, OutputStore, OutputStream};
use orch_model::{EntityKind, OrchestrationError, Result, RunId};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

#[async_trait]
impl OutputStore for SqliteStore {
    async fn append_output(&self, chunks: Vec<OutputChunk>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        // Joins the thread's next group commit: output written while a
        // run's turns are committed costs no commit of its own.
        self.call(move |conn| append(conn, &chunks)).await
    }

    async fn output(
        &self,
        run: RunId,
        task: u32,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutputChunk>> {
        self.call(move |conn| read(conn, run, task, after, limit))
            .await
    }
}

/// Stores `chunks` in order, each numbered after its step's last one; an
/// unknown run or step fails the call (its changes are rolled back).
fn append(conn: &Connection, chunks: &[OutputChunk]) -> Result<()> {
    // (ord, idx) -> the last number given, for steps met in this call.
    let mut last: HashMap<(i64, u32), i64> = HashMap::new();
    let mut ords: HashMap<RunId, i64> = HashMap::new();
    for c in chunks {
        let ord = match ords.get(&c.run) {
            Some(&o) => o,
            None => {
                let o = require_run(conn, &c.run.to_string())?;
                ords.insert(c.run, o);
                o
            }
        };
        let seq = match last.get(&(ord, c.task)) {
            Some(&s) => s + 1,
            None => {
                let known: Option<i64> = conn
                    .prepare_cached("SELECT 1 FROM tasks WHERE key = ?1 * 4294967296 + ?2")
                    .and_then(|mut s| s.query_row(params![ord, c.task], |r| r.get(0)).optional())
                    .map_err(sql_err)?;
                if known.is_none() {
                    return Err(OrchestrationError::not_found(
                        EntityKind::Task,
                        format!("{} of run {}", c.task, c.run),
                    ));
                }
                let max: i64 = conn
                    .prepare_cached(
                        "SELECT COALESCE(MAX(seq), 0) FROM output WHERE run = ?1 AND idx = ?2",
                    )
                    .and_then(|mut s| s.query_row(params![ord, c.task], |r| r.get(0)))
                    .map_err(sql_err)?;
                max + 1
            }
        };
        last.insert((ord, c.task), seq);
        conn.prepare_cached(
            "INSERT INTO output (run, idx, seq, attempt, stream, data, truncated, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(params![
                ord,
                c.task,
                seq,
                c.attempt,
                c.stream.code(),
                c.data,
                c.truncated,
                micros(c.at)
            ])
        })
        .map_err(sql_err)?;
    }
    Ok(())
}

/// Step `task`'s chunks after `after`, at most `limit`. A database from
/// before migration 10 (read-only stores do not migrate) has none.
fn read(
    conn: &Connection,
    run: RunId,
    task: u32,
    after: u64,
    limit: usize,
) -> Result<Vec<OutputChunk>> {
    let has_table: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'output'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    if has_table.is_none() {
        return Ok(Vec::new());
    }
    let Some(ord) = run_ord(conn, &run.to_string())? else {
        return Ok(Vec::new());
    };
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, attempt, stream, data, truncated, at FROM output
             WHERE run = ?1 AND idx = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![ord, task, after, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(sql_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, attempt, stream, data, truncated, at) = row.map_err(sql_err)?;
        let stream = OutputStream::from_code(stream).ok_or_else(|| {
            store_err(
                "output",
                format!("chunk {seq} of step {task} of run {run} has an unknown stream {stream}"),
            )
        })?;
        out.push(OutputChunk {
            run,
            task,
            attempt: u32::try_from(attempt).unwrap_or(0),
            stream,
            seq: u64::try_from(seq).unwrap_or(0),
            data,
            truncated,
            at: time(at),
        });
    }
    Ok(out)
}
