//! Daily partitions of `transactions` are created ahead of time and dropped once past the
//! retention window, together with the idempotency keys of that age.

use chrono::{TimeZone, Utc};
use sluice_e2e::Pipeline;
use sluice_worker::db;

async fn partitions(pool: &sqlx::PgPool) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'sluice.transactions'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await?)
}

#[tokio::test]
async fn partitions_roll_forward_and_expire() -> anyhow::Result<()> {
    let p = Pipeline::new("retention", 1).await?;
    let pool = db::connect(&p.database_url, "sluice", 2, true).await?;
    db::migrate(&pool, "sluice").await?;

    let day1 = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
    db::maintain_partitions(&pool, day1, 3, 2).await?;
    assert_eq!(
        partitions(&p.pool).await?,
        [
            "transactions_p20260107",
            "transactions_p20260108",
            "transactions_p20260109",
            "transactions_p20260110",
            "transactions_p20260111",
            "transactions_p20260112"
        ]
    );
    sqlx::query("INSERT INTO sluice.transaction_ids VALUES ('old', '2026-01-07T10:00:00Z'), ('new', '2026-01-12T10:00:00Z')")
        .execute(&p.pool)
        .await?;

    // Four days later: the first days are past retention, new days are ahead.
    db::maintain_partitions(&pool, day1 + chrono::Duration::days(4), 3, 2).await?;
    let now = partitions(&p.pool).await?;
    assert_eq!(
        now.first().map(String::as_str),
        Some("transactions_p20260111")
    );
    assert_eq!(
        now.last().map(String::as_str),
        Some("transactions_p20260116")
    );
    let ids: Vec<String> = sqlx::query_scalar("SELECT transaction_id FROM sluice.transaction_ids")
        .fetch_all(&p.pool)
        .await?;
    assert_eq!(ids, ["new"], "keys older than retention are forgotten");
    Ok(())
}
