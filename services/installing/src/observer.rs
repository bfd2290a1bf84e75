//! The consumers that copy the events the installing service reacts to (catalog updates, approvals and
//! EULAs, device registrations and scans) into its own log, where the planner decides on them; the
//! installing service never reads another service's tables, and replaying its log rebuilds it.

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::installing::v1 as pb;

use crate::events::{InstallingEvent, SCHEMA_VERSION, facts_stream};

/// Copies one producing service's events of the given types.
#[derive(Debug, Clone, Copy)]
pub struct ForeignObserver {
    /// Durable consumer name.
    pub consumer: &'static str,
    pub service: &'static str,
    pub event_types: &'static [&'static str],
}

/// Every producer the installing service observes.
pub const OBSERVERS: [ForeignObserver; 3] = [
    ForeignObserver {
        consumer: "installing-catalog",
        service: "catalog",
        event_types: &["UpdatePublished", "UpdateRevised", "UpdateExpired"],
    },
    ForeignObserver {
        consumer: "installing-approvals",
        service: "approvals",
        event_types: &[
            "UpdateApproved",
            "UpdateDeclined",
            "ApprovalReset",
            "EulaAccepted",
            "EulaDeclined",
        ],
    },
    ForeignObserver {
        consumer: "installing-scanning",
        service: "scanning",
        event_types: &["DeviceRegistered", "DeviceGroupsSet", "ScanCompleted"],
    },
];

impl EventHandler for ForeignObserver {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        let event = &incoming.event;
        if incoming.service != self.service
            || !self.event_types.contains(&event.event_type.as_str())
        {
            return Ok(());
        }
        let observed = InstallingEvent::ForeignEventObserved(pb::ForeignEventObserved {
            service: incoming.service.clone(),
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            position: event.position.global_position,
        });
        let copy = incoming.follow_up(
            observed.event_type(),
            SCHEMA_VERSION,
            observed.encode_payload(),
        );
        tx.append(&facts_stream(self.service), ExpectedVersion::Any, &[copy])
            .await?;
        Ok(())
    }
}
