//! `patchbay audit verify`: checks each service's hash-chained log for tampering.

use patchbay_proto::audit::v1 as pb;
use patchbay_proto::audit::v1::audit_service_client::AuditServiceClient;

use super::ClientArgs;
use super::output::{Listing, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// What was true at a time, rebuilt from the logs up to it: approvals and who or which rule set
    /// them, EULA decisions, each device's required and installed updates and open vulnerabilities,
    /// and the install tasks with their rules.
    State {
        /// RFC 3339, e.g. 2026-11-30T12:00:00Z.
        #[arg(long)]
        at: String,
        /// Only this update's approval.
        #[arg(long)]
        update: Option<String>,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Replay every log from its first event, ignoring snapshots (same answer, slower).
        #[arg(long)]
        from_zero: bool,
    },
    /// Every event that led to an update's, a device's or a CVE's current state, across services in
    /// time order, with the time to remediate per device.
    Trail {
        #[arg(long, group = "subject")]
        update: Option<String>,
        #[arg(long, group = "subject")]
        device: Option<String>,
        #[arg(long, group = "subject")]
        cve: Option<String>,
    },
    /// Walk each log's hash chain (read-only) and report the first altered, removed, reordered or
    /// inserted event; exit code 1 if any log is not intact.
    Verify {
        /// Only this service (catalog, approvals, scanning, installing, wsus-sync).
        #[arg(long)]
        service: Option<String>,
    },
}

pub async fn run(args: &ClientArgs, command: AuditCommand) -> anyhow::Result<()> {
    let mut client = AuditServiceClient::new(args.channel().await?);
    match command {
        AuditCommand::State {
            at,
            update,
            device,
            from_zero,
        } => {
            let state = client
                .state_at(pb::StateAtRequest {
                    at,
                    update_id: update.unwrap_or_default(),
                    device_id: device.unwrap_or_default(),
                    from_zero,
                })
                .await
                .map_err(super::status_error)?
                .into_inner();
            print_state(&state, args.output)
        }
        AuditCommand::Trail {
            update,
            device,
            cve,
        } => {
            let trail = client
                .trail(pb::TrailRequest {
                    update_id: update.unwrap_or_default(),
                    device_id: device.unwrap_or_default(),
                    cve_id: cve.unwrap_or_default(),
                })
                .await
                .map_err(super::status_error)?
                .into_inner();
            print_trail(&trail, args.output)
        }
        AuditCommand::Verify { service } => {
            let services = client
                .verify_chain(pb::VerifyChainRequest {
                    service: service.unwrap_or_default(),
                })
                .await
                .map_err(super::status_error)?
                .into_inner()
                .services;
            Listing {
                headers: vec!["service", "intact", "sealed", "unsealed", "head", "report"],
                rows: services
                    .iter()
                    .map(|s| {
                        vec![
                            s.service.clone(),
                            if s.intact { "yes" } else { "NO" }.to_owned(),
                            s.sealed.to_string(),
                            s.unsealed_after.to_string(),
                            s.head_digest.clone(),
                            s.report.clone(),
                        ]
                    })
                    .collect(),
                json: serde_json::Value::Array(
                    services
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "service": s.service, "intact": s.intact, "sealed": s.sealed,
                                "unsealed_after": s.unsealed_after, "head_digest": s.head_digest,
                                "report": s.report,
                            })
                        })
                        .collect(),
                ),
            }
            .print(args.output)?;
            let broken: Vec<&str> = services
                .iter()
                .filter(|s| !s.intact)
                .map(|s| s.service.as_str())
                .collect();
            if broken.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("tampering detected in: {}", broken.join(", "))
            }
        }
    }
}

