//! `patchbay updates list|show`: the SOFTWARE UPDATES list and one update's detail.

use clap::ValueEnum;
use patchbay_proto::approvals::v1::ApprovalStatus;
use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;

use super::ClientArgs;
use super::output::{Listing, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum UpdatesCommand {
    /// List updates, filtered and paged.
    List(ListArgs),
    /// Show one update with its revisions and vulnerabilities.
    Show { update_id: String },
    /// Approve updates, by id or by filter: they may then be installed where install rules allow.
    Approve(super::approve::ApproveArgs),
    /// Decline updates, by id or by filter: they are never installed again.
    Decline(super::approve::ApproveArgs),
    /// Set updates back to Undefined, by id or by filter.
    Reset(super::approve::ApproveArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    vendor: Option<String>,
    #[arg(long)]
    product: Option<String>,
    #[arg(long, value_enum)]
    classification: Option<ClassificationArg>,
    /// Only updates of at least this severity.
    #[arg(long, value_enum)]
    min_severity: Option<SeverityArg>,
    /// Only updates that fix this CVE.
    #[arg(long)]
    cve: Option<String>,
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Only updates fixing a vulnerability in the CISA KEV list.
    #[arg(long)]
    known_exploited: bool,
    #[arg(long)]
    include_expired: bool,
    /// Only updates that at least this many devices require.
    #[arg(long, value_name = "N", default_value_t = 0)]
    required_by: u32,
    /// Only updates with this approval status.
    #[arg(long, value_enum)]
    approval: Option<ApprovalArg>,
    /// At most this many updates (one page); see --all.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Every matching update, fetched page by page.
    #[arg(long, conflicts_with = "limit")]
    all: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum ClassificationArg {
    Critical,
    Security,
    Definition,
    FeaturePack,
    ServicePack,
    Tool,
    UpdateRollup,
    Update,
    Driver,
    Upgrade,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum SeverityArg {
    Low,
    Moderate,
    Important,
    Critical,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ApprovalArg {
    Approved,
    Declined,
    Undefined,
}

impl ApprovalArg {
    fn proto(self) -> pb::ApprovalStatus {
        match self {
            Self::Approved => pb::ApprovalStatus::Approved,
            Self::Declined => pb::ApprovalStatus::Declined,
            Self::Undefined => pb::ApprovalStatus::Undefined,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum KindArg {
    FirstParty,
    ThirdParty,
    Windows,
}

impl ClassificationArg {
    pub(super) fn proto(self) -> pb::Classification {
        use pb::Classification as C;
        match self {
            Self::Critical => C::Critical,
            Self::Security => C::Security,
            Self::Definition => C::Definition,
            Self::FeaturePack => C::FeaturePack,
            Self::ServicePack => C::ServicePack,
            Self::Tool => C::Tool,
            Self::UpdateRollup => C::UpdateRollup,
            Self::Update => C::Update,
            Self::Driver => C::Driver,
            Self::Upgrade => C::Upgrade,
        }
    }
}

impl SeverityArg {
    pub(super) fn proto(self) -> pb::Severity {
        match self {
            Self::Low => pb::Severity::Low,
            Self::Moderate => pb::Severity::Moderate,
            Self::Important => pb::Severity::Important,
            Self::Critical => pb::Severity::Critical,
        }
    }
}

impl KindArg {
    pub(super) fn proto(self) -> pb::UpdateKind {
        match self {
            Self::FirstParty => pb::UpdateKind::FirstParty,
            Self::ThirdParty => pb::UpdateKind::ThirdParty,
            Self::Windows => pb::UpdateKind::Windows,
        }
    }
}

pub async fn run(args: &ClientArgs, command: UpdatesCommand) -> anyhow::Result<()> {
    let channel = args.channel().await?;
    let mut client = CatalogServiceClient::new(channel.clone());
    match command {
        UpdatesCommand::Approve(approve) => {
            super::approve::run(channel, args.output, ApprovalStatus::Approved, approve).await
        }
        UpdatesCommand::Decline(approve) => {
            super::approve::run(channel, args.output, ApprovalStatus::Declined, approve).await
        }
        UpdatesCommand::Reset(approve) => {
            super::approve::run(channel, args.output, ApprovalStatus::Undefined, approve).await
        }
        UpdatesCommand::List(list) => {
            let mut request = pb::ListUpdatesRequest {
                vendor: list.vendor.unwrap_or_default(),
                product: list.product.unwrap_or_default(),
                classification: list.classification.map_or(0, |c| c.proto() as i32),
                min_severity: list.min_severity.map_or(0, |s| s.proto() as i32),
                cve_id: list.cve.unwrap_or_default(),
                kind: list.kind.map_or(0, |k| k.proto() as i32),
                known_exploited_only: list.known_exploited,
                include_expired: list.include_expired,
                min_required_devices: list.required_by,
                approval_status: list.approval.map(|a| a.proto() as i32),
                page_size: if list.all { 1000 } else { list.limit.max(1) },
                page_token: String::new(),
            };
            let mut updates = Vec::new();
            let total = loop {
                let page = client
                    .list_updates(request.clone())
                    .await
                    .map_err(super::status_error)?
                    .into_inner();
                updates.extend(page.updates);
                if !list.all || page.next_page_token.is_empty() {
                    break page.total;
                }
                request.page_token = page.next_page_token;
            };
            listing(&updates).print(args.output)?;
            if args.output == OutputFormat::Table && (updates.len() as u64) < total {
                eprintln!(
                    "{} of {total} updates shown; use --limit or --all for more",
                    updates.len()
                );
            }
            Ok(())
        }
        UpdatesCommand::Show { update_id } => {
            let detail = client
                .get_update(pb::GetUpdateRequest { update_id })
                .await
                .map_err(super::status_error)?
                .into_inner();
            let update = detail.update.unwrap_or_default();
            let stats = detail.statistics.unwrap_or_default();
            if args.output == OutputFormat::Json {
                let mut json = summary_json(&update);
                json["statistics"] = serde_json::json!({
                    "required": stats.required, "installed": stats.installed,
                    "pending": stats.pending, "failed": stats.failed,
                    "not_applicable": stats.not_required,
                });
                json["revisions"] = detail
                    .revisions
                    .iter()
                    .map(|r| serde_json::json!({"revision": r.revision, "recorded_at": r.recorded_at, "title": r.details.as_ref().map(|d| d.title.clone())}))
                    .collect();
                json["vulnerabilities"] = detail
                    .vulnerabilities
                    .iter()
                    .map(|v| serde_json::json!({"cve_id": v.cve_id, "known_exploited": v.known_exploited, "name": v.name, "due_date": v.due_date}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json)?);
                return Ok(());
            }
            listing(std::slice::from_ref(&update)).print(args.output)?;
            if args.output == OutputFormat::Table {
                println!(
                    "devices: {} required, {} installed, {} pending, {} failed, {} not applicable",
                    stats.required,
                    stats.installed,
                    stats.pending,
                    stats.failed,
                    stats.not_required
                );
                for revision in &detail.revisions {
                    println!(
                        "revision {} recorded {}",
                        revision.revision, revision.recorded_at
                    );
                }
                for vulnerability in &detail.vulnerabilities {
                    println!(
                        "{}: {} (known exploited: {})",
                        vulnerability.cve_id, vulnerability.name, vulnerability.known_exploited
                    );
                }
            }
            Ok(())
        }
    }
}

/// `CLASSIFICATION_FEATURE_PACK` as `feature_pack`; unspecified as empty.
fn label<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str, prefix: &str) -> String {
    match E::try_from(value) {
        Ok(known) if value != 0 => name(known).trim_start_matches(prefix).to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn classification(value: i32) -> String {
    label(
        value,
        |c: pb::Classification| c.as_str_name(),
        "CLASSIFICATION_",
    )
}

fn severity(value: i32) -> String {
    label(value, |s: pb::Severity| s.as_str_name(), "SEVERITY_")
}

fn kind(value: i32) -> String {
    label(value, |k: pb::UpdateKind| k.as_str_name(), "UPDATE_KIND_")
}

/// Undefined (0) is a status too, so it is named rather than left empty.
fn approval(value: i32) -> String {
    match pb::ApprovalStatus::try_from(value) {
        Ok(status) => status
            .as_str_name()
            .trim_start_matches("APPROVAL_STATUS_")
            .to_ascii_lowercase(),
        Err(_) => String::new(),
    }
}

fn summary_json(update: &pb::UpdateSummary) -> serde_json::Value {
    let details = update.details.clone().unwrap_or_default();
    let debian = match &details.applicability {
        Some(pb::update_details::Applicability::Debian(d)) => {
            serde_json::json!({"package": d.package, "version": d.version, "architecture": d.architecture, "suites": d.suites, "component": d.component})
        }
        _ => serde_json::Value::Null,
    };
    serde_json::json!({
        "update_id": update.update_id, "revision": update.revision, "title": details.title,
        "vendor": details.vendor, "product": details.product, "version": details.version,
        "kind": kind(details.kind), "classification": classification(details.classification),
        "severity": severity(details.severity), "cve_ids": details.cve_ids,
        "known_exploited": update.known_exploited, "superseded_by": update.superseded_by,
        "expired": update.expired, "source": details.source, "debian": debian,
        "required_by_devices": update.required_by_devices,
        "approval": approval(update.approval_status),
    })
}

fn listing(updates: &[pb::UpdateSummary]) -> Listing {
    Listing {
        headers: vec![
            "update",
            "title",
            "vendor",
            "product",
            "version/KB",
            "classification",
            "severity",
            "CVEs",
            "KEV",
            "superseded by",
            "approval",
        ],
        rows: updates
            .iter()
            .map(|u| {
                let d = u.details.clone().unwrap_or_default();
                vec![
                    u.update_id.clone(),
                    d.title,
                    d.vendor,
                    d.product,
                    d.version,
                    classification(d.classification),
                    severity(d.severity),
                    d.cve_ids.join(" "),
                    if u.known_exploited {
                        "yes".to_owned()
                    } else {
                        String::new()
                    },
                    u.superseded_by.clone(),
                    approval(u.approval_status),
                ]
            })
            .collect(),
        json: updates.iter().map(summary_json).collect(),
    }
}
