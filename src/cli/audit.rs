//! `patchbay audit verify`: checks each service's hash-chained log for tampering.

use patchbay_proto::audit::v1 as pb;
use patchbay_proto::audit::v1::audit_service_client::AuditServiceClient;

use super::ClientArgs;
use super::output::Listing;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Walk each log's hash chain (read-only) and report the first altered, removed, reordered or
    /// inserted event; exit code 1 if any log is not intact.
    Verify {
        /// Only this service (catalog, approvals, scanning, installing, wsus-sync).
        #[arg(long)]
        service: Option<String>,
    },
}

pub async fn run(args: &ClientArgs, command: AuditCommand) -> anyhow::Result<()> {
    let mut client = AuditServiceClient::new(args.channel().await?);
    match command {
        AuditCommand::Verify { service } => {
            let services = client
                .verify_chain(pb::VerifyChainRequest {
                    service: service.unwrap_or_default(),
                })
                .await
                .map_err(super::status_error)?
                .into_inner()
                .services;
            Listing {
                headers: vec!["service", "intact", "sealed", "unsealed", "head", "report"],
                rows: services
                    .iter()
                    .map(|s| {
                        vec![
                            s.service.clone(),
                            if s.intact { "yes" } else { "NO" }.to_owned(),
                            s.sealed.to_string(),
                            s.unsealed_after.to_string(),
                            s.head_digest.clone(),
                            s.report.clone(),
                        ]
                    })
                    .collect(),
                json: serde_json::Value::Array(
                    services
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "service": s.service, "intact": s.intact, "sealed": s.sealed,
                                "unsealed_after": s.unsealed_after, "head_digest": s.head_digest,
                                "report": s.report,
                            })
                        })
                        .collect(),
                ),
            }
            .print(args.output)?;
            let broken: Vec<&str> = services
                .iter()
                .filter(|s| !s.intact)
                .map(|s| s.service.as_str())
                .collect();
            if broken.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("tampering detected in: {}", broken.join(", "))
            }
        }
    }
}
