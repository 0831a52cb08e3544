//! `Delete`'s Postgres part for a pipeline on an external database (a CloudNativePG Cluster
//! goes whole instead): the operator connects as the workers do — the primary URL from the
//! Secret key `spec.postgres.external.primaryUrl`, read with one `get`, never logged — and
//! drops what the worker's migrations (`worker/migrations/`) made in the pipeline's schema,
//! then the schema if nothing else is left in it. Every drop is `RESTRICT`: an object of the
//! user's (say a view on `transactions`, or a table of their own in the schema) is never
//! dropped; it keeps what it depends on, and that is reported as left. Read replicas need
//! nothing: they replicate the primary.

use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

use crate::crd::{PipelineDeployment, SecretKeyRef};

/// The tables the worker's migrations create (daily partitions of `transactions` go with it),
/// and sqlx's migration ledger, which lives in the same schema (the workers' search_path).
pub const TABLES: &[&str] = &[
    "transactions",
    "transaction_ids",
    "consumer_offsets",
    "rejected_transactions",
    "fraud_alerts",
    "analytics_summaries",
    "customer_profiles",
    "quality_summaries",
    "_sqlx_migrations",
];
/// The views the worker's migrations create.
pub const VIEWS: &[&str] = &["quality_rates"];
/// The trigger functions the worker's migrations create (no arguments); their triggers go
/// with their tables.
pub const FUNCTIONS: &[&str] = &["profiles_follow_offsets"];

/// Bound of the connection attempt, and of each statement and lock wait: a database that does
/// not answer is retried by the finalizer, never waited on.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const STATEMENT_TIMEOUT_MS: &str = "30000";
const LOCK_TIMEOUT_MS: &str = "10000";
/// SQLSTATE dependent_objects_still_exist: `DROP SCHEMA … RESTRICT` on a schema not empty.
const NOT_EMPTY: &str = "2BP01";

/// Drops the pipeline's sluice tables, views and then its schema if empty. `Ok(None)` when
/// the pipeline has no external database; otherwise `Ok(what was done)`, one phrase for the
/// DataDeleted Event, or `Err(why something is left)`.
pub(super) async fn drop_schema(
    client: &Client,
    ns: &str,
    pd: &PipelineDeployment,
) -> Result<Option<String>, String> {
    let Some(ext) = &pd.spec.postgres.external else {
        return Ok(None);
    };
    let schema = pd.schema();
    let url = read_secret(client, ns, &ext.primary_url).await?;
    // sqlx's parse error may quote the URL, password included: not passed on.
    let options = PgConnectOptions::from_str(&url)
        .map_err(|_| {
            format!(
                "the value of Secret {ns}/{} key {} (spec.postgres.external.primaryUrl) is not a Postgres URL",
                ext.primary_url.name, ext.primary_url.key
            )
        })?
        .application_name("sluice-operator")
        .options([
            ("statement_timeout", STATEMENT_TIMEOUT_MS),
            ("lock_timeout", LOCK_TIMEOUT_MS),
        ]);
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            format!(
                "connecting: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("connecting: {e}"))?;
    let done = drop_in(&mut conn, &schema).await;
    let _ = conn.close().await;
    done.map(Some).map_err(|e| format!("schema {schema}: {e}"))
}

/// The drops themselves, on an open connection.
async fn drop_in(conn: &mut PgConnection, schema: &str) -> Result<String, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(format!("Postgres schema {schema} (already gone)"));
    }
    let s = ident(schema);
    let qualified = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{s}.{}", ident(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // One transaction: the sluice objects go together or not at all.
    let mut tx = conn.begin().await?;
    for sql in [
        format!("DROP VIEW IF EXISTS {} RESTRICT", qualified(VIEWS)),
        format!("DROP TABLE IF EXISTS {} RESTRICT", qualified(TABLES)),
        format!(
            "DROP FUNCTION IF EXISTS {} RESTRICT",
            qualified(FUNCTIONS).replace(", ", "(), ") + "()"
        ),
    ] {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    match sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {s} RESTRICT")))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(format!("Postgres schema {schema} and its sluice tables")),
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some(NOT_EMPTY) => {
            Ok(format!(
                "the sluice tables of Postgres schema {schema} (the schema holds other objects and is kept)"
            ))
        }
        Err(e) => Err(e),
    }
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The text of one Secret key; the value never appears in an error.
async fn read_secret(client: &Client, ns: &str, r: &SecretKeyRef) -> Result<String, String> {
    let field = "spec.postgres.external.primaryUrl";
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&r.name)
        .await
        .map_err(|e| format!("reading Secret {ns}/{}: {e}", r.name))?
        .ok_or_else(|| format!("Secret {ns}/{} ({field}) not found", r.name))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| format!("Secret {ns}/{} has no key {} ({field})", r.name, r.key))?;
    String::from_utf8(bytes.0.clone()).map_err(|_| {
        format!(
            "key {} of Secret {ns}/{} is not UTF-8 text ({field})",
            r.key, r.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every object the worker's migrations create is one this module drops: a migration that
    /// adds one fails this test until the lists above name it.
    #[test]
    fn the_lists_name_every_object_the_migrations_create() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/migrations");
        let mut tables = vec!["_sqlx_migrations".to_string()];
        let mut views = Vec::new();
        let mut functions = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in sql.lines().map(|l| l.trim().to_ascii_lowercase()) {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["create", "table", name, ..] => tables.push(name.to_string()),
                    ["create", "view" | "materialized", ..] => views.push(words[2].to_string()),
                    ["create", "function", name, ..] => {
                        functions.push(name.split('(').next().unwrap().to_string())
                    }
                    // Dropped with their tables.
                    ["create", "index" | "unique" | "trigger", ..] => {}
                    ["create", other, ..] => panic!("a migration creates a {other}: drop it too"),
                    _ => {}
                }
            }
        }
        tables.sort();
        views.sort();
        let mut want: Vec<&str> = TABLES.to_vec();
        want.sort();
        assert_eq!(tables, want);
        assert_eq!(views, VIEWS);
        assert_eq!(functions, FUNCTIONS);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("sluice_ns_payments"), "\"sluice_ns_payments\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
