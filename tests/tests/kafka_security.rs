//! Kafka as production clusters run it: workers consume over SASL_SSL with SCRAM and with
//! PLAIN, and over mutual TLS, from a broker of the test's own (`hack/kafka.sh start NAME
//! --secure`: its certificates made with openssl, its SCRAM users with Kafka's own
//! `kafka-storage format --add-scram`, its PLAIN user in the listener's JAAS line, passwords
//! generated per broker); a worker whose password Kafka refuses stays up, saying why, instead
//! of crash-looping; and batches compressed with zstd, lz4 or snappy land.

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice_e2e::{GeneratorConfig, Pipeline, Services, Summary, Worker, env_value, hack, wait_for};
use sluice_loadgen::{EventKind, Generator};
use std::time::Duration;

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 1_500;
const TIMEOUT: Duration = Duration::from_secs(90);

/// A broker with the SASL_SSL and mTLS listeners, stopped (and its data removed) when dropped.
struct SecureKafka {
    name: String,
    env: String,
}

impl SecureKafka {
    fn start(prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}-{}", std::process::id());
        let env = hack("kafka.sh", &["start", &name, "--secure"])?;
        Ok(Self { name, env })
    }

    fn get(&self, key: &str) -> String {
        env_value(&self.env, key).unwrap_or_else(|| panic!("{key} in kafka.sh's env"))
    }
}

impl Drop for SecureKafka {
    fn drop(&mut self) {
        let _ = hack("kafka.sh", &["stop", &self.name]);
    }
}

/// `count` events produced through the plaintext listener (the producer is not under test).
async fn produce(p: &Pipeline, count: u64, seed: u64) -> anyhow::Result<Summary> {
    p.produce(p.load(count, 0, seed)).await
}

/// The username and password of the broker's `KIND` (SCRAM or PLAIN) user.
fn sasl_user(kafka: &SecureKafka, kind: &str) -> (String, String) {
    (
        kafka.get(&format!("KAFKA_{kind}_USERNAME")),
        kafka.get(&format!("KAFKA_{kind}_PASSWORD")),
    )
}

/// A worker of `p` consuming over mutual TLS with the client certificate the broker's CA signed.
fn mtls_worker(p: &Pipeline, kafka: &SecureKafka) -> anyhow::Result<Worker> {
    p.worker()
        .env(
            "SLUICE_KAFKA__BOOTSTRAP_SERVERS",
            kafka.get("KAFKA_MTLS_BOOTSTRAP"),
        )
        .env("SLUICE_KAFKA__SECURITY_PROTOCOL", "SSL")
        .env("SLUICE_KAFKA__SSL_CA_LOCATION", kafka.get("KAFKA_CA"))
        .env(
            "SLUICE_KAFKA__SSL_CERTIFICATE_LOCATION",
            kafka.get("KAFKA_CLIENT_CERT"),
        )
        .env(
            "SLUICE_KAFKA__SSL_KEY_LOCATION",
            kafka.get("KAFKA_CLIENT_KEY"),
        )
        .spawn()
}

