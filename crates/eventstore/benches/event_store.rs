//! Event store throughput, every figure measured in one run so ratios compare like with like.
//!
//! Cases (see docs/benchmarks.md):
//!   a. PostgreSQL `append`, batches of 100 to fresh streams, sequential, against the raw
//!      `postgres_raw_insert` baseline of the same rows, interleaved round by round;
//!   b. PostgreSQL `append`, one event per call, 8 concurrent writers on streams of their own;
//!   c. SQLite `append`, batches of 100, `synchronous=FULL` (default) and `NORMAL`, each against a
//!      bare multi-row `INSERT` baseline;
//!   d. `read_all` replay of everything written into a trivial projection, on both backends;
//!   e. tamper evidence: `append`, batches of 100, with and without a `Sealer` hash-chaining the
//!      log concurrently on the same store, interleaved round by round, on both backends (target:
//!      chaining costs at most 10 % of append throughput); then `seal` and `verify_chain` rates.
//!      Its rounds are longer than case a's: `PATCHBAY_BENCH_EVENTS` / 4 events each. Each round
//!      also prints the CPU it used, of the bench process and of PostgreSQL's server processes.
//!
//! Environment: `PATCHBAY_BENCH_DATABASE_URL`, `PATCHBAY_BENCH_EVENTS`, `PATCHBAY_BENCH_CASES` and
//! the diagnostic `PATCHBAY_BENCH_PG_SETUP` / `PATCHBAY_BENCH_SQLITE_SETUP` (see the constants
//! below). PostgreSQL cases run in a fresh database that is dropped afterwards; if the server cannot
//! be reached they are skipped with a line saying why, and the rest still runs.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use patchbay_eventstore::{
    DEFAULT_SEAL_BATCH, EventStore, ExpectedVersion, LogPosition, NewEvent, Sealer,
    SqliteDurability, StoreOptions, postgres_raw_insert,
};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DATABASE_URL_VAR: &str = "PATCHBAY_BENCH_DATABASE_URL";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const EVENTS_VAR: &str = "PATCHBAY_BENCH_EVENTS";
/// Diagnostics only: SQL run on the fresh PostgreSQL database after migrating, before measuring,
/// e.g. `ALTER DATABASE ... SET synchronous_commit = off`; see docs/benchmarks.md.
const PG_SETUP_VAR: &str = "PATCHBAY_BENCH_PG_SETUP";
/// Diagnostics only: SQL run on each SQLite store's pool before measuring, e.g.
/// `PRAGMA cache_size = -65536`. Sequential cases use one pooled connection, which it reaches.
const SQLITE_SETUP_VAR: &str = "PATCHBAY_BENCH_SQLITE_SETUP";
/// Which cases to run, e.g. `a,b` or `d` (default: all). Case d alone replays events it writes first.
const CASES_VAR: &str = "PATCHBAY_BENCH_CASES";
const DEFAULT_EVENTS: usize = 200_000;

/// Events per append in the batch cases.
const BATCH: usize = 100;
/// Case a alternates append and raw insert this many times (ABBA order, so neither side always runs
/// on the bigger table or right after the other's checkpoint).
const ROUNDS: usize = 8;
/// Concurrent writers in case b.
const WRITERS: usize = 8;
/// Streams each writer of case b cycles through.
const STREAMS_PER_WRITER: usize = 25;
/// Case b appends one event per round trip and commit; it runs on this fraction of the events.
const SINGLE_EVENT_DIVISOR: usize = 10;
/// `read_all` page size of case d.
const PAGE: usize = 10_000;

const TARGET_PG_BATCH: f64 = 50_000.0;
const TARGET_PG_RATIO: f64 = 0.7;
const TARGET_PG_SINGLE: f64 = 3_000.0;
const TARGET_SQLITE_BATCH: f64 = 100_000.0;
const TARGET_REPLAY: f64 = 500_000.0;
/// Case e: append throughput with a sealer running, as a share of the throughput without one.
const TARGET_SEALING_RATIO: f64 = 0.9;

fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

#[derive(Debug)]
struct Config {
    database_url: String,
    events: usize,
    pg_setup: Option<String>,
    sqlite_setup: Option<String>,
    cases: String,
}

