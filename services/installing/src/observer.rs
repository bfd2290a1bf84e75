//! The consumers that copy the events the installing service reacts to (catalog updates, approvals and
//! EULAs, device registrations and scans) into its own log, where the planner decides on them; the
//! installing service never reads another service's tables, and replaying its log rebuilds it.

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, NewEvent, Transaction};
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

impl ForeignObserver {
    /// The copy of `incoming` for the installing log, if it is one of the events observed. It keeps
    /// the original's trace context, so the trace goes on through the planner's decisions.
    fn copy(&self, incoming: &IncomingEvent) -> Option<NewEvent> {
        let event = &incoming.event;
        if incoming.service != self.service
            || !self.event_types.contains(&event.event_type.as_str())
        {
            return None;
        }
        let observed = InstallingEvent::ForeignEventObserved(pb::ForeignEventObserved {
            service: incoming.service.clone(),
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            position: event.position.global_position,
        });
        Some(
            NewEvent::new(
                observed.event_type(),
                SCHEMA_VERSION,
                observed.encode_payload(),
            )
            .caused_by(event)
            .actor(format!("service:{}", incoming.service))
            .trace_context(
                event.metadata.traceparent.clone(),
                event.metadata.tracestate.clone(),
            ),
        )
    }
}

impl EventHandler for ForeignObserver {
    // A fetched batch is copied with one append.
    const BATCHED: bool = true;

    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        self.handle_batch(tx, &[incoming]).await
    }

    async fn handle_batch(
        &self,
        tx: &mut Transaction,
        events: &[&IncomingEvent],
    ) -> Result<(), HandlerError> {
        let copies: Vec<NewEvent> = events.iter().filter_map(|e| self.copy(e)).collect();
        if !copies.is_empty() {
            tx.append(&facts_stream(self.service), ExpectedVersion::Any, &copies)
                .await?;
        }
        Ok(())
    }
}