fn print_state(state: &pb::StateAtResponse, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        let json = serde_json::json!({
            "at": state.at, "replayed": state.replayed,
            "approvals": state.approvals.iter().map(|a| serde_json::json!({
                "update_id": a.update_id, "status": a.status, "actor": a.actor,
                "changed_at": a.changed_at, "reason": a.reason, "rule_id": a.rule_id,
                "rule_version": a.rule_version, "revision": a.revision,
            })).collect::<Vec<_>>(),
            "eulas": state.eulas.iter().map(|e| serde_json::json!({
                "eula_id": e.eula_id, "text_sha256": e.text_sha256, "decision": e.decision,
                "actor": e.actor, "decided_at": e.decided_at,
            })).collect::<Vec<_>>(),
            "devices": state.devices.iter().map(|d| serde_json::json!({
                "device_id": d.device_id, "hostname": d.hostname, "groups": d.groups,
                "scanned_at": d.scanned_at, "required_update_ids": d.required_update_ids,
                "open_vulnerabilities": d.open_vulnerabilities,
                "installed_update_ids": d.installed_update_ids,
            })).collect::<Vec<_>>(),
            "tasks": state.tasks.iter().map(|t| serde_json::json!({
                "task_id": t.task_id, "name": t.name, "runs": t.runs,
                "last_run_status": t.last_run_status,
                "definition": serde_json::from_str::<serde_json::Value>(&t.definition_json).unwrap_or_default(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!(
        "state at {} (replayed: {})",
        state.at,
        state.replayed.join(", ")
    );
    let sections = [
        Listing {
            headers: vec!["update", "approval", "by", "at", "rule", "reason"],
            rows: state
                .approvals
                .iter()
                .map(|a| {
                    vec![
                        a.update_id.clone(),
                        a.status.clone(),
                        a.actor.clone(),
                        a.changed_at.clone(),
                        if a.rule_id.is_empty() {
                            String::new()
                        } else {
                            format!("{} v{}", a.rule_id, a.rule_version)
                        },
                        a.reason.clone(),
                    ]
                })
                .collect(),
            json: serde_json::Value::Null,
        },
        Listing {
            headers: vec!["EULA", "text", "decision", "by", "at"],
            rows: state
                .eulas
                .iter()
                .map(|e| {
                    vec![
                        e.eula_id.clone(),
                        e.text_sha256.chars().take(12).collect(),
                        e.decision.clone(),
                        e.actor.clone(),
                        e.decided_at.clone(),
                    ]
                })
                .collect(),
            json: serde_json::Value::Null,
        },
        Listing {
            headers: vec![
                "device",
                "host",
                "scanned",
                "required",
                "vulnerabilities",
                "installed",
            ],
            rows: state
                .devices
                .iter()
                .map(|d| {
                    vec![
                        d.device_id.clone(),
                        d.hostname.clone(),
                        d.scanned_at.clone(),
                        d.required_update_ids.join(" "),
                        d.open_vulnerabilities.join(" "),
                        d.installed_update_ids.join(" "),
                    ]
                })
                .collect(),
            json: serde_json::Value::Null,
        },
        Listing {
            headers: vec!["task", "name", "runs", "last run"],
            rows: state
                .tasks
                .iter()
                .map(|t| {
                    vec![
                        t.task_id.clone(),
                        t.name.clone(),
                        t.runs.to_string(),
                        t.last_run_status.clone(),
                    ]
                })
                .collect(),
            json: serde_json::Value::Null,
        },
    ];
    for section in sections.iter().filter(|s| !s.rows.is_empty()) {
        section.print(format)?;
    }
    Ok(())
}

fn print_trail(trail: &pb::TrailResponse, format: OutputFormat) -> anyhow::Result<()> {
    let step_json = |s: &pb::TrailStep| {
        let event = s.event.clone().unwrap_or_default();
        serde_json::json!({
            "step": s.step, "update_id": s.update_id, "device_id": s.device_id, "detail": s.detail,
            "service": event.service, "recorded_at": event.recorded_at, "actor": event.actor,
            "event_type": event.event_type, "event_id": event.event_id,
            "correlation_id": event.correlation_id, "causation_id": event.causation_id,
        })
    };
    let remediation_json = |r: &pb::Remediation| {
        serde_json::json!({
            "device_id": r.device_id, "subject": r.subject, "found_at": r.found_at,
            "remediated_at": r.remediated_at, "seconds": r.seconds, "how": r.how,
        })
    };
    if format == OutputFormat::Json {
        let json = serde_json::json!({
            "steps": trail.steps.iter().map(step_json).collect::<Vec<_>>(),
            "remediations": trail.remediations.iter().map(remediation_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    Listing {
        headers: vec![
            "when", "service", "step", "update", "device", "by", "detail",
        ],
        rows: trail
            .steps
            .iter()
            .map(|s| {
                let event = s.event.clone().unwrap_or_default();
                vec![
                    event.recorded_at,
                    event.service,
                    s.step.clone(),
                    s.update_id.clone(),
                    s.device_id.clone(),
                    event.actor,
                    s.detail.clone(),
                ]
            })
            .collect(),
        json: serde_json::Value::Null,
    }
    .print(format)?;
    if !trail.remediations.is_empty() {
        Listing {
            headers: vec![
                "device",
                "subject",
                "found",
                "remediated",
                "time to remediate",
                "how",
            ],
            rows: trail
                .remediations
                .iter()
                .map(|r| {
                    vec![
                        r.device_id.clone(),
                        r.subject.clone(),
                        r.found_at.clone(),
                        r.remediated_at.clone(),
                        if r.remediated_at.is_empty() {
                            "open".to_owned()
                        } else {
                            format!("{} s", r.seconds)
                        },
                        r.how.clone(),
                    ]
                })
                .collect(),
            json: serde_json::Value::Null,
        }
        .print(format)?;
    }
    Ok(())
}
