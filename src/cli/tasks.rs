//! `patchbay tasks create|list|show|run`: install tasks ("Install required updates and fix
//! vulnerabilities", "Install Windows Update updates").

use clap::ValueEnum;
use patchbay_proto::catalog::v1 as cpb;
use patchbay_proto::installing::v1 as pb;
use patchbay_proto::installing::v1::installing_service_client::InstallingServiceClient;

use super::ClientArgs;
use super::output::Listing;
use super::updates::{ClassificationArg, SeverityArg};

#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// Create an install task.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Install tasks with their last run and job counts.
    List,
    /// One task: rules, targets, runs, last run status and job counts.
    Show { task_id: String },
    /// Run a task now: every covered device's required updates that its rules allow are queued.
    Run { task_id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum CreateCommand {
    /// "Install required updates and fix vulnerabilities": rules decide what is installed, and the task
    /// reacts to scans, approvals and EULA acceptances as they happen.
    InstallRequired(InstallRequiredArgs),
    /// "Install Windows Update updates": exactly the listed updates, fixed now.
    InstallWindowsUpdates(InstallWindowsArgs),
}

#[derive(Debug, clap::Args)]
pub struct InstallRequiredArgs {
    /// Task name (default: "Install required updates and fix vulnerabilities").
    #[arg(long)]
    name: Option<String>,
    /// Which approval statuses are installed.
    #[arg(long, value_enum, default_value = "only-approved")]
    approval: ApprovalArg,
    /// Only updates of at least this severity.
    #[arg(long, value_enum)]
    min_severity: Option<SeverityArg>,
    /// Only updates of these classifications (repeatable; default: any).
    #[arg(long = "classification", value_enum)]
    classifications: Vec<ClassificationArg>,
    /// Only updates of these vendors (repeatable; default: any).
    #[arg(long = "vendor")]
    vendors: Vec<String>,
    /// Only updates of these products (repeatable; default: any).
    #[arg(long = "product")]
    products: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, clap::Args)]
pub struct InstallWindowsArgs {
    /// Task name (default: "Install Windows Update updates").
    #[arg(long)]
    name: Option<String>,
    /// The updates to install (ids from `patchbay updates list --kind windows`).
    #[arg(long, num_args = 1.., required = true, value_name = "ID")]
    updates: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Settings both task kinds share.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// Updates whose EULA must be accepted: wait for acceptance, or never install them.
    #[arg(long, value_enum, default_value = "require-accepted")]
    eula: EulaArg,
    /// What the device does about reboots after installing.
    #[arg(long, value_enum, default_value = "if-required")]
    reboot: RebootArg,
    /// Attempts per device and update before a failure is final (default: the server's, 3).
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    #[command(flatten)]
    targets: TargetArgs,
    /// When the task also runs by itself; `manual` tasks still react to events and run on demand.
    #[arg(long, value_enum, default_value = "manual")]
    schedule: ScheduleArg,
}

/// Which devices a task covers (default: all devices).
#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// Every device (the default when no --group or --device is given).
    #[arg(long, conflicts_with_all = ["groups", "devices"])]
    all_devices: bool,
    /// Devices of this group (repeatable).
    #[arg(long = "group", value_name = "G")]
    groups: Vec<String>,
    /// This device (repeatable).
    #[arg(long = "device", value_name = "D")]
    devices: Vec<String>,
}

