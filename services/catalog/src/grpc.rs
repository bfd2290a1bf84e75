//! `CatalogService` over gRPC: imports, listing with filters and paging, one update's detail.

use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::catalog::v1::catalog_service_server::CatalogService;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use crate::import::{apt, kev, manifest};
use crate::service::{Catalog, CatalogServiceError, ImportOutcome};
use crate::view::UpdateFilter;

/// Largest apt index accepted, compressed (the biggest Debian index, main/amd64, is about 10 MiB lz4).
const MAX_INDEX_BYTES: usize = 256 * 1024 * 1024;
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

#[derive(Debug, Clone)]
pub struct CatalogApi {
    catalog: Catalog,
}

impl CatalogApi {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

fn to_status(error: CatalogServiceError) -> Status {
    match error {
        CatalogServiceError::Domain(e) => Status::invalid_argument(e.to_string()),
        CatalogServiceError::Store(e) if e.is_transient() => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn summary(
    entries_read: u64,
    outcome: ImportOutcome,
    mut problems: Vec<pb::ImportProblem>,
) -> pb::ImportSummary {
    problems.extend(
        outcome
            .rejected
            .into_iter()
            .map(|(index, message)| pb::ImportProblem {
                line: index as u64,
                message,
            }),
    );
    pb::ImportSummary {
        entries_read,
        published: outcome.published,
        revised: outcome.revised,
        unchanged: outcome.unchanged,
        problems,
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn import_apt_index(
        &self,
        request: Request<Streaming<pb::ImportAptIndexRequest>>,
    ) -> Result<Response<pb::ImportSummary>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(pb::ImportAptIndexRequest {
                part: Some(pb::import_apt_index_request::Part::Header(header)),
            })) => header,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be the index header (file name, suite)",
                ));
            }
        };
        let mut data = Vec::new();
        while let Some(message) = stream.next().await {
            match message?.part {
                Some(pb::import_apt_index_request::Part::Chunk(chunk)) => {
                    if data.len() + chunk.len() > MAX_INDEX_BYTES {
                        return Err(Status::resource_exhausted(format!(
                            "the index is larger than {MAX_INDEX_BYTES} bytes; split it or raise the limit"
                        )));
                    }
                    data.extend_from_slice(&chunk);
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "only the first message may be a header",
                    ));
                }
            }
        }
        let parsed = apt::parse_index(&header, &data)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let outcome = self
            .catalog
            .publish_updates(parsed.updates, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(summary(
            parsed.entries_read,
            outcome,
            parsed.problems,
        )))
    }

    async fn import_kev(
        &self,
        request: Request<pb::ImportKevRequest>,
    ) -> Result<Response<pb::ImportSummary>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let request = request.into_inner();
        let source = if request.source.is_empty() {
            "cisa-kev"
        } else {
            request.source.as_str()
        };
        let parsed = kev::parse(&request.json, source)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let read = (parsed.vulnerabilities.len() + parsed.rejected.len()) as u64;
        let problems = parsed
            .rejected
            .into_iter()
            .map(|(index, message)| pb::ImportProblem {
                line: index as u64,
                message: format!("entry {index}: {message}"),
            })
            .collect();
        let outcome = self
            .catalog
            .publish_vulnerabilities(parsed.vulnerabilities, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(summary(read, outcome, problems)))
    }

    async fn import_manifest(
        &self,
        request: Request<pb::ImportManifestRequest>,
    ) -> Result<Response<pb::ImportSummary>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let parsed = manifest::parse(&request.into_inner().json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let problems = parsed
            .rejected
            .into_iter()
            .map(|(index, message)| pb::ImportProblem {
                line: index as u64,
                message: format!("entry {index}: {message}"),
            })
            .collect();
        let (entries, updates): (Vec<usize>, Vec<_>) = parsed
            .updates
            .into_iter()
            .map(|(index, id, details)| (index, (id, details)))
            .unzip();
        let mut outcome = self
            .catalog
            .publish_updates(updates, &actor)
            .await
            .map_err(to_status)?;
        // The domain's refusals count the updates passed on; report them by manifest entry.
        for (index, message) in &mut outcome.rejected {
            *index = entries.get(*index).copied().unwrap_or(*index);
            *message = format!("entry {index}: {message}");
        }
        let mut summary = summary(parsed.entries_read, outcome, problems);
        summary.problems.sort_by_key(|problem| problem.line);
        Ok(Response::new(summary))
    }

    async fn list_updates(
        &self,
        request: Request<pb::ListUpdatesRequest>,
    ) -> Result<Response<pb::ListUpdatesResponse>, Status> {
        let request = request.into_inner();
        let text = |s: String| (!s.is_empty()).then_some(s);
        let enum_filter = |v: i32| (v != 0).then_some(v);
        let filter = UpdateFilter {
            vendor: text(request.vendor),
            product: text(request.product),
            classification: enum_filter(request.classification),
            min_severity: enum_filter(request.min_severity),
            cve_id: text(request.cve_id),
            kind: enum_filter(request.kind),
            known_exploited_only: request.known_exploited_only,
            include_expired: request.include_expired,
            min_required_devices: request.min_required_devices,
            approval_status: request.approval_status,
        };
        let page_size = match request.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        self.catalog.catch_up().await.map_err(to_status)?;
        let view = self.catalog.view();
        let after = (!request.page_token.is_empty()).then_some(request.page_token.as_str());
        let (updates, total) = view.list(&filter, after, page_size);
        let next_page_token = if updates.len() == page_size {
            updates
                .last()
                .map(|u| u.update_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListUpdatesResponse {
            updates,
            next_page_token,
            total,
        }))
    }

    async fn get_update(
        &self,
        request: Request<pb::GetUpdateRequest>,
    ) -> Result<Response<pb::GetUpdateResponse>, Status> {
        let update_id = request.into_inner().update_id;
        let id = crate::domain::UpdateId::parse(&update_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.catalog.catch_up().await.map_err(to_status)?;
        let (update, vulnerabilities, statistics) = {
            let view = self.catalog.view();
            let entry = view.updates.get(id.as_str()).ok_or_else(|| {
                Status::not_found(format!(
                    "update '{id}' is not in the catalog; list updates to find its id"
                ))
            })?;
            let update = view.summary(id.as_str(), entry);
            let vulnerabilities = update
                .details
                .iter()
                .flat_map(|d| &d.cve_ids)
                .filter_map(|cve| {
                    view.vulnerabilities
                        .get(cve)
                        .and_then(|(state, _)| state.current.clone())
                })
                .collect();
            let installs = view.install_counts(id.as_str());
            let statistics = pb::UpdateStatistics {
                required: view.required_by(id.as_str()),
                not_required: view
                    .devices_scanned()
                    .saturating_sub(view.required_by(id.as_str())),
                installed: installs.installed,
                pending: installs.pending,
                failed: installs.failed,
            };
            (update, vulnerabilities, statistics)
        };
        let stored = self
            .catalog
            .store()
            .read_stream(&id.stream_id(), 1, 10_000)
            .await
            .map_err(|e| to_status(e.into()))?;
        let mut revisions = Vec::new();
        for event in stored {
            let decoded = crate::events::CatalogEvent::decode(
                &event.event_type,
                event.schema_version,
                &event.payload,
            )
            .map_err(|e| to_status(e.into()))?;
            let (revision, details) = match decoded {
                crate::events::CatalogEvent::UpdatePublished(e) => (1, e.details),
                crate::events::CatalogEvent::UpdateRevised(e) => (e.revision, e.details),
                _ => continue,
            };
            revisions.push(pb::UpdateRevision {
                revision,
                details,
                recorded_at: event.recorded_at.to_rfc3339(),
            });
        }
        Ok(Response::new(pb::GetUpdateResponse {
            update: Some(update),
            revisions,
            vulnerabilities,
            statistics: Some(statistics),
        }))
    }
}

