//! The approvals service on a real store: approve / decline / reset with actor and reason, bulk by
//! filter, all-or-nothing refusals (unknown ids, updates needing a newer server), EULA acceptance
//! per text, and auto-approval rules applied by the catalog observer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use patchbay_approvals::domain::ApprovalError;
use patchbay_approvals::observer::CatalogObserver;
use patchbay_approvals::service::Selection;
use patchbay_approvals::{Approvals, ApprovalsServiceError};
use patchbay_bus::{EventHandler, IncomingEvent};
use patchbay_eventstore::{EventMetadata, EventStore, LogPosition, RecordedEvent};
use patchbay_proto::approvals::v1::{ApprovalRule, ApprovalStatus, UpdateFilter};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_testkit::{TestPostgres, TestSqlite};
use prost::Message as _;
use uuid::Uuid;

fn details(
    vendor: &str,
    product: &str,
    classification: catalog::Classification,
) -> catalog::UpdateDetails {
    catalog::UpdateDetails {
        title: format!("{product} update"),
        vendor: vendor.into(),
        product: product.into(),
        kind: catalog::UpdateKind::ThirdParty as i32,
        classification: classification as i32,
        severity: catalog::Severity::Important as i32,
        ..Default::default()
    }
}

fn with_eula(
    mut details: catalog::UpdateDetails,
    eula_id: &str,
    digest: &str,
) -> catalog::UpdateDetails {
    details.eula = Some(catalog::Eula {
        eula_id: eula_id.into(),
        text_sha256: digest.into(),
    });
    details
}

/// Delivers a catalog event to the observer as the consumer runner would, in one transaction.
async fn deliver(
    approvals: &Approvals,
    event_type: &str,
    payload: Vec<u8>,
    recorded_at: DateTime<Utc>,
) {
    let event_id = Uuid::now_v7();
    let incoming = IncomingEvent {
        service: "catalog".into(),
        event: RecordedEvent {
            position: LogPosition::default(),
            stream_id: "update-x".into(),
            stream_version: 1,
            event_id,
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata: EventMetadata {
                correlation_id: event_id,
                causation_id: None,
                actor: "user:importer".into(),
                traceparent: None,
                tracestate: None,
            },
            recorded_at,
        },
    };
    let observer = CatalogObserver::new(approvals.clone());
    let mut tx = approvals.store().begin().await.unwrap();
    observer.handle(&mut tx, &incoming).await.unwrap();
    tx.commit().await.unwrap();
}

async fn publish(approvals: &Approvals, id: &str, details: catalog::UpdateDetails) {
    let payload = catalog::UpdatePublished {
        update_id: id.into(),
        details: Some(details),
    }
    .encode_to_vec();
    deliver(approvals, "UpdatePublished", payload, Utc::now()).await;
    settle(approvals, id, 1).await;
}

async fn revise(approvals: &Approvals, id: &str, revision: u32, details: catalog::UpdateDetails) {
    let payload = catalog::UpdateRevised {
        update_id: id.into(),
        revision,
        details: Some(details),
    }
    .encode_to_vec();
    deliver(approvals, "UpdateRevised", payload, Utc::now()).await;
    settle(approvals, id, revision).await;
}

