//! The catalog service on a real store: imports, idempotent re-imports, revisions, KEV flags,
//! filters and paging, and two replicas writing the same updates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use patchbay_catalog::Catalog;
use patchbay_catalog::domain::UpdateId;
use patchbay_catalog::view::UpdateFilter;
use patchbay_eventstore::{EventStore, LogPosition};
use patchbay_proto::catalog::v1 as pb;
use patchbay_testkit::{TestPostgres, TestSqlite};

fn update(package: &str, version: &str, cves: &[&str]) -> (UpdateId, pb::UpdateDetails) {
    let id = UpdateId::debian(package, version, "amd64").unwrap();
    let details = pb::UpdateDetails {
        title: format!("{package} {version}"),
        vendor: "Debian".into(),
        product: package.into(),
        version: version.into(),
        kind: pb::UpdateKind::ThirdParty as i32,
        classification: pb::Classification::Security as i32,
        severity: pb::Severity::Important as i32,
        cve_ids: cves.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    (id, details)
}

async fn scenario(store: EventStore) {
    let catalog = Catalog::open(store.clone()).await.unwrap();
    let batch = vec![
        update("openssl", "3.0.17-1~deb12u2", &["CVE-2025-9230"]),
        update("git", "1:2.39.5-0+deb12u2", &["CVE-2025-48384"]),
        update("tzdata", "2025b-0+deb12u1", &[]),
    ];
    let first = catalog
        .publish_updates(batch.clone(), "user:alice")
        .await
        .unwrap();
    assert_eq!((first.published, first.revised, first.unchanged), (3, 0, 0));
    let again = catalog
        .publish_updates(batch.clone(), "user:alice")
        .await
        .unwrap();
    assert_eq!((again.published, again.revised, again.unchanged), (0, 0, 3));
    assert_eq!(store.count_after(LogPosition::START).await.unwrap(), 3);

    let mut changed = batch[2].clone();
    changed.1.title = "tzdata 2025b (rebuilt)".into();
    let revised = catalog
        .publish_updates(
            vec![
                changed,
                (
                    UpdateId::parse("bad").unwrap(),
                    pb::UpdateDetails::default(),
                ),
            ],
            "user:alice",
        )
        .await
        .unwrap();
    assert_eq!((revised.revised, revised.rejected.len()), (1, 1));
    assert!(
        revised.rejected[0].1.contains("title"),
        "{:?}",
        revised.rejected
    );

    let kev = pb::VulnerabilityPublished {
        cve_id: "CVE-2025-48384".into(),
        known_exploited: true,
        ..Default::default()
    };
    let published = catalog
        .publish_vulnerabilities(vec![kev.clone()], "user:alice")
        .await
        .unwrap();
    assert_eq!(published.published, 1);
    assert_eq!(
        catalog
            .publish_vulnerabilities(vec![kev], "user:alice")
            .await
            .unwrap()
            .unchanged,
        1
    );

    {
        let view = catalog.view();
        let (exploited, total) = view.list(
            &UpdateFilter {
                known_exploited_only: true,
                ..Default::default()
            },
            None,
            10,
        );
        assert_eq!(total, 1);
        assert_eq!(exploited[0].update_id, "deb:git:1:2.39.5-0+deb12u2:amd64");
        let (by_cve, _) = view.list(
            &UpdateFilter {
                cve_id: Some("cve-2025-9230".into()),
                ..Default::default()
            },
            None,
            10,
        );
        assert_eq!(by_cve[0].details.as_ref().unwrap().product, "openssl");
        let (first_page, total) = view.list(&UpdateFilter::default(), None, 2);
        assert_eq!((first_page.len(), total), (2, 3));
        let (second_page, _) =
            view.list(&UpdateFilter::default(), Some(&first_page[1].update_id), 2);
        assert_eq!(second_page.len(), 1);
        assert_eq!(second_page[0].revision, 2);
    }

    // A replica that opens the same log sees the same catalog, and its writes never lose the other's.
    let replica = Catalog::open(store.clone()).await.unwrap();
    assert_eq!(replica.view().updates.len(), 3);
    let mut newer = batch[0].clone();
    newer.1.title = "openssl 3.0.17 (replica)".into();
    let mut newest = batch[0].clone();
    newest.1.title = "openssl 3.0.17 (first)".into();
    // The first instance has not seen the replica's revision when it writes: it must retry, not clobber.
    replica
        .publish_updates(vec![newer], "user:bob")
        .await
        .unwrap();
    let outcome = catalog
        .publish_updates(vec![newest], "user:alice")
        .await
        .unwrap();
    assert_eq!(outcome.revised, 1);
    let events = store
        .read_stream(&batch[0].0.stream_id(), 1, 10)
        .await
        .unwrap();
    let versions: Vec<_> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(events[2].metadata.actor, "user:alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_on_sqlite() {
    let dir = TestSqlite::new();
    scenario(EventStore::connect(&dir.url("catalog.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_on_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    scenario(EventStore::connect(&db.url).await.unwrap()).await;
}
