//! Upcasters: old payload versions are upgraded as they are read; the stored bytes are never rewritten.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::EventStoreError;
use crate::event::RecordedEvent;

type UpcastFn = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync;

/// A registry of one-step upgrades, `(event_type, version) -> version + 1`, applied in a chain on read.
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), Arc<UpcastFn>>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.steps.keys().collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

impl Upcasters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that turns `event_type` payloads of `from_version` into `from_version + 1`.
    #[must_use]
    pub fn register(
        mut self,
        event_type: impl Into<String>,
        from_version: u32,
        step: impl Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    ) -> Self {
        self.steps
            .insert((event_type.into(), from_version), Arc::new(step));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Upgrades `event` through every registered step for its type, starting at its stored version.
    pub fn apply(&self, mut event: RecordedEvent) -> Result<RecordedEvent, EventStoreError> {
        if self.steps.is_empty() {
            return Ok(event);
        }
        // A registry is finite and each step raises the version, so this loop ends.
        while let Some(step) = self
            .steps
            .get(&(event.event_type.clone(), event.schema_version))
        {
            event.payload = step(&event.payload).map_err(|reason| EventStoreError::Upcast {
                event_type: event.event_type.clone(),
                from_version: event.schema_version,
                global_position: event.position.global_position,
                reason,
            })?;
            event.schema_version += 1;
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventMetadata, LogPosition};

    fn stored(event_type: &str, version: u32, payload: &[u8]) -> RecordedEvent {
        RecordedEvent {
            position: LogPosition {
                commit_id: 0,
                global_position: 9,
            },
            stream_id: "s".into(),
            stream_version: 1,
            event_id: uuid::Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: version,
            payload: payload.to_vec(),
            metadata: EventMetadata {
                correlation_id: uuid::Uuid::nil(),
                causation_id: None,
                actor: "t".into(),
                traceparent: None,
                tracestate: None,
            },
            recorded_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn steps_chain_from_the_stored_version_to_the_newest() {
        let upcasters = Upcasters::new()
            .register("Renamed", 1, |p| Ok([p, b"+v2"].concat()))
            .register("Renamed", 2, |p| Ok([p, b"+v3"].concat()));
        let event = upcasters.apply(stored("Renamed", 1, b"v1")).unwrap();
        assert_eq!(
            (event.schema_version, &event.payload[..]),
            (3, &b"v1+v2+v3"[..])
        );
        let current = upcasters.apply(stored("Renamed", 3, b"v3")).unwrap();
        assert_eq!(current.payload, b"v3");
        let other = upcasters.apply(stored("Other", 1, b"x")).unwrap();
        assert_eq!(other.schema_version, 1);
    }

    #[test]
    fn a_failing_step_names_the_event() {
        let upcasters = Upcasters::new().register("E", 1, |_| Err("field 3 missing".into()));
        let error = upcasters
            .apply(stored("E", 1, b""))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("E v1")
                && error.contains("position 9")
                && error.contains("field 3 missing")
        );
    }
}
