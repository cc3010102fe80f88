//! Opening a store: its own Tokio runtime, the pool, connecting with
//! bounded retries, migrations; and running the store's work on that
//! runtime whatever runtime (or none) the caller uses.

use crate::error::{BACKEND, describe, pool_err, retryable, store_err};
use crate::notify::Wake;
use crate::options::PostgresOptions;
use crate::{Inner, PostgresStore};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use orch_model::store::store_error;
use orch_model::{OrchestrationError, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

impl PostgresStore {
    /// Opens the store a `postgres://` or `postgresql://` URL names (see
    /// [`PostgresOptions`] for its options), connecting with retries and
    /// applying migrations.
    ///
    /// Blocks the calling thread until the store is open (the work runs on
    /// the store's own runtime, so this does not panic inside another
    /// Tokio runtime; from async code, prefer calling it in
    /// `spawn_blocking`).
    ///
    /// # Errors
    /// `InvalidParameters` for a bad URL; `Store` when the server cannot be
    /// reached after the attempts (naming the host and how to check it),
    /// refuses the login, or holds a schema newer than this build.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PostgresOptions::parse_url(url)?)
    }

    /// [`PostgresStore::connect`] with options.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub fn connect_with(options: PostgresOptions) -> Result<Self> {
        let pg = options.driver_config()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("orch-postgres")
            .enable_all()
            .build()
            .map_err(|e| store_err("start the store's runtime", e))?;
        let handle = runtime.handle().clone();
        let pool = {
            let _in = runtime.enter();
            let manager = Manager::from_config(
                pg.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(options.pool_size)
                .runtime(Runtime::Tokio1)
                .create_timeout(Some(Duration::from_secs(30)))
                .recycle_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| store_err("build the connection pool", e))?
        };
        let inner = Arc::new(Inner {
            pool,
            tag: options.schema.clone().unwrap_or_default(),
            pg,
            options,
            wake: Wake::default(),
        });
        let store = Self {
            inner: inner.clone(),
            runtime: Some(runtime),
            handle,
        };
        // Wait on a plain channel: no `block_on`, so no panic inside a runtime.
        let (tx, rx) = std::sync::mpsc::channel();
        store.handle.spawn(async move {
            let _ = tx.send(prepare(&inner).await);
        });
        match rx.recv() {
            Ok(Ok(())) => Ok(store),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(store_err("open", e)),
        }
    }

    /// Runs `work` on the store's runtime and waits for it from whatever
    /// runtime the caller uses. The work goes on if the caller's future is
    /// dropped: each method is one transaction, applied whole or not at all.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match self.handle.spawn(work).await {
            Ok(r) => r,
            Err(e) => Err(store_error(
                BACKEND,
                "the store's runtime",
                format!("the call did not finish: {e}"),
                false,
            )),
        }
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.inner.pool.close();
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Inside a runtime: waiting is not allowed; the threads end on their own.
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}

/// Connects (with retries) and migrates, or checks the version of a
/// read-only store.
async fn prepare(inner: &Inner) -> Result<()> {
    let mut client = connect_with_retries(inner).await?;
    let schema = inner.options.schema.as_deref();
    if inner.options.read_only {
        crate::migrate::check_version(&client, schema).await
    } else {
        crate::migrate::migrate(&mut client, schema).await
    }
}

/// A first connection, tried `connect_attempts` times with a doubling wait
/// while the failure is one that may pass (refused, reset, timed out, the
/// server starting up); then an error naming the host and how to check it.
async fn connect_with_retries(inner: &Inner) -> Result<deadpool_postgres::Client> {
    let attempts = inner.options.connect_attempts.max(1);
    let mut wait = inner.options.connect_backoff;
    let started = std::time::Instant::now();
    let mut tried = 0;
    loop {
        tried += 1;
        let e = match inner.pool.get().await {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        let (passing, why) = match &e {
            deadpool_postgres::PoolError::Backend(pe) => (retryable(pe), describe(pe)),
            deadpool_postgres::PoolError::Timeout(_) => (true, "timed out".to_owned()),
            other => return Err(pool_err("open", other)),
        };
        if !passing {
            return Err(store_error(
                BACKEND,
                &format!("cannot open {}", where_(inner)),
                format!("{why}; check the URL's user, password, database and options"),
                false,
            ));
        }
        if tried >= attempts {
            return Err(unreachable(inner, tried, started.elapsed(), &why));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// `host:port (database `d`, user `u`)` of the store's configuration.
fn where_(inner: &Inner) -> String {
    format!(
        "{} (database `{}`, user `{}`)",
        hosts(&inner.pg).join(", "),
        inner.pg.get_dbname().unwrap_or("(default)"),
        inner.pg.get_user().unwrap_or("(default)")
    )
}

fn hosts(pg: &tokio_postgres::Config) -> Vec<String> {
    let ports = pg.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if hosts.is_empty() {
        vec![format!("localhost:{}", port(0))]
    } else {
        hosts
    }
}

fn unreachable(inner: &Inner, tried: u32, took: Duration, why: &str) -> OrchestrationError {
    let (host, port) = match (inner.pg.get_hosts().first(), inner.pg.get_ports().first()) {
        (Some(Host::Tcp(h)), p) => (h.clone(), p.copied().unwrap_or(5432)),
        (Some(Host::Unix(d)), p) => (d.display().to_string(), p.copied().unwrap_or(5432)),
        (None, p) => ("localhost".to_owned(), p.copied().unwrap_or(5432)),
    };
    store_error(
        BACKEND,
        &format!("cannot connect to {}", where_(inner)),
        format!(
            "{why} ({tried} {} over {:.1} s); is the server running and accepting connections there? Check with `pg_isready -h {host} -p {port}`, and check the store URL {}",
            if tried == 1 { "attempt" } else { "attempts" },
            took.as_secs_f64(),
            inner.options.redacted_url()
        ),
        true,
    )
}
