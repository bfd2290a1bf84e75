//! Outbox relay throughput against raw JetStream publishing, measured in one run.
//!
//! A SQLite store is filled with N events; then
//!   1. raw: the same envelopes and headers (with `Nats-Msg-Id`) are published straight through
//!      `async_nats::jetstream`, 1,000 sent before their acks are awaited, into a stream of their own
//!      (twice, before and after the relay, and averaged);
//!   2. relay: `Relay::relay_pending()` publishes the store's N events into the service stream of a
//!      fresh subject prefix; then the relay's parts (read, encode, `publish_batch`) on their own;
//!   3. in-process: the same relay into the in-process (SQLite) bus.
//!
//! Environment: `PATCHBAY_BENCH_NATS_URL`, `PATCHBAY_BENCH_EVENTS`, `PATCHBAY_BENCH_RELAY_BATCH`
//! (see docs/benchmarks.md). Every NATS stream the run creates is deleted at the end. If NATS cannot
//! be reached, 1 and 2 are skipped with a line saying why and 3 still runs.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use patchbay_bus::{
    Bus, BusError, BusMessage, MESSAGE_ID, RELAY_CHECKPOINT, Relay, Subjects, TRACEPARENT,
    encode_envelope,
};
use patchbay_eventstore::{
    EventStore, ExpectedVersion, LogPosition, NewEvent, RecordedEvent, SqliteDurability,
    StoreOptions,
};
use uuid::Uuid;

const NATS_URL_VAR: &str = "PATCHBAY_BENCH_NATS_URL";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const EVENTS_VAR: &str = "PATCHBAY_BENCH_EVENTS";
const DEFAULT_EVENTS: usize = 100_000;
/// Events per relay batch, and messages in flight per raw batch (default 1,000, as `Relay`).
const BATCH_VAR: &str = "PATCHBAY_BENCH_RELAY_BATCH";

/// The service whose log is relayed.
const SERVICE: &str = "approvals";
/// Messages sent before their acks are awaited, and events per relay batch: `Relay`'s default.
const PUBLISH_BATCH: usize = 1_000;
/// Events per stream in the filled store.
const EVENTS_PER_STREAM: usize = 10;
const EVENT_TYPES: &[&str] = &[
    "UpdateApproved",
    "UpdateDeclined",
    "DeploymentPlanned",
    "PatchInstalled",
    "ScanCompleted",
];

const TARGET_RELAY: f64 = 100_000.0;
const TARGET_RATIO: f64 = 0.5;

