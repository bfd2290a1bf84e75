//! The scan task aggregate (`scantask-<id>` stream): "Find vulnerabilities and required updates".

use patchbay_proto::scanning::v1 as pb;

use super::ScanningError;
use crate::events::ScanningEvent;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TaskStatus {
    /// Created, never run.
    #[default]
    Idle,
    Running,
    Paused,
    Completed,
    /// A paused run stopped so an install could proceed.
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Idle => "idle",
            TaskStatus::Running => "running",
            TaskStatus::Paused => "paused",
            TaskStatus::Completed => "completed",
            TaskStatus::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanTaskState {
    pub task_id: Option<String>,
    pub name: String,
    pub targets: pb::ScanTargets,
    pub schedule: String,
    pub status: TaskStatus,
    pub runs: u64,
    pub last_devices_scanned: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScanTaskCommand {
    Create {
        task_id: String,
        name: String,
        targets: pb::ScanTargets,
        schedule: String,
    },
    Start {
        task_id: String,
        device_ids: Vec<String>,
    },
    Complete {
        task_id: String,
        devices_scanned: u64,
        devices_without_inventory: u64,
    },
    Pause {
        task_id: String,
    },
    Resume {
        task_id: String,
    },
    /// An install is about to run on a device this task targets: a paused task stops, a running one
    /// is not interrupted.
    InstallStarting {
        task_id: String,
    },
}

/// The schedules a task can have, by the names the API and CLI use.
const SCHEDULES: [(&str, pb::ScanSchedule); 3] = [
    ("weekly", pb::ScanSchedule::Weekly),
    ("daily", pb::ScanSchedule::Daily),
    ("manual", pb::ScanSchedule::Manual),
];

/// The schedule named `name` (empty means the default, weekly); `None` if there is no such schedule.
pub fn parse_schedule(name: &str) -> Option<pb::ScanSchedule> {
    if name.is_empty() {
        return Some(pb::ScanSchedule::Weekly);
    }
    SCHEDULES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, schedule)| *schedule)
}

/// The name the API and CLI use for `schedule`.
pub fn schedule_name(schedule: pb::ScanSchedule) -> &'static str {
    match schedule {
        pb::ScanSchedule::Daily => "daily",
        pb::ScanSchedule::Manual => "manual",
        // Unspecified is never written: it can only be a newer writer's value, and weekly is the
        // default.
        pb::ScanSchedule::Weekly | pb::ScanSchedule::Unspecified => "weekly",
    }
}

pub fn decide_task(
    state: &ScanTaskState,
    command: ScanTaskCommand,
) -> Result<Vec<ScanningEvent>, ScanningError> {
    let wrong = |task: &str, action: &'static str| ScanningError::WrongStatus {
        task: task.to_owned(),
        action,
        status: state.status.as_str(),
    };
    if let ScanTaskCommand::Create {
        task_id,
        name,
        targets,
        schedule,
    } = command
    {
        let Some(schedule) = parse_schedule(&schedule) else {
            let known: Vec<&str> = SCHEDULES.iter().map(|(name, _)| *name).collect();
            return Err(ScanningError::InvalidInput(format!(
                "schedule {schedule:?} is not one of {}",
                known.join(", ")
            )));
        };
        if !targets.all_devices && targets.groups.is_empty() && targets.device_ids.is_empty() {
            return Err(ScanningError::InvalidInput(
                "a scan task needs targets: all devices, groups or devices".to_owned(),
            ));
        }
        if state.task_id.is_some() {
            return Ok(vec![]);
        }
        return Ok(vec![ScanningEvent::ScanTaskCreated(pb::ScanTaskCreated {
            task_id,
            name,
            targets: Some(targets),
            schedule: schedule.into(),
        })]);
    }
    let task_id = match &command {
        ScanTaskCommand::Start { task_id, .. }
        | ScanTaskCommand::Complete { task_id, .. }
        | ScanTaskCommand::Pause { task_id }
        | ScanTaskCommand::Resume { task_id }
        | ScanTaskCommand::InstallStarting { task_id } => task_id.clone(),
        ScanTaskCommand::Create { .. } => return Ok(vec![]),
    };
    if state.task_id.is_none() {
        return Err(ScanningError::UnknownTask(task_id));
    }
    Ok(match command {
        ScanTaskCommand::Start { device_ids, .. } => match state.status {
            TaskStatus::Running | TaskStatus::Paused => return Err(wrong(&task_id, "start")),
            _ => vec![ScanningEvent::ScanStarted(pb::ScanStarted {
                task_id,
                run: state.runs + 1,
                device_ids,
            })],
        },
        ScanTaskCommand::Complete {
            devices_scanned,
            devices_without_inventory,
            ..
        } => match state.status {
            TaskStatus::Running => vec![ScanningEvent::ScanTaskCompleted(pb::ScanTaskCompleted {
                task_id,
                run: state.runs,
                devices_scanned,
                devices_without_inventory,
            })],
            _ => return Err(wrong(&task_id, "complete")),
        },
        ScanTaskCommand::Pause { .. } => match state.status {
            TaskStatus::Running => vec![ScanningEvent::ScanTaskPaused(pb::ScanTaskPaused {
                task_id,
            })],
            TaskStatus::Paused => vec![],
            _ => return Err(wrong(&task_id, "pause")),
        },
        ScanTaskCommand::Resume { .. } => match state.status {
            TaskStatus::Paused => vec![ScanningEvent::ScanTaskResumed(pb::ScanTaskResumed {
                task_id,
            })],
            TaskStatus::Running => vec![],
            _ => return Err(wrong(&task_id, "resume")),
        },
        ScanTaskCommand::InstallStarting { .. } => match state.status {
            TaskStatus::Paused => vec![ScanningEvent::ScanTaskStopped(pb::ScanTaskStopped {
                task_id,
                reason: "an install is about to run on a targeted device".to_owned(),
            })],
            _ => vec![],
        },
        ScanTaskCommand::Create { .. } => vec![],
    })
}

