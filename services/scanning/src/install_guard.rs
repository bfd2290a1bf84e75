//! The consumer that keeps scans out of an install's way: when the installing service dispatches a job
//! to a device, a *paused* scan task covering that device is stopped (so the install can run); an
//! *active* scan is left alone.

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::installing::v1::InstallJobDispatched;
use prost::Message as _;

use crate::domain::{ScanTaskCommand, TaskStatus, decide_task};
use crate::events::schema_version;
use crate::service::{Scanning, task_stream};

/// Durable consumer name.
pub const CONSUMER: &str = "scanning-install-guard";
/// The installing event it consumes.
pub const EVENT_TYPE: &str = "InstallJobDispatched";

#[derive(Debug, Clone)]
pub struct InstallGuard {
    scanning: Scanning,
}

impl InstallGuard {
    pub fn new(scanning: Scanning) -> Self {
        Self { scanning }
    }
}

impl EventHandler for InstallGuard {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        if incoming.service != "installing" || incoming.event.event_type != EVENT_TYPE {
            return Ok(());
        }
        let dispatched = InstallJobDispatched::decode(incoming.event.payload.as_slice())
            .map_err(|e| HandlerError::Permanent(format!("{EVENT_TYPE} does not decode: {e}")))?;
        self.scanning
            .catch_up()
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let paused: Vec<_> = {
            let view = self.scanning.view();
            let device = view.devices.get(&dispatched.device_id);
            view.tasks
                .values()
                .filter(|task| task.state.status == TaskStatus::Paused)
                .filter(|task| {
                    let targets = &task.state.targets;
                    targets.all_devices
                        || targets.device_ids.contains(&dispatched.device_id)
                        || device.is_some_and(|d| {
                            d.state.groups.iter().any(|g| targets.groups.contains(g))
                        })
                })
                .map(|task| (task.state.clone(), task.version))
                .collect()
        };
        for (state, version) in paused {
            let Some(task_id) = state.task_id.clone() else {
                continue;
            };
            let events = decide_task(
                &state,
                ScanTaskCommand::InstallStarting {
                    task_id: task_id.clone(),
                },
            )
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
            let new_events: Vec<_> = events
                .iter()
                .map(|event| {
                    incoming.follow_up(
                        event.event_type(),
                        schema_version(event.event_type()),
                        event.encode_payload(),
                    )
                })
                .collect();
            if !new_events.is_empty() {
                // A conflict (the task resumed meanwhile) rolls back and redelivers: decided again.
                tx.append(
                    &task_stream(&task_id),
                    ExpectedVersion::Exact(version),
                    &new_events,
                )
                .await?;
            }
        }
        Ok(())
    }
}