#[cfg(test)]
mod tests {
    use patchbay_eventstore::{EventStore, LogPosition};
    use patchbay_testkit::TestSqlite;

    use super::*;

    async fn import(api: &CatalogApi, json: &[u8]) -> Result<pb::ImportSummary, Status> {
        api.import_manifest(Request::new(pb::ImportManifestRequest {
            json: json.to_vec(),
        }))
        .await
        .map(Response::into_inner)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_manifest_imports_once_and_a_changed_entry_is_a_revision() {
        let dir = TestSqlite::new();
        let store = EventStore::connect(&dir.url("catalog.db")).await.unwrap();
        let api = CatalogApi::new(Catalog::open(store.clone()).await.unwrap());
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/managed-apps.json"
        );
        let fixture = std::fs::read(path).unwrap();

        let first = import(&api, &fixture).await.unwrap();
        assert_eq!(
            (
                first.entries_read,
                first.published,
                first.revised,
                first.unchanged
            ),
            (4, 4, 0, 0)
        );
        assert!(first.problems.is_empty(), "{:?}", first.problems);
        let again = import(&api, &fixture).await.unwrap();
        assert_eq!((again.published, again.revised, again.unchanged), (0, 0, 4));
        assert_eq!(store.count_after(LogPosition::START).await.unwrap(), 4);

        let mut changed: serde_json::Value = serde_json::from_slice(&fixture).unwrap();
        changed["updates"][1]["eula"]["text"] = "A new EULA text.".into();
        changed["updates"][2]["kind"] = "second-party".into();
        let summary = import(&api, &serde_json::to_vec(&changed).unwrap())
            .await
            .unwrap();
        assert_eq!(
            (summary.published, summary.revised, summary.unchanged),
            (0, 1, 2)
        );
        assert_eq!(summary.problems.len(), 1);
        assert_eq!(summary.problems[0].line, 2);
        assert!(
            summary.problems[0].message.starts_with(
                "entry 2: update 'app:patchbay-collector:3.0.0-1:amd64': field `kind`"
            ),
            "{:?}",
            summary.problems
        );
        {
            let view = api.catalog.view();
            let reporting = &view.updates["app:patchbay-reporting:2.1.0-1:amd64"].state;
            assert_eq!(reporting.revision, 2);
        }

        let error = import(&api, b"{\"updates\": []}").await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            error.message().contains("not an update manifest"),
            "{error}"
        );
    }
}
