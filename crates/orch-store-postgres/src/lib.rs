//! `orch-store-postgres`: the multi-machine store (`postgres://...`), the
//! whole `Store` contract of `orch-model` on PostgreSQL (tested on 15).
//!
//! Any number of processes, on any number of machines, open one database
//! and share its runs: they create runs, claim ready tasks with a lease,
//! renew it, and complete the tasks, which releases their dependents in the
//! same transaction. It depends on `orch-model` only.
//!
//! ```no_run
//! use orch_model::{NewRun, NewTask, RunId, Store, TaskOutcome, TaskPriority, TaskResult};
//! use orch_model::store::ClaimRequest;
//! use orch_store_postgres::PostgresStore;
//! use std::time::Duration;
//!
//! // Not run by `cargo test`: it needs a server (this crate's tests use one).
//! let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/test?schema=orch")?;
//! // The store's futures run under any runtime, or none.
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let task = NewTask { name: "a".into(), deps: vec![], priority: TaskPriority::Normal, needs: Default::default(), spec: None };
//!     let id = RunId::new();
//!     let run = NewRun { id, workflow: "w".into(), definition: "{}".into(), params: Default::default(), tasks: vec![task], parent: None, owner: None, max_parallel: None };
//!     store.create_run(run, chrono::Utc::now()).await?;
//!     // A worker: claim up to 8 ready tasks with a 30 s lease, run them, complete them.
//!     for claim in store.claim(&ClaimRequest::new("worker-1", 8, Duration::from_secs(30)), chrono::Utc::now()).await? {
//!         let done = TaskOutcome::Succeeded { result: TaskResult::ok(serde_json::json!("done")) };
//!         store.complete(&claim, done, chrono::Utc::now()).await?;
//!     }
//!     // Nothing left: sleep until another process makes work, or 5 s pass.
//!     store.wait_for_work(Duration::from_secs(5)).await?;
//!     Ok::<(), orch_model::OrchestrationError>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Opening
//!
//! [`PostgresStore::connect`] takes a URL, `postgres://USER@HOST:PORT/DATABASE`
//! (or `postgresql://`), with options after `?` ([`PostgresOptions`]):
//! `schema=NAME` (the tables' schema, created when missing), `pool_size=N`,
//! `connect_attempts=N`, `mode=ro`, and the driver's own (libpq's names).
//! Opening tries to connect a few times with a doubling wait (200 ms,
//! 400 ms, ...; 5 attempts by default), then fails with an error that names
//! the host and how to check it (`pg_isready`). It then applies the
//! embedded migrations ([`MIGRATIONS`]; the table `schema_migrations` holds
//! the versions applied) in one transaction holding
//! `pg_advisory_xact_lock(MIGRATION_LOCK, hashtext(schema))`, so that many
//! processes may open one database at once; a schema newer than this build
//! is refused.
//!
//! The store owns a small Tokio runtime (two threads) that runs its
//! connections: its futures can be awaited from any runtime, or none (the
//! conformance suite polls them on a plain thread). Dropping the store
//! closes its connections and stops the runtime.
//!
//! # Tables
//!
//! - `runs`: one row a run (`ord`, an identity, orders runs and keys their
//!   tasks; `open_tasks` counts the tasks not yet final; `last_seq` numbers
//!   events); `definitions` holds each run's definition apart.
//! - `tasks`: one row a task, keyed by `(run_ord, idx)`: `status`,
//!   `priority`, `attempt` (the fencing token), `worker` and `lease_until`
//!   (the lease), `remaining` (dependencies not yet finished), `dependents`
//!   (an `integer[]` of the indices waiting for it), the result.
//!   A partial index holds only the ready rows, in claim order:
//!   `tasks_ready ON tasks (priority DESC, run_ord, idx) WHERE status = 'ready'`;
//!   another the running rows by lease end.
//! - `events` (per run, numbered from 1), `records`, `cache`.
//! - `output`: steps' output while it is produced, one row a chunk, keyed
//!   by `(run_ord, idx, seq)` (`seq` from 1 per step).
//!
//! # Claims, leases and fencing
//!
//! A claim is one statement that locks up to `max` ready rows in claim
//! order, skipping rows another claimer holds, and leases them:
//!
//! ```text
//! WITH picked AS MATERIALIZED (
//!     SELECT run_ord, idx FROM tasks t
//!     WHERE status = 'ready' AND <its run is running>
//!     ORDER BY priority DESC, run_ord, idx
//!     LIMIT $max FOR UPDATE OF t SKIP LOCKED)
//! UPDATE tasks t SET status = 'running', attempt = attempt + 1,
//!     worker = $worker, lease_until = $now + $lease, started_at = $now
//! FROM picked p WHERE (t.run_ord, t.idx) = (p.run_ord, p.idx)
//! RETURNING ...
//! ```
//!
//! Each claim increments the task's `attempt`: the attempt number is the
//! fencing token. A heartbeat and a completion only touch the row when it
//! is still `running` at that attempt, so a worker whose lease lapsed (and
//! whose task was reclaimed, or claimed again) changes nothing: its
//! heartbeat returns false and its completion fails with `InvalidState`.
//! [`Store::reclaim_expired`](orch_model::Store::reclaim_expired) makes
//! every running task whose lease ended before the caller's `now` ready
//! again. Lease times are the callers' clocks (`now` is passed in), not the
//! database's.
//!
//! A completion is one transaction: the task's row becomes final (checked
//! by `orch_model::store::check_finish`), its dependents' `remaining`
//! drop (a dependent reaching 0 becomes ready), the run's `open_tasks`
//! drops, and when it reaches 0 the run gets its final status
//! (`orch_model::store::final_status`). The local journal
//! (`start_tasks`, `finish_tasks`, `finish_and_append`, `finish_and_start`)
//! does the same for batches, with `UNNEST` arrays: a batch is a few
//! statements, whatever its size.
//!
//! # Wake-up
//!
//! Whatever makes tasks ready (creating a run, a completion that releases
//! dependents, reclaiming leases, requeueing) sends `NOTIFY orch_ready`
//! with the schema as payload, delivered when its transaction commits.
//! [`PostgresStore::wait_for_work`] waits for one on a connection of its
//! own that `LISTEN`s, up to a timeout: a worker then claims again, and
//! polls anyway when the timeout passes (a notification sent while no one
//! listened is not lost work, only a later claim).

