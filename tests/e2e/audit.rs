//! Event browsing end to end: every service's events decoded to JSON with their metadata, filtered,
//! and followed live (`AuditService.ReplayEvents`, behind `patchbay events list|tail`).

use std::time::Duration;

use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::audit::v1 as pb;
use patchbay_proto::audit::v1::audit_service_client::AuditServiceClient;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{import_apt, spawn_app};

async fn events(
    client: &mut AuditServiceClient<Channel>,
    filter: pb::EventFilter,
) -> Vec<pb::AuditEvent> {
    let mut stream = client
        .replay_events(pb::ReplayEventsRequest {
            filter: Some(filter),
            follow: false,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    events
}

async fn approve(client: &mut ApprovalsServiceClient<Channel>, update_id: &str) {
    let mut request = tonic::Request::new(approvals::SetApprovalRequest {
        status: approvals::ApprovalStatus::Approved as i32,
        update_ids: vec![update_id.into()],
        reason: "audit test".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        patchbay_proto::ACTOR_HEADER,
        "user:auditor-test".parse().unwrap(),
    );
    client.set_approval(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_decoded_filtered_and_followed() {
    let app = spawn_app().await;
    let mut catalog = CatalogServiceClient::connect(app.url()).await.unwrap();
    import_apt(
        &mut catalog,
        "bookworm-security_Packages",
        "bookworm-security",
    )
    .await;
    let mut audit = AuditServiceClient::connect(app.url()).await.unwrap();

    // The catalog's log, decoded: every update published with its details.
    let published = events(
        &mut audit,
        pb::EventFilter {
            service: "catalog".into(),
            event_types: vec!["UpdatePublished".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(published.len() >= 4, "{}", published.len());
    let first: serde_json::Value = serde_json::from_str(&published[0].payload_json).unwrap();
    assert!(first["updateId"].as_str().unwrap().starts_with("deb:"));
    assert!(first["details"]["title"].is_string());
    let update_id = first["updateId"].as_str().unwrap().to_owned();

    // Wait until the approvals service knows the update, approve it, find the decision.
    let mut approvals_client = ApprovalsServiceClient::connect(app.url()).await.unwrap();
    for _ in 0..200 {
        let known = approvals_client
            .list_approvals(approvals::ListApprovalsRequest {
                update_ids: vec![update_id.clone()],
                ..Default::default()
            })
            .await;
        if known.is_ok_and(|k| !k.into_inner().approvals.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    approve(&mut approvals_client, &update_id).await;
    let decisions = events(
        &mut audit,
        pb::EventFilter {
            service: "approvals".into(),
            stream_id: format!("approval-{update_id}"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let decision = &decisions[0];
    assert_eq!(decision.event_type, "UpdateApproved");
    assert_eq!(decision.actor, "user:auditor-test");
    let payload: serde_json::Value = serde_json::from_str(&decision.payload_json).unwrap();
    assert_eq!(payload["reason"], "audit test");
    // The same correlation finds it again; a window before it finds nothing.
    let correlated = events(
        &mut audit,
        pb::EventFilter {
            correlation_id: decision.correlation_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(correlated.iter().any(|e| e.event_id == decision.event_id));
    let before = events(
        &mut audit,
        pb::EventFilter {
            service: "approvals".into(),
            until: "2000-01-01T00:00:00Z".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(before.is_empty());

    // Bad queries say what is wrong.
    for (filter, code, text) in [
        (
            pb::EventFilter {
                since: "last tuesday".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "RFC 3339",
        ),
        (
            pb::EventFilter {
                service: "billing".into(),
                ..Default::default()
            },
            Code::NotFound,
            "catalog",
        ),
    ] {
        let error = audit
            .replay_events(pb::ReplayEventsRequest {
                filter: Some(filter),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), code);
        assert!(error.message().contains(text), "{}", error.message());
    }

    // Following: a decision made after the stream opened arrives on it.
    let mut live = audit
        .replay_events(pb::ReplayEventsRequest {
            filter: Some(pb::EventFilter {
                service: "approvals".into(),
                event_types: vec!["UpdateDeclined".into()],
                ..Default::default()
            }),
            follow: true,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut request = tonic::Request::new(approvals::SetApprovalRequest {
        status: approvals::ApprovalStatus::Declined as i32,
        update_ids: vec![update_id.clone()],
        reason: "changed our mind".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        patchbay_proto::ACTOR_HEADER,
        "user:auditor-test".parse().unwrap(),
    );
    approvals_client.set_approval(request).await.unwrap();
    let declined = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("the declined event arrives on the live stream")
        .unwrap()
        .unwrap();
    assert_eq!(declined.stream_id, format!("approval-{update_id}"));

    // Time travel: between the approval and the decline, the update was approved, by whom.
    let state_at = |at: String| pb::StateAtRequest {
        at,
        update_id: update_id.clone(),
        device_id: String::new(),
        from_zero: false,
    };
    let then = audit
        .state_at(state_at(decision.recorded_at.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(then.approvals.len(), 1, "{then:?}");
    assert_eq!(
        (
            then.approvals[0].status.as_str(),
            then.approvals[0].actor.as_str()
        ),
        ("approved", "user:auditor-test")
    );
    let now = audit
        .state_at(state_at(chrono::Utc::now().to_rfc3339()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.approvals[0].status, "declined");
    assert_eq!(now.approvals[0].reason, "changed our mind");
    // An unknown update or device is named as such.
    let unknown = audit
        .state_at(pb::StateAtRequest {
            at: chrono::Utc::now().to_rfc3339(),
            update_id: "deb:nosuch:1:amd64".into(),
            device_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains("deb:nosuch:1:amd64"),
        "{unknown:?}"
    );
    let unknown = audit
        .state_at(pb::StateAtRequest {
            at: chrono::Utc::now().to_rfc3339(),
            update_id: String::new(),
            device_id: "no-such-device".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // A known update nobody decided on yet is Undefined, not missing.
    let undecided = published
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.payload_json).unwrap())
        .map(|p| p["updateId"].as_str().unwrap().to_owned())
        .find(|id| *id != update_id)
        .unwrap();
    let state = audit
        .state_at(pb::StateAtRequest {
            at: chrono::Utc::now().to_rfc3339(),
            update_id: undecided,
            device_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.approvals[0].status, "undefined");
    for (at, code) in [
        ("2999-01-01T00:00:00Z", Code::InvalidArgument),
        ("2000-01-01T00:00:00Z", Code::FailedPrecondition),
        ("noon", Code::InvalidArgument),
    ] {
        let error = audit.state_at(state_at(at.into())).await.unwrap_err();
        assert_eq!(error.code(), code, "{at}: {error:?}");
    }

    // Every log is hash-chained as it grows; an edit made behind Patchbay's back is found.
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses = audit
            .verify_chain(pb::VerifyChainRequest::default())
            .await
            .unwrap()
            .into_inner()
            .services;
        if statuses.iter().all(|s| s.unsealed_after == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(statuses.iter().all(|s| s.intact), "{statuses:?}");
    let approvals_log = statuses.iter().find(|s| s.service == "approvals").unwrap();
    assert!(
        approvals_log.sealed >= 2 && approvals_log.unsealed_after == 0,
        "{approvals_log:?}"
    );
    let db = app
        .data
        .dir
        .path()
        .join("patchbay-data")
        .join("approvals.db");
    let tamper = patchbay_eventstore::EventStore::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE events SET payload = X'0a0568656c6c6f' WHERE event_type = 'UpdateApproved'",
    )
    .execute(tamper.sqlite_pool().unwrap())
    .await
    .unwrap();
    let after = audit
        .verify_chain(pb::VerifyChainRequest {
            service: "approvals".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .services;
    assert!(!after[0].intact);
    assert!(
        after[0].report.contains(&format!("approval-{update_id}")),
        "{}",
        after[0].report
    );
    // A stream still open does not hold up the server's shutdown.
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the server stops with a live event stream open")
        .unwrap();
    drop(live);
}
