//! `patchbay eula accept|decline|list`: EULA acceptance, per text (a new text needs a new acceptance).

use patchbay_proto::approvals::v1::approvals_service_client::ApprovalsServiceClient;
use patchbay_proto::approvals::v1::{Eula, ListEulasRequest, SetEulaRequest};

use super::ClientArgs;
use super::output::Listing;

#[derive(Debug, clap::Subcommand)]
pub enum EulaCommand {
    /// Accept the EULA's current text: updates that need it may then be approved and installed.
    Accept { eula_id: String },
    /// Decline the EULA's current text: updates that need it cannot be approved.
    Decline { eula_id: String },
    /// Every EULA text current updates need, and whether it was accepted.
    List,
}

pub async fn run(args: &ClientArgs, command: EulaCommand) -> anyhow::Result<()> {
    let mut client = ApprovalsServiceClient::new(args.channel().await?);
    let eulas = match command {
        EulaCommand::Accept { eula_id } => vec![set(&mut client, eula_id, true).await?],
        EulaCommand::Decline { eula_id } => vec![set(&mut client, eula_id, false).await?],
        EulaCommand::List => {
            client
                .list_eulas(ListEulasRequest {})
                .await
                .map_err(super::status_error)?
                .into_inner()
                .eulas
        }
    };
    listing(&eulas).print(args.output)
}

async fn set(
    client: &mut ApprovalsServiceClient<tonic::transport::Channel>,
    eula_id: String,
    accept: bool,
) -> anyhow::Result<Eula> {
    Ok(client
        .set_eula(SetEulaRequest { eula_id, accept })
        .await
        .map_err(super::status_error)?
        .into_inner())
}

fn listing(eulas: &[Eula]) -> Listing {
    Listing {
        headers: vec!["eula", "text sha256", "status", "by", "at", "updates"],
        rows: eulas
            .iter()
            .map(|e| {
                vec![
                    e.eula_id.clone(),
                    e.text_sha256.chars().take(12).collect(),
                    e.status.clone(),
                    e.actor.clone(),
                    e.changed_at.clone(),
                    e.update_ids.len().to_string(),
                ]
            })
            .collect(),
        json: eulas
            .iter()
            .map(|e| {
                serde_json::json!({
                    "eula_id": e.eula_id, "text_sha256": e.text_sha256, "status": e.status,
                    "actor": e.actor, "changed_at": e.changed_at, "update_ids": e.update_ids,
                })
            })
            .collect(),
    }
}
