//! Content download against the fake upstream: only approved updates, only when the settings ask
//! for content; both digests verified (a corrupted download is discarded and retried); an
//! interrupted download resumes with an HTTP Range request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use patchbay_bus::{EventHandler, IncomingEvent};
use patchbay_eventstore::{EventMetadata, EventStore, LogPosition, RecordedEvent};
use patchbay_proto::approvals::v1 as approvals;
use patchbay_testkit::{TestPostgres, TestSqlite};
use patchbay_wsus_sync::content::{ContentRequester, Downloader};
use patchbay_wsus_sync::domain::{ConfigRequest, RunState};
use patchbay_wsus_sync::{SyncOptions, WsusSync};
use patchbay_wsus_upstream::content::payload;
use patchbay_wsus_upstream::{
    CONTENT_OPERATION, FakeUpstream, FixtureCatalog, Garble, UpstreamOptions, ids,
};
use prost::Message as _;
use uuid::Uuid;

async fn approve(wsus: &WsusSync, update_id: &str) {
    let event_id = Uuid::now_v7();
    let incoming = IncomingEvent {
        service: "approvals".into(),
        event: RecordedEvent {
            position: LogPosition::default(),
            stream_id: format!("approval-{update_id}"),
            stream_version: 1,
            event_id,
            event_type: "UpdateApproved".into(),
            schema_version: 1,
            payload: approvals::UpdateApproved {
                update_id: update_id.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            metadata: EventMetadata {
                correlation_id: event_id,
                causation_id: None,
                actor: "user:admin".into(),
                traceparent: None,
                tracestate: None,
            },
            recorded_at: Utc::now(),
        },
    };
    let mut tx = wsus.store().begin().await.unwrap();
    ContentRequester::new(wsus.clone())
        .handle(&mut tx, &incoming)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn scenario(store: EventStore, dir: &std::path::Path) {
    let upstream = FakeUpstream::start(FixtureCatalog::sample(), UpstreamOptions::default())
        .await
        .unwrap();
    let wsus = WsusSync::open(store, SyncOptions::default()).await.unwrap();
    let config = |download_content| ConfigRequest {
        upstream_url: upstream.url(),
        schedule: "manual".into(),
        download_content,
        ..ConfigRequest::default()
    };
    wsus.set_config(config(false), "user:admin").await.unwrap();
    let run = wsus.sync_now("manual", "user:admin").await.unwrap();
    assert_eq!(run.state, RunState::Completed);
    let downloader =
        Downloader::new(wsus.clone(), dir.to_path_buf(), Duration::from_secs(5)).unwrap();

    // Catalog only: an approval downloads nothing.
    approve(&wsus, ids::KB_CUMULATIVE_NEW).await;
    assert_eq!(downloader.download_pending().await.unwrap().downloaded, 0);

    // With content: the approved update's two files, verified; nothing else.
    wsus.set_config(config(true), "user:admin").await.unwrap();
    approve(&wsus, ids::KB_CUMULATIVE_NEW).await;
    let pass = downloader.download_pending().await.unwrap();
    assert_eq!((pass.downloaded, pass.failed), (2, 0));
    let old_files = {
        let view = wsus.view();
        let files = view.revisions[ids::KB_CUMULATIVE_NEW].files.clone();
        assert_eq!(files.len(), 2);
        for file in &files {
            let bytes = std::fs::read(downloader.path_of(&file.sha1)).unwrap();
            assert_eq!(bytes, payload(&file.file_name, file.size));
            assert!(view.content.contains_key(&file.sha1));
        }
        view.revisions[ids::KB_CUMULATIVE_OLD].files.clone()
    };
    assert!(
        old_files
            .iter()
            .all(|f| !downloader.path_of(&f.sha1).exists()),
        "not approved"
    );

    // A corrupted download is discarded and retried on the next pass.
    upstream.garble_next(CONTENT_OPERATION, Garble::WrongDigest, 1);
    approve(&wsus, ids::KB_CUMULATIVE_OLD).await;
    let pass = downloader.download_pending().await.unwrap();
    assert_eq!(pass.failed, 1);
    let failures = wsus.view().content_failures.clone();
    assert!(
        failures
            .values()
            .any(|(_, reason)| reason.contains("SHA-1")),
        "{failures:?}"
    );
    let pass = downloader.download_pending().await.unwrap();
    assert_eq!((pass.downloaded, pass.failed), (1, 0));

    // An interrupted download resumes where it stopped.
    let m365 = wsus.view().revisions[ids::M365_SECURITY].files[0].clone();
    let bytes = payload(&m365.file_name, m365.size);
    let half = bytes.len() / 2;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{}.part", m365.sha1)), &bytes[..half]).unwrap();
    upstream.clear_requests();
    approve(&wsus, ids::M365_SECURITY).await;
    let pass = downloader.download_pending().await.unwrap();
    assert_eq!(pass.downloaded, 1);
    assert_eq!(
        std::fs::read(downloader.path_of(&m365.sha1)).unwrap(),
        bytes
    );
    let ranges: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.operation == CONTENT_OPERATION)
        .filter_map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec![format!("bytes={half}-")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_sqlite() {
    let dir = TestSqlite::new();
    scenario(
        EventStore::connect(&dir.url("wsus.db")).await.unwrap(),
        &dir.dir.path().join("content"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    let dir = TestSqlite::new();
    scenario(
        EventStore::connect(&db.url).await.unwrap(),
        &dir.dir.path().join("content"),
    )
    .await;
}