impl Config {
    fn runs(&self, case: char) -> bool {
        self.cases.contains(case)
    }
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let database_url =
            std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let events = match std::env::var(EVENTS_VAR) {
            Ok(value) => value
                .replace('_', "")
                .parse::<usize>()
                .with_context(|| format!("{EVENTS_VAR}={value:?} is not a number"))?,
            Err(_) => DEFAULT_EVENTS,
        };
        anyhow::ensure!(
            events >= BATCH * ROUNDS,
            "{EVENTS_VAR} must be at least {}",
            BATCH * ROUNDS
        );
        Ok(Self {
            database_url,
            events,
            pg_setup: std::env::var(PG_SETUP_VAR)
                .ok()
                .filter(|sql| !sql.trim().is_empty()),
            sqlite_setup: std::env::var(SQLITE_SETUP_VAR)
                .ok()
                .filter(|sql| !sql.trim().is_empty()),
            cases: std::env::var(CASES_VAR)
                .unwrap_or_else(|_| "abcde".to_owned())
                .to_ascii_lowercase(),
        })
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    println!("event_store benchmark");
    println!(
        "  {EVENTS_VAR}={} (cases a and c: that many events per measured side; case b: {}; case d: everything written)",
        config.events,
        config.events / SINGLE_EVENT_DIVISOR
    );
    println!("  {DATABASE_URL_VAR}={}", redact(&config.database_url));
    println!(
        "  payloads 180-220 random bytes; actor, correlation, causation and traceparent set; {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  {CASES_VAR}={}", config.cases);
    print_load();
    let mut report = Report::default();

    println!("\n== PostgreSQL ==");
    if !(config.runs('a') || config.runs('b') || config.runs('d') || config.runs('e')) {
        println!("no PostgreSQL case selected");
    } else {
        postgres(&config, &mut report).await?;
    }
    if config.runs('c') || config.runs('d') || config.runs('e') {
        println!("\n== SQLite ==");
        sqlite_cases(&config, &mut report).await?;
    }
    report.print();
    Ok(())
}

async fn postgres(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    match BenchDatabase::create(&config.database_url).await {
        Ok(db) => {
            let result = postgres_cases(&db.url, config, report).await;
            if let Err(error) = db.drop_database().await {
                println!("warning: could not drop database {}: {error:#}", db.name);
            }
            result?;
        }
        Err(error) => println!(
            "SKIPPED PostgreSQL cases (a, b, d/postgres, e/postgres): cannot reach {}: {error:#}",
            redact(&config.database_url)
        ),
    }
    Ok(())
}

async fn postgres_cases(url: &str, config: &Config, report: &mut Report) -> anyhow::Result<()> {
    if let Some(sql) = &config.pg_setup {
        // Migrate first, so the setup can change the store's tables; then reconnect, so every
        // pooled connection sees database-level settings.
        let store = EventStore::connect(url).await?;
        let pool = store
            .postgres_pool()
            .context("a postgres:// store has a PostgreSQL pool")?;
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .context(PG_SETUP_VAR)?;
        store.close().await;
        println!("DIAGNOSTIC RUN: {PG_SETUP_VAR}={sql:?} was applied; figures are not comparable");
    }
    let store = EventStore::connect(url).await?;
    let mut events = EventFactory::new(0x5eed_0001);
    if config.runs('a') {
        postgres_append_vs_raw(&store, &mut events, config, report).await?;
    }
    if config.runs('b') {
        // One event per append, 8 concurrent writers.
        let single_events = (config.events / SINGLE_EVENT_DIVISOR).max(WRITERS);
        let per_writer = single_events / WRITERS;
        single_writers(&store, &mut events, "warm-writer", 10).await?;
        let elapsed = single_writers(&store, &mut events, "writer", per_writer).await?;
        report.add(
            "b",
            "postgres",
            "append, 1 event per call, 8 concurrent writers (Exact version)",
            per_writer * WRITERS,
            elapsed,
            Target::AtLeast(TARGET_PG_SINGLE),
        );
    }
    if config.runs('d') {
        if store.count_after(LogPosition::START).await? == 0 {
            fill(&store, &mut events, config.events).await?;
        }
        replay_cases(&store, "postgres", report).await?;
    }
    if config.runs('e') {
        sealing_overhead(&store, "postgres", &mut events, config, report).await?;
    }
    store.close().await;
    Ok(())
}

/// Case e alternates with and without the sealer this many times. Fewer, longer rounds than
/// case a: the sealer lingers 100 ms between batches, and a short round would end before it sealed.
/// Four rather than two since 2026-11-30: on this machine one pair's ratio moved by as much as the
/// effect (0.78 to 1.00), so the median of the pairs' ratios is reported beside the pooled ratio.
const SEALING_ROUNDS: usize = 4;

