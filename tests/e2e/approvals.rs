//! Approve and decline imported updates through the public API: by id, by filter, with the errors a
//! user meets (unknown ids, a filter that would select everything, contradicting rules).

use patchbay_proto::approvals::v1 as pb;
use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{import_apt, spawn_app};

/// Every approval, once the approvals service has learned of `count` updates from the catalog.
async fn wait_for_updates(
    client: &mut ApprovalsServiceClient<Channel>,
    count: usize,
) -> Vec<pb::Approval> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let approvals = client
            .list_approvals(pb::ListApprovalsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .approvals;
        if approvals.len() >= count {
            return approvals;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the approvals service knows {} of {count} updates",
            approvals.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn as_user<T>(message: T, user: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(patchbay_proto::ACTOR_HEADER, user.parse().unwrap());
    request
}

#[tokio::test]
async fn imported_updates_are_approved_by_id_and_by_filter() {
    let app = spawn_app().await;
    let mut catalog = CatalogServiceClient::connect(app.url()).await.unwrap();
    import_apt(
        &mut catalog,
        "bookworm-security_Packages",
        "bookworm-security",
    )
    .await;
    let mut approvals = ApprovalsServiceClient::connect(app.url()).await.unwrap();
    let known = wait_for_updates(&mut approvals, 4).await;
    assert!(
        known
            .iter()
            .all(|a| a.status == pb::ApprovalStatus::Undefined as i32)
    );
    let id_of = |package: &str| {
        known
            .iter()
            .find(|a| a.update_id.starts_with(&format!("deb:{package}:")))
            .map(|a| a.update_id.clone())
            .unwrap()
    };

    // By id, with who and why recorded.
    let response = approvals
        .set_approval(as_user(
            pb::SetApprovalRequest {
                status: pb::ApprovalStatus::Approved as i32,
                update_ids: vec![id_of("openssl")],
                reason: "fixes CVE-2025-9230".into(),
                ..Default::default()
            },
            "user:alice",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.changed, response.unchanged), (1, 0));
    let openssl = approvals
        .list_approvals(pb::ListApprovalsRequest {
            update_ids: vec![id_of("openssl")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals
        .remove(0);
    assert_eq!(openssl.status, pb::ApprovalStatus::Approved as i32);
    assert_eq!(
        (openssl.actor.as_str(), openssl.reason.as_str()),
        ("user:alice", "fixes CVE-2025-9230")
    );

    // By filter (products, case-insensitive).
    let response = approvals
        .set_approval(pb::SetApprovalRequest {
            status: pb::ApprovalStatus::Approved as i32,
            filter: Some(pb::UpdateFilter {
                vendors: vec!["debian".into()],
                products: vec!["Git".into(), "libc6".into(), "openssl".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.changed, response.unchanged), (2, 1));
    let approved = approvals
        .list_approvals(pb::ListApprovalsRequest {
            filter_status: true,
            status: pb::ApprovalStatus::Approved as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert_eq!(approved.len(), 3);

    // An unknown id fails the whole request, and says so.
    let error = approvals
        .set_approval(pb::SetApprovalRequest {
            status: pb::ApprovalStatus::Declined as i32,
            update_ids: vec![id_of("libssl3"), "deb:nope:1:amd64".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(
        error.message().contains("deb:nope:1:amd64"),
        "{}",
        error.message()
    );
    let libssl = approvals
        .list_approvals(pb::ListApprovalsRequest {
            update_ids: vec![id_of("libssl3")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert_eq!(libssl[0].status, pb::ApprovalStatus::Undefined as i32);

    // An empty filter needs `all`; with it, every update is declined.
    let error = approvals
        .set_approval(pb::SetApprovalRequest {
            status: pb::ApprovalStatus::Declined as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("--all"), "{}", error.message());
    let response = approvals
        .set_approval(pb::SetApprovalRequest {
            status: pb::ApprovalStatus::Declined as i32,
            all: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.changed, response.unchanged), (4, 0));

    // Contradicting rules are refused, naming the rule already there.
    let approve_debian = pb::ApprovalRule {
        name: "approve debian".into(),
        action: pb::ApprovalStatus::Approved as i32,
        filter: Some(pb::UpdateFilter {
            vendors: vec!["Debian".into()],
            ..Default::default()
        }),
    };
    let added = approvals
        .add_approval_rule(pb::AddApprovalRuleRequest {
            rule: Some(approve_debian),
        })
        .await
        .unwrap()
        .into_inner();
    let error = approvals
        .add_approval_rule(pb::AddApprovalRuleRequest {
            rule: Some(pb::ApprovalRule {
                name: "decline security".into(),
                action: pb::ApprovalStatus::Declined as i32,
                filter: Some(pb::UpdateFilter {
                    products: vec!["openssl".into()],
                    ..Default::default()
                }),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains(&added.rule_id),
        "{}",
        error.message()
    );

    app.stop().await.unwrap();
}