pub fn evolve_task(mut state: ScanTaskState, event: &ScanningEvent) -> ScanTaskState {
    match event {
        ScanningEvent::ScanTaskCreated(e) => {
            state.task_id = Some(e.task_id.clone());
            state.name = e.name.clone();
            state.targets = e.targets.clone().unwrap_or_default();
            state.schedule = schedule_name(e.schedule()).to_owned();
        }
        ScanningEvent::ScanStarted(e) => {
            state.status = TaskStatus::Running;
            state.runs = e.run;
        }
        ScanningEvent::ScanTaskPaused(_) => state.status = TaskStatus::Paused,
        ScanningEvent::ScanTaskResumed(_) => state.status = TaskStatus::Running,
        ScanningEvent::ScanTaskStopped(_) => state.status = TaskStatus::Stopped,
        ScanningEvent::ScanTaskCompleted(e) => {
            state.status = TaskStatus::Completed;
            state.last_devices_scanned = e.devices_scanned;
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(commands: Vec<ScanTaskCommand>) -> ScanTaskState {
        commands
            .into_iter()
            .fold(ScanTaskState::default(), |state, command| {
                let events = decide_task(&state, command).unwrap();
                events.iter().fold(state, evolve_task)
            })
    }

    fn create() -> ScanTaskCommand {
        ScanTaskCommand::Create {
            task_id: "t1".into(),
            name: "Find vulnerabilities and required updates".into(),
            targets: pb::ScanTargets {
                all_devices: true,
                ..Default::default()
            },
            schedule: String::new(),
        }
    }

    fn start() -> ScanTaskCommand {
        ScanTaskCommand::Start {
            task_id: "t1".into(),
            device_ids: vec!["d1".into()],
        }
    }

    fn install() -> ScanTaskCommand {
        ScanTaskCommand::InstallStarting {
            task_id: "t1".into(),
        }
    }

    #[test]
    fn a_task_defaults_to_weekly_and_runs_are_numbered() {
        let state = given(vec![create(), start()]);
        assert_eq!(
            (state.schedule.as_str(), state.status, state.runs),
            ("weekly", TaskStatus::Running, 1)
        );
        let done = given(vec![
            create(),
            start(),
            ScanTaskCommand::Complete {
                task_id: "t1".into(),
                devices_scanned: 1,
                devices_without_inventory: 0,
            },
            start(),
        ]);
        assert_eq!(done.runs, 2);
    }

    #[test]
    fn an_install_stops_a_paused_scan_but_not_an_active_one() {
        let active = given(vec![create(), start()]);
        assert!(decide_task(&active, install()).unwrap().is_empty());
        let paused = given(vec![
            create(),
            start(),
            ScanTaskCommand::Pause {
                task_id: "t1".into(),
            },
        ]);
        let events = decide_task(&paused, install()).unwrap();
        assert!(matches!(&events[..], [ScanningEvent::ScanTaskStopped(_)]));
        assert_eq!(
            events.iter().fold(paused, evolve_task).status,
            TaskStatus::Stopped
        );
    }

    #[test]
    fn wrong_transitions_and_bad_tasks_are_refused() {
        let running = given(vec![create(), start()]);
        assert!(matches!(
            decide_task(&running, start()),
            Err(ScanningError::WrongStatus { .. })
        ));
        assert!(matches!(
            decide_task(&ScanTaskState::default(), start()),
            Err(ScanningError::UnknownTask(_))
        ));
        let no_targets = ScanTaskCommand::Create {
            task_id: "t".into(),
            name: "n".into(),
            targets: Default::default(),
            schedule: String::new(),
        };
        assert!(decide_task(&ScanTaskState::default(), no_targets).is_err());
        let hourly = ScanTaskCommand::Create {
            task_id: "t".into(),
            name: "n".into(),
            targets: pb::ScanTargets {
                all_devices: true,
                ..Default::default()
            },
            schedule: "hourly".into(),
        };
        assert!(
            decide_task(&ScanTaskState::default(), hourly)
                .unwrap_err()
                .to_string()
                .contains("schedule")
        );
    }
}
