//! `patchbay devices list|show|required` and `patchbay scan run|status`.

use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::scanning_service_client::ScanningServiceClient;

use super::ClientArgs;
use super::output::Listing;

#[derive(Debug, clap::Subcommand)]
pub enum DevicesCommand {
    /// Devices, with their inventory and last scan.
    List {
        #[arg(long)]
        group: Option<String>,
    },
    /// One device.
    Show { device_id: String },
    /// Required updates found by the last scan: per device, package or product, installed and required
    /// versions, update id, CVEs and KEV flag.
    Required {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        device_ids: Vec<String>,
        /// Every device.
        #[arg(long)]
        all: bool,
    },
    /// Replace a device's groups.
    SetGroups {
        device_id: String,
        #[arg(long = "group")]
        groups: Vec<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ScanCommand {
    /// Run "Find vulnerabilities and required updates" now (all devices unless narrowed).
    Run {
        #[arg(long = "devices", num_args = 1..)]
        devices: Vec<String>,
        #[arg(long)]
        group: Vec<String>,
        /// Wait for the scan to finish (scans on demand always finish before the command returns).
        #[arg(long)]
        wait: bool,
    },
    /// Scan tasks and their last run.
    Status,
    /// Pause a running scan task (an install on one of its devices then stops it).
    Pause { task_id: String },
    /// Resume a paused scan task.
    Resume { task_id: String },
}

fn client_error(status: tonic::Status) -> anyhow::Error {
    super::status_error(status)
}

pub async fn devices(args: &ClientArgs, command: DevicesCommand) -> anyhow::Result<()> {
    let mut client = ScanningServiceClient::new(args.channel().await?);
    match command {
        DevicesCommand::List { group } => {
            let devices = client
                .list_devices(pb::ListDevicesRequest {
                    group: group.unwrap_or_default(),
                })
                .await
                .map_err(client_error)?
                .into_inner()
                .devices;
            device_listing(&devices).print(args.output)
        }
        DevicesCommand::Show { device_id } => {
            let found = client
                .get_required(pb::GetRequiredRequest {
                    device_ids: vec![device_id],
                })
                .await
                .map_err(client_error)?
                .into_inner()
                .devices;
            let devices: Vec<_> = found.into_iter().filter_map(|d| d.device).collect();
            device_listing(&devices).print(args.output)
        }
        DevicesCommand::SetGroups { device_id, groups } => {
            let device = client
                .set_device_groups(pb::SetDeviceGroupsRequest { device_id, groups })
                .await
                .map_err(client_error)?
                .into_inner();
            device_listing(std::slice::from_ref(&device)).print(args.output)
        }
        DevicesCommand::Required { device_ids, all } => {
            let request = pb::GetRequiredRequest {
                device_ids: if all { vec![] } else { device_ids },
            };
            let devices = client
                .get_required(request)
                .await
                .map_err(client_error)?
                .into_inner()
                .devices;
            required_listing(&devices).print(args.output)
        }
    }
}

pub async fn scan(args: &ClientArgs, command: ScanCommand) -> anyhow::Result<()> {
    let mut client = ScanningServiceClient::new(args.channel().await?);
    match command {
        ScanCommand::Run {
            devices,
            group,
            wait: _,
        } => {
            let targets = pb::ScanTargets {
                all_devices: devices.is_empty() && group.is_empty(),
                groups: group,
                device_ids: devices,
            };
            let run = client
                .run_scan(pb::RunScanRequest {
                    targets: Some(targets),
                })
                .await
                .map_err(client_error)?
                .into_inner();
            Listing {
                headers: vec!["task", "run", "devices scanned", "without inventory"],
                rows: vec![vec![run.task_id.clone(), run.run.to_string(), run.devices_scanned.to_string(), run.devices_without_inventory.to_string()]],
                json: serde_json::json!({"task_id": run.task_id, "run": run.run, "devices_scanned": run.devices_scanned, "devices_without_inventory": run.devices_without_inventory}),
            }
            .print(args.output)
        }
        ScanCommand::Pause { task_id } => {
            let task = client
                .pause_scan_task(pb::ScanTaskRequest { task_id })
                .await
                .map_err(client_error)?
                .into_inner();
            task_listing(&[task]).print(args.output)
        }
        ScanCommand::Resume { task_id } => {
            let task = client
                .resume_scan_task(pb::ScanTaskRequest { task_id })
                .await
                .map_err(client_error)?
                .into_inner();
            task_listing(&[task]).print(args.output)
        }
        ScanCommand::Status => {
            let tasks = client
                .list_scan_tasks(pb::ListScanTasksRequest {})
                .await
                .map_err(client_error)?
                .into_inner()
                .tasks;
            task_listing(&tasks).print(args.output)
        }
    }
}

fn task_listing(tasks: &[pb::ScanTask]) -> Listing {
    Listing {
        headers: vec!["task", "name", "schedule", "status", "runs", "devices scanned"],
        rows: tasks
            .iter()
            .map(|t| {
                vec![
                    t.task_id.clone(),
                    t.name.clone(),
                    t.schedule.clone(),
                    t.status.clone(),
                    t.runs.to_string(),
                    t.last_devices_scanned.to_string(),
                ]
            })
            .collect(),
        json: tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "task_id": t.task_id, "name": t.name, "schedule": t.schedule, "status": t.status,
                    "runs": t.runs, "last_devices_scanned": t.last_devices_scanned,
                })
            })
            .collect(),
    }
}

