//! `AuditService`: every hosted service's events, filtered and decoded, as a server stream.

use std::pin::Pin;

use patchbay_audit::{
    EventDecoder, EventFilter, FilterError, StateError, StateQuery, TrailError, TrailSubject,
    audit_event, parse_at, state_at, trail,
};
use patchbay_eventstore::{EventStore, LogPosition};
use patchbay_proto::audit::v1 as pb;
use patchbay_proto::audit::v1::audit_service_server::AuditService;

use crate::rebuild::Rebuilder;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Events read per page while replaying.
const PAGE: usize = 2_000;

#[derive(Debug, Clone)]
pub struct AuditApi {
    stores: Vec<(&'static str, EventStore)>,
    decoder: EventDecoder,
    rebuilder: Rebuilder,
    /// Ends live streams when the server stops, so a client's `events tail` cannot hold up a
    /// graceful shutdown.
    shutdown: CancellationToken,
}

impl AuditApi {
    pub fn new(
        stores: Vec<(&'static str, EventStore)>,
        rebuilder: Rebuilder,
        shutdown: CancellationToken,
    ) -> Result<Self, prost_reflect::DescriptorError> {
        Ok(Self {
            stores,
            decoder: EventDecoder::new()?,
            rebuilder,
            shutdown,
        })
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AuditEvent, Status>> + Send>>;

/// Replays one service's log into `sender` (at most `limit` events when set); returns where it
/// stopped, or `None` when the client hung up or the limit was reached.
async fn replay(
    service: &'static str,
    store: &EventStore,
    filter: &EventFilter,
    decoder: &EventDecoder,
    sender: &mpsc::Sender<Result<pb::AuditEvent, Status>>,
    remaining: &mut Option<u32>,
) -> Option<LogPosition> {
    let mut position = LogPosition::START;
    let mut pages = store.replay(LogPosition::START, PAGE);
    loop {
        let page = match pages.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => return Some(position),
            Err(error) => {
                let _ = sender
                    .send(Err(Status::unavailable(format!(
                        "the {service} event log cannot be read: {error}"
                    ))))
                    .await;
                return None;
            }
        };
        for event in &page {
            position = event.position;
            if !filter.matches(event) {
                continue;
            }
            if remaining.is_some_and(|n| n == 0) {
                return None;
            }
            if sender
                .send(Ok(audit_event(decoder, service, event)))
                .await
                .is_err()
            {
                return None;
            }
            if let Some(n) = remaining.as_mut() {
                *n -= 1;
            }
        }
    }
}

/// Sends every new matching event of one service after `position` until the client hangs up.
async fn follow(
    service: &'static str,
    store: EventStore,
    filter: EventFilter,
    decoder: EventDecoder,
    sender: mpsc::Sender<Result<pb::AuditEvent, Status>>,
    position: LogPosition,
    shutdown: CancellationToken,
) {
    let mut subscription = store.subscribe_at("audit-tail", position, PAGE);
    loop {
        let batch = tokio::select! {
            () = sender.closed() => return,
            () = shutdown.cancelled() => return,
            batch = subscription.next_batch() => batch,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                let _ = sender
                    .send(Err(Status::unavailable(format!(
                        "the {service} event log cannot be read: {error}"
                    ))))
                    .await;
                return;
            }
        };
        for event in batch.iter().filter(|e| filter.matches(e)) {
            if sender
                .send(Ok(audit_event(&decoder, service, event)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    type ReplayEventsStream = EventStream;

    async fn state_at(
        &self,
        request: Request<pb::StateAtRequest>,
    ) -> Result<Response<pb::StateAtResponse>, Status> {
        let request = request.into_inner();
        let status = |error: StateError| match error {
            StateError::Store { .. } => Status::unavailable(error.to_string()),
            StateError::Apply { .. } => Status::internal(error.to_string()),
            StateError::EmptyLogs | StateError::BeforeFirstEvent { .. } => {
                Status::failed_precondition(error.to_string())
            }
            StateError::UnknownUpdate { .. } | StateError::UnknownDevice { .. } => {
                Status::not_found(error.to_string())
            }
            StateError::Time(_) | StateError::Future { .. } => {
                Status::invalid_argument(error.to_string())
            }
        };
        let at = parse_at(&request.at, chrono::Utc::now()).map_err(status)?;
        let non_empty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let query = StateQuery {
            update_id: non_empty(request.update_id),
            device_id: non_empty(request.device_id),
            from_zero: request.from_zero,
        };
        let state = state_at(&self.stores, at, &query, &self.decoder)
            .await
            .map_err(status)?;
        Ok(Response::new(state))
    }

    async fn trail(
        &self,
        request: Request<pb::TrailRequest>,
    ) -> Result<Response<pb::TrailResponse>, Status> {
        let subject = TrailSubject::from_request(&request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let trail =
            trail(&self.stores, &subject, &self.decoder)
                .await
                .map_err(|error| match error {
                    TrailError::Subject => Status::invalid_argument(error.to_string()),
                    TrailError::Unknown(_) => Status::not_found(error.to_string()),
                    TrailError::Store { .. } => Status::unavailable(error.to_string()),
                })?;
        Ok(Response::new(trail))
    }

    async fn rebuild_read_models(
        &self,
        request: Request<pb::RebuildRequest>,
    ) -> Result<Response<pb::RebuildResponse>, Status> {
        let request = request.into_inner();
        let service =
            (!request.service.trim().is_empty()).then(|| request.service.trim().to_owned());
        let outcomes = self
            .rebuilder
            .rebuild(service.as_deref(), request.verify)
            .await;
        if outcomes.is_empty() {
            let hosted: Vec<&str> = self.stores.iter().map(|(name, _)| *name).collect();
            return Err(Status::not_found(format!(
                "no read model of {:?} is hosted here; this server hosts: {}",
                request.service,
                hosted.join(", ")
            )));
        }
        Ok(Response::new(pb::RebuildResponse {
            results: outcomes
                .into_iter()
                .map(|o| pb::RebuildResult {
                    service: o.service.to_owned(),
                    events: o.events,
                    millis: u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX),
                    verified: o.identical.is_some(),
                    identical: o.identical.unwrap_or(false),
                    detail: o.detail,
                })
                .collect(),
        }))
    }

    async fn verify_chain(
        &self,
        request: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let service = request.into_inner().service;
        let selected: Vec<&(&'static str, EventStore)> = self
            .stores
            .iter()
            .filter(|(name, _)| service.is_empty() || *name == service)
            .collect();
        if selected.is_empty() {
            let hosted: Vec<&str> = self.stores.iter().map(|(name, _)| *name).collect();
            return Err(Status::not_found(
                FilterError::UnknownService {
                    service,
                    hosted: hosted.join(", "),
                }
                .to_string(),
            ));
        }
        let mut services = Vec::with_capacity(selected.len());
        for (name, store) in selected {
            let report = store.verify_chain().await.map_err(|e| {
                Status::unavailable(format!("the {name} event log cannot be read: {e}"))
            })?;
            services.push(pb::ChainStatus {
                service: (*name).to_owned(),
                intact: report.is_intact(),
                sealed: report.sealed,
                unsealed_after: report.unsealed_after,
                head_digest: report.head.digest_hex(),
                report: report.to_string(),
            });
        }
        Ok(Response::new(pb::VerifyChainResponse { services }))
    }

    async fn replay_events(
        &self,
        request: Request<pb::ReplayEventsRequest>,
    ) -> Result<Response<Self::ReplayEventsStream>, Status> {
        let request = request.into_inner();
        let filter = EventFilter::parse(&request.filter.unwrap_or_default())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(service) = &filter.service
            && !self.stores.iter().any(|(name, _)| name == service)
        {
            let hosted: Vec<&str> = self.stores.iter().map(|(name, _)| *name).collect();
            return Err(Status::not_found(
                FilterError::UnknownService {
                    service: service.clone(),
                    hosted: hosted.join(", "),
                }
                .to_string(),
            ));
        }
        let stores: Vec<(&'static str, EventStore)> = self
            .stores
            .iter()
            .filter(|(name, _)| filter.selects_service(name))
            .cloned()
            .collect();
        let (sender, receiver) = mpsc::channel(256);
        let decoder = self.decoder.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // Service by service, each in its own global order (there is no order across logs).
            let mut remaining = (request.limit > 0).then_some(request.limit);
            let mut ends = Vec::with_capacity(stores.len());
            for (service, store) in &stores {
                match replay(service, store, &filter, &decoder, &sender, &mut remaining).await {
                    Some(end) => ends.push(end),
                    None => return,
                }
            }
            if request.follow {
                for ((service, store), end) in stores.into_iter().zip(ends) {
                    tokio::spawn(follow(
                        service,
                        store,
                        filter.clone(),
                        decoder.clone(),
                        sender.clone(),
                        end,
                        shutdown.clone(),
                    ));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