impl TargetArgs {
    fn proto(self) -> pb::InstallTargets {
        pb::InstallTargets {
            all_devices: self.all_devices || (self.groups.is_empty() && self.devices.is_empty()),
            groups: self.groups,
            device_ids: self.devices,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ApprovalArg {
    OnlyApproved,
    AllExceptDeclined,
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EulaArg {
    RequireAccepted,
    Skip,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RebootArg {
    Never,
    IfRequired,
    Always,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Manual,
    Daily,
    Weekly,
}

impl ApprovalArg {
    fn proto(self) -> pb::ApprovalRequirement {
        match self {
            Self::OnlyApproved => pb::ApprovalRequirement::OnlyApproved,
            Self::AllExceptDeclined => pb::ApprovalRequirement::AllExceptDeclined,
            Self::All => pb::ApprovalRequirement::All,
        }
    }
}

impl EulaArg {
    fn proto(self) -> pb::EulaHandling {
        match self {
            Self::RequireAccepted => pb::EulaHandling::RequireAccepted,
            Self::Skip => pb::EulaHandling::Skip,
        }
    }
}

impl RebootArg {
    fn proto(self) -> pb::RebootPolicy {
        match self {
            Self::Never => pb::RebootPolicy::Never,
            Self::IfRequired => pb::RebootPolicy::IfRequired,
            Self::Always => pb::RebootPolicy::Always,
        }
    }
}

impl ScheduleArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }
}

/// The request `tasks create` sends; separate from the call so it can be tested.
fn create_request(command: CreateCommand) -> pb::CreateTaskRequest {
    match command {
        CreateCommand::InstallRequired(args) => {
            let rules = pb::InstallRules {
                approval: args.approval.proto() as i32,
                min_severity: args.min_severity.map_or(0, |s| s.proto() as i32),
                classifications: args
                    .classifications
                    .iter()
                    .map(|c| c.proto() as i32)
                    .collect(),
                vendors: args.vendors,
                products: args.products,
                ..common_rules(&args.common)
            };
            pb::CreateTaskRequest {
                name: args.name.unwrap_or_else(|| {
                    "Install required updates and fix vulnerabilities".to_owned()
                }),
                kind: pb::TaskKind::InstallRequired as i32,
                rules: Some(rules),
                schedule: args.common.schedule.as_str().to_owned(),
                targets: Some(args.common.targets.proto()),
                update_ids: Vec::new(),
            }
        }
        CreateCommand::InstallWindowsUpdates(args) => pb::CreateTaskRequest {
            name: args
                .name
                .unwrap_or_else(|| "Install Windows Update updates".to_owned()),
            kind: pb::TaskKind::InstallWindowsUpdates as i32,
            rules: Some(common_rules(&args.common)),
            schedule: args.common.schedule.as_str().to_owned(),
            targets: Some(args.common.targets.proto()),
            update_ids: args.updates,
        },
    }
}

fn common_rules(common: &CommonArgs) -> pb::InstallRules {
    pb::InstallRules {
        eula: common.eula.proto() as i32,
        reboot: common.reboot.proto() as i32,
        max_attempts: common.max_attempts.unwrap_or(0),
        ..Default::default()
    }
}

pub async fn run(args: &ClientArgs, command: TasksCommand) -> anyhow::Result<()> {
    let mut client = InstallingServiceClient::new(args.channel().await?);
    match command {
        TasksCommand::Create(create) => {
            let task = client
                .create_task(create_request(create))
                .await
                .map_err(super::status_error)?
                .into_inner();
            task_listing(std::slice::from_ref(&task)).print(args.output)
        }
        TasksCommand::List => {
            let tasks = client
                .list_tasks(pb::ListTasksRequest {})
                .await
                .map_err(super::status_error)?
                .into_inner()
                .tasks;
            task_listing(&tasks).print(args.output)
        }
        TasksCommand::Show { task_id } => {
            let task = client
                .get_task(pb::GetTaskRequest { task_id })
                .await
                .map_err(super::status_error)?
                .into_inner();
            task_detail(&task).print(args.output)
        }
        TasksCommand::Run { task_id } => {
            let run = client
                .run_task(pb::RunTaskRequest { task_id })
                .await
                .map_err(super::status_error)?
                .into_inner();
            Listing {
                headers: vec!["task", "run"],
                rows: vec![vec![run.task_id.clone(), run.run.to_string()]],
                json: serde_json::json!({"task_id": run.task_id, "run": run.run}),
            }
            .print(args.output)
        }
    }
}

/// `APPROVAL_REQUIREMENT_ALL_EXCEPT_DECLINED` as `all-except-declined`, the spelling the flags use.
fn enum_label(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| {
        n.trim_start_matches(prefix)
            .to_ascii_lowercase()
            .replace('_', "-")
    })
    .unwrap_or_default()
}

fn kind_label(kind: i32) -> String {
    enum_label(
        pb::TaskKind::try_from(kind).ok().map(|k| k.as_str_name()),
        "TASK_KIND_",
    )
}

fn targets_label(targets: Option<&pb::InstallTargets>) -> String {
    let Some(t) = targets else {
        return String::new();
    };
    let mut parts = Vec::new();
    if t.all_devices {
        parts.push("all devices".to_owned());
    }
    parts.extend(t.groups.iter().map(|g| format!("group {g}")));
    parts.extend(t.device_ids.iter().map(|d| format!("device {d}")));
    parts.join(", ")
}

fn pending(counts: &pb::JobCounts) -> u64 {
    counts.queued + counts.dispatched
}

/// The rules in the spelling of the flags that set them.
fn rules_json(rules: &pb::InstallRules) -> serde_json::Value {
    serde_json::json!({
        "approval": enum_label(pb::ApprovalRequirement::try_from(rules.approval).ok().map(|a| a.as_str_name()), "APPROVAL_REQUIREMENT_"),
        "min_severity": if rules.min_severity == 0 { String::new() } else { enum_label(cpb::Severity::try_from(rules.min_severity).ok().map(|s| s.as_str_name()), "SEVERITY_") },
        "classifications": rules.classifications.iter().map(|c| enum_label(cpb::Classification::try_from(*c).ok().map(|c| c.as_str_name()), "CLASSIFICATION_")).collect::<Vec<_>>(),
        "vendors": rules.vendors,
        "products": rules.products,
        "eula": enum_label(pb::EulaHandling::try_from(rules.eula).ok().map(|e| e.as_str_name()), "EULA_HANDLING_"),
        "reboot": enum_label(pb::RebootPolicy::try_from(rules.reboot).ok().map(|r| r.as_str_name()), "REBOOT_POLICY_"),
        "max_attempts": rules.max_attempts,
    })
}

fn task_json(task: &pb::InstallTask) -> serde_json::Value {
    let counts = task.jobs.unwrap_or_default();
    serde_json::json!({
        "task_id": task.task_id, "name": task.name, "kind": kind_label(task.kind),
        "rules": rules_json(&task.rules.clone().unwrap_or_default()),
        "targets": task.targets.as_ref().map(|t| serde_json::json!({"all_devices": t.all_devices, "groups": t.groups, "device_ids": t.device_ids})),
        "update_ids": task.update_ids, "schedule": task.schedule, "runs": task.runs,
        "last_run_status": task.last_run_status,
        "jobs": {
            "queued": counts.queued, "dispatched": counts.dispatched, "succeeded": counts.succeeded,
            "failed": counts.failed, "reboot_required": counts.reboot_required, "cancelled": counts.cancelled,
        },
    })
}

fn task_listing(tasks: &[pb::InstallTask]) -> Listing {
    Listing {
        headers: vec![
            "task",
            "name",
            "kind",
            "schedule",
            "targets",
            "runs",
            "last run",
            "succeeded",
            "reboot required",
            "failed",
            "pending",
        ],
        rows: tasks
            .iter()
            .map(|t| {
                let counts = t.jobs.unwrap_or_default();
                vec![
                    t.task_id.clone(),
                    t.name.clone(),
                    kind_label(t.kind),
                    t.schedule.clone(),
                    targets_label(t.targets.as_ref()),
                    t.runs.to_string(),
                    t.last_run_status.clone(),
                    counts.succeeded.to_string(),
                    counts.reboot_required.to_string(),
                    counts.failed.to_string(),
                    pending(&counts).to_string(),
                ]
            })
            .collect(),
        json: tasks.iter().map(task_json).collect(),
    }
}

/// One task as field/value rows, since its rules do not fit one table row.
fn task_detail(task: &pb::InstallTask) -> Listing {
    let rules = rules_json(&task.rules.clone().unwrap_or_default());
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let counts = task.jobs.unwrap_or_default();
    let mut rows = vec![
        ("task", task.task_id.clone()),
        ("name", task.name.clone()),
        ("kind", kind_label(task.kind)),
        ("schedule", task.schedule.clone()),
        ("targets", targets_label(task.targets.as_ref())),
    ];
    if !task.update_ids.is_empty() {
        rows.push(("updates", task.update_ids.join(", ")));
    }
    for key in [
        "approval",
        "min_severity",
        "classifications",
        "vendors",
        "products",
        "eula",
        "reboot",
        "max_attempts",
    ] {
        let mut value = text(&rules[key]);
        if value.is_empty() {
            value = "any".to_owned();
        } else if key == "max_attempts" && value == "0" {
            value = "server default (3)".to_owned();
        }
        rows.push((key, value));
    }
    rows.extend([
        ("runs", task.runs.to_string()),
        ("last run status", task.last_run_status.clone()),
        ("jobs queued", counts.queued.to_string()),
        ("jobs dispatched", counts.dispatched.to_string()),
        ("jobs succeeded", counts.succeeded.to_string()),
        ("jobs reboot required", counts.reboot_required.to_string()),
        ("jobs failed", counts.failed.to_string()),
        ("jobs cancelled", counts.cancelled.to_string()),
    ]);
    Listing {
        headers: vec!["field", "value"],
        rows: rows
            .into_iter()
            .map(|(field, value)| vec![field.to_owned(), value])
            .collect(),
        json: task_json(task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: TasksCommand,
    }

    fn parse(args: &[&str]) -> pb::CreateTaskRequest {
        let cli = Cli::try_parse_from(std::iter::once("tasks").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            TasksCommand::Create(create) => create_request(create),
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn install_required_defaults_to_approved_updates_on_all_devices() {
        let request = parse(&["create", "install-required"]);
        assert_eq!(request.kind, pb::TaskKind::InstallRequired as i32);
        assert_eq!(
            request.name,
            "Install required updates and fix vulnerabilities"
        );
        let rules = request.rules.unwrap();
        assert_eq!(rules.approval, pb::ApprovalRequirement::OnlyApproved as i32);
        assert_eq!(rules.min_severity, 0);
        assert!(request.targets.unwrap().all_devices);
        assert_eq!(request.schedule, "manual");
    }

    #[test]
    fn install_required_rules_and_targets() {
        let request = parse(&[
            "create",
            "install-required",
            "--name",
            "servers",
            "--approval",
            "all-except-declined",
            "--min-severity",
            "important",
            "--classification",
            "security",
            "--classification",
            "feature-pack",
            "--vendor",
            "Debian",
            "--eula",
            "skip",
            "--reboot",
            "never",
            "--max-attempts",
            "5",
            "--group",
            "web",
            "--device",
            "d1",
            "--schedule",
            "weekly",
        ]);
        let rules = request.rules.unwrap();
        assert_eq!(
            rules.approval,
            pb::ApprovalRequirement::AllExceptDeclined as i32
        );
        assert_eq!(rules.min_severity, cpb::Severity::Important as i32);
        assert_eq!(
            rules.classifications,
            [
                cpb::Classification::Security as i32,
                cpb::Classification::FeaturePack as i32
            ]
        );
        assert_eq!(rules.vendors, ["Debian"]);
        assert_eq!(rules.eula, pb::EulaHandling::Skip as i32);
        assert_eq!(rules.reboot, pb::RebootPolicy::Never as i32);
        assert_eq!(rules.max_attempts, 5);
        let targets = request.targets.unwrap();
        assert!(!targets.all_devices);
        assert_eq!(targets.groups, ["web"]);
        assert_eq!(targets.device_ids, ["d1"]);
        assert_eq!(request.schedule, "weekly");
    }

    #[test]
    fn windows_task_takes_its_update_list() {
        let request = parse(&["create", "install-windows-updates", "--updates", "u1", "u2"]);
        assert_eq!(request.kind, pb::TaskKind::InstallWindowsUpdates as i32);
        assert_eq!(request.update_ids, ["u1", "u2"]);
        assert!(
            Cli::try_parse_from(["tasks", "create", "install-windows-updates"]).is_err(),
            "--updates is required"
        );
        assert!(
            Cli::try_parse_from([
                "tasks",
                "create",
                "install-required",
                "--all-devices",
                "--group",
                "g"
            ])
            .is_err()
        );
    }

    #[test]
    fn labels_use_the_flag_spelling() {
        let rules = pb::InstallRules {
            approval: pb::ApprovalRequirement::AllExceptDeclined as i32,
            classifications: vec![cpb::Classification::UpdateRollup as i32],
            reboot: pb::RebootPolicy::IfRequired as i32,
            ..Default::default()
        };
        let json = rules_json(&rules);
        assert_eq!(json["approval"], "all-except-declined");
        assert_eq!(json["classifications"][0], "update-rollup");
        assert_eq!(json["reboot"], "if-required");
        assert_eq!(json["eula"], "require-accepted");
        assert_eq!(json["min_severity"], "");
        assert_eq!(
            kind_label(pb::TaskKind::InstallRequired as i32),
            "install-required"
        );
    }
}