fn device_listing(devices: &[pb::Device]) -> Listing {
    Listing {
        headers: vec![
            "device",
            "hostname",
            "groups",
            "os",
            "packages",
            "required",
            "vulnerabilities",
            "last scan",
        ],
        rows: devices
            .iter()
            .map(|d| {
                vec![
                    d.device_id.clone(),
                    d.hostname.clone(),
                    d.groups.join(" "),
                    d.os.clone(),
                    d.package_count.to_string(),
                    d.required_count.to_string(),
                    d.vulnerability_count.to_string(),
                    d.last_scanned_at.clone(),
                ]
            })
            .collect(),
        json: devices.iter().map(device_json).collect(),
    }
}

fn device_json(d: &pb::Device) -> serde_json::Value {
    serde_json::json!({
        "device_id": d.device_id, "hostname": d.hostname, "groups": d.groups, "os": d.os,
        "package_count": d.package_count, "has_inventory": d.has_inventory, "required_count": d.required_count,
        "vulnerability_count": d.vulnerability_count, "last_scanned_at": d.last_scanned_at,
    })
}

fn required_listing(devices: &[pb::DeviceRequired]) -> Listing {
    let mut rows = Vec::new();
    for device in devices {
        let id = device
            .device
            .as_ref()
            .map(|d| d.device_id.clone())
            .unwrap_or_default();
        for r in &device.required {
            rows.push(vec![
                id.clone(),
                r.package_or_product.clone(),
                r.installed_version.clone(),
                r.required_version.clone(),
                r.update_id.clone(),
                r.cve_ids.join(" "),
                if r.known_exploited {
                    "yes".to_owned()
                } else {
                    String::new()
                },
            ]);
        }
    }
    Listing {
        headers: vec!["device", "package", "installed", "required", "update", "CVEs", "KEV"],
        rows,
        json: devices
            .iter()
            .map(|d| {
                serde_json::json!({
                    "device": d.device.as_ref().map(device_json),
                    "catalog_position": d.catalog_position,
                    "required": d.required.iter().map(|r| serde_json::json!({
                        "package": r.package_or_product, "installed_version": r.installed_version,
                        "required_version": r.required_version, "architecture": r.architecture,
                        "update_id": r.update_id, "cve_ids": r.cve_ids, "known_exploited": r.known_exploited,
                    })).collect::<Vec<_>>(),
                    "vulnerabilities": d.vulnerabilities.iter().map(|v| serde_json::json!({
                        "cve_id": v.cve_id, "known_exploited": v.known_exploited, "fixed_by": v.fixed_by,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    }
}
