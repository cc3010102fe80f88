//! Steps' output kept while it is produced (`OutputStore`): table `output`
//! (migration 3), one row a chunk, a batch in one statement (`UNNEST`).

use crate::PostgresStore;
use crate::error::{db, db_err, describe, store_err};
use async_trait::async_trait;
use orch_model::store::{OutputChunk, OutputStore, OutputStream};
use orch_model::{EntityKind, OrchestrationError, Result, RunId};
use std::collections::HashMap;
use tokio_postgres::error::SqlState;

/// Tries of an append that lost a race for its chunks' numbers (two
/// processes writing one step's output: a lapsed lease and its successor).
const TRIES: usize = 3;

#[async_trait]
impl OutputStore for PostgresStore {
    async fn append_output(&self, chunks: Vec<OutputChunk>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        self.call(async move {
            let mut client = inner.client("append_output").await?;
            let mut tries = 0;
            loop {
                tries += 1;
                match append(&mut client, &chunks).await {
                    Err(Append::Raced) if tries < TRIES => continue,
                    Err(Append::Raced) => {
                        return Err(store_err(
                            "append_output",
                            "another process kept numbering the same step's output",
                        ));
                    }
                    Err(Append::Failed(e)) => return Err(e),
                    Ok(()) => return Ok(()),
                }
            }
        })
        .await
    }

    async fn output(
        &self,
        run: RunId,
        task: u32,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutputChunk>> {
        let inner = self.inner.clone();
        self.call(async move {
            let client = inner.client("output").await?;
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = match client
                .query(
                    "SELECT o.seq, o.attempt, o.stream, o.data, o.truncated, o.at
                     FROM output o JOIN runs r ON r.ord = o.run_ord
                     WHERE r.id = $1 AND o.idx = $2 AND o.seq > $3
                     ORDER BY o.seq LIMIT $4",
                    &[&run.0, &(task as i32), &after, &limit],
                )
                .await
            {
                Ok(rows) => rows,
                // A schema an older orch made (a read-only store does not
                // migrate) has no output yet.
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(Vec::new()),
                Err(e) => return Err(db_err("output: SELECT FROM output", &e)),
            };
            rows.iter()
                .map(|r| {
                    let seq: i64 = r.get(0);
                    let stream: i16 = r.get(2);
                    let stream = OutputStream::from_code(i64::from(stream)).ok_or_else(|| {
                        store_err(
                            "output",
                            format!("chunk {seq} of step {task} of run {run} has an unknown stream {stream}"),
                        )
                    })?;
                    let attempt: i32 = r.get(1);
                    Ok(OutputChunk {
                        run,
                        task,
                        attempt: u32::try_from(attempt).unwrap_or(0),
                        stream,
                        seq: u64::try_from(seq).unwrap_or(0),
                        data: r.get(3),
                        truncated: r.get(4),
                        at: r.get(5),
                    })
                })
                .collect()
        })
        .await
    }
}

enum Append {
    /// Another transaction numbered chunks of the same step meanwhile.
    Raced,
    Failed(OrchestrationError),
}

impl From<OrchestrationError> for Append {
    fn from(e: OrchestrationError) -> Self {
        Self::Failed(e)
    }
}

/// One transaction: the runs' `ord`s, each step's last number, then every
/// chunk in one `INSERT`. An unknown run or step fails it whole.
async fn append(
    client: &mut deadpool_postgres::Client,
    chunks: &[OutputChunk],
) -> std::result::Result<(), Append> {
    let tx = client
        .transaction()
        .await
        .map_err(db("append_output: BEGIN"))?;
    let mut ids: Vec<uuid::Uuid> = chunks.iter().map(|c| c.run.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let ords: HashMap<uuid::Uuid, i64> = tx
        .query("SELECT id, ord FROM runs WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(db("append_output: SELECT ord FROM runs"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if let Some(c) = chunks.iter().find(|c| !ords.contains_key(&c.run.0)) {
        return Err(OrchestrationError::not_found(EntityKind::Run, c.run.to_string()).into());
    }
    let ord_of = |c: &OutputChunk| ords.get(&c.run.0).copied().unwrap_or_default();
    let mut steps: Vec<(i64, i32)> = chunks.iter().map(|c| (ord_of(c), c.task as i32)).collect();
    steps.sort_unstable();
    steps.dedup();
    let (step_ords, step_idx): (Vec<i64>, Vec<i32>) = steps.iter().copied().unzip();
    let mut last: HashMap<(i64, i32), i64> = tx
        .query(
            "SELECT o.run_ord, o.idx, MAX(o.seq) FROM output o
             JOIN unnest($1::bigint[], $2::int[]) AS s(run_ord, idx)
               ON o.run_ord = s.run_ord AND o.idx = s.idx
             GROUP BY o.run_ord, o.idx",
            &[&step_ords, &step_idx],
        )
        .await
        .map_err(db("append_output: SELECT MAX(seq) FROM output"))?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let n = chunks.len();
    let (mut ord, mut idx, mut seq) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut attempt, mut stream, mut data, mut truncated, mut at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for c in chunks {
        let key = (ord_of(c), c.task as i32);
        let next = last.get(&key).copied().unwrap_or(0) + 1;
        last.insert(key, next);
        ord.push(key.0);
        idx.push(key.1);
        seq.push(next);
        attempt.push(c.attempt as i32);
        stream.push(c.stream.code());
        data.push(c.data.as_slice());
        truncated.push(c.truncated);
        at.push(c.at);
    }
    let inserted = tx
        .execute(
            "INSERT INTO output (run_ord, idx, seq, attempt, stream, data, truncated, at)
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::int[],
                                  $5::smallint[], $6::bytea[], $7::bool[], $8::timestamptz[])",
            &[&ord, &idx, &seq, &attempt, &stream, &data, &truncated, &at],
        )
        .await;
    match inserted {
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(Append::Raced),
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            // The server's detail names the (run_ord, idx) it did not find.
            let which = format!("a step the output names ({})", describe(&e));
            return Err(OrchestrationError::not_found(EntityKind::Task, which).into());
        }
        Err(e) => return Err(db_err("append_output: INSERT INTO output", &e).into()),
    }
    tx.commit().await.map_err(db("append_output: COMMIT"))?;
    Ok(())
}
