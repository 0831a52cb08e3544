//! The rows a batch writes, each kind as one statement over arrays: the claimed ids, the
//! transactions, the alerts, the rejections and the customer profiles.

use crate::batch::{Accepted, Rejected};
use crate::copy::{self, EncodedRows};
use crate::score::ProfileRow;
use sluice_fraud::Verdict;
use std::collections::{BTreeMap, HashSet};

/// Claims ids by an INSERT that skips those stored before; returns the new ones.
const CLAIM_IDS: &str = "INSERT INTO transaction_ids (transaction_id, event_time)
    SELECT * FROM unnest($1::text[], $2::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING transaction_id";

/// Which of a batch's records have ids never stored before (by an earlier batch, or another
/// worker); the claim itself is the only way to know, since the primary key decides.
pub struct Claimed {
    /// One per record of the batch, in order.
    pub fresh: Vec<bool>,
    /// The fast path was tried and a stored id made it roll back.
    pub fell_back: bool,
}

/// Claims the ids of `rows` in the open transaction, but for those `held` by the batch
/// before, still being written: they are repeats once it commits, and this batch commits
/// only after it (claiming them would wait for its commit, [`super::order`]).
///
/// With `fast`, the ids the scorer saw for the first time ([`Accepted::maybe_stored`] false)
/// go in by COPY: about 30% less time in Postgres than the INSERT … ON CONFLICT that checks
/// each id (37 against 52 ms per 10k ids, psql), and no ids sent back. Should one of them be
/// stored after all (its first copy came before a restart, through another worker, or
/// longer ago than the scorer remembers), the COPY fails on the primary key, a savepoint
/// undoes it, and every id is claimed by the INSERT. The others (repeats, or records
/// nothing scored) always take the INSERT.
pub async fn claim_ids(
    tx: &mut sqlx::PgConnection,
    rows: &[Accepted],
    fast: bool,
    held: &[bool],
) -> Result<Claimed, sqlx::Error> {
    let by_copy: Vec<bool> = rows
        .iter()
        .zip(held)
        .map(|(r, held)| fast && !held && !r.maybe_stored())
        .collect();
    let mut fell_back = false;
    if by_copy.iter().any(|c| *c) {
        sqlx::query("SAVEPOINT claim_by_copy")
            .execute(&mut *tx)
            .await?;
        let payload = copy::encode_claims(rows, &by_copy);
        match copy::copy_in(&mut *tx, copy::COPY_CLAIMS, payload).await {
            Ok(_) => {
                let fresh = claim_by_insert(tx, rows, &by_copy, held).await?;
                return Ok(Claimed { fresh, fell_back });
            }
            Err(e) if is_unique_violation(&e) => {
                tracing::debug!(error = %e, "an id claimed by COPY was stored already; claiming the batch by INSERT");
                sqlx::query("ROLLBACK TO SAVEPOINT claim_by_copy")
                    .execute(&mut *tx)
                    .await?;
                fell_back = true;
            }
            Err(e) => return Err(e),
        }
    }
    let fresh = claim_by_insert(tx, rows, &vec![false; rows.len()], held).await?;
    Ok(Claimed { fresh, fell_back })
}

/// Claims the ids of the records neither `claimed` already nor `held` by the batch before
/// by the INSERT that skips stored ids; whether each record's id is new (a `claimed` one
/// is, a `held` one is not).
async fn claim_by_insert(
    tx: &mut sqlx::PgConnection,
    rows: &[Accepted],
    claimed: &[bool],
    held: &[bool],
) -> Result<Vec<bool>, sqlx::Error> {
    let rest: Vec<&Accepted> = rows
        .iter()
        .zip(claimed.iter().zip(held))
        .filter(|(_, (c, h))| !**c && !**h)
        .map(|(r, _)| r)
        .collect();
    let new_ids = insert_claims(tx, &rest).await?;
    Ok(rows
        .iter()
        .zip(claimed.iter().zip(held))
        .map(|(r, (c, h))| *c || (!h && new_ids.contains(r.valid.tx.transaction_id.as_str())))
        .collect())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some("23505"))
}

