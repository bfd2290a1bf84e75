//! One sync run: the MS-WSUSSS authorization and metadata synchronisation (spec 3.2.4.1–3.2.4.2),
//! every committed step an event, anchors stored only after the step that produced them.

// A fault carries the upstream's whole detail (code, message, id, method) and happens at most a few
// times per run: not worth boxing (patchbay-wsus makes the same call).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use patchbay_eventstore::{EventStoreError, ExpectedVersion, StreamAppend};
use patchbay_proto::wsus::v1 as pb;
use patchbay_wsus::messages::{
    get_auth_config, get_authorization_cookie, get_config_data, get_cookie, get_revision_id_list,
    get_update_data,
};
use patchbay_wsus::update_xml::{self, UpdateXmlError};
use patchbay_wsus::{
    AuthorizationCookie, Cookie, ErrorCode, Fault, IdAndDelta, PROTOCOL_VERSION, Request,
    SyncFilter, UpdateIdentity, WsusError,
};

use crate::client::{TransportError, UpstreamClient};
use crate::domain::revision::file_url_index;
use crate::domain::{RevisionChange, classify, filter_digest, synced_event};
use crate::events::{UPSTREAM_STREAM, WsusEvent, run_stream, update_stream};
use crate::service::{SyncOptions, WsusSync};
use crate::view::is_update;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the upstream refused {operation}: {fault}")]
    Fault {
        operation: &'static str,
        fault: Fault,
    },
    #[error("the upstream server changed (ServerChanged) twice in one run")]
    ServerChanged,
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the upstream's answer is not valid: {0}")]
    Protocol(WsusError),
    #[error("the metadata of update {update_id} cannot be read: {error}")]
    Metadata {
        update_id: String,
        error: UpdateXmlError,
    },
    #[error(
        "the upstream kept refusing our cookies ({0} authorizations in one run); check that it accepts this server (account and target groups)"
    )]
    AuthorizationLoop(u32),
    #[error(
        "another sync (perhaps on another replica) stored anchors during this run; this run stops, the next one resumes"
    )]
    Concurrent,
    #[error("cannot store the sync: {0}")]
    Store(#[from] EventStoreError),
    #[error("the sync log holds an event this Patchbay cannot read: {0}")]
    View(String),
}

impl RunError {
    /// The upstream's ErrorCode, if the run stopped on a fault that had one.
    pub fn error_code(&self) -> String {
        match self {
            RunError::Fault { fault, .. } => fault
                .error_code
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            RunError::ServerChanged => "ServerChanged".into(),
            _ => String::new(),
        }
    }
}

/// Most metadata one decompressed update blob may hold.
const MAX_BLOB_BYTES: usize = 32 << 20;

/// One run in progress.
pub(crate) struct SyncRun<'a> {
    service: &'a WsusSync,
    options: &'a SyncOptions,
    client: UpstreamClient,
    settings: pb::WsusConfigured,
    run_id: String,
    actor: String,
    phase: &'static str,
    auth_service_url: Option<String>,
    authorization: Option<AuthorizationCookie>,
    cookie: Option<Cookie>,
    authorizations: u32,
    server_changed: bool,
    counts: pb::WsusSyncCompleted,
}

impl<'a> SyncRun<'a> {
    pub(crate) fn new(
        service: &'a WsusSync,
        options: &'a SyncOptions,
        settings: pb::WsusConfigured,
        run_id: String,
        actor: String,
    ) -> Result<Self, RunError> {
        let client = UpstreamClient::new(
            &settings.upstream_url,
            options.request_timeout,
            options.max_response_bytes,
        )?;
        Ok(Self {
            service,
            options,
            client,
            settings,
            counts: pb::WsusSyncCompleted {
                run_id: run_id.clone(),
                ..Default::default()
            },
            run_id,
            actor,
            phase: "authorization",
            auth_service_url: None,
            authorization: None,
            cookie: None,
            authorizations: 0,
            server_changed: false,
        })
    }

    /// Runs to the end and records how it ended; returns the run stream's version after that.
    pub(crate) async fn run(mut self) -> Result<u64, EventStoreError> {
        let outcome = self.synchronise().await;
        let ended = match outcome {
            Ok(()) => WsusEvent::WsusSyncCompleted(self.counts.clone()),
            Err(error) => {
                tracing::warn!(run = %self.run_id, phase = self.phase, %error, "WSUS sync failed");
                WsusEvent::WsusSyncFailed(pb::WsusSyncFailed {
                    run_id: self.run_id.clone(),
                    phase: self.phase.to_owned(),
                    reason: error.to_string(),
                    error_code: error.error_code(),
                })
            }
        };
        let appended = self
            .service
            .store()
            .append(
                &run_stream(&self.run_id),
                ExpectedVersion::Any,
                &[ended.to_new_event(&self.actor)],
            )
            .await?;
        Ok(appended.stream_version)
    }