/// Whether pair `round` of case e runs its round with the sealer first: ABBA BAAB, so that each
/// kind of round takes each of four consecutive places once. Plain ABBA ABBA put every round with
/// the sealer 1st or 4th of four, places where, in five runs with one kind of round throughout,
/// rounds were 6 – 13 % slower (2026-12-01). The ratio did not move when the order changed
/// (docs/benchmarks.md), but no place now favours either kind.
fn sealer_first(round: usize) -> bool {
    matches!(round % 4, 0 | 3)
}

/// Case e: appends with a `Sealer` (default settings) following the log against appends without
/// one, interleaved round by round (see [`sealer_first`]) on the same store. The sealer's backlog
/// is cleared, untimed, between rounds, so a round with the sealer pays only for sealing its own
/// appends. Work the sealer had not done when a round's appends ended is reported as its backlog,
/// and a second rate counts each round until the sealer had caught up with it (pessimistic: it adds
/// the tail).
async fn sealing_overhead(
    store: &EventStore,
    backend: &str,
    events: &mut EventFactory,
    config: &Config,
    report: &mut Report,
) -> anyhow::Result<()> {
    let batches_per_round = (config.events / BATCH / SEALING_ROUNDS).max(1);
    let mut stream_no = 0_u64;
    let mut next_batches = |events: &mut EventFactory, n: usize| {
        (0..n)
            .map(|_| {
                stream_no += 1;
                (
                    format!("sealing-{stream_no:09}"),
                    events.batch(BATCH, "DeploymentPlanned"),
                )
            })
            .collect::<Vec<_>>()
    };
    // Warm-up, and seal what earlier cases wrote.
    for (stream, batch) in next_batches(events, 20) {
        store
            .append(&stream, ExpectedVersion::NoStream, &batch)
            .await?;
    }
    let mut catch_up = SealCatchUp::default();
    catch_up.run(store).await?;
    let (mut with_time, mut without_time) = (Duration::ZERO, Duration::ZERO);
    let mut until_sealed_time = Duration::ZERO;
    let (mut with_rounds, mut without_rounds, mut lags) = (Vec::new(), Vec::new(), Vec::new());
    let (mut with_cpu, mut without_cpu) = (Vec::new(), Vec::new());
    let fed_before = store.sealed_from_feed();
    for round in 0..SEALING_ROUNDS {
        let with_batches = next_batches(events, batches_per_round);
        let without_batches = next_batches(events, batches_per_round);
        for with_sealer in if sealer_first(round) {
            [true, false]
        } else {
            [false, true]
        } {
            let batches = if with_sealer {
                &with_batches
            } else {
                &without_batches
            };
            let shutdown = CancellationToken::new();
            let sealer =
                with_sealer.then(|| tokio::spawn(Sealer::new(store.clone()).run(shutdown.clone())));
            let cpu_before = CpuTime::now();
            let started = Instant::now();
            for (stream, batch) in batches {
                store
                    .append(stream, ExpectedVersion::NoStream, batch)
                    .await?;
            }
            let elapsed = started.elapsed();
            let rate = per_second(batches_per_round * BATCH, elapsed);
            if let (Some(before), Some(after)) = (cpu_before, CpuTime::now()) {
                let cpu = if with_sealer {
                    &mut with_cpu
                } else {
                    &mut without_cpu
                };
                cpu.push(after.since(&before, store.postgres_pool().is_some()));
            }
            if let Some(sealer) = sealer {
                // How far behind the sealer was when the appends ended.
                let head = store.seal_head().await?;
                let backlog = store.count_after(head.position).await?;
                lags.push(backlog);
                // The tail: until the sealer has sealed everything this round appended.
                let target = store.count_after(LogPosition::START).await?;
                while store.seal_head().await?.sequence < target {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                until_sealed_time += started.elapsed();
                shutdown.cancel();
                sealer.await??;
                with_time += elapsed;
                with_rounds.push(rate);
            } else {
                without_time += elapsed;
                without_rounds.push(rate);
            }
            catch_up.run(store).await?;
            settle(store).await?;
        }
    }
    let measured = batches_per_round * BATCH * SEALING_ROUNDS;
    println!(
        "e. per-round events/s, with sealer:    {}",
        join_rates(&with_rounds)
    );
    println!(
        "e. per-round events/s, without sealer: {}",
        join_rates(&without_rounds)
    );
    let mut pair_ratios: Vec<f64> = with_rounds
        .iter()
        .zip(&without_rounds)
        .map(|(with, without)| with / without)
        .collect();
    pair_ratios.sort_by(f64::total_cmp);
    println!(
        "e. per-round ratios, with / without, sorted: {}",
        pair_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let median = match pair_ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => pair_ratios[n / 2],
        n => (pair_ratios[n / 2 - 1] + pair_ratios[n / 2]) / 2.0,
    };
    for (label, rounds) in [("with sealer", &with_cpu), ("without", &without_cpu)] {
        println!(
            "e. CPU seconds per round, {label}: {}",
            rounds
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "e. events the sealer took from the appender's commits, not read back: {} of {}",
        store.sealed_from_feed() - fed_before,
        batches_per_round * BATCH * SEALING_ROUNDS
    );
    println!(
        "e. sealer backlog when each round's appends ended (events): {}",
        lags.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    report.add(
        "e",
        backend,
        "append, batches of 100, fresh streams, with a Sealer running",
        measured,
        with_time,
        Target::None,
    );
    report.add(
        "e",
        backend,
        "append, batches of 100, fresh streams, no sealer",
        measured,
        without_time,
        Target::None,
    );
    report.add(
        "e",
        backend,
        "  the same rounds timed until the sealer had sealed them",
        measured,
        until_sealed_time,
        Target::None,
    );
    report.ratio(
        "e",
        backend,
        "ratio append with sealer / without",
        per_second(measured, with_time) / per_second(measured, without_time),
        TARGET_SEALING_RATIO,
    );
    report.ratio(
        "e",
        backend,
        "  median of the rounds' ratios",
        median,
        TARGET_SEALING_RATIO,
    );
    if catch_up.events > 0 {
        report.add(
            "e",
            backend,
            "seal (catch-up between rounds, nothing appending, DEFAULT_SEAL_BATCH per transaction)",
            catch_up.events as usize,
            catch_up.time,
            Target::None,
        );
    }
    let started = Instant::now();
    let verified = store.verify_chain().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(verified.is_intact(), "{verified}");
    report.add(
        "e",
        backend,
        "verify_chain of the whole log",
        verified.sealed as usize,
        elapsed,
        Target::None,
    );
    Ok(())
}

/// CPU time used so far by this process and by the PostgreSQL server processes on this host,
/// read from `/proc` (Linux only; None elsewhere). Case e prints it per round: on two vCPUs the
/// sealer's cost in throughput follows the CPU it uses, client and server (docs/benchmarks.md,
/// "Hash chaining: any CPU beside the appender costs throughput").
#[derive(Debug, Clone, Copy)]
struct CpuTime {
    bench_ticks: u64,
    postgres_ticks: u64,
}

/// `/proc/<pid>/stat` counts CPU time in clock ticks of 1/100 s on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuTime {
    fn now() -> Option<Self> {
        let own = std::process::id().to_string();
        let mut time = CpuTime {
            bench_ticks: 0,
            postgres_ticks: 0,
        };
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let pid = entry.file_name();
            let Some(pid) = pid
                .to_str()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // A process may exit between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((name, ticks)) = parse_stat(&stat) else {
                continue;
            };
            if pid == own {
                time.bench_ticks += ticks;
            } else if name == "postgres" {
                time.postgres_ticks += ticks;
            }
        }
        Some(time)
    }

    /// The CPU used since `before`; the server's only when the store is on PostgreSQL.
    fn since(&self, before: &CpuTime, on_postgres: bool) -> RoundCpu {
        let seconds =
            |after: u64, before: u64| after.saturating_sub(before) as f64 / TICKS_PER_SECOND;
        RoundCpu {
            bench: seconds(self.bench_ticks, before.bench_ticks),
            postgres: on_postgres.then(|| seconds(self.postgres_ticks, before.postgres_ticks)),
        }
    }
}

