//! Opening: concurrent migrations under the advisory lock, a newer schema
//! refused, read-only stores, unreachable servers and bad URLs, and the
//! errors of failed queries.

mod common;

use chrono::Utc;
use common::{Schema, server_url, sql_on_server, wide};
use orch_model::testkit::block_on;
use orch_model::{OrchestrationError, RunId, Store};
use orch_store_postgres::{PostgresOptions, PostgresStore, SCHEMA_VERSION};
use std::time::{Duration, Instant};

/// The versions recorded in a schema's `schema_migrations`.
fn versions(schema: &Schema) -> Vec<i32> {
    let name = schema.name.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client
                .query(
                    &format!("SELECT version FROM \"{name}\".schema_migrations ORDER BY version"),
                    &[],
                )
                .await
                .expect("versions")
                .iter()
                .map(|r| r.get(0))
                .collect()
        })
    })
    .join()
    .expect("thread")
}

#[test]
fn many_processes_open_and_migrate_one_schema_at_once() {
    let schema = Schema::new();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let options = schema.options();
            std::thread::spawn(move || PostgresStore::connect_with(options))
        })
        .collect();
    let stores: Vec<PostgresStore> = opens
        .into_iter()
        .map(|t| t.join().expect("thread").expect("every open succeeds"))
        .collect();
    assert_eq!(
        versions(&schema),
        (1..=SCHEMA_VERSION as i32).collect::<Vec<_>>(),
        "each migration applied once"
    );
    let id = RunId::new();
    block_on(stores[0].create_run(wide(id, 1), Utc::now())).expect("create");
    assert!(
        block_on(stores[5].get_run(id)).expect("get").is_some(),
        "one schema"
    );
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let schema = Schema::new();
    drop(schema.open());
    schema.sql(&format!(
        "INSERT INTO \"{}\".schema_migrations (version) VALUES ({})",
        schema.name,
        SCHEMA_VERSION + 1
    ));
    let e = PostgresStore::connect_with(schema.options()).expect_err("newer schema");
    let msg = e.to_string();
    assert!(msg.contains("newer than this orch knows"), "{msg}");
    assert!(
        msg.contains(&schema.name) && msg.contains("upgrade orch"),
        "{msg}"
    );
    let ro = schema.options();
    let e = PostgresStore::connect_with(PostgresOptions {
        read_only: true,
        ..ro
    })
    .expect_err("newer schema, read-only");
    assert!(e.to_string().contains("newer than this orch knows"), "{e}");
}

#[test]
fn a_read_only_store_reads_and_the_server_refuses_its_writes() {
    let schema = Schema::new();
    let ro = PostgresOptions {
        read_only: true,
        ..schema.options()
    };
    let e = PostgresStore::connect_with(ro.clone()).expect_err("no tables yet");
    assert!(e.to_string().contains("has no orch tables yet"), "{e}");
    let rw = schema.open();
    let id = RunId::new();
    block_on(rw.create_run(wide(id, 2), Utc::now())).expect("create");
    let reader = PostgresStore::connect_with(ro).expect("open read-only");
    assert_eq!(block_on(reader.list_runs()).expect("list").len(), 1);
    let e = block_on(reader.create_run(wide(RunId::new(), 1), Utc::now())).expect_err("write");
    let msg = e.to_string();
    assert!(
        msg.contains("postgres: create_run: INSERT INTO runs"),
        "{msg}"
    );
    assert!(msg.contains("read-only transaction"), "{msg}");
}

#[test]
fn an_unreachable_server_gives_a_clear_error_after_bounded_retries() {
    let mut options =
        PostgresOptions::parse_url("postgres://postgres@127.0.0.1:1/test?connect_attempts=3")
            .expect("url");
    options.connect_backoff = Duration::from_millis(20);
    let started = Instant::now();
    let e = PostgresStore::connect_with(options).expect_err("nothing listens on port 1");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    let msg = e.to_string();
    for part in [
        "postgres: cannot connect to 127.0.0.1:1",
        "database `test`",
        "3 attempts",
        "is the server running",
        "pg_isready -h 127.0.0.1 -p 1",
    ] {
        assert!(msg.contains(part), "`{part}` in: {msg}");
    }
    assert!(e.is_retryable(), "a connection failure may pass");
}

#[test]
fn bad_urls_and_refused_logins_are_clear_and_not_retried() {
    for url in ["mysql://x/y", "postgres://x/y?pool_size=many"] {
        assert!(
            matches!(
                PostgresStore::connect(url),
                Err(OrchestrationError::InvalidParameters { .. })
            ),
            "{url}"
        );
    }
    let url = format!("{}_no_such_database_here", server_url());
    let started = Instant::now();
    let e = PostgresStore::connect(&url).expect_err("no such database");
    assert!(started.elapsed() < Duration::from_secs(3), "not retried");
    let msg = e.to_string();
    assert!(
        msg.contains("postgres: cannot open") && msg.contains("3D000"),
        "{msg}"
    );
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(!e.is_retryable());
}

#[test]
fn a_failed_query_names_the_backend_the_operation_and_the_server_message() {
    let schema = Schema::new();
    let store = schema.open();
    sql_on_server(&format!("DROP TABLE \"{}\".events", schema.name));
    let e = block_on(store.events(RunId::new(), 0)).expect_err("no events table");
    let msg = e.to_string();
    assert!(
        msg.contains("postgres: events: SELECT FROM events"),
        "{msg}"
    );
    assert!(
        msg.contains("42P01") && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(!e.is_retryable());
}
