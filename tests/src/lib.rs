//! Harness for end-to-end tests on the real Kafka and Postgres that `hack/` starts: each
//! test gets its own topic and database, spawns real `sluice-worker` processes and checks
//! what landed.
//!
//! The generic parts (processes, `hack/` scripts, HTTP, metric values, ports, waits) live in
//! `sluice-harness` (tests/harness), re-exported here: the operator's tests and loadgen's
//! bench use the same harness, and cannot depend on this crate (it depends on loadgen and
//! the operator).

use anyhow::{Context, Result, bail};
use sqlx::{Connection, PgConnection, PgPool};
use std::process::Command;
use std::time::Duration;

pub mod cluster;
pub mod prometheus;

pub use sluice_harness::*;
pub use sluice_loadgen::{EventClock, GeneratorConfig, LoadSpec, Summary};

/// The services under test, from the env files `hack/*.sh start` write (the Makefile
/// exports them).
pub struct Services {
    pub brokers: String,
    /// URL of the cluster's `postgres` database (admin connection).
    pub database_url: String,
}

impl Services {
    pub fn from_env() -> Self {
        let get = |k: &str| {
            std::env::var(k)
                .unwrap_or_else(|_| panic!("{k} is not set: run the tests with `make test`"))
        };
        Self {
            brokers: get("KAFKA_BOOTSTRAP"),
            database_url: get("DATABASE_URL"),
        }
    }
}

/// The seed of a test's random choices: `$SLUICE_TEST_SEED` if set, else a fresh one. Printed,
/// so a failing run can be repeated with the same choices.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("SLUICE_TEST_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("SLUICE_TEST_SEED={s:?} is not a u64")),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: SLUICE_TEST_SEED={seed}");
    seed
}

/// One pipeline under test: a fresh topic and a fresh database.
#[derive(Clone)]
pub struct Pipeline {
    pub name: String,
    pub topic: String,
    pub brokers: String,
    pub database_url: String,
    pub pool: PgPool,
}

impl Pipeline {
    pub async fn new(test: &str, partitions: i32) -> Result<Self> {
        let services = Services::from_env();
        Self::on(test, partitions, &services.brokers, &services.database_url).await
    }

    /// A pipeline on the given broker and Postgres cluster.
    pub async fn on(test: &str, partitions: i32, brokers: &str, admin_url: &str) -> Result<Self> {
        let suffix: u32 = rand::random();
        let name = format!("{test}_{suffix:08x}");
        let topic = format!("e2e-{name}");
        sluice_loadgen::ensure_topic(brokers, &topic, partitions).await?;
        let mut admin = PgConnection::connect(admin_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let database_url = replace_database(admin_url, &name);
        let pool = PgPool::connect(&database_url).await?;
        Ok(Self {
            name,
            topic,
            brokers: brokers.into(),
            database_url,
            pool,
        })
    }

    pub fn worker(&self) -> WorkerBuilder<'_> {
        WorkerBuilder {
            pipeline: self,
            env: Vec::new(),
        }
    }

    /// Produce events with the pipeline's topic filled in (blocking, run on a thread).
    pub async fn produce(&self, mut spec: LoadSpec) -> Result<Summary> {
        spec.brokers = self.brokers.clone();
        spec.topic = self.topic.clone();
        tokio::task::spawn_blocking(move || sluice_loadgen::produce(&spec)).await?
    }

    pub fn load(&self, count: u64, rate: u64, seed: u64) -> LoadSpec {
        LoadSpec {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            rate,
            duration: None,
            count: Some(count),
            generator: GeneratorConfig {
                seed,
                customers: 5_000,
                id_prefix: self.name.clone(),
                ..GeneratorConfig::default()
            },
            progress: false,
            collect_ids: true,
            labels: None,
        }
    }

