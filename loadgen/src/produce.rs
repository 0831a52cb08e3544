//! Producing generated events to Kafka at a target rate, with a progress line.

use crate::generate::{EventClock, EventKind, Generator, GeneratorConfig};
use anyhow::{Context, Result};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode as Code;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub brokers: String,
    pub topic: String,
    /// Events per second; 0 = as fast as the broker takes them.
    pub rate: u64,
    /// Stop after this long…
    pub duration: Option<Duration>,
    /// …or after this many events, whichever comes first.
    pub count: Option<u64>,
    pub generator: GeneratorConfig,
    pub progress: bool,
    /// Keep the ids of valid events in the summary (tests check them one by one).
    pub collect_ids: bool,
    /// Write one JSON line per valid event with its label (fraud scenario, hard negative).
    pub labels: Option<std::path::PathBuf>,
}

/// Events a run will produce: `count`, else `rate × duration`; `None` when neither bounds
/// it (no count, and no duration at a set rate).
pub fn planned_events(count: Option<u64>, duration: Option<Duration>, rate: u64) -> Option<u64> {
    count.or_else(|| {
        duration
            .filter(|_| rate > 0)
            .map(|d| (d.as_secs_f64() * rate as f64) as u64)
    })
}

/// Event-time pace of a backlog produced at full speed: its events are spread over the past
/// as if they had arrived at this rate, ending now, so per-customer timing stays realistic.
pub const BACKLOG_EVENTS_PER_SECOND: f64 = 2_000.0;

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub produced: u64,
    pub valid: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub elapsed: Duration,
    pub valid_ids: Vec<String>,
    /// With the simulated event clock: the population's purchases per simulated day, so
    /// the `valid + invalid` draws span that many days of each customer's life.
    pub daily_events: Option<f64>,
}

/// Create `topic` with `partitions` partitions unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in admin.create_topics(&[new], &AdminOptions::new()).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Produce until the duration or count is reached; blocks the calling thread.
pub fn produce(spec: &LoadSpec) -> Result<Summary> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &spec.brokers)
        .set("linger.ms", if spec.rate == 0 { "20" } else { "1" })
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.kbytes", "262144")
        .set("enable.idempotence", "true")
        .create()
        .context("creating Kafka producer")?;
    let mut generator = Generator::new(spec.generator.clone());
    let mut summary = Summary::default();
    if spec.generator.event_clock != EventClock::Wall {
        // The last event lands a little before now (a UTC-midnight origin keeps the offline
        // evaluation's time of day): inside retention, never in the future.
        let draws = planned_events(spec.count, spec.duration, spec.rate)
            .context("the simulated event clock needs a count (or a rate and a duration)")?;
        let first =
            generator.end_simulated_clock_at(draws, Utc::now() - chrono::Duration::minutes(1));
        let daily = generator.daily_events();
        summary.daily_events = Some(daily);
        if let (Some(first), true) = (first, spec.progress) {
            eprintln!(
                "simulated event clock: {} customers buy {daily:.0} times a simulated day; {draws} events span {:.2} simulated days from {}",
                spec.generator.customers,
                draws as f64 / daily,
                first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        if let Some(first) = first.filter(|f| *f < Utc::now() - chrono::Duration::days(29)) {
            eprintln!(
                "warning: the first events ({first}) are older than 29 days; a worker keeping 30 days rejects them"
            );
        }
    }
    let bar = progress_bar(spec);
    let started = Instant::now();
    let wall_start = Utc::now();
    let limit = spec.count.unwrap_or(u64::MAX);
    let backlog_span = match (spec.rate, spec.count) {
        (0, Some(n)) => {
            chrono::Duration::milliseconds((n as f64 / BACKLOG_EVENTS_PER_SECOND * 1000.0) as i64)
        }
        _ => chrono::Duration::zero(),
    };
    let mut labels = match &spec.labels {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    while summary.produced < limit && spec.duration.is_none_or(|d| started.elapsed() < d) {
        // Pace by the clock: the number due by now, not a sleep per event.
        let due = if spec.rate == 0 {
            summary.produced + 1000
        } else {
            (started.elapsed().as_secs_f64() * spec.rate as f64) as u64 + 1
        };
        let due = due.min(limit);
        if summary.produced >= due {
            // Sleep until the next event is due, then serve delivery reports without
            // blocking. rdkafka's `poll(timeout)` spins through the last fraction of a
            // millisecond of its timeout (it rounds the remaining time down to whole ms), so
            // `poll(1 ms)` as the pacing wait burned most of a core at 2,000 events/s: CPU
            // taken from the worker, broker and Postgres the bench measures.
            let next_at =
                Duration::from_secs_f64(summary.produced as f64 / spec.rate.max(1) as f64);
            std::thread::sleep(
                next_at
                    .saturating_sub(started.elapsed())
                    .clamp(Duration::from_micros(100), Duration::from_millis(5)),
            );
            producer.poll(Duration::ZERO);
            continue;
        }
        let now = if backlog_span.is_zero() {
            Utc::now()
        } else {
            let progress = summary.produced as f64 / limit as f64;
            wall_start - backlog_span
                + chrono::Duration::milliseconds(
                    (backlog_span.num_milliseconds() as f64 * progress) as i64,
                )
        };
        while summary.produced < due {
            let event = generator.next(now);
            if let (Some(out), Some(label), Some(id)) =
                (labels.as_mut(), &event.label, &event.transaction_id)
            {
                use std::io::Write;
                let line = serde_json::json!({"transaction_id": id, "label": label});
                writeln!(out, "{line}").context("writing labels")?;
            }
            let mut record = BaseRecord::to(&spec.topic)
                .key(&event.key)
                .payload(&event.payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(Code::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(e).context("producing"),
                }
            }
            summary.produced += 1;
            match event.kind {
                EventKind::Valid => {
                    summary.valid += 1;
                    if spec.collect_ids {
                        summary.valid_ids.extend(event.transaction_id);
                    }
                }
                EventKind::Invalid => summary.invalid += 1,
                EventKind::Duplicate => summary.duplicates += 1,
            }
        }
        producer.poll(Duration::ZERO);
        if let Some(bar) = &bar {
            bar.set_position(summary.produced);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{:.0} ev/s", summary.produced as f64 / secs));
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing produced events")?;
    if let Some(mut out) = labels {
        use std::io::Write;
        out.flush().context("writing labels")?;
    }
    summary.elapsed = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_with_message(format!(
            "{} events ({} valid, {} invalid, {} duplicates) in {:.1}s",
            summary.produced,
            summary.valid,
            summary.invalid,
            summary.duplicates,
            summary.elapsed.as_secs_f64()
        ));
    }
    Ok(summary)
}

fn progress_bar(spec: &LoadSpec) -> Option<ProgressBar> {
    if !spec.progress {
        return None;
    }
    let total = match (spec.count, spec.duration) {
        (Some(c), _) => c,
        (None, Some(d)) if spec.rate > 0 => (d.as_secs_f64() * spec.rate as f64) as u64,
        _ => 0,
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    Some(bar)
}