fn main() -> anyhow::Result<()> {
    let nats_url = std::env::var(NATS_URL_VAR).unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
    let events = match std::env::var(EVENTS_VAR) {
        Ok(value) => value
            .replace('_', "")
            .parse::<usize>()
            .with_context(|| format!("{EVENTS_VAR}={value:?} is not a number"))?,
        Err(_) => DEFAULT_EVENTS,
    };
    let batch = match std::env::var(BATCH_VAR) {
        Ok(value) => value
            .replace('_', "")
            .parse::<usize>()
            .with_context(|| format!("{BATCH_VAR}={value:?} is not a number"))?,
        Err(_) => PUBLISH_BATCH,
    };
    anyhow::ensure!(batch >= 1, "{BATCH_VAR} must be at least 1");
    anyhow::ensure!(events >= batch, "{EVENTS_VAR} must be at least {batch}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&nats_url, events, batch))
}

async fn run(nats_url: &str, events: usize, batch: usize) -> anyhow::Result<()> {
    println!("relay benchmark");
    println!("  {EVENTS_VAR}={events} (events in the store; each side publishes all of them)");
    println!("  {NATS_URL_VAR}={nats_url}");
    println!("  {BATCH_VAR}={batch}");
    println!(
        "  payloads 180-220 random bytes in the event, {} CPUs; store: SQLite, synchronous=NORMAL",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print_load();
    let mut report = Report::default();

    let dir = patchbay_testkit::TestSqlite::new();
    let store = EventStore::connect_with(
        &dir.url("approvals.db"),
        StoreOptions {
            sqlite_durability: SqliteDurability::Normal,
            ..StoreOptions::default()
        },
    )
    .await?;
    let started = Instant::now();
    fill(&store, events).await?;
    let stored = read_everything(&store).await?;
    anyhow::ensure!(stored.len() == events, "store holds {}", stored.len());
    println!(
        "filled the store with {events} events in {} streams in {:.2} s",
        events / EVENTS_PER_STREAM,
        started.elapsed().as_secs_f64()
    );

    println!("\n== NATS JetStream ==");
    match nats_cases(nats_url, &store, &stored, batch, &mut report).await {
        Ok(()) => {}
        Err(Skip::Unreachable(error)) => println!(
            "SKIPPED NATS cases (raw publish, relay to NATS): cannot reach {nats_url}: {error:#}"
        ),
        Err(Skip::Failed(error)) => return Err(error),
    }

    println!("\n== in-process bus ==");
    store
        .save_checkpoint(RELAY_CHECKPOINT, LogPosition::START)
        .await?;
    let subjects = unique_subjects("i")?;
    let bus = Bus::in_process(&dir.url("bus.db"), subjects).await?;
    let relay = Relay::new(SERVICE, store.clone(), bus.clone())?.batch_size(batch);
    let started = Instant::now();
    let relayed = relay.relay_pending().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(relayed == events, "relayed {relayed} of {events}");
    report.add(
        "in-process",
        &format!(
            "Relay::relay_pending() into the in-process bus (SQLite, synchronous=FULL), batches of {batch}"
        ),
        relayed,
        elapsed,
        None,
    );
    store.close().await;

    report.print();
    Ok(())
}

enum Skip {
    Unreachable(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Skip {
    fn from(error: anyhow::Error) -> Self {
        Skip::Failed(error)
    }
}

impl From<BusError> for Skip {
    fn from(error: BusError) -> Self {
        Skip::Failed(error.into())
    }
}

impl From<patchbay_eventstore::EventStoreError> for Skip {
    fn from(error: patchbay_eventstore::EventStoreError) -> Self {
        Skip::Failed(error.into())
    }
}

async fn nats_cases(
    url: &str,
    store: &EventStore,
    stored: &[RecordedEvent],
    batch: usize,
    report: &mut Report,
) -> Result<(), Skip> {
    let raw_bus = match tokio::time::timeout(
        Duration::from_secs(10),
        Bus::nats(url, unique_subjects("r")?),
    )
    .await
    {
        Ok(Ok(bus)) => bus,
        Ok(Err(error)) => return Err(Skip::Unreachable(error.into())),
        Err(_) => {
            return Err(Skip::Unreachable(anyhow::anyhow!("no answer within 10 s")));
        }
    };
    let relay_bus = Bus::nats(url, unique_subjects("l")?).await?;
    let result = nats_measure(&raw_bus, &relay_bus, store, stored, batch, report).await;
    for (bus, services) in [
        (&raw_bus, &["warmup", "raw1", "raw2", "bus", "dlq"][..]),
        (&relay_bus, &[SERVICE, "dlq"][..]),
    ] {
        for service in services {
            if let Err(error) = bus.delete_stream(service).await {
                println!("warning: could not delete stream of {service}: {error}");
            }
        }
    }
    result
}

async fn nats_measure(
    raw_bus: &Bus,
    relay_bus: &Bus,
    store: &EventStore,
    stored: &[RecordedEvent],
    batch: usize,
    report: &mut Report,
) -> Result<(), Skip> {
    let Bus::Nats(raw_nats) = raw_bus else {
        return Err(Skip::Failed(anyhow::anyhow!("Bus::nats made no NATS bus")));
    };
    let jetstream = jetstream::new(raw_nats.client().clone());
    let n = stored.len();

    // Warm-up: the connection, the server's stream machinery, and time for the fill's writes to
    // settle (the first pass was consistently slower without it).
    let warmup = RawMessages::new(raw_bus.subjects(), "warmup", &stored[..n.min(20_000)]);
    raw_bus.ensure_stream("warmup").await?;
    raw_publish(&jetstream, &warmup, batch).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut raw_rates = Vec::new();
    for pass in [1, 2] {
        if pass == 2 {
            // The relay runs between the two raw passes, so both see the same server state.
            relay_to_nats(relay_bus, store, n, batch, report).await?;
        }
        let service = format!("raw{pass}");
        let raw = RawMessages::new(raw_bus.subjects(), &service, stored);
        raw_bus.ensure_stream(&service).await?;
        let elapsed = raw_publish(&jetstream, &raw, batch).await?;
        check_stream(&jetstream, raw_bus.subjects(), &service, n).await?;
        raw_rates.push(per_second(n, elapsed));
        report.add(
            &format!("raw, pass {pass}"),
            &format!(
                "async_nats::jetstream send_publish, {batch} in flight then await acks, Nats-Msg-Id + traceparent"
            ),
            n,
            elapsed,
            None,
        );
    }
    let raw_rate = raw_rates.iter().sum::<f64>() / raw_rates.len() as f64;
    let relay_rate = report.rate_of("relay").context("the relay case ran")?;
    report.ratio(
        "ratio",
        "relay / raw (mean of both raw passes)",
        relay_rate / raw_rate,
        TARGET_RATIO,
    );

    // Where the relay's time goes: its two halves on their own.
    let started = Instant::now();
    let mut position = LogPosition::START;
    let mut read = 0;
    loop {
        let page = store.read_all(position, batch).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        read += page.len();
    }
    report.add(
        "part: read",
        &format!("read_all of the SQLite store, pages of {batch} (what the relay reads)"),
        read,
        started.elapsed(),
        None,
    );
    let started = Instant::now();
    let messages: Vec<BusMessage> = stored
        .iter()
        .map(|event| BusMessage {
            subject: raw_bus.subjects().event("bus", &event.event_type),
            message_id: event.event_id.to_string(),
            headers: Vec::new(),
            payload: encode_envelope(SERVICE, event),
        })
        .collect();
    report.add(
        "part: encode",
        "encode_envelope + subject + message id for every event (what the relay builds)",
        messages.len(),
        started.elapsed(),
        None,
    );
    raw_bus.ensure_stream("bus").await?;
    let started = Instant::now();
    for chunk in messages.chunks(batch) {
        raw_bus.publish_batch(chunk).await?;
    }
    let elapsed = started.elapsed();
    check_stream(&jetstream, raw_bus.subjects(), "bus", n).await?;
    report.add(
        "part: publish",
        &format!(
            "Bus::publish_batch of the relay's messages, {batch} per call, prepared beforehand"
        ),
        n,
        elapsed,
        None,
    );
    Ok(())
}

async fn relay_to_nats(
    bus: &Bus,
    store: &EventStore,
    n: usize,
    batch: usize,
    report: &mut Report,
) -> Result<(), Skip> {
    let relay = Relay::new(SERVICE, store.clone(), bus.clone())?.batch_size(batch);
    let started = Instant::now();
    let relayed = relay.relay_pending().await?;
    let elapsed = started.elapsed();
    if relayed != n {
        return Err(Skip::Failed(anyhow::anyhow!("relayed {relayed} of {n}")));
    }
    let Bus::Nats(nats) = bus else {
        return Err(Skip::Failed(anyhow::anyhow!("Bus::nats made no NATS bus")));
    };
    check_stream(
        &jetstream::new(nats.client().clone()),
        bus.subjects(),
        SERVICE,
        n,
    )
    .await?;
    report.add(
        "relay",
        &format!(
            "Relay::relay_pending() SQLite store -> JetStream, batches of {batch} (read_all, encode, send; batch k+1 while batch k's acks are outstanding; checkpoint)"
        ),
        relayed,
        elapsed,
        Some(TARGET_RELAY),
    );
    Ok(())
}

/// What the relay would publish for each stored event, prepared before the clock starts.
struct RawMessages {
    messages: Vec<(String, String, Option<String>, Bytes)>,
}

impl RawMessages {
    fn new(subjects: &Subjects, service: &str, events: &[RecordedEvent]) -> Self {
        Self {
            messages: events
                .iter()
                .map(|event| {
                    (
                        subjects.event(service, &event.event_type),
                        event.event_id.to_string(),
                        event.metadata.traceparent.clone(),
                        encode_envelope(SERVICE, event),
                    )
                })
                .collect(),
        }
    }
}

/// Publishes everything, `batch` in flight at a time; returns the time taken.
async fn raw_publish(
    jetstream: &jetstream::Context,
    messages: &RawMessages,
    batch: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut pending = Vec::with_capacity(batch);
    for chunk in messages.messages.chunks(batch) {
        for (subject, message_id, traceparent, payload) in chunk {
            let mut headers = HeaderMap::new();
            if let Some(traceparent) = traceparent {
                headers.insert(TRACEPARENT, traceparent.as_str());
            }
            headers.insert(MESSAGE_ID, message_id.as_str());
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .headers(headers);
            pending.push(jetstream.send_publish(subject.clone(), publish).await?);
        }
        for ack in pending.drain(..) {
            let ack = ack.await?;
            anyhow::ensure!(!ack.duplicate, "raw publish was deduplicated");
        }
    }
    Ok(started.elapsed())
}

/// Checks that `service`'s stream holds exactly `expected` messages (nothing lost or deduplicated).
async fn check_stream(
    jetstream: &jetstream::Context,
    subjects: &Subjects,
    service: &str,
    expected: usize,
) -> anyhow::Result<()> {
    let info = jetstream
        .get_stream(subjects.stream_name(service))
        .await?
        .get_info()
        .await?;
    anyhow::ensure!(
        info.state.messages == expected as u64,
        "stream of {service} holds {} messages, expected {expected}",
        info.state.messages
    );
    Ok(())
}

/// Appends `events` events, `EVENTS_PER_STREAM` to a stream, 10 streams' worth per batch of work.
async fn fill(store: &EventStore, events: usize) -> anyhow::Result<()> {
    let mut rng = Rng(0x5eed_0003);
    let mut type_index = 0;
    for stream_no in 0..events.div_ceil(EVENTS_PER_STREAM) {
        let in_stream = EVENTS_PER_STREAM.min(events - stream_no * EVENTS_PER_STREAM);
        let correlation = Uuid::now_v7();
        let command = Uuid::now_v7();
        let batch: Vec<NewEvent> = (0..in_stream)
            .map(|_| {
                type_index = (type_index + 1) % EVENT_TYPES.len();
                let mut payload = vec![0_u8; 180 + (rng.next() % 41) as usize];
                rng.fill(&mut payload);
                let traceparent = format!(
                    "00-{:016x}{:016x}-{:016x}-01",
                    rng.next(),
                    rng.next(),
                    rng.next() | 1
                );
                let mut event = NewEvent::new(EVENT_TYPES[type_index], 1, payload)
                    .actor("user:alice@example.com")
                    .trace_context(Some(traceparent), None);
                event.metadata.correlation_id = correlation;
                event.metadata.causation_id = Some(command);
                event
            })
            .collect();
        store
            .append(
                &format!("approval-KB{stream_no:08}"),
                ExpectedVersion::NoStream,
                &batch,
            )
            .await?;
    }
    Ok(())
}

async fn read_everything(store: &EventStore) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut all = Vec::new();
    let mut position = LogPosition::START;
    loop {
        let page = store.read_all(position, 10_000).await?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        position = last.position;
        all.extend(page);
    }
}

/// A prefix no other run uses: `b<random><role>`.
fn unique_subjects(role: &str) -> anyhow::Result<Subjects> {
    let random = Uuid::new_v4().simple().to_string();
    Ok(Subjects::new(&format!("b{}{role}", &random[..10]))?)
}

/// SplitMix64: fast, deterministic, good enough for filler bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Other work on this machine (2 cores) distorts every figure: say how busy it was.
fn print_load() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one_minute = load.split_whitespace().next().unwrap_or("?");
    println!("  load average before the run (1 min): {one_minute}");
    if one_minute.parse::<f64>().is_ok_and(|load| load > 0.5) {
        println!("  WARNING: the machine is busy; figures will be lower than on an idle machine");
    }
}

fn per_second(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Every figure of the run, printed as it is measured and again as a table at the end.
#[derive(Debug, Default)]
struct Report {
    rows: Vec<[String; 5]>,
    rates: Vec<(String, f64)>,
}

impl Report {
    fn add(
        &mut self,
        case: &str,
        what: &str,
        events: usize,
        elapsed: Duration,
        target: Option<f64>,
    ) {
        let rate = per_second(events, elapsed);
        let (target, verdict) = match target {
            None => ("-".to_owned(), "-"),
            Some(t) => (
                format!(">= {}", thousands(t)),
                if rate >= t { "met" } else { "MISSED" },
            ),
        };
        self.rates.push((case.to_owned(), rate));
        println!(
            "{case}: {what}: {} events/s ({events} events in {:.2} s; target {target}: {verdict})",
            thousands(rate),
            elapsed.as_secs_f64()
        );
        self.rows.push([
            case.to_owned(),
            what.to_owned(),
            format!("{} events/s", thousands(rate)),
            target,
            verdict.to_owned(),
        ]);
    }

    /// The events/s of the row for `case`.
    fn rate_of(&self, case: &str) -> Option<f64> {
        self.rates
            .iter()
            .find(|(name, _)| name == case)
            .map(|(_, rate)| *rate)
    }

    fn ratio(&mut self, case: &str, what: &str, ratio: f64, target: f64) {
        let verdict = if ratio >= target { "met" } else { "MISSED" };
        println!("{case}: {what}: {ratio:.2} (target >= {target:.2}: {verdict})");
        self.rows.push([
            case.to_owned(),
            what.to_owned(),
            format!("{ratio:.2}"),
            format!(">= {target:.2}"),
            verdict.to_owned(),
        ]);
    }

    fn print(&self) {
        println!("\n| case | what | result | target | |");
        println!("|---|---|---:|---|---|");
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
    }
}