/// A process's name and its user + system CPU ticks from its `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may itself hold spaces or parentheses.
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// CPU one round used: the bench process (appender and sealer) and, on PostgreSQL, the server.
#[derive(Debug, Clone, Copy)]
struct RoundCpu {
    bench: f64,
    postgres: Option<f64>,
}

impl std::fmt::Display for RoundCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}", self.bench)?;
        match self.postgres {
            Some(server) => write!(f, " + {server:.2} server"),
            None => Ok(()),
        }
    }
}

/// Seals everything appended so far, untimed for the append figures but timed on its own.
#[derive(Debug, Default)]
struct SealCatchUp {
    events: u64,
    time: Duration,
}

impl SealCatchUp {
    async fn run(&mut self, store: &EventStore) -> anyhow::Result<()> {
        let target = store.count_after(LogPosition::START).await?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            let progress = store.seal(DEFAULT_SEAL_BATCH).await?;
            self.events += progress.sealed;
            if progress.head.sequence >= target {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "sealing did not catch up with {target} events in 60 s"
            );
            if progress.caught_up {
                // PostgreSQL: the last events are behind a transaction still open elsewhere.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        self.time += started.elapsed();
        Ok(())
    }
}

/// Starts case e's next round from the same state whatever the last one left: on SQLite an empty
/// WAL, since a round that began with the previous round's WAL still to checkpoint ran up to 1.8×
/// slower than its pair (2026-11-30); on PostgreSQL a fresh checkpoint, so that none falls inside
/// one round and not its pair (a role without the right to `CHECKPOINT` skips it, saying so once).
async fn settle(store: &EventStore) -> anyhow::Result<()> {
    if let Some(pool) = store.sqlite_pool() {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await
            .context("checkpointing the SQLite WAL between rounds")?;
    }
    if let Some(pool) = store.postgres_pool()
        && let Err(error) = sqlx::query("CHECKPOINT").execute(pool).await
    {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| println!("e. no CHECKPOINT between rounds ({error})"));
    }
    Ok(())
}

