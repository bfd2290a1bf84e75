//! The consumer that records install job steps in the catalog's log, for per-update install statistics.

// Why a catalog event of its own (`InstallJobObserved`) rather than a copy of installing's events
// (as the scanning indexer keeps of the catalog's): the catalog needs a few small facts per job step,
// not the package, output or failure reason, and in its own vocabulary replaying its log never
// depends on decoding another service's schema versions. Installing's later job events name only the
// job and the device, so the update and kind come with the queued step and the view joins later steps
// to it by job id (which also copes with a step delivered before its job's queued event).

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::installing::v1 as installing;
use prost::Message as _;

use crate::events::{CatalogEvent, SCHEMA_VERSION};

/// Durable consumer name.
pub const CONSUMER: &str = "catalog-install-results";
/// The producing service.
pub const SERVICE: &str = "installing";

/// The catalog's stream of the install and uninstall job steps of one device.
pub fn device_installs_stream(device_id: &str) -> String {
    format!("deviceinstalls-{device_id}")
}

/// Records `InstallJobQueued`, `UninstallJobQueued`, `InstallJobDispatched`, `InstallJobSucceeded`,
/// `InstallJobFailed`, `InstallJobRebootRequired` and `InstallJobCancelled` as `InstallJobObserved`;
/// every other installing event (tasks, runs, the planner, its copies of others' events) is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallResultRecorder;

impl EventHandler for InstallResultRecorder {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        if incoming.service != SERVICE {
            return Ok(());
        }
        let Some(observed) = observe(incoming)? else {
            return Ok(());
        };
        if observed.job_id.is_empty() || observed.device_id.is_empty() {
            return Err(HandlerError::Permanent(format!(
                "{} names no job or no device",
                incoming.event.event_type
            )));
        }
        let stream = device_installs_stream(&observed.device_id);
        let observed = CatalogEvent::InstallJobObserved(observed);
        let event = incoming.follow_up(
            observed.event_type(),
            SCHEMA_VERSION,
            observed.encode_payload(),
        );
        tx.append(&stream, ExpectedVersion::Any, &[event]).await?;
        Ok(())
    }
}

/// The job step an installing event records, or `None` for an event that is not a job step.
fn observe(incoming: &IncomingEvent) -> Result<Option<pb::InstallJobObserved>, HandlerError> {
    use pb::InstallJobState as State;
    let event = &incoming.event;
    let payload = event.payload.as_slice();
    let undecodable = |e: prost::DecodeError| {
        HandlerError::Permanent(format!("{} does not decode: {e}", event.event_type))
    };
    let step = |job_id: String, device_id: String, state: State| pb::InstallJobObserved {
        job_id,
        device_id,
        state: state as i32,
        job_version: event.stream_version,
        ..Default::default()
    };
    let queued = |job: Option<installing::Job>, kind: pb::InstallJobKind| {
        let job = job.ok_or_else(|| {
            HandlerError::Permanent(format!("{} carries no job", event.event_type))
        })?;
        if job.update_id.is_empty() {
            return Err(HandlerError::Permanent(format!(
                "{} names no update",
                event.event_type
            )));
        }
        Ok(pb::InstallJobObserved {
            update_id: job.update_id,
            kind: kind as i32,
            queued_position: event.position.global_position,
            ..step(job.job_id, job.device_id, State::Queued)
        })
    };
    let observed = match event.event_type.as_str() {
        "InstallJobQueued" => queued(
            installing::InstallJobQueued::decode(payload)
                .map_err(undecodable)?
                .job,
            pb::InstallJobKind::Install,
        )?,
        "UninstallJobQueued" => queued(
            installing::UninstallJobQueued::decode(payload)
                .map_err(undecodable)?
                .job,
            pb::InstallJobKind::Uninstall,
        )?,
        "InstallJobDispatched" => {
            let e = installing::InstallJobDispatched::decode(payload).map_err(undecodable)?;
            step(e.job_id, e.device_id, State::Dispatched)
        }
        "InstallJobSucceeded" => {
            let e = installing::InstallJobSucceeded::decode(payload).map_err(undecodable)?;
            step(e.job_id, e.device_id, State::Succeeded)
        }
        "InstallJobFailed" => {
            let e = installing::InstallJobFailed::decode(payload).map_err(undecodable)?;
            step(e.job_id, e.device_id, State::Failed)
        }
        "InstallJobRebootRequired" => {
            let e = installing::InstallJobRebootRequired::decode(payload).map_err(undecodable)?;
            step(e.job_id, e.device_id, State::RebootRequired)
        }
        "InstallJobCancelled" => {
            let e = installing::InstallJobCancelled::decode(payload).map_err(undecodable)?;
            step(e.job_id, e.device_id, State::Cancelled)
        }
        _ => return Ok(None),
    };
    Ok(Some(observed))
}
