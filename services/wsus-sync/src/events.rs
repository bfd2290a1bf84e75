//! The WSUS sync service's events and their encoding.

use patchbay_eventstore::NewEvent;
use patchbay_proto::wsus::v1 as pb;

patchbay_proto::event_enum! {
    /// Every event the WSUS sync service writes to its log.
    pub enum WsusEvent {
        WsusConfigured(pb::WsusConfigured),
        WsusSyncStarted(pb::WsusSyncStarted),
        WsusSyncProgressed(pb::WsusSyncProgressed),
        WsusConfigAnchorStored(pb::WsusConfigAnchorStored),
        WsusSyncAnchorStored(pb::WsusSyncAnchorStored),
        WsusAnchorsReset(pb::WsusAnchorsReset),
        WsusUpdateSynced(pb::WsusUpdateSynced),
        WsusSyncCompleted(pb::WsusSyncCompleted),
        WsusSyncFailed(pb::WsusSyncFailed),
        WsusContentRequested(pb::WsusContentRequested),
        WsusContentDownloaded(pb::WsusContentDownloaded),
        WsusContentFailed(pb::WsusContentFailed),
    }
}

/// The schema version the WSUS sync service writes today.
pub const SCHEMA_VERSION: u32 = 1;

/// A stored WSUS sync event this Patchbay cannot read.
pub type DecodeError = patchbay_proto::EventDecodeError;

/// The stream of the sync settings.
pub const CONFIG_STREAM: &str = "wsus-config";
/// The stream of what the upstream told us: its configuration and the anchors to resume from.
pub const UPSTREAM_STREAM: &str = "wsus-upstream";

/// The stream of one sync run.
pub fn run_stream(run_id: &str) -> String {
    format!("wsus-run-{run_id}")
}

/// The stream of one upstream update's revisions.
pub fn update_stream(update_id: &str) -> String {
    format!("wsus-update-{update_id}")
}

/// The stream of one update's content download requests.
pub fn content_request_stream(update_id: &str) -> String {
    format!("wsus-content-request-{update_id}")
}

/// The stream of one downloaded payload file, by SHA-1.
pub fn content_stream(sha1_hex: &str) -> String {
    format!("wsus-content-{sha1_hex}")
}

impl WsusEvent {
    /// The event ready to append, recorded as caused by `actor`.
    pub fn to_new_event(&self, actor: &str) -> NewEvent {
        NewEvent::new(self.event_type(), SCHEMA_VERSION, self.encode_payload()).actor(actor)
    }

    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        Self::decode_versioned(event_type, schema_version, SCHEMA_VERSION, payload)
    }
}
