//! `patchbay sources import-apt|import-kev|import-manifest`: send update sources to the catalog.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;

use super::ClientArgs;
use super::output::Listing;

/// Size of the pieces an index is streamed in.
const CHUNK: usize = 1024 * 1024;
/// Problems printed per file; the JSON output has them all.
const SHOWN_PROBLEMS: usize = 10;

#[derive(Debug, clap::Subcommand)]
// The variants name the subcommands (`import-apt`, `import-kev`, `import-manifest`).
#[allow(clippy::enum_variant_names)]
pub enum SourcesCommand {
    /// Import apt `Packages` indexes (plain, .gz, .xz or .lz4), e.g. /var/lib/apt/lists/*_Packages.lz4.
    ImportApt {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Suite the indexes belong to (default: read from apt's lists file name).
        #[arg(long)]
        suite: Option<String>,
        /// Component (default: from the file name, else "main").
        #[arg(long)]
        component: Option<String>,
        /// Repository shown as the updates' source (default: from the file name).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Import the CISA Known Exploited Vulnerabilities catalog (known_exploited_vulnerabilities.json).
    ImportKev { path: PathBuf },
    /// Import an update manifest (JSON) of managed apps or vendors without an apt repository;
    /// the format is in docs/update-manifest.md.
    ImportManifest { path: PathBuf },
}

pub async fn run(args: &ClientArgs, command: SourcesCommand) -> anyhow::Result<()> {
    let mut client = CatalogServiceClient::new(args.channel().await?);
    let mut summaries = Vec::new();
    match command {
        SourcesCommand::ImportApt {
            paths,
            suite,
            component,
            origin,
        } => {
            for path in paths {
                let header = pb::AptIndexHeader {
                    file_name: path.to_string_lossy().into_owned(),
                    suite: suite.clone().unwrap_or_default(),
                    component: component.clone().unwrap_or_default(),
                    origin: origin.clone().unwrap_or_default(),
                };
                let summary = import_apt(&mut client, &path, header).await?;
                summaries.push((path, summary));
            }
        }
        SourcesCommand::ImportKev { path } => {
            let json = read(&path)?;
            let progress = spinner(&format!("importing {}", path.display()));
            let summary = client
                .import_kev(pb::ImportKevRequest {
                    json,
                    source: String::new(),
                })
                .await
                .map_err(super::status_error)?
                .into_inner();
            progress.finish_and_clear();
            summaries.push((path, summary));
        }
        SourcesCommand::ImportManifest { path } => {
            let json = read(&path)?;
            let progress = spinner(&format!("importing {}", path.display()));
            let summary = client
                .import_manifest(pb::ImportManifestRequest { json })
                .await
                .map_err(super::status_error)?
                .into_inner();
            progress.finish_and_clear();
            summaries.push((path, summary));
        }
    }
    for (path, summary) in &summaries {
        for problem in summary.problems.iter().take(SHOWN_PROBLEMS) {
            eprintln!(
                "warning: {}:{}: {}",
                path.display(),
                problem.line,
                problem.message
            );
        }
        if summary.problems.len() > SHOWN_PROBLEMS {
            eprintln!(
                "warning: {}: {} more problems (see -o json)",
                path.display(),
                summary.problems.len() - SHOWN_PROBLEMS
            );
        }
    }
    Listing {
        headers: vec!["source", "entries", "published", "revised", "unchanged", "problems"],
        rows: summaries
            .iter()
            .map(|(path, s)| {
                vec![
                    path.display().to_string(),
                    s.entries_read.to_string(),
                    s.published.to_string(),
                    s.revised.to_string(),
                    s.unchanged.to_string(),
                    s.problems.len().to_string(),
                ]
            })
            .collect(),
        json: serde_json::Value::Array(
            summaries
                .iter()
                .map(|(path, s)| {
                    serde_json::json!({
                        "source": path.display().to_string(),
                        "entries": s.entries_read, "published": s.published, "revised": s.revised,
                        "unchanged": s.unchanged,
                        "problems": s.problems.iter().map(|p| serde_json::json!({"line": p.line, "message": p.message})).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
    }
    .print(args.output)
}

async fn import_apt(
    client: &mut CatalogServiceClient<tonic::transport::Channel>,
    path: &Path,
    header: pb::AptIndexHeader,
) -> anyhow::Result<pb::ImportSummary> {
    use pb::import_apt_index_request::Part;
    let data = read(path)?;
    let progress = ProgressBar::new(data.len() as u64).with_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message(format!("importing {}", path.display()));
    let mut messages = vec![pb::ImportAptIndexRequest {
        part: Some(Part::Header(header)),
    }];
    messages.extend(data.chunks(CHUNK).map(|chunk| pb::ImportAptIndexRequest {
        part: Some(Part::Chunk(chunk.to_vec())),
    }));
    let sent = progress.clone();
    let stream = tokio_stream::iter(messages).map(move |message| {
        if let Some(Part::Chunk(chunk)) = &message.part {
            sent.inc(chunk.len() as u64);
        }
        message
    });
    let summary = client
        .import_apt_index(stream)
        .await
        .map_err(super::status_error)?
        .into_inner();
    progress.finish_and_clear();
    Ok(summary)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn spinner(message: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

use tokio_stream::StreamExt as _;
