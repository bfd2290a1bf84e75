//! `patchbay approval-rules add|list|remove`: auto-approval rules, applied to updates that arrive
//! (are published or revised) after the rule was added.

use clap::ValueEnum;
use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::approvals::v1::{
    AddApprovalRuleRequest, ApprovalRule, ApprovalRuleEntry, ApprovalStatus,
    ListApprovalRulesRequest, RemoveApprovalRuleRequest,
};

use super::ClientArgs;
use super::approve::{FilterArgs, status_label};
use super::output::Listing;

#[derive(Debug, clap::Subcommand)]
pub enum ApprovalRulesCommand {
    /// Add a rule: updates arriving from now on that match the filter flags are approved or declined.
    Add(AddArgs),
    /// The active rules and how many updates each has decided.
    List,
    /// Remove a rule; what it already decided stays decided.
    Remove { rule_id: String },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    action: ActionArg,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ActionArg {
    Approve,
    Decline,
}

pub async fn run(args: &ClientArgs, command: ApprovalRulesCommand) -> anyhow::Result<()> {
    let mut client = ApprovalsServiceClient::new(args.channel().await?);
    let rules = match command {
        ApprovalRulesCommand::Add(add) => {
            let action = match add.action {
                ActionArg::Approve => ApprovalStatus::Approved,
                ActionArg::Decline => ApprovalStatus::Declined,
            };
            let rule = ApprovalRule {
                name: add.name,
                action: action as i32,
                filter: Some(add.filter.to_proto()),
            };
            vec![
                client
                    .add_approval_rule(AddApprovalRuleRequest { rule: Some(rule) })
                    .await
                    .map_err(super::status_error)?
                    .into_inner(),
            ]
        }
        ApprovalRulesCommand::List => {
            client
                .list_approval_rules(ListApprovalRulesRequest {})
                .await
                .map_err(super::status_error)?
                .into_inner()
                .rules
        }
        ApprovalRulesCommand::Remove { rule_id } => vec![
            client
                .remove_approval_rule(RemoveApprovalRuleRequest { rule_id })
                .await
                .map_err(super::status_error)?
                .into_inner(),
        ],
    };
    listing(&rules).print(args.output)
}

/// The filter in a few words, e.g. `vendor=Debian classification=security`.
fn describe(rule: &ApprovalRule) -> String {
    let filter = rule.filter.clone().unwrap_or_default();
    let mut parts = Vec::new();
    let mut add = |name: &str, values: Vec<String>| {
        if !values.is_empty() {
            parts.push(format!("{name}={}", values.join(",")));
        }
    };
    add("vendor", filter.vendors.clone());
    add("product", filter.products.clone());
    add(
        "classification",
        filter
            .classifications
            .iter()
            .filter_map(|&c| patchbay_proto::catalog::v1::Classification::try_from(c).ok())
            .map(|c| {
                c.as_str_name()
                    .trim_start_matches("CLASSIFICATION_")
                    .to_ascii_lowercase()
            })
            .collect(),
    );
    if let Ok(severity) = patchbay_proto::catalog::v1::Severity::try_from(filter.min_severity)
        && filter.min_severity != 0
    {
        add(
            "min-severity",
            vec![
                severity
                    .as_str_name()
                    .trim_start_matches("SEVERITY_")
                    .to_ascii_lowercase(),
            ],
        );
    }
    add(
        "kind",
        filter
            .kinds
            .iter()
            .filter_map(|&k| patchbay_proto::catalog::v1::UpdateKind::try_from(k).ok())
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("UPDATE_KIND_")
                    .to_ascii_lowercase()
            })
            .collect(),
    );
    add("cve", filter.cve_ids.clone());
    if parts.is_empty() {
        "every update".to_owned()
    } else {
        parts.join(" ")
    }
}

fn listing(rules: &[ApprovalRuleEntry]) -> Listing {
    let action =
        |rule: &ApprovalRule| ApprovalStatus::try_from(rule.action).map_or("?", status_label);
    Listing {
        headers: vec!["rule", "name", "action", "filter", "version", "applied"],
        rows: rules
            .iter()
            .map(|entry| {
                let rule = entry.rule.clone().unwrap_or_default();
                vec![
                    entry.rule_id.clone(),
                    rule.name.clone(),
                    action(&rule).to_owned(),
                    describe(&rule),
                    entry.version.to_string(),
                    entry.applied.to_string(),
                ]
            })
            .collect(),
        json: rules
            .iter()
            .map(|entry| {
                let rule = entry.rule.clone().unwrap_or_default();
                serde_json::json!({
                    "rule_id": entry.rule_id, "name": rule.name, "action": action(&rule),
                    "filter": describe(&rule), "version": entry.version, "applied": entry.applied,
                })
            })
            .collect(),
    }
}
