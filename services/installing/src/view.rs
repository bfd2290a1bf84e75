//! The installing read model: the domain state folded from the service's own log.

use std::ops::Deref;

use patchbay_eventstore::{Projection, RecordedEvent, Snapshottable};

use crate::domain::InstallingState;
use crate::domain::state::{Cause, FactDecodeError};
use crate::events::{DecodeError, InstallingEvent};

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstallingView {
    pub state: InstallingState,
}

impl Deref for InstallingView {
    type Target = InstallingState;
    fn deref(&self) -> &InstallingState {
        &self.state
    }
}

/// An event of the installing log this Patchbay cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Fact(#[from] FactDecodeError),
}

/// Snapshots for `audit state --at` on long logs; raise `FORMAT` when a field changes.
impl Snapshottable for InstallingView {
    const NAME: &'static str = "installing-view";
    const FORMAT: u32 = 1;
}

impl Projection for InstallingView {
    type Error = ApplyError;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ApplyError> {
        let decoded =
            InstallingEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
        let cause = Cause {
            event_id: event.event_id,
            correlation_id: event.metadata.correlation_id,
            traceparent: event.metadata.traceparent.clone(),
            tracestate: event.metadata.tracestate.clone(),
        };
        self.state.apply(
            &decoded,
            event.position,
            event.stream_version,
            event.recorded_at,
            Some(cause),
        )?;
        Ok(())
    }
}
