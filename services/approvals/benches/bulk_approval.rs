//! Bulk-approval benchmark: 100,000 known updates approved with one `set_approval(Approved, all)`,
//! timed end to end (command in, every `UpdateApproved` stored, the view caught up).
//!
//! Run with `cargo bench -p patchbay-approvals --bench bulk_approval`. SQLite always runs;
//! PostgreSQL runs on a fresh database when `PATCHBAY_TEST_DATABASE_URL` is set. Override the size
//! with `PATCHBAY_BENCH_UPDATES`. The seeding (catalog facts appended directly to the log, then the
//! view rebuilt from it) is reported apart; a second, no-op run shows the cost of re-approving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench binary: failing loudly is the point

use std::time::Instant;

/// The allocator the `patchbay` binary ships with, so the figures are the shipped ones.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use patchbay_approvals::Approvals;
use patchbay_approvals::events::ApprovalsEvent;
use patchbay_approvals::observer::STREAM;
use patchbay_approvals::service::Selection;
use patchbay_eventstore::{EventStore, ExpectedVersion, MAX_BATCH};
use patchbay_proto::approvals::v1::{self as pb, ApprovalStatus};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_testkit::{TestPostgres, TestSqlite};
use prost::Message as _;

fn published(index: usize) -> ApprovalsEvent {
    let update = catalog::UpdatePublished {
        update_id: format!("deb:package-{index:06}:1.0-{index}:amd64"),
        details: Some(catalog::UpdateDetails {
            title: format!("package-{index:06} 1.0-{index}"),
            vendor: "Debian".into(),
            product: format!("package-{index:06}"),
            version: format!("1.0-{index}"),
            kind: catalog::UpdateKind::ThirdParty as i32,
            classification: catalog::Classification::Security as i32,
            severity: catalog::Severity::Important as i32,
            ..Default::default()
        }),
    };
    ApprovalsEvent::CatalogEventObserved(pb::CatalogEventObserved {
        event_type: "UpdatePublished".into(),
        schema_version: 1,
        payload: update.encode_to_vec(),
        catalog_position: index as u64 + 1,
    })
}

async fn run(backend: &str, url: &str, updates: usize) {
    let store = EventStore::connect(url).await.unwrap();
    let seeding = Instant::now();
    let events: Vec<_> = (0..updates).map(|i| published(i).to_new_event()).collect();
    for batch in events.chunks(MAX_BATCH) {
        store
            .append(STREAM, ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
    let approvals = Approvals::open(store.clone(), semver::Version::new(0, 1, 0))
        .await
        .unwrap();
    assert_eq!(approvals.view().updates.len(), updates);
    let seeded = seeding.elapsed();

    let start = Instant::now();
    let outcome = approvals
        .set_approval(
            Selection::Filter {
                filter: Default::default(),
                all: true,
            },
            ApprovalStatus::Approved,
            "benchmark",
            "user:bench",
        )
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(outcome.changed as usize, updates);

    let again = Instant::now();
    let repeat = approvals
        .set_approval(
            Selection::Filter {
                filter: Default::default(),
                all: true,
            },
            ApprovalStatus::Approved,
            "benchmark",
            "user:bench",
        )
        .await
        .unwrap();
    let repeated = again.elapsed();
    assert_eq!((repeat.changed, repeat.unchanged as usize), (0, updates));
    let approved = approvals
        .view()
        .approvals
        .values()
        .filter(|a| a.state.status == ApprovalStatus::Approved)
        .count();
    assert_eq!(approved, updates);

    println!(
        "{backend:>10}: {updates} updates approved in {:.2} s ({:.0} events/s); re-approving (no-op) {:.2} s; seeding {:.2} s",
        elapsed.as_secs_f64(),
        updates as f64 / elapsed.as_secs_f64(),
        repeated.as_secs_f64(),
        seeded.as_secs_f64(),
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    let updates: usize = std::env::var("PATCHBAY_BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("bulk approval, target: 100,000 updates in <= 5 s");
    let dir = TestSqlite::new();
    run("sqlite", &dir.url("approvals.db"), updates).await;
    if let Some(db) = TestPostgres::create().await {
        run("postgres", &db.url, updates).await;
    }
}