/// Case a: `append` against `postgres_raw_insert` of the same kind of rows, interleaved.
async fn postgres_append_vs_raw(
    store: &EventStore,
    events: &mut EventFactory,
    config: &Config,
    report: &mut Report,
) -> anyhow::Result<()> {
    let pool = store
        .postgres_pool()
        .context("a postgres:// store has a PostgreSQL pool")?;
    let mut raw_conn = pool.acquire().await?;
    let batches_per_round = (config.events / BATCH / ROUNDS).max(1);
    let mut stream_no = 0_u64;
    let mut next_streams = |events: &mut EventFactory, prefix: &str, n: usize| {
        (0..n)
            .map(|_| {
                stream_no += 1;
                (
                    format!("{prefix}-{stream_no:09}"),
                    events.batch(BATCH, "DeploymentPlanned"),
                )
            })
            .collect::<Vec<_>>()
    };
    // Warm-up: connections, plan caches, the first pages of every index.
    for (stream, batch) in next_streams(events, "warm-append", 20) {
        store
            .append(&stream, ExpectedVersion::NoStream, &batch)
            .await?;
    }
    for (stream, batch) in next_streams(events, "warm-raw", 20) {
        postgres_raw_insert(&mut raw_conn, &stream, 1, &batch).await?;
    }
    let mut append_time = Duration::ZERO;
    let mut raw_time = Duration::ZERO;
    let mut append_rounds = Vec::new();
    let mut raw_rounds = Vec::new();
    for round in 0..ROUNDS {
        let append_batches = next_streams(events, "deployment", batches_per_round);
        let raw_batches = next_streams(events, "deployment-raw", batches_per_round);
        for append_side in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let started = Instant::now();
            if append_side {
                for (stream, batch) in &append_batches {
                    let result = store
                        .append(stream, ExpectedVersion::NoStream, batch)
                        .await?;
                    anyhow::ensure!(!result.deduplicated && result.stream_version == BATCH as u64);
                }
                let elapsed = started.elapsed();
                append_time += elapsed;
                append_rounds.push(per_second(batches_per_round * BATCH, elapsed));
            } else {
                for (stream, batch) in &raw_batches {
                    postgres_raw_insert(&mut raw_conn, stream, 1, batch).await?;
                }
                let elapsed = started.elapsed();
                raw_time += elapsed;
                raw_rounds.push(per_second(batches_per_round * BATCH, elapsed));
            }
        }
    }
    drop(raw_conn);
    let measured = batches_per_round * BATCH * ROUNDS;
    let append_rate = per_second(measured, append_time);
    let raw_rate = per_second(measured, raw_time);
    println!(
        "a. per-round events/s, append: {}",
        join_rates(&append_rounds)
    );
    println!("a. per-round events/s, raw:    {}", join_rates(&raw_rounds));
    report.add(
        "a",
        "postgres",
        "append, batches of 100, fresh streams (NoStream), sequential",
        measured,
        append_time,
        Target::AtLeast(TARGET_PG_BATCH),
    );
    report.add(
        "a",
        "postgres",
        "postgres_raw_insert baseline, same rows, same connection pool",
        measured,
        raw_time,
        Target::None,
    );
    report.ratio(
        "a",
        "postgres",
        "ratio append / raw",
        append_rate / raw_rate,
        TARGET_PG_RATIO,
    );

    Ok(())
}

/// Appends `n` events in batches of `BATCH`, untimed: the log case d replays when a/b/c did not run.
async fn fill(store: &EventStore, events: &mut EventFactory, n: usize) -> anyhow::Result<()> {
    for i in 0..n.div_ceil(BATCH) {
        let batch = events.batch(BATCH.min(n - i * BATCH), "DeploymentPlanned");
        store
            .append(&format!("fill-{i:09}"), ExpectedVersion::NoStream, &batch)
            .await?;
    }
    Ok(())
}