    async fn synchronise(&mut self) -> Result<(), RunError> {
        loop {
            match self.metadata().await {
                Err(RunError::ServerChanged) if !self.server_changed => {
                    // Spec 2.2.9.3: reset ConfigAnchor and SyncAnchor, and continue.
                    self.server_changed = true;
                    self.append_upstream(WsusEvent::WsusAnchorsReset(pb::WsusAnchorsReset {
                        run_id: self.run_id.clone(),
                        reason: "the upstream answered ServerChanged".into(),
                    }))
                    .await?;
                }
                other => return other,
            }
        }
    }

    /// Spec 3.2.4.2: configuration, then categories, then updates.
    async fn metadata(&mut self) -> Result<(), RunError> {
        self.progress("configuration", 0, 0).await?;
        let config_anchor = self.service.view().upstream.config_anchor.clone();
        let config = self
            .call(
                |cookie| Ok(get_config_data::request(cookie, config_anchor.as_deref())),
                get_config_data::parse_response,
            )
            .await?;
        if config.max_updates_per_request == 0 {
            return Err(RunError::Protocol(WsusError::Invalid {
                operation: "GetConfigData",
                element: "MaxNumberOfUpdatesPerRequest",
                value: "0".into(),
                reason: "is not a usable batch size".into(),
            }));
        }
        // Spec 1.7: every version this DSS can talk to has major version 1.
        if let Some(version) = &config.protocol_version
            && version.split('.').next() != Some("1")
        {
            return Err(RunError::Protocol(WsusError::Invalid {
                operation: "GetConfigData",
                element: "ProtocolVersion",
                value: version.clone(),
                reason: "is not 1.x, the only major version this Patchbay speaks".into(),
            }));
        }
        let batch = config.max_updates_per_request as usize;
        self.append_upstream(WsusEvent::WsusConfigAnchorStored(
            pb::WsusConfigAnchorStored {
                run_id: self.run_id.clone(),
                config_anchor: config.new_config_anchor.clone(),
                max_updates_per_request: config.max_updates_per_request,
                catalog_only_sync: config.catalog_only_sync,
                lazy_sync: config.lazy_sync,
                protocol_version: config.protocol_version.clone().unwrap_or_default(),
            },
        ))
        .await?;

        let anchor = self.service.view().upstream.categories_anchor.clone();
        let categories = SyncFilter {
            anchor,
            get_config: true,
            get_63_language_only: true,
            ..SyncFilter::default()
        };
        self.sync_revisions("categories", categories, batch, String::new())
            .await?;

        let digest = filter_digest(&self.settings);
        let anchor = self
            .service
            .view()
            .upstream
            .updates_anchor_for(&digest)
            .map(str::to_owned);
        let delta = anchor.is_some();
        let ids = |ids: &[String]| {
            ids.iter()
                .map(|id| IdAndDelta {
                    id: id.clone(),
                    delta,
                })
                .collect()
        };
        let updates = SyncFilter {
            anchor,
            get_config: false,
            get_63_language_only: true,
            categories: ids(&self.settings.product_ids),
            classifications: ids(&self.settings.classification_ids),
            ..SyncFilter::default()
        };
        self.sync_revisions("updates", updates, batch, digest).await
    }

    /// One GetRevisionIdList, every revision it lists fetched and stored, then its anchor.
    async fn sync_revisions(
        &mut self,
        phase: &'static str,
        filter: SyncFilter,
        batch: usize,
        filter_digest: String,
    ) -> Result<(), RunError> {
        self.phase = phase;
        let list = self
            .call(
                |cookie| get_revision_id_list::request(cookie, &filter),
                get_revision_id_list::parse_response,
            )
            .await?;
        self.fetch_and_store(phase, &list.new_revisions, batch)
            .await?;
        self.append_upstream(WsusEvent::WsusSyncAnchorStored(pb::WsusSyncAnchorStored {
            run_id: self.run_id.clone(),
            config: filter.get_config,
            anchor: list.anchor,
            filter_digest,
        }))
        .await
    }