/// A worker of `p` consuming over SASL_SSL with `mechanism`, the broker's certificate checked
/// against the test's CA.
fn sasl_worker(
    p: &Pipeline,
    kafka: &SecureKafka,
    mechanism: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<Worker> {
    p.worker()
        .env(
            "SLUICE_KAFKA__BOOTSTRAP_SERVERS",
            kafka.get("KAFKA_SASL_SSL_BOOTSTRAP"),
        )
        .env("SLUICE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
        .env("SLUICE_KAFKA__SASL_MECHANISM", mechanism)
        .env("SLUICE_KAFKA__SSL_CA_LOCATION", kafka.get("KAFKA_CA"))
        .env("SLUICE_KAFKA_SASL_USERNAME", username)
        .env("SLUICE_KAFKA_SASL_PASSWORD", password)
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_consume_over_sasl_ssl_scram_and_plain_and_mutual_tls() -> anyhow::Result<()> {
    let kafka = SecureKafka::start("e2e-secure")?;
    let database_url = Services::from_env().database_url;
    let plaintext = kafka.get("KAFKA_BOOTSTRAP");

    // One pipeline a way in: SASL_SSL with SCRAM-SHA-512, and with PLAIN (another user, from
    // the listener's JAAS line); mutual TLS, a listener that refuses clients without a
    // certificate its CA signed.
    let scram = sasl_user(&kafka, "SCRAM");
    let plain = sasl_user(&kafka, "PLAIN");
    let mut running = Vec::new();
    for (seed, (name, sasl)) in [
        ("kafka_scram", Some(("SCRAM-SHA-512", &scram))),
        ("kafka_plain", Some(("PLAIN", &plain))),
        ("kafka_mtls", None),
    ]
    .into_iter()
    .enumerate()
    {
        let p = Pipeline::on(name, PARTITIONS, &plaintext, &database_url).await?;
        let events = produce(&p, EVENTS, seed as u64 + 1).await?;
        let worker = match sasl {
            Some((mechanism, (user, password))) => {
                sasl_worker(&p, &kafka, mechanism, user, password)?
            }
            None => mtls_worker(&p, &kafka)?,
        };
        running.push((p, events, worker));
    }
    for (p, events, _worker) in &running {
        p.assert_all_landed_once(events, TIMEOUT).await?;
    }

    // A wrong password: the worker says why and keeps retrying (its pod would not
    // crash-loop), counting the failed polls; nothing lands.
    let refused = Pipeline::on("kafka_refused", PARTITIONS, &plaintext, &database_url).await?;
    produce(&refused, 100, 4).await?;
    let mut refused_worker = sasl_worker(
        &refused,
        &kafka,
        "SCRAM-SHA-256",
        &scram.0,
        "not-the-password",
    )?;
    let w = &refused_worker;
    wait_for(
        "the worker's failed polls counted",
        TIMEOUT,
        || async move {
            w.metric("sluice_errors_total", &[("error", "poll")])
                .await
                .is_ok_and(|n| n > 0.0)
        },
    )
    .await?;
    let log = refused_worker.log();
    assert!(
        log.contains("Kafka refused the worker's credentials"),
        "the worker should say Kafka refused it: {log}"
    );
    assert!(
        refused_worker.process.exited()?.is_none(),
        "the worker exited on a refused password: {log}"
    );
    assert_eq!(refused.handled().await?, 0);
    Ok(())
}

/// Produces `count` generated events with `codec`-compressed batches; what was produced.
fn produce_compressed(p: &Pipeline, codec: &str, count: u64, seed: u64) -> anyhow::Result<Summary> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("compression.codec", codec)
        .set("linger.ms", "20")
        .set("enable.idempotence", "true")
        .create()?;
    let mut generator = Generator::new(GeneratorConfig {
        seed,
        customers: 500,
        id_prefix: format!("{}-{codec}", p.name),
        ..GeneratorConfig::default()
    });
    let mut summary = Summary::default();
    for _ in 0..count {
        let event = generator.next(chrono::Utc::now());
        producer
            .send(
                BaseRecord::to(&p.topic)
                    .key(&event.key)
                    .payload(&event.payload),
            )
            .map_err(|(e, _)| e)?;
        producer.poll(Duration::ZERO);
        summary.produced += 1;
        match event.kind {
            EventKind::Valid => {
                summary.valid += 1;
                summary.valid_ids.extend(event.transaction_id);
            }
            EventKind::Invalid => summary.invalid += 1,
            EventKind::Duplicate => summary.duplicates += 1,
        }
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_lz4_and_snappy_batches_land() -> anyhow::Result<()> {
    let p = Pipeline::new("kafka_codecs", PARTITIONS).await?;
    let mut all = Summary::default();
    for (seed, codec) in ["zstd", "lz4", "snappy"].into_iter().enumerate() {
        let s = produce_compressed(&p, codec, 500, 10 + seed as u64)?;
        all.produced += s.produced;
        all.valid += s.valid;
        all.invalid += s.invalid;
        all.duplicates += s.duplicates;
        all.valid_ids.extend(s.valid_ids);
    }
    let _worker = p.worker().spawn()?;
    p.assert_all_landed_once(&all, TIMEOUT).await?;
    Ok(())
}
