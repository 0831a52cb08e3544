//! The autoscaler's lag readings against a real broker (`$KAFKA_BOOTSTRAP`, or the `lag`
//! broker of `hack/kafka.sh`, started if needed and left running like the other tests' broker):
//! exact records per partition from known commits, the time lag as the age of the record at
//! the committed offset, deleted records not counted, the workers' group left alone, a
//! missing topic not created, and an unreachable broker reported Unknown within the timeout.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use sluice_operator::autoscale::lag::PROBE_GROUP;
use sluice_operator::autoscale::{LagReader, LagReading, LagSnapshot, LagTarget, TimeLag};

const PARTITIONS: i32 = 3;
const PER_PARTITION: i64 = 50;

fn kafka() -> &'static str {
    static KAFKA: OnceLock<String> = OnceLock::new();
    KAFKA.get_or_init(|| {
        sluice_harness::service_address("KAFKA_BOOTSTRAP", "kafka.sh", &["start", "lag"])
            .unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{:x}", n % 0xffff_ffff)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap()
}

fn target(topic: &str, group: &str) -> LagTarget {
    LagTarget {
        bootstrap: kafka().to_string(),
        security_protocol: "PLAINTEXT".into(),
        topic: topic.into(),
        group: group.into(),
        extra: Vec::new(),
    }
}

/// A fresh topic; partition `p`'s record `i` is stamped `ages[p]` seconds ago plus `i`
/// seconds, so its age is about `ages[p] − i`.
fn topic_with_records(ages: [i64; PARTITIONS as usize]) -> String {
    let topic = unique("lag");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = futures::executor::block_on(admin().create_topics(
        [&NewTopic::new(
            &topic,
            PARTITIONS,
            TopicReplication::Fixed(1),
        )],
        &opts,
    ))
    .unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let now = now_ms();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let ts = now - ages[p as usize] * 1000 + i * 1000;
            let payload = format!("{p}-{i}");
            let mut record = BaseRecord::to(&topic)
                .partition(p)
                .key("k")
                .payload(&payload)
                .timestamp(ts);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        assert!(
                            matches!(
                                e.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "{e}"
                        );
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    topic
}

/// Commits `offsets` (partition → next offset) for `group` without joining it.
fn commit(topic: &str, group: &str, offsets: &[(i32, i64)]) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(p, o) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

fn known(r: LagReading) -> LagSnapshot {
    match r {
        LagReading::Known(s) => s,
        LagReading::Unknown { reason } => panic!("lag unknown: {reason}"),
    }
}

/// (partition, log start, log end, committed, lag) of every partition.
fn offsets(s: &LagSnapshot) -> Vec<(i32, i64, i64, Option<i64>, i64)> {
    s.partitions
        .iter()
        .map(|p| (p.partition, p.log_start, p.log_end, p.committed, p.lag))
        .collect()
}

/// The time lag is that of the record at `partition`/`offset`, about `seconds` old (the
/// records are stamped 1 s apart; 30 s allow for a slow test machine).
fn assert_behind(s: &LagSnapshot, partition: i32, offset: i64, seconds: f64) {
    match &s.time_lag {
        TimeLag::Behind {
            seconds: got,
            partition: p,
            offset: o,
        } => {
            assert_eq!((*p, *o), (partition, offset));
            assert!((got - seconds).abs() < 30.0, "time lag {got}");
        }
        other => panic!("time lag {other:?}"),
    }
}

#[test]
fn exact_lag_per_partition_and_time_lag_of_the_record_at_the_commit() {
    // Partition 0 is stamped from 3 600 s ago, 1 from 1 800 s, 2 from 600 s, 1 s apart.
    let topic = topic_with_records([3_600, 1_800, 600]);
    let group = unique("lag-group");
    // p0 committed at 10 (40 to do), p1 at its end (caught up), p2 never committed.
    commit(&topic, &group, &[(0, 10), (1, PER_PARTITION)]);
    let reader = LagReader::new(Duration::from_secs(10));
    let s = known(reader.read_blocking(&target(&topic, &group)));
    assert_eq!(
        offsets(&s),
        vec![
            (0, 0, 50, Some(10), 40),
            (1, 0, 50, Some(50), 0),
            // No commit: counts from the log start.
            (2, 0, 50, None, 50),
        ]
    );
    assert_eq!(s.total(), 90);
    // The oldest unconsumed record: p0's offset 10, stamped 3 600 − 10 = 3 590 s ago (p2's
    // offset 0 is only 600 s old).
    assert_behind(&s, 0, 10, 3_590.0);
    println!(
        "read {} partitions in {:?}: {:?}",
        s.partitions.len(),
        s.took,
        s.time_lag
    );

    // Caught up everywhere: lag 0 and CaughtUp, not Unknown.
    let done = unique("lag-done");
    commit(
        &topic,
        &done,
        &[(0, PER_PARTITION), (1, PER_PARTITION), (2, PER_PARTITION)],
    );
    let s = known(reader.read_blocking(&target(&topic, &done)));
    assert_eq!((s.total(), &s.time_lag), (0, &TimeLag::CaughtUp));
}

#[test]
fn deleted_records_do_not_count() {
    let topic = topic_with_records([3_600, 1_800, 600]);
    let group = unique("lag-group");
    commit(&topic, &group, &[(0, 10), (1, 40)]);
    // Retention (here DeleteRecords) removes p0 and p1 below 25 and p2 below 20.
    let mut tpl = TopicPartitionList::new();
    for (p, before) in [(0, 25), (1, 25), (2, 20)] {
        tpl.add_partition_offset(&topic, p, Offset::Offset(before))
            .unwrap();
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = futures::executor::block_on(admin().delete_records(&tpl, &opts)).unwrap();
    for e in res.elements() {
        e.error().unwrap();
    }
    let s = known(LagReader::new(Duration::from_secs(10)).read_blocking(&target(&topic, &group)));
    assert_eq!(
        offsets(&s),
        vec![
            // Committed 10 but 10..24 are gone: 50 − 25, not 50 − 10.
            (0, 25, 50, Some(10), 25),
            // Committed 40, inside the retained log: 50 − 40.
            (1, 25, 50, Some(40), 10),
            // Never committed: from the new log start.
            (2, 20, 50, None, 30),
        ]
    );
    assert_eq!(s.total(), 65);
    // The oldest unconsumed record is now p0's first retained one, offset 25: 3 575 s old.
    assert_behind(&s, 0, 25, 3_575.0);
}

/// Counts the rebalances a live member of the group goes through.
struct Counting(AtomicUsize);
impl ClientContext for Counting {}
impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn reading_does_not_join_or_disturb_the_group() {
    let topic = topic_with_records([600, 600, 600]);
    let group = unique("lag-live");
    let member: BaseConsumer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(Counting(AtomicUsize::new(0)))
        .unwrap();
    member.subscribe(&[&topic]).unwrap();
    // Poll until the member owns all partitions and has seen its first records.
    let deadline = Instant::now() + Duration::from_secs(60);
    while member.assignment().unwrap().count() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "member never got its assignment");
        let _ = member.poll(Duration::from_millis(100));
    }
    let rebalances = member.context().0.load(Ordering::SeqCst);
    let reader = LagReader::new(Duration::from_secs(10));
    for _ in 0..3 {
        let s = known(reader.read_blocking(&target(&topic, &group)));
        // Nothing committed: all 150 records still count.
        assert_eq!(s.total(), 150);
        let state = s.group_state.clone().expect("group described");
        assert_eq!(
            (state.state.as_str(), state.members),
            ("Stable", 1),
            "the reader must not appear as a member"
        );
        assert!(!s.rebalancing());
        for _ in 0..5 {
            let _ = member.poll(Duration::from_millis(100));
        }
    }
    assert_eq!(
        member.context().0.load(Ordering::SeqCst),
        rebalances,
        "the member went through a rebalance"
    );
    assert_eq!(member.assignment().unwrap().count(), PARTITIONS as usize);
    // The timestamp probe's own group committed nothing and has no members.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", PROBE_GROUP)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&topic, p);
    }
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    assert!(
        committed
            .elements()
            .iter()
            .all(|e| e.offset() == Offset::Invalid),
        "{committed:?}"
    );
    let groups = probe
        .client()
        .fetch_group_list(Some(PROBE_GROUP), Duration::from_secs(10))
        .unwrap();
    assert!(groups.groups().iter().all(|g| g.members().is_empty()));
}