    /// GetUpdateData in batches of at most `batch` ids; each batch is stored in one transaction
    /// with a progress event, so a crash loses at most the batch in flight.
    async fn fetch_and_store(
        &mut self,
        phase: &'static str,
        listed: &[UpdateIdentity],
        batch: usize,
    ) -> Result<(), RunError> {
        let total = u32::try_from(listed.len()).unwrap_or(u32::MAX);
        // A resumed run skips what an interrupted one already stored.
        let pending: Vec<UpdateIdentity> = {
            let view = self.service.view();
            listed
                .iter()
                .filter(|id| {
                    view.revisions
                        .get(&id.update_id)
                        .is_none_or(|known| known.revision_number < id.revision_number)
                })
                .cloned()
                .collect()
        };
        let mut done = total - u32::try_from(pending.len()).unwrap_or(total);
        self.progress(phase, done, total).await?;
        for ids in pending.chunks(batch) {
            let data = self
                .call(
                    |cookie| Ok(get_update_data::request(cookie, ids)),
                    |body| get_update_data::parse_response(body, MAX_BLOB_BYTES),
                )
                .await?;
            let urls = file_url_index(&data.file_urls);
            let mut appends: Vec<StreamAppend> = Vec::with_capacity(data.updates.len() + 1);
            let mut seen = HashMap::new();
            {
                let view = self.service.view();
                for revision in &data.updates {
                    let metadata =
                        update_xml::parse(&revision.xml).map_err(|error| RunError::Metadata {
                            update_id: revision.identity.update_id.clone(),
                            error,
                        })?;
                    if metadata.identity != revision.identity {
                        return Err(RunError::Protocol(WsusError::Invalid {
                            operation: "GetUpdateData",
                            element: "UpdateIdentity",
                            value: format!(
                                "{}/{}",
                                metadata.identity.update_id, metadata.identity.revision_number
                            ),
                            reason: format!(
                                "does not match the requested revision {}/{}",
                                revision.identity.update_id, revision.identity.revision_number
                            ),
                        }));
                    }
                    let id = &revision.identity.update_id;
                    if seen.insert(id.clone(), ()).is_some() {
                        continue;
                    }
                    let stored = view
                        .revisions
                        .get(id)
                        .map(|k| (k.revision_number, k.expired));
                    let change = classify(
                        stored,
                        revision.identity.revision_number,
                        metadata.is_expired(),
                    );
                    if change == RevisionChange::AlreadyStored {
                        continue;
                    }
                    let event = synced_event(
                        &self.run_id,
                        &metadata,
                        &revision.xml,
                        revision.was_compressed,
                        &self.settings.languages,
                        &urls,
                        &view.categories,
                    );
                    self.counts.metadata_bytes += revision.xml.len() as u64;
                    if is_update(event.update_type) {
                        match change {
                            RevisionChange::New => self.counts.new_updates += 1,
                            RevisionChange::Revised => self.counts.revised_updates += 1,
                            RevisionChange::Expired => self.counts.expired_updates += 1,
                            RevisionChange::AlreadyStored => {}
                        }
                    } else {
                        self.counts.categories += 1;
                    }
                    appends.push(StreamAppend::new(
                        update_stream(id),
                        ExpectedVersion::Any,
                        vec![WsusEvent::WsusUpdateSynced(event).to_new_event(&self.actor)],
                    ));
                }
            }
            done += u32::try_from(ids.len()).unwrap_or(0);
            appends.push(StreamAppend::new(
                run_stream(&self.run_id),
                ExpectedVersion::Any,
                vec![self.progress_event(phase, done, total)],
            ));
            let results = self.service.store().append_streams(&appends).await?;
            // The next batch and the anchor decide on the view: wait until it shows this batch.
            let run_version = results.last().map_or(0, |r| r.stream_version);
            self.service
                .wait_for_run(&self.run_id, run_version)
                .await
                .map_err(|e| RunError::View(e.to_string()))?;
        }
        Ok(())
    }

    /// Sends a Server Sync request with a valid cookie, reacting to faults as spec 2.2.9.3 says.
    async fn call<T>(
        &mut self,
        build: impl Fn(&Cookie) -> Result<Request, WsusError>,
        parse: impl Fn(&[u8]) -> Result<T, WsusError>,
    ) -> Result<T, RunError> {
        let mut busy = 0;
        loop {
            let cookie = self.valid_cookie().await?;
            let request = build(&cookie).map_err(RunError::Protocol)?;
            let body = self.send(&request).await?;
            match parse(&body) {
                Ok(value) => return Ok(value),
                Err(WsusError::Fault(fault)) => match fault.error_code {
                    Some(ErrorCode::InvalidCookie | ErrorCode::InvalidAuthorizationCookie) => {
                        // Restart the protocol from the beginning (authorization).
                        self.cookie = None;
                        self.authorization = None;
                    }
                    Some(ErrorCode::ServerBusy) if busy < self.options.busy_retries => {
                        busy += 1;
                        self.back_off(busy).await;
                    }
                    Some(ErrorCode::ServerChanged) => return Err(RunError::ServerChanged),
                    _ => {
                        return Err(RunError::Fault {
                            operation: request.operation.name(),
                            fault,
                        });
                    }
                },
                Err(other) => return Err(RunError::Protocol(other)),
            }
        }
    }

