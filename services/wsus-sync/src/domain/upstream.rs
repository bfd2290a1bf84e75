//! What the upstream told us that the next run resumes from: its configuration and the anchors.

use patchbay_proto::wsus::v1 as pb;

use crate::events::WsusEvent;

/// The upstream's configuration and anchors, as far as they were committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamState {
    /// The URL the anchors below belong to: anchors of another server mean nothing.
    pub upstream_url: String,
    pub config_anchor: Option<String>,
    pub max_updates_per_request: u32,
    pub catalog_only_sync: bool,
    pub protocol_version: String,
    /// GetRevisionIdList anchor for categories, classifications and detectoids.
    pub categories_anchor: Option<String>,
    /// GetRevisionIdList anchor for updates, with the digest of the filter it was obtained with.
    pub updates_anchor: Option<(String, String)>,
}

impl UpstreamState {
    /// The updates anchor, if it was obtained with the filter whose digest is given.
    pub fn updates_anchor_for(&self, filter_digest: &str) -> Option<&str> {
        self.updates_anchor
            .as_ref()
            .filter(|(_, digest)| digest == filter_digest)
            .map(|(anchor, _)| anchor.as_str())
    }

    /// Whether a run would start from stored anchors.
    pub fn is_incremental(&self) -> bool {
        self.config_anchor.is_some() || self.categories_anchor.is_some()
    }

    fn reset_anchors(&mut self) {
        self.config_anchor = None;
        self.categories_anchor = None;
        self.updates_anchor = None;
    }

    pub fn evolve(mut self, event: &WsusEvent) -> Self {
        match event {
            WsusEvent::WsusConfigured(configured)
                if configured.upstream_url != self.upstream_url =>
            {
                self.reset_anchors();
                self.upstream_url = configured.upstream_url.clone();
            }
            WsusEvent::WsusConfigAnchorStored(stored) => {
                self.config_anchor = Some(stored.config_anchor.clone());
                self.max_updates_per_request = stored.max_updates_per_request;
                self.catalog_only_sync = stored.catalog_only_sync;
                self.protocol_version = stored.protocol_version.clone();
            }
            WsusEvent::WsusSyncAnchorStored(pb::WsusSyncAnchorStored {
                config,
                anchor,
                filter_digest,
                ..
            }) => {
                if *config {
                    self.categories_anchor = Some(anchor.clone());
                } else {
                    self.updates_anchor = Some((anchor.clone(), filter_digest.clone()));
                }
            }
            WsusEvent::WsusAnchorsReset(_) => self.reset_anchors(),
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(url: &str) -> WsusEvent {
        WsusEvent::WsusConfigured(pb::WsusConfigured {
            upstream_url: url.into(),
            ..Default::default()
        })
    }

    fn anchors() -> Vec<WsusEvent> {
        vec![
            configured("http://a/"),
            WsusEvent::WsusConfigAnchorStored(pb::WsusConfigAnchorStored {
                config_anchor: "c1".into(),
                max_updates_per_request: 50,
                ..Default::default()
            }),
            WsusEvent::WsusSyncAnchorStored(pb::WsusSyncAnchorStored {
                config: true,
                anchor: "k1".into(),
                ..Default::default()
            }),
            WsusEvent::WsusSyncAnchorStored(pb::WsusSyncAnchorStored {
                config: false,
                anchor: "u1".into(),
                filter_digest: "f1".into(),
                ..Default::default()
            }),
        ]
    }

    fn replay(events: &[WsusEvent]) -> UpstreamState {
        events
            .iter()
            .fold(UpstreamState::default(), UpstreamState::evolve)
    }

    #[test]
    fn given_stored_anchors_the_next_run_is_incremental_for_the_same_filter_only() {
        let state = replay(&anchors());
        assert!(state.is_incremental());
        assert_eq!(state.config_anchor.as_deref(), Some("c1"));
        assert_eq!(state.categories_anchor.as_deref(), Some("k1"));
        assert_eq!(state.updates_anchor_for("f1"), Some("u1"));
        assert_eq!(state.updates_anchor_for("f2"), None);
        assert_eq!(state.max_updates_per_request, 50);
    }

    #[test]
    fn when_the_server_changed_or_the_url_changed_every_anchor_is_forgotten() {
        let mut events = anchors();
        events.push(WsusEvent::WsusAnchorsReset(pb::WsusAnchorsReset::default()));
        assert!(!replay(&events).is_incremental());

        let mut events = anchors();
        events.push(configured("http://a/"));
        assert!(replay(&events).is_incremental(), "same URL keeps anchors");
        events.push(configured("http://b/"));
        let state = replay(&events);
        assert!(!state.is_incremental());
        assert_eq!(state.updates_anchor_for("f1"), None);
    }
}
