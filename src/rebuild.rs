//! Verified rebuilds: each hosted service's read model rebuilt from its log into a fresh instance
//! and, on request, compared with the one the service is running on.

use std::sync::RwLockReadGuard;
use std::time::{Duration, Instant};

use patchbay_approvals::Approvals;
use patchbay_catalog::Catalog;
use patchbay_eventstore::{EventStore, LogPosition, Positioned, Projection};
use patchbay_installing::Installing;
use patchbay_scanning::Scanning;
use patchbay_wsus_sync::WsusSync;

/// Events read per page while rebuilding.
const PAGE: usize = 5_000;
/// Attempts to compare at a moment the live model is not moving.
const ATTEMPTS: u32 = 5;

/// What rebuilding one service's read model found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildOutcome {
    pub service: &'static str,
    pub events: u64,
    pub elapsed: Duration,
    /// `Some(true)` when compared and identical; `None` when not asked to verify.
    pub identical: Option<bool>,
    /// Why a comparison could not be made or what differs, in words.
    pub detail: String,
}

/// The hosted services whose read models can be rebuilt.
#[derive(Debug, Clone, Default)]
pub struct Rebuilder {
    pub catalog: Option<Catalog>,
    pub approvals: Option<Approvals>,
    pub scanning: Option<Scanning>,
    pub installing: Option<Installing>,
    pub wsus: Option<WsusSync>,
}

/// Replays `store` into a fresh `P`, every event up to and including `until`.
async fn rebuild_until<P: Projection>(
    store: &EventStore,
    until: LogPosition,
) -> Result<(P, u64), String> {
    let mut projection = P::default();
    let mut applied = 0;
    // Applying into a service's read model costs about what reading does: overlap them.
    let mut pages = store.replay_read_ahead(LogPosition::START, PAGE);
    while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
        for event in &page {
            if event.position > until {
                return Ok((projection, applied));
            }
            projection.apply(event).map_err(|e| e.to_string())?;
            applied += 1;
        }
    }
    Ok((projection, applied))
}

/// Rebuilds one read model and, with `verify`, compares it with the live one at the same log
/// position (retrying while the live model moves on).
async fn rebuild_one<'a, P: Projection + PartialEq>(
    service: &'static str,
    store: &EventStore,
    live: impl Fn() -> RwLockReadGuard<'a, Positioned<P>>,
    verify: bool,
) -> RebuildOutcome {
    let started = Instant::now();
    let mut outcome = RebuildOutcome {
        service,
        events: 0,
        elapsed: Duration::ZERO,
        identical: None,
        detail: String::new(),
    };
    for _ in 0..ATTEMPTS {
        let target = live().position();
        let (fresh, applied) = match rebuild_until::<P>(store, target).await {
            Ok(rebuilt) => rebuilt,
            Err(error) => {
                outcome.detail = format!("the log cannot be replayed: {error}");
                outcome.identical = verify.then_some(false);
                break;
            }
        };
        outcome.events = applied;
        if !verify {
            break;
        }
        let guard = live();
        if guard.position() != target {
            continue;
        }
        let live_model: &P = &guard;
        let identical = *live_model == fresh;
        outcome.identical = Some(identical);
        if !identical {
            outcome.detail = format!(
                "the read model rebuilt from the log up to position {}:{} differs from the live one",
                target.commit_id, target.global_position
            );
        }
        break;
    }
    if verify && outcome.identical.is_none() {
        outcome.detail = "the log kept moving; no quiet moment to compare at, try again".to_owned();
    }
    outcome.elapsed = started.elapsed();
    outcome
}

impl Rebuilder {
    /// Rebuilds the read models of `service` (every hosted one when `None`).
    pub async fn rebuild(&self, service: Option<&str>, verify: bool) -> Vec<RebuildOutcome> {
        let wanted = |name: &str| service.is_none_or(|s| s == name);
        let mut outcomes = Vec::new();
        if let Some(catalog) = self.catalog.as_ref().filter(|_| wanted("catalog")) {
            outcomes.push(rebuild_one("catalog", catalog.store(), || catalog.view(), verify).await);
        }
        if let Some(approvals) = self.approvals.as_ref().filter(|_| wanted("approvals")) {
            outcomes.push(
                rebuild_one("approvals", approvals.store(), || approvals.view(), verify).await,
            );
        }
        if let Some(scanning) = self.scanning.as_ref().filter(|_| wanted("scanning")) {
            outcomes
                .push(rebuild_one("scanning", scanning.store(), || scanning.view(), verify).await);
        }
        if let Some(installing) = self.installing.as_ref().filter(|_| wanted("installing")) {
            outcomes.push(
                rebuild_one(
                    "installing",
                    installing.store(),
                    || installing.view(),
                    verify,
                )
                .await,
            );
        }
        if let Some(wsus) = self.wsus.as_ref().filter(|_| wanted("wsus-sync")) {
            outcomes.push(rebuild_one("wsus-sync", wsus.store(), || wsus.view(), verify).await);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use patchbay_eventstore::{ExpectedVersion, LiveView, NewEvent, RecordedEvent};
    use patchbay_testkit::TestSqlite;

    use super::*;

    /// Counts events: a deterministic read model.
    #[derive(Debug, Default, PartialEq)]
    struct Counted(u64);

    impl Projection for Counted {
        type Error = std::convert::Infallible;
        fn apply(&mut self, _: &RecordedEvent) -> Result<(), Self::Error> {
            self.0 += 1;
            Ok(())
        }
    }

    static APPLIED: AtomicU64 = AtomicU64::new(0);

    /// Remembers how many events any instance applied before: it depends on more than the log,
    /// the kind of bug a verified rebuild exists to find.
    #[derive(Debug, Default, PartialEq)]
    struct Leaky(u64);

    impl Projection for Leaky {
        type Error = std::convert::Infallible;
        fn apply(&mut self, _: &RecordedEvent) -> Result<(), Self::Error> {
            self.0 = APPLIED.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_rebuild_equals_a_deterministic_model_and_catches_one_that_is_not() {
        let dir = TestSqlite::new();
        let store = EventStore::connect(&dir.url("log.db")).await.unwrap();
        for _ in 0..3 {
            store
                .append(
                    "s-1",
                    ExpectedVersion::Any,
                    &[NewEvent::new("Happened", 1, vec![])],
                )
                .await
                .unwrap();
        }
        let counted = LiveView::<Counted>::open(store.clone()).await.unwrap();
        let outcome = rebuild_one("counted", &store, || counted.read(), true).await;
        assert_eq!(
            (outcome.events, outcome.identical),
            (3, Some(true)),
            "{outcome:?}"
        );

        let leaky = LiveView::<Leaky>::open(store.clone()).await.unwrap();
        let outcome = rebuild_one("leaky", &store, || leaky.read(), true).await;
        assert_eq!(outcome.identical, Some(false), "{outcome:?}");
        assert!(outcome.detail.contains("differs"), "{}", outcome.detail);

        let unverified = rebuild_one("counted", &store, || counted.read(), false).await;
        assert_eq!((unverified.events, unverified.identical), (3, None));
    }
}