    /// Sends an authorization request (no cookie yet); only ServerBusy is retried here.
    async fn call_plain<T>(
        &mut self,
        request: Request,
        parse: impl Fn(&[u8]) -> Result<T, WsusError>,
    ) -> Result<T, RunError> {
        let mut busy = 0;
        loop {
            let body = self.send(&request).await?;
            match parse(&body) {
                Ok(value) => return Ok(value),
                Err(WsusError::Fault(fault))
                    if fault.error_code == Some(ErrorCode::ServerBusy)
                        && busy < self.options.busy_retries =>
                {
                    busy += 1;
                    self.back_off(busy).await;
                }
                Err(WsusError::Fault(fault)) => {
                    return Err(RunError::Fault {
                        operation: request.operation.name(),
                        fault,
                    });
                }
                Err(other) => return Err(RunError::Protocol(other)),
            }
        }
    }

    async fn send(&mut self, request: &Request) -> Result<Vec<u8>, RunError> {
        self.counts.requests += 1;
        Ok(self
            .client
            .post(request, self.auth_service_url.as_deref())
            .await?)
    }

    async fn back_off(&self, attempt: u32) {
        let delay = self.options.busy_backoff * 2u32.saturating_pow(attempt - 1);
        tracing::info!(run = %self.run_id, ?delay, "the upstream is busy; backing off");
        tokio::time::sleep(delay.min(Duration::from_secs(300))).await;
    }

    /// The current cookie, or a new one (spec 3.2.4.1) when there is none or it is about to
    /// expire. An expired cookie is renewed with GetCookie (passing it as `oldCookie`); the whole
    /// authorization is redone only when the upstream refused our cookies, and only that counts
    /// towards [`SyncOptions::max_authorizations`].
    async fn valid_cookie(&mut self) -> Result<Cookie, RunError> {
        if let Some(cookie) = &self.cookie
            && !cookie.is_expired_at(Utc::now())
        {
            return Ok(cookie.clone());
        }
        loop {
            if self.authorization.is_none() {
                self.authorizations += 1;
                if self.authorizations > self.options.max_authorizations {
                    return Err(RunError::AuthorizationLoop(self.authorizations - 1));
                }
                let config = self
                    .call_plain(get_auth_config::request(), get_auth_config::parse_response)
                    .await?;
                self.auth_service_url = Some(config.service_url);
                let authorization = self
                    .call_plain(
                        get_authorization_cookie::request(
                            &self.settings.account_name,
                            &self.settings.account_guid,
                        ),
                        get_authorization_cookie::parse_response,
                    )
                    .await?;
                self.authorization = Some(authorization);
            }
            let Some(authorization) = self.authorization.clone() else {
                continue;
            };
            let request =
                get_cookie::request(&authorization, self.cookie.as_ref(), PROTOCOL_VERSION);
            match self.call_plain(request, get_cookie::parse_response).await {
                Ok(cookie) => {
                    // Used for this call even if its lifetime is shorter than the renewal margin.
                    self.cookie = Some(cookie.clone());
                    return Ok(cookie);
                }
                Err(RunError::Fault { fault, .. })
                    if fault.error_code == Some(ErrorCode::InvalidAuthorizationCookie) =>
                {
                    self.authorization = None;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn progress_event(&self, phase: &str, done: u32, total: u32) -> patchbay_eventstore::NewEvent {
        WsusEvent::WsusSyncProgressed(pb::WsusSyncProgressed {
            run_id: self.run_id.clone(),
            phase: phase.to_owned(),
            done,
            total,
        })
        .to_new_event(&self.actor)
    }

    async fn progress(
        &mut self,
        phase: &'static str,
        done: u32,
        total: u32,
    ) -> Result<(), RunError> {
        self.phase = phase;
        let appended = self
            .service
            .store()
            .append(
                &run_stream(&self.run_id),
                ExpectedVersion::Any,
                &[self.progress_event(phase, done, total)],
            )
            .await?;
        self.service
            .wait_for_run(&self.run_id, appended.stream_version)
            .await
            .map_err(|e| RunError::View(e.to_string()))
    }

    /// Appends to the upstream stream at the version this service last saw: a concurrent run on
    /// another replica makes this one stop rather than interleave anchors.
    async fn append_upstream(&mut self, event: WsusEvent) -> Result<(), RunError> {
        let version = self.service.view().upstream_version;
        let appended = match self
            .service
            .store()
            .append(
                UPSTREAM_STREAM,
                ExpectedVersion::Exact(version),
                &[event.to_new_event(&self.actor)],
            )
            .await
        {
            Ok(appended) => appended,
            Err(EventStoreError::Conflict { .. }) => return Err(RunError::Concurrent),
            Err(error) => return Err(error.into()),
        };
        self.service
            .wait_for(|view| view.upstream_version >= appended.stream_version)
            .await
            .map_err(|e| RunError::View(e.to_string()))
    }
}
