//! `ApprovalsService` over gRPC: approve / decline / reset updates, EULAs, auto-approval rules.

use patchbay_proto::approvals::v1 as pb;
use patchbay_proto::approvals::v1::ApprovalStatus;
use patchbay_proto::approvals::v1::approvals_service_server::ApprovalsService;
use tonic::{Request, Response, Status};

use crate::domain::{ApprovalError, filter_is_empty};
use crate::service::{Approvals, ApprovalsServiceError, Selection};

#[derive(Debug, Clone)]
pub struct ApprovalsApi {
    approvals: Approvals,
}

impl ApprovalsApi {
    pub fn new(approvals: Approvals) -> Self {
        Self { approvals }
    }
}

fn to_status(error: ApprovalsServiceError) -> Status {
    match error {
        ApprovalsServiceError::Domain(error) => {
            let message = error.to_string();
            match error {
                ApprovalError::UnknownUpdates { .. }
                | ApprovalError::UnknownEula(_)
                | ApprovalError::UnknownRule(_) => Status::not_found(message),
                ApprovalError::NeedsNewerServer { .. }
                | ApprovalError::EulaDeclined { .. }
                | ApprovalError::RuleConflict { .. } => Status::failed_precondition(message),
                ApprovalError::InvalidInput(_) | ApprovalError::WouldSelectAll => {
                    Status::invalid_argument(message)
                }
            }
        }
        ApprovalsServiceError::Store(e) if e.is_transient() => Status::unavailable(e.to_string()),
        ApprovalsServiceError::Store(e @ patchbay_eventstore::EventStoreError::Conflict { .. }) => {
            Status::aborted(format!(
                "{e}; other changes kept landing on the same updates, try again"
            ))
        }
        other => Status::internal(other.to_string()),
    }
}

fn status_of(value: i32, field: &str) -> Result<ApprovalStatus, Status> {
    ApprovalStatus::try_from(value).map_err(|_| {
        Status::invalid_argument(format!(
            "{field} {value} is not an approval status; use APPROVED, DECLINED or UNDEFINED"
        ))
    })
}

#[tonic::async_trait]
impl ApprovalsService for ApprovalsApi {
    async fn set_approval(
        &self,
        request: Request<pb::SetApprovalRequest>,
    ) -> Result<Response<pb::SetApprovalResponse>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let request = request.into_inner();
        let status = status_of(request.status, "status")?;
        let filter = request.filter.unwrap_or_default();
        let selection = match (request.update_ids.is_empty(), filter_is_empty(&filter)) {
            (false, false) => {
                return Err(Status::invalid_argument(
                    "give update ids or a filter, not both",
                ));
            }
            (false, true) => {
                if request.all {
                    return Err(Status::invalid_argument(
                        "--all selects every update; do not name update ids with it",
                    ));
                }
                Selection::Ids(request.update_ids)
            }
            (true, _) => Selection::Filter {
                filter,
                all: request.all,
            },
        };
        let outcome = self
            .approvals
            .set_approval(selection, status, &request.reason, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SetApprovalResponse {
            changed: outcome.changed,
            unchanged: outcome.unchanged,
        }))
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let request = request.into_inner();
        let status = if request.filter_status {
            Some(status_of(request.status, "status")?)
        } else {
            None
        };
        let approvals = self
            .approvals
            .list_approvals(&request.update_ids, status)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListApprovalsResponse { approvals }))
    }

    async fn set_eula(
        &self,
        request: Request<pb::SetEulaRequest>,
    ) -> Result<Response<pb::Eula>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let request = request.into_inner();
        let eula = self
            .approvals
            .set_eula(&request.eula_id, request.accept, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(eula))
    }

    async fn list_eulas(
        &self,
        _request: Request<pb::ListEulasRequest>,
    ) -> Result<Response<pb::ListEulasResponse>, Status> {
        let eulas = self.approvals.list_eulas().await.map_err(to_status)?;
        Ok(Response::new(pb::ListEulasResponse { eulas }))
    }

    async fn add_approval_rule(
        &self,
        request: Request<pb::AddApprovalRuleRequest>,
    ) -> Result<Response<pb::ApprovalRuleEntry>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let rule = request.into_inner().rule.ok_or_else(|| {
            Status::invalid_argument("the request has no rule: give a name, an action and a filter")
        })?;
        let entry = self
            .approvals
            .add_rule(rule, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(entry))
    }

    async fn list_approval_rules(
        &self,
        _request: Request<pb::ListApprovalRulesRequest>,
    ) -> Result<Response<pb::ListApprovalRulesResponse>, Status> {
        let rules = self.approvals.list_rules().await.map_err(to_status)?;
        Ok(Response::new(pb::ListApprovalRulesResponse { rules }))
    }

    async fn remove_approval_rule(
        &self,
        request: Request<pb::RemoveApprovalRuleRequest>,
    ) -> Result<Response<pb::ApprovalRuleEntry>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let rule_id = request.into_inner().rule_id;
        let entry = self
            .approvals
            .remove_rule(&rule_id, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(entry))
    }
}