    pub async fn scalar(&self, sql: &'static str) -> Result<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    /// Rows handled so far: stored transactions plus rejections (duplicates included).
    pub async fn handled(&self) -> Result<i64> {
        if !self.schema_ready().await? {
            return Ok(0);
        }
        self.scalar(
            "SELECT (SELECT count(*) FROM sluice.transactions) + (SELECT count(*) FROM sluice.rejected_transactions)",
        )
        .await
    }

    async fn schema_ready(&self) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT to_regclass('sluice.rejected_transactions') IS NOT NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Wait until `expected` records are handled, or fail after `timeout`.
    pub async fn wait_handled(&self, expected: i64, timeout: Duration) -> Result<()> {
        let handled = std::cell::Cell::new(-1);
        let seen = &handled;
        wait_for(
            &format!("{expected} records handled"),
            timeout,
            || async move {
                seen.set(self.handled().await.unwrap_or(seen.get()));
                seen.get() >= expected
            },
        )
        .await
        .with_context(|| format!("only {} handled", handled.get()))
    }

    /// Wait until every record of `summary` is handled; then every valid id is stored exactly
    /// once and every rejected record (duplicates included) is recorded once.
    pub async fn assert_all_landed_once(&self, summary: &Summary, timeout: Duration) -> Result<()> {
        self.wait_handled(summary.produced as i64, timeout).await?;
        tokio::time::sleep(Duration::from_millis(500)).await; // a straggler would show up now
        self.assert_exactly_once(&summary.valid_ids).await?;
        let rejected = self
            .scalar("SELECT count(*) FROM sluice.rejected_transactions")
            .await?;
        let expected = summary.invalid + summary.duplicates;
        anyhow::ensure!(
            rejected as u64 == expected,
            "{rejected} rejections recorded, expected {expected}"
        );
        Ok(())
    }

    /// Every produced valid id is stored exactly once, and nothing else is.
    pub async fn assert_exactly_once(&self, produced_valid: &[String]) -> Result<()> {
        let stored: Vec<(String, i64)> =
            sqlx::query_as("SELECT transaction_id, count(*) FROM sluice.transactions GROUP BY 1")
                .fetch_all(&self.pool)
                .await?;
        let doubled: Vec<_> = stored.iter().filter(|(_, n)| *n != 1).collect();
        if !doubled.is_empty() {
            bail!(
                "{} ids stored more than once, e.g. {:?}",
                doubled.len(),
                &doubled[..doubled.len().min(5)]
            );
        }
        let stored: std::collections::HashSet<&str> =
            stored.iter().map(|(id, _)| id.as_str()).collect();
        let produced: std::collections::HashSet<&str> =
            produced_valid.iter().map(String::as_str).collect();
        let missing: Vec<_> = produced.difference(&stored).take(5).collect();
        let extra: Vec<_> = stored.difference(&produced).take(5).collect();
        if !missing.is_empty() || !extra.is_empty() {
            bail!(
                "stored set differs: {} missing (e.g. {missing:?}), {} unexpected (e.g. {extra:?})",
                produced.difference(&stored).count(),
                stored.difference(&produced).count()
            );
        }
        Ok(())
    }
}

/// A Postgres cluster of a test's own (for tests that restart, crash or replicate it),
/// stopped with its replica when dropped.
pub struct OwnPostgres {
    /// The `hack/postgres.sh` cluster name.
    pub name: String,
    /// URL of its `postgres` database (admin connection).
    pub admin_url: String,
}

impl OwnPostgres {
    pub fn start(prefix: &str) -> Result<Self> {
        let name = format!("{prefix}-{}", std::process::id());
        let env = hack("postgres.sh", &["start", &name])?;
        let admin_url =
            env_value(&env, "DATABASE_URL").context("DATABASE_URL in hack/postgres.sh output")?;
        Ok(Self { name, admin_url })
    }

    /// Start a streaming hot-standby replica (`hack/postgres.sh replica`); returns the URL
    /// of database `db` on it.
    pub fn replica(&self, db: &str) -> Result<String> {
        let env = hack("postgres.sh", &["replica", &self.name])?;
        let admin_url = env_value(&env, "REPLICA_DATABASE_URL")
            .context("REPLICA_DATABASE_URL in hack/postgres.sh output")?;
        Ok(replace_database(&admin_url, db))
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = hack("postgres.sh", &["stop", &self.name]);
    }
}

fn replace_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{db}", &url[..i]),
        _ => format!("{url}/{db}"),
    }
}

pub struct WorkerBuilder<'a> {
    pipeline: &'a Pipeline,
    env: Vec<(String, String)>,
}

impl WorkerBuilder<'_> {
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.into(), value.to_string()));
        self
    }

    pub fn spawn(self) -> Result<Worker> {
        let port = free_port()?;
        let log_path =
            std::env::temp_dir().join(format!("{}-worker-{port}.log", self.pipeline.name));
        let mut cmd = Command::new(bin_dir().join("sluice-worker"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.pipeline.database_url)
            .env("SLUICE_PIPELINE", &self.pipeline.name)
            .env("SLUICE_KAFKA__BOOTSTRAP_SERVERS", &self.pipeline.brokers)
            .env("SLUICE_KAFKA__TOPIC", &self.pipeline.topic)
            .env(
                "SLUICE_KAFKA__GROUP_ID",
                format!("g-{}", self.pipeline.name),
            )
            .env("SLUICE_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .env("SLUICE_POSTGRES__RETRY_MAX_MS", "1000")
            .env("SLUICE_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .envs(self.env);
        let process = Process::spawn(&mut cmd, log_path)
            .context("spawning sluice-worker (built by `make test`)")?;
        Ok(Worker { process, port })
    }
}

/// A running `sluice-worker` process, killed when dropped.
pub struct Worker {
    pub process: Process,
    pub port: u16,
}

impl Worker {
    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> Result<()> {
        self.process.terminate(Duration::from_secs(40))
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The worker's `/metrics` page.
    pub async fn metrics(&self) -> Result<String> {
        get(self.port, "/metrics").await?.ok()
    }

    /// The sum of metric `name`'s samples with `labels` on the worker's `/metrics` page.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(metrics::sum(&self.metrics().await?, name, labels))
    }

    /// Partitions the worker holds now (`sluice_partitions_assigned`).
    pub async fn partitions_assigned(&self) -> Result<u32> {
        Ok(self.metric("sluice_partitions_assigned", &[]).await? as u32)
    }
}