mod batch;
mod claims;
mod error;
mod journal;
mod leader;
mod migrate;
mod notify;
mod open;
mod options;
mod output;
mod records;
mod rows;
mod runs;
mod store;

pub use migrate::{MIGRATION_LOCK, MIGRATIONS, SCHEMA_VERSION};
pub use notify::CHANNEL;
pub use options::{DEFAULT_CONNECT_ATTEMPTS, DEFAULT_POOL_SIZE, PostgresOptions};

use std::sync::Arc;

/// The PostgreSQL store. Cheap to share behind an `Arc`; dropping it closes
/// its connections and stops its runtime.
pub struct PostgresStore {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// What the store's tasks share: the pool and the options.
pub(crate) struct Inner {
    pool: deadpool_postgres::Pool,
    pg: tokio_postgres::Config,
    options: PostgresOptions,
    /// The payload of this store's notifications: its schema ("" for the default).
    tag: String,
    wake: notify::Wake,
}

impl Inner {
    /// A pooled connection for `what`, tried three times while the failure
    /// may pass (a restarted server).
    pub(crate) async fn client(&self, what: &str) -> orch_model::Result<deadpool_postgres::Client> {
        let mut wait = std::time::Duration::from_millis(50);
        for _ in 0..2 {
            match self.pool.get().await {
                Ok(c) => return Ok(c),
                Err(deadpool_postgres::PoolError::Backend(e)) if error::retryable(&e) => {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                Err(e) => return Err(error::pool_err(what, &e)),
            }
        }
        self.pool.get().await.map_err(|e| error::pool_err(what, &e))
    }
}

impl PostgresStore {
    /// How the store was opened.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }
}
