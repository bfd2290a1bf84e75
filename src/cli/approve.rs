//! `patchbay updates approve|decline|reset`: set the approval status of updates, by id or by filter.

use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::approvals::v1::{ApprovalStatus, SetApprovalRequest, UpdateFilter};
use tonic::transport::Channel;

use super::output::{Listing, OutputFormat};
use super::updates::{ClassificationArg, KindArg, SeverityArg};

/// Which updates a bulk command or an auto-approval rule selects; each flag may be repeated, and a
/// flag left out matches any value.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Updates of this vendor (case-insensitive).
    #[arg(long = "vendor", value_name = "VENDOR")]
    vendors: Vec<String>,
    /// Updates of this product (case-insensitive).
    #[arg(long = "product", value_name = "PRODUCT")]
    products: Vec<String>,
    #[arg(long = "classification", value_enum, value_name = "CLASSIFICATION")]
    classifications: Vec<ClassificationArg>,
    /// Updates of at least this severity.
    #[arg(long, value_enum)]
    min_severity: Option<SeverityArg>,
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    kinds: Vec<KindArg>,
    /// Updates that fix this CVE.
    #[arg(long = "cve", value_name = "CVE")]
    cves: Vec<String>,
}

impl FilterArgs {
    pub fn to_proto(&self) -> UpdateFilter {
        UpdateFilter {
            vendors: self.vendors.clone(),
            products: self.products.clone(),
            classifications: self
                .classifications
                .iter()
                .map(|c| c.proto() as i32)
                .collect(),
            min_severity: self.min_severity.map_or(0, |s| s.proto() as i32),
            kinds: self.kinds.iter().map(|k| k.proto() as i32).collect(),
            cve_ids: self.cves.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The updates to change; or select them with the filter flags.
    #[arg(value_name = "UPDATE_ID")]
    update_ids: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Every update (no filter flags): required, so a forgotten filter cannot change everything.
    #[arg(long)]
    all: bool,
    /// Why, recorded with the decision for audit.
    #[arg(long, default_value = "")]
    reason: String,
}

pub async fn run(
    channel: Channel,
    output: OutputFormat,
    status: ApprovalStatus,
    args: ApproveArgs,
) -> anyhow::Result<()> {
    let filter = args.filter.to_proto();
    let response = ApprovalsServiceClient::new(channel)
        .set_approval(SetApprovalRequest {
            status: status as i32,
            update_ids: args.update_ids,
            filter: Some(filter),
            all: args.all,
            reason: args.reason,
        })
        .await
        .map_err(super::status_error)?
        .into_inner();
    let status = status_label(status);
    if output == OutputFormat::Table {
        println!(
            "{} {status}; {} already {status}",
            updates(response.changed),
            response.unchanged
        );
        return Ok(());
    }
    Listing {
        headers: vec!["status", "changed", "unchanged"],
        rows: vec![vec![
            status.to_owned(),
            response.changed.to_string(),
            response.unchanged.to_string(),
        ]],
        json: serde_json::json!({"status": status, "changed": response.changed, "unchanged": response.unchanged}),
    }
    .print(output)
}

/// `approved`, `declined` or `undefined`.
pub fn status_label(status: ApprovalStatus) -> &'static str {
    match status {
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Declined => "declined",
        ApprovalStatus::Undefined => "undefined",
    }
}

fn updates(count: u64) -> String {
    if count == 1 {
        "1 update".to_owned()
    } else {
        format!("{count} updates")
    }
}