/// Waits until the view knows the update at `revision` (on PostgreSQL another test's open
/// transaction may hold the log's global order back for a moment).
async fn settle(approvals: &Approvals, id: &str, revision: u32) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        approvals.catch_up().await.unwrap();
        if approvals
            .view()
            .updates
            .get(id)
            .is_some_and(|u| u.revision >= revision)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the view never saw {id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn ids(ids: &[&str]) -> Selection {
    Selection::Ids(ids.iter().map(|s| s.to_string()).collect())
}

async fn status(approvals: &Approvals, id: &str) -> patchbay_proto::approvals::v1::Approval {
    approvals
        .list_approvals(&[id.to_owned()], None)
        .await
        .unwrap()
        .remove(0)
}

async fn event_count(store: &EventStore) -> u64 {
    store.count_after(LogPosition::START).await.unwrap()
}

fn domain_error(result: Result<impl std::fmt::Debug, ApprovalsServiceError>) -> ApprovalError {
    match result {
        Err(ApprovalsServiceError::Domain(error)) => error,
        other => panic!("expected a domain error, got {other:?}"),
    }
}

async fn scenario(store: EventStore) {
    use catalog::Classification::{Security, Update};
    let approvals = Approvals::open(store.clone(), semver::Version::new(1, 0, 0))
        .await
        .unwrap();
    publish(
        &approvals,
        "openssl",
        details("Debian", "openssl", Security),
    )
    .await;
    publish(&approvals, "git", details("Debian", "git", Security)).await;
    publish(&approvals, "tzdata", details("Debian", "tzdata", Update)).await;
    let mut newer = details("Acme", "agent", Update);
    newer.min_server_version = "2.0.0".into();
    publish(&approvals, "newer", newer).await;
    publish(
        &approvals,
        "app",
        with_eula(details("Acme", "app", Update), "acme-eula", "aaa"),
    )
    .await;

    // Approve one update: who, when, why and for which revision are recorded.
    let outcome = approvals
        .set_approval(
            ids(&["openssl"]),
            ApprovalStatus::Approved,
            "tested in staging",
            "user:alice",
        )
        .await
        .unwrap();
    assert_eq!((outcome.changed, outcome.unchanged), (1, 0));
    let approved = status(&approvals, "openssl").await;
    assert_eq!(approved.status, ApprovalStatus::Approved as i32);
    assert_eq!(
        (
            approved.actor.as_str(),
            approved.reason.as_str(),
            approved.revision
        ),
        ("user:alice", "tested in staging", 1)
    );
    assert!(!approved.changed_at.is_empty());
    let again = approvals
        .set_approval(
            ids(&["openssl"]),
            ApprovalStatus::Approved,
            "again",
            "user:alice",
        )
        .await
        .unwrap();
    assert_eq!((again.changed, again.unchanged), (0, 1));

    // Decline, then reset to Undefined.
    approvals
        .set_approval(
            ids(&["git"]),
            ApprovalStatus::Declined,
            "breaks CI",
            "user:bob",
        )
        .await
        .unwrap();
    assert_eq!(
        status(&approvals, "git").await.status,
        ApprovalStatus::Declined as i32
    );
    approvals
        .set_approval(
            ids(&["git"]),
            ApprovalStatus::Undefined,
            "retest",
            "user:bob",
        )
        .await
        .unwrap();
    let reset = status(&approvals, "git").await;
    assert_eq!(
        (reset.status, reset.actor.as_str()),
        (ApprovalStatus::Undefined as i32, "")
    );

    // An unknown id fails the whole request; nothing is appended.
    let before = event_count(&store).await;
    let error = domain_error(
        approvals
            .set_approval(
                ids(&["git", "no-such-update"]),
                ApprovalStatus::Declined,
                "",
                "user:bob",
            )
            .await,
    );
    assert!(
        matches!(&error, ApprovalError::UnknownUpdates { updates } if updates.0 == ["no-such-update"]),
        "{error:?}"
    );
    assert_eq!(event_count(&store).await, before);
    assert_eq!(
        status(&approvals, "git").await.status,
        ApprovalStatus::Undefined as i32
    );

    // An update that needs a newer server cannot be approved, alone or in bulk; it can be declined.
    let listed = status(&approvals, "newer").await;
    assert!(listed.needs_newer_server);
    let error = domain_error(
        approvals
            .set_approval(
                Selection::Filter {
                    filter: UpdateFilter::default(),
                    all: true,
                },
                ApprovalStatus::Approved,
                "",
                "user:alice",
            )
            .await,
    );
    assert!(
        matches!(&error, ApprovalError::NeedsNewerServer { required, .. } if required == "2.0.0"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("Upgrade Patchbay to 2.0.0 or later"),
        "{error}"
    );
    assert_eq!(event_count(&store).await, before);
    approvals
        .set_approval(
            ids(&["newer"]),
            ApprovalStatus::Declined,
            "not yet",
            "user:alice",
        )
        .await
        .unwrap();

    // Bulk by filter; an empty filter needs `all`.
    let security = UpdateFilter {
        classifications: vec![Security as i32],
        vendors: vec!["debian".into()],
        ..Default::default()
    };
    let bulk = approvals
        .set_approval(
            Selection::Filter {
                filter: security.clone(),
                all: false,
            },
            ApprovalStatus::Approved,
            "security",
            "user:alice",
        )
        .await
        .unwrap();
    assert_eq!((bulk.changed, bulk.unchanged), (1, 1));
    let repeat = approvals
        .set_approval(
            Selection::Filter {
                filter: security,
                all: false,
            },
            ApprovalStatus::Approved,
            "security",
            "user:alice",
        )
        .await
        .unwrap();
    assert_eq!((repeat.changed, repeat.unchanged), (0, 2));
    let error = domain_error(
        approvals
            .set_approval(
                Selection::Filter {
                    filter: UpdateFilter::default(),
                    all: false,
                },
                ApprovalStatus::Approved,
                "",
                "user:alice",
            )
            .await,
    );
    assert_eq!(error, ApprovalError::WouldSelectAll);
    let approved = approvals
        .list_approvals(&[], Some(ApprovalStatus::Approved))
        .await
        .unwrap();
    assert_eq!(
        approved
            .iter()
            .map(|a| a.update_id.as_str())
            .collect::<Vec<_>>(),
        ["git", "openssl"]
    );

    // EULAs: a declined text blocks approval; acceptance is of one text, a new text needs another.
    let eulas = approvals.list_eulas().await.unwrap();
    assert_eq!(eulas.len(), 1);
    assert_eq!(
        (
            eulas[0].eula_id.as_str(),
            eulas[0].text_sha256.as_str(),
            eulas[0].status.as_str()
        ),
        ("acme-eula", "aaa", "not accepted")
    );
    assert_eq!(eulas[0].update_ids, ["app"]);
    let declined = approvals
        .set_eula("acme-eula", false, "user:carol")
        .await
        .unwrap();
    assert_eq!(
        (declined.status.as_str(), declined.actor.as_str()),
        ("declined", "user:carol")
    );
    let error = domain_error(
        approvals
            .set_approval(ids(&["app"]), ApprovalStatus::Approved, "", "user:carol")
            .await,
    );
    assert!(
        error
            .to_string()
            .contains("accept EULA acme-eula first: patchbay eula accept acme-eula"),
        "{error}"
    );
    let accepted = approvals
        .set_eula("acme-eula", true, "user:carol")
        .await
        .unwrap();
    assert_eq!(accepted.status, "accepted");
    assert_eq!(status(&approvals, "app").await.eula_status, "accepted");
    approvals
        .set_approval(ids(&["app"]), ApprovalStatus::Approved, "", "user:carol")
        .await
        .unwrap();
    revise(
        &approvals,
        "app",
        2,
        with_eula(details("Acme", "app", Update), "acme-eula", "bbb"),
    )
    .await;
    let revised = status(&approvals, "app").await;
    assert_eq!(
        (revised.revision, revised.eula_status.as_str()),
        (2, "not accepted")
    );
    let eulas = approvals.list_eulas().await.unwrap();
    assert_eq!(
        (eulas[0].text_sha256.as_str(), eulas[0].status.as_str()),
        ("bbb", "not accepted")
    );
    let error = domain_error(approvals.set_eula("unknown-eula", true, "user:carol").await);
    assert_eq!(error, ApprovalError::UnknownEula("unknown-eula".into()));

    // Rules: a contradicting rule is refused naming the other; a rule decides updates that arrive
    // after it, recording its id and version, and never approves one that needs a newer server.
    let acme = ApprovalRule {
        name: "approve acme".into(),
        action: ApprovalStatus::Approved as i32,
        filter: Some(UpdateFilter {
            vendors: vec!["ACME".into()],
            ..Default::default()
        }),
    };
    let rule = approvals.add_rule(acme, "user:alice").await.unwrap();
    assert_eq!(rule.version, 1);
    let contradicting = ApprovalRule {
        name: "decline acme apps".into(),
        action: ApprovalStatus::Declined as i32,
        filter: Some(UpdateFilter {
            products: vec!["app".into()],
            ..Default::default()
        }),
    };
    let error = domain_error(approvals.add_rule(contradicting, "user:bob").await);
    assert!(
        matches!(&error, ApprovalError::RuleConflict { other_id, .. } if *other_id == rule.rule_id),
        "{error:?}"
    );
    assert!(error.to_string().contains("approve acme"));

    publish(&approvals, "acme-tool", details("Acme", "tool", Update)).await;
    let auto = status(&approvals, "acme-tool").await;
    assert_eq!(auto.status, ApprovalStatus::Approved as i32);
    assert_eq!(auto.actor, format!("rule:{}", rule.rule_id));
    let by = auto.rule.unwrap();
    assert_eq!(
        (by.rule_id.as_str(), by.rule_version),
        (rule.rule_id.as_str(), 1)
    );
    let mut too_new = details("Acme", "agent-next", Update);
    too_new.min_server_version = "3".into();
    publish(&approvals, "acme-too-new", too_new).await;
    assert_eq!(
        status(&approvals, "acme-too-new").await.status,
        ApprovalStatus::Undefined as i32
    );
    let old = catalog::UpdatePublished {
        update_id: "acme-old".into(),
        details: Some(details("Acme", "old", Update)),
    };
    deliver(
        &approvals,
        "UpdatePublished",
        old.encode_to_vec(),
        Utc::now() - Duration::hours(1),
    )
    .await;
    settle(&approvals, "acme-old", 1).await;
    assert_eq!(
        status(&approvals, "acme-old").await.status,
        ApprovalStatus::Undefined as i32,
        "published before the rule"
    );
    let rules = approvals.list_rules().await.unwrap();
    assert_eq!((rules.len(), rules[0].applied), (1, 1));

    let removed = approvals
        .remove_rule(&rule.rule_id, "user:alice")
        .await
        .unwrap();
    assert_eq!(removed.rule_id, rule.rule_id);
    assert!(approvals.list_rules().await.unwrap().is_empty());
    let error = domain_error(approvals.remove_rule(&rule.rule_id, "user:alice").await);
    assert_eq!(error, ApprovalError::UnknownRule(rule.rule_id.clone()));

    // Replaying the log alone rebuilds the same approvals (audit).
    let replayed = Approvals::open(store, semver::Version::new(1, 0, 0))
        .await
        .unwrap();
    assert_eq!(
        replayed.list_approvals(&[], None).await.unwrap(),
        approvals.list_approvals(&[], None).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_on_sqlite() {
    let dir = TestSqlite::new();
    scenario(EventStore::connect(&dir.url("approvals.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_on_postgres() {
    let Some(db) = TestPostgres::create().await else {
        return;
    };
    scenario(EventStore::connect(&db.url).await.unwrap()).await;
}
