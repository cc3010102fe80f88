//! A fresh schema per test on the test server, dropped when the test ends.
#![allow(dead_code)]

use orch_model::{NewRun, NewTask, RunId, TaskPriority};
use orch_store_postgres::{PostgresOptions, PostgresStore};
use std::sync::atomic::{AtomicU32, Ordering};

/// The test server: `ORCH_TEST_POSTGRES_URL`, or the local one.
pub fn server_url() -> String {
    std::env::var("ORCH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own, dropped (with everything in it) on drop.
#[derive(Debug)]
pub struct Schema {
    pub name: String,
}

impl Schema {
    /// A new, unique name (the schema is created when a store opens it).
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Self {
            name: format!(
                "orch_test_{}_{}_{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The options of a store on this schema.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions::parse_url(&server_url())
            .and_then(|o| o.with_schema(&self.name))
            .expect("the test server URL")
    }

    /// Opens a store on this schema.
    pub fn open(&self) -> PostgresStore {
        PostgresStore::connect_with(self.options()).expect("open the test store")
    }

    /// Runs SQL on the test server (outside any store), on a thread of its own.
    pub fn sql(&self, sql: &str) {
        sql_on_server(sql);
    }
}

/// Runs SQL on the test server with a connection and a runtime of its own.
pub fn sql_on_server(sql: &str) {
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
            let driver = tokio::spawn(conn);
            client.batch_execute(&sql).await.expect("run SQL");
            drop(client);
            let _ = driver.await;
        });
    })
    .join()
    .expect("the SQL thread");
}

impl Drop for Schema {
    fn drop(&mut self) {
        sql_on_server(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
    }
}

/// A fresh store on a schema of its own: the conformance suite's fixture.
pub fn fresh() -> (Schema, PostgresStore) {
    let schema = Schema::new();
    let store = schema.open();
    (schema, store)
}

/// A runtime for tests that await the store from inside Tokio.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `n` independent tasks.
pub fn wide(id: RunId, n: usize) -> NewRun {
    NewRun {
        id,
        workflow: "wide".into(),
        definition: "{}".into(),
        params: Default::default(),
        tasks: (0..n)
            .map(|i| NewTask {
                name: format!("t{i}"),
                deps: vec![],
                priority: TaskPriority::Normal,
                needs: Default::default(),
                spec: None,
            })
            .collect(),
        parent: None,
        owner: None,
        max_parallel: None,
    }
}
