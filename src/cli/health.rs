//! `patchbay health`: asks a server's standard gRPC health service, for container health checks
//! (the image has no other probe); exits 0 only when the answer is SERVING.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The health service to ask: "" (the default) is readiness, "liveness" liveness,
    /// "patchbay.SERVICE" one hosted service.
    #[arg(long, default_value = "")]
    check: String,
}

pub async fn run(client: &ClientArgs, args: HealthArgs) -> anyhow::Result<()> {
    let mut health = HealthClient::new(client.channel().await?);
    let response = health
        .check(HealthCheckRequest {
            service: args.check.clone(),
        })
        .await
        .map_err(super::status_error)?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    let name = if args.check.is_empty() {
        "readiness"
    } else {
        &args.check
    };
    println!("{name}: {}", status.as_str_name());
    if status != ServingStatus::Serving {
        anyhow::bail!(
            "{} is not serving {name}; its logs say why (database, NATS, or consumers catching up)",
            client.server
        );
    }
    Ok(())
}