/// The ids of `rows` not stored before (by this batch's earlier statements or any earlier batch).
async fn insert_claims(
    tx: &mut sqlx::PgConnection,
    rows: &[&Accepted],
) -> Result<HashSet<String>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r.valid.tx.transaction_id.as_str())
        .collect();
    let times: Vec<_> = rows.iter().map(|r| r.valid.event_time).collect();
    Ok(sqlx::query_scalar(CLAIM_IDS)
        .bind(ids)
        .bind(times)
        .fetch_all(tx)
        .await?
        .into_iter()
        .collect())
}

/// The rows by COPY (binary format, [`crate::copy`]) when every connection has
/// TCP_NODELAY ([`crate::tcp_nodelay`]; `encoded` is then the batch's rows, `fresh` says
/// which to send); otherwise by the prepared INSERT over arrays, since with Nagle on COPY's
/// small trailing CopyDone waits out the peer's delayed ACK (~40 ms per batch, measured).
pub async fn store_rows(
    tx: &mut sqlx::PgConnection,
    rows: &[&Accepted],
    encoded: Option<&EncodedRows>,
    fresh: &[bool],
) -> Result<(), sqlx::Error> {
    match encoded {
        Some(encoded) => {
            if let Some(payload) = encoded.select(fresh) {
                copy::copy_in(tx, copy::COPY_TRANSACTIONS, payload).await?;
            }
        }
        None => insert_rows(tx, rows).await?,
    }
    Ok(())
}

/// The rows, as one prepared INSERT over arrays: one round trip, but about twice COPY's
/// time per row (the bench's time split).
const INSERT_ROWS: &str = "INSERT INTO transactions (transaction_id, customer_id, merchant_id,
        merchant_category, amount, currency, event_time, payment_method, channel, country,
        shipping_country, card_last4, card_fingerprint, device_id, ip_address, latitude, longitude,
        account_age_days, items, kafka_partition, kafka_offset, kafka_timestamp, fraud_score, is_fraud)
    SELECT id, customer, merchant, category, cents::numeric / 100, currency, event_time, method,
        channel, country, shipping, last4, fingerprint, device, ip, lat, lon, age, items, kp, ko, kts,
        score, fraud
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
        $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::text[], $15::text[], $16::float8[], $17::float8[], $18::int[], $19::int[], $20::int[],
        $21::bigint[], $22::timestamptz[], $23::float8[], $24::bool[])
    AS u(id, customer, merchant, category, cents, currency, event_time, method, channel, country,
        shipping, last4, fingerprint, device, ip, lat, lon, age, items, kp, ko, kts, score, fraud)";

async fn insert_rows(tx: &mut sqlx::PgConnection, rows: &[&Accepted]) -> Result<(), sqlx::Error> {
    fn col<'a, T>(rows: &[&'a Accepted], f: impl Fn(&'a Accepted) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    let to_i32 = |v: Option<u32>| v.map(|x| i32::try_from(x).unwrap_or(i32::MAX));
    sqlx::query(INSERT_ROWS)
        .bind(col(rows, |r| r.valid.tx.transaction_id.as_str()))
        .bind(col(rows, |r| r.valid.tx.customer_id.as_str()))
        .bind(col(rows, |r| r.valid.tx.merchant_id.as_str()))
        .bind(col(rows, |r| r.valid.tx.merchant_category.as_deref()))
        .bind(col(rows, |r| r.valid.amount_cents))
        .bind(col(rows, |r| r.valid.tx.currency.as_str()))
        .bind(col(rows, |r| r.valid.event_time))
        .bind(col(rows, |r| r.valid.tx.payment_method.as_str()))
        .bind(col(rows, |r| r.valid.tx.channel.map(|c| c.as_str())))
        .bind(col(rows, |r| r.valid.tx.country.as_str()))
        .bind(col(rows, |r| r.valid.tx.shipping_country.as_deref()))
        .bind(col(rows, |r| r.valid.tx.card_last4.as_deref()))
        .bind(col(rows, |r| r.valid.tx.card_fingerprint.as_deref()))
        .bind(col(rows, |r| r.valid.tx.device_id.as_deref()))
        .bind(col(rows, |r| r.valid.tx.ip_address.as_deref()))
        .bind(col(rows, |r| r.valid.tx.latitude))
        .bind(col(rows, |r| r.valid.tx.longitude))
        .bind(col(rows, |r| to_i32(r.valid.tx.account_age_days)))
        .bind(col(rows, |r| to_i32(r.valid.tx.items)))
        .bind(col(rows, |r| r.partition))
        .bind(col(rows, |r| r.offset))
        .bind(col(rows, |r| r.kafka_timestamp))
        .bind(col(rows, Accepted::score))
        .bind(col(rows, Accepted::flagged))
        .execute(tx)
        .await?;
    Ok(())
}