/// Case d: replays the whole log twice, checking it saw every stored event.
async fn replay_cases(
    store: &EventStore,
    backend: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let stored = store.count_after(LogPosition::START).await?;
    for (pipelined, label) in [
        (false, "read_all replay (pages of 10,000)"),
        (
            true,
            "EventStore::replay (reads ahead on PostgreSQL; pages of 10,000)",
        ),
    ] {
        for pass in 1..=2 {
            let cpu_before = process_cpu();
            let (projection, elapsed) = replay(store, pipelined).await?;
            let cpu = process_cpu().saturating_sub(cpu_before);
            anyhow::ensure!(
                projection.events == stored,
                "replay saw {} events, the log holds {stored}",
                projection.events
            );
            report.add(
                "d",
                backend,
                &format!(
                    "{label} into a projection, pass {pass} of 2, {} streams",
                    projection.versions.len()
                ),
                projection.events as usize,
                elapsed,
                Target::AtLeast(TARGET_REPLAY),
            );
            println!(
                "d.   benchmark process CPU: {:.2} µs/event",
                cpu.as_secs_f64() * 1e6 / projection.events.max(1) as f64
            );
        }
    }
    Ok(())
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (Linux), to tell
/// the client's cost per event apart from waiting on the database or on other work on the machine.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux platform Patchbay targets.
    Duration::from_millis(ticks * 10)
}

