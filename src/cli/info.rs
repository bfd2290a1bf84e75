//! `patchbay info`: a running server's version, mode and services.

use patchbay_proto::system::v1::GetServerInfoRequest;
use patchbay_proto::system::v1::system_service_client::SystemServiceClient;

use super::ClientArgs;
use super::output::{Listing, OutputFormat};

pub async fn run(args: &ClientArgs) -> anyhow::Result<()> {
    let mut client = SystemServiceClient::new(args.channel().await?);
    let info = client
        .get_server_info(GetServerInfoRequest {})
        .await
        .map_err(super::status_error)?
        .into_inner();
    if args.output == OutputFormat::Table {
        println!("Patchbay {} ({} mode)", info.version, info.mode);
    }
    let services: Vec<_> = info
        .services
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "event_count": s.event_count, "relay_lag": s.relay_lag}))
        .collect();
    Listing {
        headers: vec!["service", "events", "not yet relayed"],
        rows: info
            .services
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.event_count.to_string(),
                    s.relay_lag.to_string(),
                ]
            })
            .collect(),
        json: serde_json::json!({"version": info.version, "mode": info.mode, "services": services}),
    }
    .print(args.output)
}
