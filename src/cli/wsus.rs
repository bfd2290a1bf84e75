//! `patchbay wsus config set|status|sync|runs`: the WSUS sync service's settings and runs.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use patchbay_proto::wsus::v1 as pb;
use patchbay_proto::wsus::v1::wsus_service_client::WsusServiceClient;
use tonic::transport::Channel;

use super::ClientArgs;
use super::output::Listing;

#[derive(Debug, clap::Subcommand)]
pub enum WsusCommand {
    /// Sync settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Start a sync now; with --wait, follow it to the end (a progress bar on a terminal).
    Sync {
        #[arg(long)]
        wait: bool,
    },
    /// Settings, anchors, the last run and what is known from the upstream.
    Status,
    /// Sync runs, newest first.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Replace the settings.
    Set {
        /// Upstream WSUS server or Microsoft Update base URL, e.g. https://wsus.example.com:8531/.
        #[arg(long)]
        upstream: String,
        /// Product category ids (GUIDs), comma-separated; needs --classifications.
        #[arg(long, value_delimiter = ',')]
        products: Vec<String>,
        /// Classification ids (GUIDs), comma-separated; needs --products.
        #[arg(long, value_delimiter = ',')]
        classifications: Vec<String>,
        /// Languages whose titles are kept (e.g. en,de); default all.
        #[arg(long, value_delimiter = ',')]
        languages: Vec<String>,
        /// daily (default), weekly or manual.
        #[arg(long, default_value = "daily")]
        schedule: String,
        /// Also download payloads of approved updates (default: catalog only).
        #[arg(long)]
        download_content: bool,
    },
}

pub async fn run(args: &ClientArgs, command: WsusCommand) -> anyhow::Result<()> {
    let mut client = WsusServiceClient::new(args.channel().await?);
    match command {
        WsusCommand::Config {
            command:
                ConfigCommand::Set {
                    upstream,
                    products,
                    classifications,
                    languages,
                    schedule,
                    download_content,
                },
        } => {
            let config = client
                .set_config(pb::SetConfigRequest {
                    upstream_url: upstream,
                    product_ids: products,
                    classification_ids: classifications,
                    languages,
                    schedule,
                    download_content,
                })
                .await
                .map_err(super::status_error)?
                .into_inner();
            config_listing(&config).print(args.output)
        }
        WsusCommand::Sync { wait } => {
            let run = client
                .start_sync(pb::StartSyncRequest {})
                .await
                .map_err(super::status_error)?
                .into_inner();
            let run = if wait {
                follow(&mut client, run).await?
            } else {
                run
            };
            runs_listing(&[run]).print(args.output)?;
            Ok(())
        }
        WsusCommand::Status => {
            let status = client
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(super::status_error)?
                .into_inner();
            status_listing(&status).print(args.output)
        }
        WsusCommand::Runs { limit } => {
            let runs = client
                .list_runs(pb::ListRunsRequest { limit })
                .await
                .map_err(super::status_error)?
                .into_inner()
                .runs;
            runs_listing(&runs).print(args.output)
        }
    }
}

/// Polls the run until it ends; a failed run is an error (exit code 1) after it is shown.
async fn follow(
    client: &mut WsusServiceClient<Channel>,
    run: pb::SyncRun,
) -> anyhow::Result<pb::SyncRun> {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg:>12} {bar:30} {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut run = run;
    while run.state == "running" {
        bar.set_message(run.phase.clone());
        bar.set_length(u64::from(run.total));
        bar.set_position(u64::from(run.done));
        tokio::time::sleep(Duration::from_millis(300)).await;
        run = client
            .get_run(pb::GetRunRequest {
                run_id: run.run_id.clone(),
            })
            .await
            .map_err(super::status_error)?
            .into_inner();
    }
    bar.finish_and_clear();
    if let Some(failed) = &run.failed {
        runs_listing(std::slice::from_ref(&run)).print(super::output::OutputFormat::Table)?;
        anyhow::bail!(
            "sync run {} failed in {}: {}",
            run.run_id,
            failed.phase,
            failed.reason
        );
    }
    Ok(run)
}

fn config_listing(config: &pb::WsusConfigured) -> Listing {
    Listing {
        headers: vec!["setting", "value"],
        rows: config_rows(config),
        json: config_json(config),
    }
}