/// Runs `WRITERS` tasks, each appending `per_writer` single-event batches to its own streams.
async fn single_writers(
    store: &EventStore,
    events: &mut EventFactory,
    prefix: &str,
    per_writer: usize,
) -> anyhow::Result<Duration> {
    let work: Vec<Vec<NewEvent>> = (0..WRITERS)
        .map(|_| {
            (0..per_writer)
                .map(|_| events.single("PatchInstalled"))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(writer, events)| {
            let store = store.clone();
            let streams: Vec<String> = (0..STREAMS_PER_WRITER)
                .map(|s| format!("{prefix}{writer}-host{s:04}"))
                .collect();
            tokio::spawn(async move {
                let mut versions = vec![0_u64; streams.len()];
                for (i, event) in events.iter().enumerate() {
                    let s = i % streams.len();
                    // `Exact(0)` would mean the same, but PostgreSQL's append binds a parameter
                    // too many for it (see docs/benchmarks.md), so new streams say `NoStream`.
                    let expected = match versions[s] {
                        0 => ExpectedVersion::NoStream,
                        version => ExpectedVersion::Exact(version),
                    };
                    let result = store
                        .append(&streams[s], expected, std::slice::from_ref(event))
                        .await?;
                    versions[s] = result.stream_version;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

async fn sqlite_cases(config: &Config, report: &mut Report) -> anyhow::Result<()> {
    let dir = patchbay_testkit::TestSqlite::new();
    let url = dir.url("events.db");
    let mut events = EventFactory::new(0x5eed_0002);
    let mut stream_no = 0_u64;
    let durabilities = if config.runs('c') {
        &[
            (
                SqliteDurability::Full,
                "append, batches of 100, fresh streams, synchronous=FULL (default)",
            ),
            (
                SqliteDurability::Normal,
                "append, batches of 100, fresh streams, synchronous=NORMAL",
            ),
        ][..]
    } else {
        &[]
    };
    for &(durability, label) in durabilities {
        let store = EventStore::connect_with(
            &url,
            StoreOptions {
                sqlite_durability: durability,
                ..StoreOptions::default()
            },
        )
        .await?;
        let pool = store
            .sqlite_pool()
            .context("a sqlite: store has a SQLite pool")?
            .clone();
        sqlite_setup(&pool, config).await?;
        let mut batches = |n: usize| {
            (0..n)
                .map(|_| {
                    stream_no += 1;
                    (
                        format!("deployment-{stream_no:09}"),
                        events.batch(BATCH, "DeploymentPlanned"),
                    )
                })
                .collect::<Vec<_>>()
        };
        for (stream, batch) in batches(20) {
            store
                .append(&stream, ExpectedVersion::NoStream, &batch)
                .await?;
            let (stream, batch) = &batches(1)[0];
            sqlite_raw_insert(&pool, stream, batch).await?;
        }
        let batches_per_round = (config.events / BATCH / ROUNDS).max(1);
        let (mut append_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            let append_batches = batches(batches_per_round);
            let raw_batches = batches(batches_per_round);
            for append_side in if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            } {
                let started = Instant::now();
                if append_side {
                    for (stream, batch) in &append_batches {
                        store
                            .append(stream, ExpectedVersion::NoStream, batch)
                            .await?;
                    }
                    append_time += started.elapsed();
                } else {
                    for (stream, batch) in &raw_batches {
                        sqlite_raw_insert(&pool, stream, batch).await?;
                    }
                    raw_time += started.elapsed();
                }
            }
        }
        let measured = batches_per_round * BATCH * ROUNDS;
        report.add(
            "c",
            "sqlite",
            label,
            measured,
            append_time,
            Target::AtLeast(TARGET_SQLITE_BATCH),
        );
        report.add(
            "c",
            "sqlite",
            "  baseline: the same rows as one multi-row INSERT per transaction, no version check",
            measured,
            raw_time,
            Target::None,
        );
        store.close().await;
    }

    let store = EventStore::connect_with(
        &url,
        StoreOptions {
            sqlite_durability: SqliteDurability::Normal,
            ..StoreOptions::default()
        },
    )
    .await?;
    if config.runs('d') {
        sqlite_setup(
            store
                .sqlite_pool()
                .context("a sqlite: store has a SQLite pool")?,
            config,
        )
        .await?;
        if store.count_after(LogPosition::START).await? == 0 {
            fill(&store, &mut events, config.events).await?;
        }
        replay_cases(&store, "sqlite", report).await?;
    }
    store.close().await;
    if config.runs('e') {
        // The default options: synchronous=FULL, as an embedded Patchbay runs.
        let store = EventStore::connect(&url).await?;
        sqlite_setup(
            store
                .sqlite_pool()
                .context("a sqlite: store has a SQLite pool")?,
            config,
        )
        .await?;
        sealing_overhead(&store, "sqlite", &mut events, config, report).await?;
        store.close().await;
    }
    Ok(())
}

async fn sqlite_setup(pool: &sqlx::SqlitePool, config: &Config) -> anyhow::Result<()> {
    if let Some(sql) = &config.sqlite_setup {
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .context(SQLITE_SETUP_VAR)?;
        println!(
            "DIAGNOSTIC RUN: {SQLITE_SETUP_VAR}={sql:?} was applied; figures are not comparable"
        );
    }
    Ok(())
}

/// SQLite's counterpart of `postgres_raw_insert`: `BEGIN IMMEDIATE`, the multi-row `INSERT` the
/// store itself uses, `COMMIT`; no version check, no `streams` row. A baseline for case c.
async fn sqlite_raw_insert(
    pool: &sqlx::SqlitePool,
    stream_id: &str,
    events: &[NewEvent],
) -> anyhow::Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = chrono_like_micros();
    let placeholders = vec!["(?,?,?,?,?,?,?,?,?,?,?,?)"; events.len()].join(",");
    let mut query = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload, \
         correlation_id, causation_id, actor, traceparent, tracestate, recorded_at_micros) VALUES {placeholders}"
    )));
    for (i, event) in events.iter().enumerate() {
        query = query
            .bind(event.event_id)
            .bind(stream_id)
            .bind(i as i64 + 1)
            .bind(event.event_type.as_str())
            .bind(i64::from(event.schema_version))
            .bind(event.payload.as_slice())
            .bind(event.metadata.correlation_id)
            .bind(event.metadata.causation_id)
            .bind(event.metadata.actor.as_str())
            .bind(event.metadata.traceparent.as_deref())
            .bind(event.metadata.tracestate.as_deref())
            .bind(now);
    }
    query.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

fn chrono_like_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The trivial projection of case d.
#[derive(Debug, Default)]
struct Projection {
    events: u64,
    payload_bytes: u64,
    versions: HashMap<String, u64>,
}

async fn replay(store: &EventStore, pipelined: bool) -> anyhow::Result<(Projection, Duration)> {
    let mut projection = Projection::default();
    let mut apply = |page: Vec<patchbay_eventstore::RecordedEvent>| {
        for event in page {
            projection.events += 1;
            projection.payload_bytes += event.payload.len() as u64;
            projection
                .versions
                .insert(event.stream_id, event.stream_version);
        }
    };
    let started = Instant::now();
    if pipelined {
        let mut replay = store.replay(LogPosition::START, PAGE);
        while let Some(page) = replay.next_page().await? {
            apply(page);
        }
    } else {
        let mut position = LogPosition::START;
        loop {
            let page = store.read_all(position, PAGE).await?;
            let Some(last) = page.last() else { break };
            position = last.position;
            apply(page);
        }
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(projection.payload_bytes > 0 || projection.events == 0);
    Ok((projection, elapsed))
}

/// Realistic events: ~200-byte random (incompressible, protobuf-sized) payloads with full metadata.
struct EventFactory {
    rng: Rng,
}

const ACTORS: &[&str] = &[
    "user:alice@example.com",
    "user:bob@example.com",
    "rule:auto-approve-critical",
    "service:wsus-sync",
];

impl EventFactory {
    fn new(seed: u64) -> Self {
        Self { rng: Rng(seed) }
    }

    fn event(&mut self, event_type: &str, correlation_id: Uuid, causation_id: Uuid) -> NewEvent {
        let mut payload = vec![0_u8; 180 + (self.rng.next() % 41) as usize];
        self.rng.fill(&mut payload);
        let traceparent = format!(
            "00-{:016x}{:016x}-{:016x}-01",
            self.rng.next(),
            self.rng.next(),
            self.rng.next() | 1
        );
        let actor = ACTORS[(self.rng.next() % ACTORS.len() as u64) as usize];
        let mut event = NewEvent::new(event_type, 1, payload)
            .actor(actor)
            .trace_context(Some(traceparent), None);
        event.metadata.correlation_id = correlation_id;
        event.metadata.causation_id = Some(causation_id);
        event
    }

    /// A command's output: one correlation and causation for the whole batch.
    fn batch(&mut self, n: usize, event_type: &str) -> Vec<NewEvent> {
        let correlation = Uuid::now_v7();
        let command = Uuid::now_v7();
        (0..n)
            .map(|_| self.event(event_type, correlation, command))
            .collect()
    }

    fn single(&mut self, event_type: &str) -> NewEvent {
        self.event(event_type, Uuid::now_v7(), Uuid::now_v7())
    }
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

/// A database of its own on the benchmark server, dropped by `drop_database`.
struct BenchDatabase {
    url: String,
    admin: PgConnectOptions,
    name: String,
}

impl BenchDatabase {
    async fn create(server: &str) -> anyhow::Result<Self> {
        let admin = PgConnectOptions::from_str(server)
            .with_context(|| format!("{DATABASE_URL_VAR} is not a PostgreSQL URL"))?;
        let name = format!("patchbay_bench_{}", Uuid::new_v4().simple());
        let mut conn = connect_admin(&admin).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .context("create the benchmark database")?;
        Ok(Self {
            url: patchbay_testkit::with_database(server, &name),
            admin,
            name,
        })
    }

    async fn drop_database(&self) -> anyhow::Result<()> {
        let mut conn = connect_admin(&self.admin).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

async fn connect_admin(admin: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    match tokio::time::timeout(Duration::from_secs(5), admin.connect()).await {
        Ok(conn) => Ok(conn?),
        Err(_) => anyhow::bail!("no answer within 5 s"),
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

/// A URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let user_info = &url[scheme_end + 3..at];
            match user_info.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn per_second(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn join_rates(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|r| thousands(*r))
        .collect::<Vec<_>>()
        .join(", ")
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

#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    AtLeast(f64),
}

/// Every figure of the run, printed as it is measured and again as a table at the end.
#[derive(Debug, Default)]
struct Report {
    rows: Vec<[String; 6]>,
}

impl Report {
    fn add(
        &mut self,
        case: &str,
        backend: &str,
        what: &str,
        events: usize,
        elapsed: Duration,
        target: Target,
    ) {
        let rate = per_second(events, elapsed);
        let (target, verdict) = match target {
            Target::None => ("-".to_owned(), "-"),
            Target::AtLeast(t) => (
                format!(">= {}", thousands(t)),
                if rate >= t { "met" } else { "MISSED" },
            ),
        };
        println!(
            "{case}. [{backend}] {what}: {} events/s ({events} events in {:.2} s; target {target}: {verdict})",
            thousands(rate),
            elapsed.as_secs_f64()
        );
        self.rows.push([
            case.to_owned(),
            backend.to_owned(),
            what.to_owned(),
            format!("{} events/s", thousands(rate)),
            target,
            verdict.to_owned(),
        ]);
    }

    fn ratio(&mut self, case: &str, backend: &str, what: &str, ratio: f64, target: f64) {
        let verdict = if ratio >= target { "met" } else { "MISSED" };
        println!("{case}. [{backend}] {what}: {ratio:.2} (target >= {target:.2}: {verdict})");
        self.rows.push([
            case.to_owned(),
            backend.to_owned(),
            what.to_owned(),
            format!("{ratio:.2}"),
            format!(">= {target:.2}"),
            verdict.to_owned(),
        ]);
    }

    fn print(&self) {
        println!("\n| case | backend | what | result | target | |");
        println!("|---|---|---|---:|---|---|");
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
    }
}