const INSERT_ALERTS: &str = "INSERT INTO fraud_alerts (transaction_id, customer_id, event_time, score, reasons)
    SELECT id, customer, t, score, string_to_array(reasons, ',')
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[]) AS u(id, customer, t, score, reasons)";

/// The alerts of the flagged `rows`: by COPY of `encoded` (the batch's alerts; `fresh` says
/// which to send) when given, else by the INSERT over arrays.
pub async fn insert_alerts(
    tx: &mut sqlx::PgConnection,
    rows: &[&Accepted],
    encoded: Option<&EncodedRows>,
    fresh: &[bool],
) -> Result<(), sqlx::Error> {
    if let Some(encoded) = encoded {
        // No COPY at all when none of the new rows is flagged.
        if let Some(payload) = encoded.select(fresh) {
            copy::copy_in(tx, copy::COPY_ALERTS, payload).await?;
        }
        return Ok(());
    }
    let flagged: Vec<(&Accepted, &Verdict)> = rows
        .iter()
        .filter_map(|r| Some((*r, r.verdict.as_ref().filter(|v| v.flagged)?)))
        .collect();
    if flagged.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_ALERTS)
        .bind(
            flagged
                .iter()
                .map(|(r, _)| r.valid.tx.transaction_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            flagged
                .iter()
                .map(|(r, _)| r.valid.tx.customer_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            flagged
                .iter()
                .map(|(r, _)| r.valid.event_time)
                .collect::<Vec<_>>(),
        )
        .bind(flagged.iter().map(|(_, v)| v.score).collect::<Vec<_>>())
        .bind(
            flagged
                .iter()
                .map(|(_, v)| v.reasons.join(","))
                .collect::<Vec<_>>(),
        )
        .execute(tx)
        .await?;
    Ok(())
}

pub async fn insert_rejected(
    tx: &mut sqlx::PgConnection,
    source_topic: &str,
    rejected: &[&Rejected],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rejected_transactions
            (source_topic, source_partition, source_offset, reason, detail, transaction_id, raw_payload)
         SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bytea[])",
    )
    .bind(source_topic)
    .bind(rejected.iter().map(|r| r.partition).collect::<Vec<_>>())
    .bind(rejected.iter().map(|r| r.offset).collect::<Vec<_>>())
    .bind(rejected.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>())
    .bind(rejected.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>())
    .bind(rejected.iter().map(|r| r.transaction_id.as_deref()).collect::<Vec<_>>())
    .bind(rejected.iter().map(|r| r.raw_masked.as_slice()).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// Sorted by customer so concurrent writers lock rows in one order.
const UPSERT_PROFILES: &str = "INSERT INTO customer_profiles (customer_id, partition, profile)
    SELECT * FROM unnest($1::text[], $2::int[], $3::bytea[]) AS u(c, p, b) ORDER BY c
    ON CONFLICT (customer_id) DO UPDATE SET
        partition = EXCLUDED.partition, profile = EXCLUDED.profile, updated_at = now()";

pub async fn upsert_profiles(
    tx: &mut sqlx::PgConnection,
    profiles: &BTreeMap<String, ProfileRow>,
) -> Result<(), sqlx::Error> {
    if profiles.is_empty() {
        return Ok(());
    }
    sqlx::query(UPSERT_PROFILES)
        .bind(profiles.keys().map(String::as_str).collect::<Vec<_>>())
        .bind(profiles.values().map(|r| r.partition).collect::<Vec<_>>())
        .bind(
            profiles
                .values()
                .map(|r| r.profile.as_slice())
                .collect::<Vec<_>>(),
        )
        .execute(tx)
        .await?;
    Ok(())
}