fn config_rows(config: &pb::WsusConfigured) -> Vec<Vec<String>> {
    let all = |v: &[String]| {
        if v.is_empty() {
            "all".to_owned()
        } else {
            v.join(", ")
        }
    };
    vec![
        vec!["upstream".into(), config.upstream_url.clone()],
        vec!["products".into(), all(&config.product_ids)],
        vec!["classifications".into(), all(&config.classification_ids)],
        vec!["languages".into(), all(&config.languages)],
        vec!["schedule".into(), config.schedule.clone()],
        vec![
            "content".into(),
            if config.download_content {
                "download approved".into()
            } else {
                "catalog only".into()
            },
        ],
    ]
}

fn config_json(config: &pb::WsusConfigured) -> serde_json::Value {
    serde_json::json!({
        "upstream_url": config.upstream_url, "product_ids": config.product_ids,
        "classification_ids": config.classification_ids, "languages": config.languages,
        "schedule": config.schedule, "download_content": config.download_content,
        "account_name": config.account_name, "account_guid": config.account_guid,
    })
}

fn status_listing(status: &pb::WsusStatus) -> Listing {
    let mut rows = match &status.config {
        Some(config) => config_rows(config),
        None => vec![vec![
            "configured".into(),
            "no: run `patchbay wsus config set`".into(),
        ]],
    };
    rows.push(vec![
        "updates known".into(),
        status.updates_known.to_string(),
    ]);
    rows.push(vec!["expired".into(), status.updates_expired.to_string()]);
    rows.push(vec![
        "categories".into(),
        status.categories_known.to_string(),
    ]);
    rows.push(vec!["updates anchor".into(), status.updates_anchor.clone()]);
    if let Some(run) = &status.last_run {
        rows.push(vec![
            "last run".into(),
            format!("{} {} ({})", run.run_id, run.state, run.started_at),
        ]);
    }
    rows.push(vec![
        "next run".into(),
        if status.next_run_at.is_empty() {
            "manual".into()
        } else {
            status.next_run_at.clone()
        },
    ]);
    Listing {
        headers: vec!["setting", "value"],
        rows,
        json: serde_json::json!({
            "configured": status.configured,
            "config": status.config.as_ref().map(config_json),
            "config_anchor": status.config_anchor, "categories_anchor": status.categories_anchor,
            "updates_anchor": status.updates_anchor,
            "max_updates_per_request": status.max_updates_per_request,
            "updates_known": status.updates_known, "updates_expired": status.updates_expired,
            "categories_known": status.categories_known,
            "last_run": status.last_run.as_ref().map(run_json),
            "next_run_at": status.next_run_at,
        }),
    }
}

fn runs_listing(runs: &[pb::SyncRun]) -> Listing {
    Listing {
        headers: vec![
            "run",
            "state",
            "trigger",
            "started",
            "phase",
            "new",
            "revised",
            "expired",
            "categories",
            "detail",
        ],
        rows: runs
            .iter()
            .map(|run| {
                let completed = run.completed.clone().unwrap_or_default();
                vec![
                    run.run_id.clone(),
                    run.state.clone(),
                    run.trigger.clone(),
                    run.started_at.clone(),
                    format!("{} {}/{}", run.phase, run.done, run.total),
                    completed.new_updates.to_string(),
                    completed.revised_updates.to_string(),
                    completed.expired_updates.to_string(),
                    completed.categories.to_string(),
                    run.failed
                        .as_ref()
                        .map(|f| f.reason.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect(),
        json: serde_json::Value::Array(runs.iter().map(run_json).collect()),
    }
}

fn run_json(run: &pb::SyncRun) -> serde_json::Value {
    let completed = run.completed.as_ref().map(|c| {
        serde_json::json!({
            "new_updates": c.new_updates, "revised_updates": c.revised_updates,
            "expired_updates": c.expired_updates, "categories": c.categories,
            "metadata_bytes": c.metadata_bytes, "requests": c.requests,
        })
    });
    let failed = run.failed.as_ref().map(
        |f| serde_json::json!({"phase": f.phase, "reason": f.reason, "error_code": f.error_code}),
    );
    serde_json::json!({
        "run_id": run.run_id, "state": run.state, "trigger": run.trigger,
        "started_at": run.started_at, "finished_at": run.finished_at, "phase": run.phase,
        "done": run.done, "total": run.total, "incremental": run.incremental,
        "completed": completed, "failed": failed,
    })
}
