//! `patchbay admin rebuild`: rebuild every read model from its log, and verify it against the live one.

use patchbay_proto::audit::v1 as pb;
use patchbay_proto::audit::v1::audit_service_client::AuditServiceClient;

use super::ClientArgs;
use super::output::Listing;

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Rebuild each hosted read model from its log into a fresh instance; with --verify, compare it
    /// with the live one and exit 1 on any difference.
    Rebuild {
        /// Only this service (catalog, approvals, scanning, installing, wsus-sync).
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        verify: bool,
    },
}

pub async fn run(args: &ClientArgs, command: AdminCommand) -> anyhow::Result<()> {
    let mut client = AuditServiceClient::new(args.channel().await?);
    let AdminCommand::Rebuild { service, verify } = command;
    let results = client
        .rebuild_read_models(pb::RebuildRequest {
            service: service.unwrap_or_default(),
            verify,
        })
        .await
        .map_err(super::status_error)?
        .into_inner()
        .results;
    Listing {
        headers: vec!["service", "events", "ms", "verified", "detail"],
        rows: results
            .iter()
            .map(|r| {
                vec![
                    r.service.clone(),
                    r.events.to_string(),
                    r.millis.to_string(),
                    match (r.verified, r.identical) {
                        (false, _) => "-".to_owned(),
                        (true, true) => "identical".to_owned(),
                        (true, false) => "DIFFERS".to_owned(),
                    },
                    r.detail.clone(),
                ]
            })
            .collect(),
        json: serde_json::Value::Array(
            results
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "service": r.service, "events": r.events, "millis": r.millis,
                        "verified": r.verified, "identical": r.identical, "detail": r.detail,
                    })
                })
                .collect(),
        ),
    }
    .print(args.output)?;
    let differing: Vec<&str> = results
        .iter()
        .filter(|r| r.verified && !r.identical)
        .map(|r| r.service.as_str())
        .collect();
    if differing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "rebuilt read models differ from the live ones: {}",
            differing.join(", ")
        )
    }
}
