//! `patchbay jobs list`: install and uninstall jobs with their status, filtered by device, task or
//! update.

use patchbay_proto::installing::v1 as pb;
use patchbay_proto::installing::v1::installing_service_client::InstallingServiceClient;

use super::ClientArgs;
use super::output::Listing;

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Jobs, newest attempts included, with status and failure reason.
    List {
        /// Only this device's jobs.
        #[arg(long = "device", value_name = "D")]
        device: Option<String>,
        /// Only this task's jobs.
        #[arg(long = "task", value_name = "T")]
        task: Option<String>,
        /// Only jobs for this update.
        #[arg(long = "update", value_name = "U")]
        update: Option<String>,
    },
}

pub async fn run(args: &ClientArgs, command: JobsCommand) -> anyhow::Result<()> {
    let mut client = InstallingServiceClient::new(args.channel().await?);
    match command {
        JobsCommand::List {
            device,
            task,
            update,
        } => {
            let jobs = client
                .list_jobs(pb::ListJobsRequest {
                    device_id: device.unwrap_or_default(),
                    task_id: task.unwrap_or_default(),
                    update_id: update.unwrap_or_default(),
                })
                .await
                .map_err(super::status_error)?
                .into_inner()
                .jobs;
            listing(&jobs).print(args.output)
        }
    }
}

/// `JOB_STATUS_REBOOT_REQUIRED` as `reboot-required`.
pub(super) fn status_label(status: i32) -> &'static str {
    match pb::JobStatus::try_from(status) {
        Ok(pb::JobStatus::Queued) => "queued",
        Ok(pb::JobStatus::Dispatched) => "dispatched",
        Ok(pb::JobStatus::Succeeded) => "succeeded",
        Ok(pb::JobStatus::Failed) => "failed",
        Ok(pb::JobStatus::RebootRequired) => "reboot-required",
        Ok(pb::JobStatus::Cancelled) => "cancelled",
        Ok(pb::JobStatus::Unspecified) | Err(_) => "unknown",
    }
}

pub(super) fn kind_label(kind: i32) -> &'static str {
    match pb::JobKind::try_from(kind) {
        Ok(pb::JobKind::Install) => "install",
        Ok(pb::JobKind::Uninstall) => "uninstall",
        Err(_) => "unknown",
    }
}

/// What the job installs: `package version [arch]` or the KB article.
pub(super) fn target_label(job: &pb::Job) -> String {
    if !job.kb_article.is_empty() {
        return job.kb_article.clone();
    }
    [
        job.package.as_str(),
        job.version.as_str(),
        job.architecture.as_str(),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" ")
}

fn listing(entries: &[pb::JobEntry]) -> Listing {
    Listing {
        headers: vec![
            "job", "task", "device", "update", "title", "package", "kind", "attempt", "status",
            "reason", "queued", "finished",
        ],
        rows: entries
            .iter()
            .map(|e| {
                let job = e.job.clone().unwrap_or_default();
                vec![
                    job.job_id.clone(),
                    if e.task_name.is_empty() {
                        job.task_id.clone()
                    } else {
                        e.task_name.clone()
                    },
                    if e.hostname.is_empty() {
                        job.device_id.clone()
                    } else {
                        e.hostname.clone()
                    },
                    job.update_id.clone(),
                    e.title.clone(),
                    target_label(&job),
                    kind_label(job.kind).to_owned(),
                    job.attempt.to_string(),
                    status_label(e.status).to_owned(),
                    e.reason.clone(),
                    e.queued_at.clone(),
                    e.finished_at.clone(),
                ]
            })
            .collect(),
        json: entries.iter().map(entry_json).collect(),
    }
}

/// One job as JSON, shared with the install report's per-job rows.
pub(super) fn entry_json(e: &pb::JobEntry) -> serde_json::Value {
    let job = e.job.clone().unwrap_or_default();
    serde_json::json!({
        "job_id": job.job_id, "task_id": job.task_id, "task_name": e.task_name, "run": job.run,
        "device_id": job.device_id, "hostname": e.hostname, "update_id": job.update_id,
        "title": e.title, "vendor": e.vendor, "product": e.product, "kind": kind_label(job.kind),
        "package": job.package, "version": job.version, "architecture": job.architecture,
        "kb_article": job.kb_article, "attempt": job.attempt, "trigger": job.trigger,
        "status": status_label(e.status), "reason": e.reason, "queued_at": e.queued_at,
        "finished_at": e.finished_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_the_device_and_task_when_known() {
        let entry = pb::JobEntry {
            job: Some(pb::Job {
                job_id: "j1".into(),
                task_id: "t1".into(),
                device_id: "d1".into(),
                update_id: "u1".into(),
                package: "curl".into(),
                version: "7.88.1-10+deb12u8".into(),
                architecture: "amd64".into(),
                attempt: 2,
                ..Default::default()
            }),
            status: pb::JobStatus::RebootRequired as i32,
            hostname: "web-1".into(),
            ..Default::default()
        };
        let listing = listing(&[entry]);
        assert_eq!(listing.rows[0][1], "t1");
        assert_eq!(listing.rows[0][2], "web-1");
        assert_eq!(listing.rows[0][5], "curl 7.88.1-10+deb12u8 amd64");
        assert_eq!(listing.rows[0][8], "reboot-required");
        assert_eq!(listing.json[0]["attempt"], 2);
    }
}
