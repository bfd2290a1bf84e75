//! The installing read model: the domain state folded from the service's own log.

use std::ops::Deref;

use patchbay_eventstore::{Projection, RecordedEvent};

use crate::domain::InstallingState;
use crate::domain::state::FactDecodeError;
use crate::events::{DecodeError, InstallingEvent};

#[derive(Debug, Default)]
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

impl Projection for InstallingView {
    type Error = ApplyError;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ApplyError> {
        let decoded =
            InstallingEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
        self.state.apply(
            &decoded,
            event.position,
            event.stream_version,
            event.recorded_at,
        )?;
        Ok(())
    }
}
