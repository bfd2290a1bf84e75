//! Commands on install tasks (create, run) and on jobs (dispatch to the agent, its result): each is
//! decided against the state and either refused with a reason or turned into events.

use patchbay_proto::installing::v1 as pb;
use sha2::{Digest as _, Sha256};

use super::state::{InstallingState, JobStatus, ON_DEMAND};
use crate::events::InstallingEvent;

/// Why a command was refused; each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallingError {
    #[error("invalid install task: {0}")]
    InvalidTask(String),
    #[error("no install task '{0}'; `patchbay tasks list` shows the tasks")]
    UnknownTask(String),
    #[error(
        "unknown device '{0}': register the agent first (it may take a moment to reach the installing service)"
    )]
    UnknownDevice(String),
    #[error("the credential presented for device '{0}' is wrong; re-register the agent")]
    BadCredential(String),
    #[error("no job '{0}'")]
    UnknownJob(String),
    #[error("job '{job_id}' belongs to another device, not to '{device_id}'")]
    NotYourJob { job_id: String, device_id: String },
    #[error("job '{job_id}' is {status:?}; a result can only be reported for a dispatched job")]
    JobNotDispatched { job_id: String, status: JobStatus },
    #[error("a job result must say SUCCEEDED, FAILED or REBOOT_REQUIRED")]
    NoOutcome,
}

/// SHA-256 (hex) of an agent credential, as scanning stored it at registration.
pub fn credential_digest(credential: &str) -> String {
    hex::encode(Sha256::digest(credential.as_bytes()))
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    Create(Box<pb::InstallTaskCreated>),
    Run { task_id: String, trigger: String },
}

const SCHEDULES: [&str; 3] = ["manual", "daily", "weekly"];

pub fn decide_task(
    state: &InstallingState,
    command: TaskCommand,
) -> Result<Vec<InstallingEvent>, InstallingError> {
    match command {
        TaskCommand::Create(created) => {
            let mut created = *created;
            let invalid = |m: &str| Err(InstallingError::InvalidTask(m.to_owned()));
            if created.name.trim().is_empty() {
                return invalid("give the task a name");
            }
            if created.schedule.is_empty() {
                created.schedule = "manual".to_owned();
            }
            if !SCHEDULES.contains(&created.schedule.as_str()) {
                return invalid("the schedule must be manual, daily or weekly");
            }
            let targets = created.targets.clone().unwrap_or_default();
            if !targets.all_devices && targets.groups.is_empty() && targets.device_ids.is_empty() {
                return invalid("name the target devices: all devices, groups or device ids");
            }
            match pb::TaskKind::try_from(created.kind) {
                Ok(pb::TaskKind::InstallRequired) => {
                    if !created.update_ids.is_empty() {
                        return invalid(
                            "an install-required task picks updates by its rules; list updates only in an install-windows-updates task",
                        );
                    }
                }
                Ok(pb::TaskKind::InstallWindowsUpdates) => {
                    if created.update_ids.is_empty() {
                        return invalid(
                            "an install-windows-updates task needs the list of updates (--updates ID...)",
                        );
                    }
                }
                _ => {
                    return invalid(
                        "the task kind must be install-required or install-windows-updates",
                    );
                }
            }
            if state.tasks.contains_key(&created.task_id) {
                return Ok(vec![]);
            }
            Ok(vec![InstallingEvent::InstallTaskCreated(created)])
        }
        TaskCommand::Run { task_id, trigger } => {
            let Some(task) = state.tasks.get(&task_id) else {
                return Err(InstallingError::UnknownTask(task_id));
            };
            if task.run_open && trigger != ON_DEMAND {
                // The schedule does not pile runs on an open one.
                return Ok(vec![]);
            }
            Ok(vec![InstallingEvent::InstallTaskRunRequested(
                pb::InstallTaskRunRequested {
                    run: task.runs + 1,
                    task_id,
                    trigger,
                },
            )])
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobCommand {
    Dispatch {
        job_id: String,
    },
    Report {
        device_id: String,
        job_id: String,
        outcome: pb::JobOutcome,
        reason: String,
        output: String,
    },
}

/// Checks that `credential` is the one issued to `device_id`.
pub fn authenticate(
    state: &InstallingState,
    device_id: &str,
    credential: &str,
) -> Result<(), InstallingError> {
    let Some(device) = state
        .devices
        .get(device_id)
        .filter(|d| !d.credential_sha256.is_empty())
    else {
        return Err(InstallingError::UnknownDevice(device_id.to_owned()));
    };
    if credential_digest(credential) != device.credential_sha256 {
        return Err(InstallingError::BadCredential(device_id.to_owned()));
    }
    Ok(())
}

pub fn decide_job(
    state: &InstallingState,
    command: JobCommand,
) -> Result<Vec<InstallingEvent>, InstallingError> {
    match command {
        JobCommand::Dispatch { job_id } => {
            let entry = state
                .jobs
                .get(&job_id)
                .ok_or_else(|| InstallingError::UnknownJob(job_id.clone()))?;
            if entry.status != JobStatus::Queued {
                return Ok(vec![]);
            }
            Ok(vec![InstallingEvent::InstallJobDispatched(
                pb::InstallJobDispatched {
                    device_id: entry.job.device_id.clone(),
                    job_id,
                },
            )])
        }
        JobCommand::Report {
            device_id,
            job_id,
            outcome,
            reason,
            output,
        } => {
            let entry = state
                .jobs
                .get(&job_id)
                .ok_or_else(|| InstallingError::UnknownJob(job_id.clone()))?;
            if entry.job.device_id != device_id {
                return Err(InstallingError::NotYourJob { job_id, device_id });
            }
            let reported = match outcome {
                pb::JobOutcome::Succeeded => JobStatus::Succeeded,
                pb::JobOutcome::Failed => JobStatus::Failed,
                pb::JobOutcome::RebootRequired => JobStatus::RebootRequired,
                pb::JobOutcome::Unspecified => return Err(InstallingError::NoOutcome),
            };
            if entry.status == reported {
                // The agent reports again after a reconnect: already recorded.
                return Ok(vec![]);
            }
            if entry.status != JobStatus::Dispatched {
                return Err(InstallingError::JobNotDispatched {
                    job_id,
                    status: entry.status,
                });
            }
            Ok(vec![match reported {
                JobStatus::Succeeded => {
                    InstallingEvent::InstallJobSucceeded(pb::InstallJobSucceeded {
                        job_id,
                        device_id,
                        output,
                    })
                }
                JobStatus::RebootRequired => {
                    InstallingEvent::InstallJobRebootRequired(pb::InstallJobRebootRequired {
                        job_id,
                        device_id,
                    })
                }
                _ => InstallingEvent::InstallJobFailed(pb::InstallJobFailed {
                    job_id,
                    device_id,
                    reason: if reason.trim().is_empty() {
                        "the agent gave no reason".to_owned()
                    } else {
                        reason
                    },
                }),
            }])
        }
    }
}