#[test]
fn missing_topic_is_unknown_and_not_created() {
    // The test broker has auto.create.topics.enable=true: asking must not create it.
    let topic = unique("lag-missing");
    let r = LagReader::new(Duration::from_secs(5)).read_blocking(&target(&topic, "g"));
    match &r {
        LagReading::Unknown { reason } => assert!(reason.contains(&topic), "{reason}"),
        LagReading::Known(s) => panic!("known lag for a missing topic: {s:?}"),
    }
    std::thread::sleep(Duration::from_secs(1));
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(5)).unwrap();
    assert!(
        md.topics().iter().all(|t| t.name() != topic),
        "reading the lag created {topic}"
    );
}

#[tokio::test]
async fn unreachable_broker_is_unknown_within_the_timeout() {
    // A port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = LagTarget {
        bootstrap: format!("127.0.0.1:{port}"),
        ..target("payments", "g")
    };
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let r = LagReader::new(timeout).read(&target).await;
    let took = started.elapsed();
    match &r {
        LagReading::Unknown { reason } => println!("unknown after {took:?}: {reason}"),
        LagReading::Known(s) => panic!("known lag from nowhere: {s:?}"),
    }
    assert_eq!(r.total(), None);
    assert!(
        took < timeout + Duration::from_secs(2),
        "took {took:?} with a {timeout:?} timeout"
    );
}
