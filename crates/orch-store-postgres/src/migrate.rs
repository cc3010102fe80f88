//! Versioned migrations, embedded in the binary and run on open, under an
//! advisory lock so that any number of processes can open one database at
//! once.

use crate::error::{db, store_err};
use orch_model::Result;

/// The schema, one entry per version: entry `i` takes a schema from version
/// `i` to `i + 1`. Never edit an entry; add one.
pub const MIGRATIONS: &[&str] = &[
    include_str!("sql/0001_init.sql"),
    include_str!("sql/0002_needs.sql"),
    include_str!("sql/0003_output.sql"),
    include_str!("sql/0004_leases.sql"),
    include_str!("sql/0005_spec.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The first key of the advisory lock migrations hold (`orch` in ASCII);
/// the second is the hash of the schema's name, so that schemas of one
/// database migrate independently.
pub const MIGRATION_LOCK: i32 = 0x6f72_6368;

/// Applies the migrations the schema lacks, all in one transaction that
/// holds `pg_advisory_xact_lock(MIGRATION_LOCK, hashtext(schema))`: the
/// first process to open migrates, the others wait for it and find nothing
/// left to do. A schema newer than this build is refused.
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::Client,
    schema: Option<&str>,
) -> Result<()> {
    let tx = client.transaction().await.map_err(db("migrate: BEGIN"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE($2::text, current_schema(), '')))",
        &[&MIGRATION_LOCK, &schema],
    )
    .await
    .map_err(db("migrate: pg_advisory_xact_lock"))?;
    if let Some(s) = schema {
        // `s` is a checked identifier (lowercase letters, digits, `_`).
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{s}\"; SET LOCAL search_path TO \"{s}\""
        ))
        .await
        .map_err(db("migrate: CREATE SCHEMA"))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db("migrate: CREATE TABLE schema_migrations"))?;
    let version = current_version(&tx).await?;
    refuse_newer(version, schema)?;
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = v as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| crate::error::db_err(&format!("migration to version {to}"), &e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&to],
        )
        .await
        .map_err(db("migrate: INSERT INTO schema_migrations"))?;
    }
    tx.commit().await.map_err(db("migrate: COMMIT"))
}

/// For a read-only store: the schema must exist and not be newer than this build.
pub(crate) async fn check_version(
    client: &deadpool_postgres::Client,
    schema: Option<&str>,
) -> Result<()> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(db("check the schema version: to_regclass"))?
        .get(0);
    if !exists {
        return Err(store_err(
            "open read-only",
            format!(
                "schema `{}` has no orch tables yet (nothing was stored there); open it once without mode=ro, or run a workflow with this store first",
                schema.unwrap_or("public")
            ),
        ));
    }
    let version = current_version(client).await?;
    refuse_newer(version, schema)
}

async fn current_version(client: &impl deadpool_postgres::GenericClient) -> Result<u32> {
    let v: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db("migrate: SELECT MAX(version) FROM schema_migrations"))?
        .get(0);
    Ok(v.max(0) as u32)
}

fn refuse_newer(version: u32, schema: Option<&str>) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(store_err(
            "open",
            format!(
                "schema `{}` is at version {version}, newer than this orch knows ({SCHEMA_VERSION}); a newer orch migrated it: upgrade orch here too (every worker and client of one database must know its schema)",
                schema.unwrap_or("public")
            ),
        ));
    }
    Ok(())
}
