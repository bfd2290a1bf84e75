//! `patchbay events list|tail`: every service's events, decoded to readable JSON with their metadata.

use patchbay_proto::audit::v1 as pb;
use patchbay_proto::audit::v1::audit_service_client::AuditServiceClient;
use tokio_stream::StreamExt as _;

use super::ClientArgs;
use super::output::{Listing, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Events in each service's global order, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many events (0: all).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// New events as they are committed (one line each; JSON Lines with -o json), until Ctrl-C.
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// catalog, approvals, scanning, installing or wsus-sync.
    #[arg(long)]
    service: Option<String>,
    /// One stream, e.g. approval-<update id>.
    #[arg(long)]
    stream: Option<String>,
    /// Event types, e.g. --type UpdateApproved --type UpdateDeclined.
    #[arg(long = "type")]
    types: Vec<String>,
    /// Recorded at or after (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Recorded before (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// One request or workflow.
    #[arg(long)]
    correlation: Option<String>,
}

impl FilterArgs {
    fn to_proto(&self) -> pb::EventFilter {
        pb::EventFilter {
            service: self.service.clone().unwrap_or_default(),
            stream_id: self.stream.clone().unwrap_or_default(),
            event_types: self.types.clone(),
            since: self.since.clone().unwrap_or_default(),
            until: self.until.clone().unwrap_or_default(),
            correlation_id: self.correlation.clone().unwrap_or_default(),
        }
    }
}

pub async fn run(args: &ClientArgs, command: EventsCommand) -> anyhow::Result<()> {
    let mut client = AuditServiceClient::new(args.channel().await?);
    let (filter, follow, limit) = match &command {
        EventsCommand::List { filter, limit } => (filter.to_proto(), false, *limit),
        EventsCommand::Tail { filter } => {
            // Only what is committed from now on, unless --since says otherwise.
            let mut filter = filter.to_proto();
            if filter.since.is_empty() {
                filter.since = chrono::Utc::now().to_rfc3339();
            }
            (filter, true, 0)
        }
    };
    let mut stream = client
        .replay_events(pb::ReplayEventsRequest {
            filter: Some(filter),
            follow,
            limit,
        })
        .await
        .map_err(super::status_error)?
        .into_inner();
    if follow {
        while let Some(event) = stream.next().await {
            let event = event.map_err(super::status_error)?;
            match args.output {
                OutputFormat::Json => println!("{}", event_json(&event)),
                _ => println!("{}", line(&event)),
            }
        }
        return Ok(());
    }
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.map_err(super::status_error)?);
    }
    Listing {
        headers: vec![
            "service", "position", "recorded", "stream", "version", "type", "actor", "payload",
        ],
        rows: events
            .iter()
            .map(|e| {
                vec![
                    e.service.clone(),
                    position(e),
                    e.recorded_at.clone(),
                    e.stream_id.clone(),
                    e.stream_version.to_string(),
                    e.event_type.clone(),
                    e.actor.clone(),
                    abbreviated(&e.payload_json, 80),
                ]
            })
            .collect(),
        json: serde_json::Value::Array(events.iter().map(event_json).collect()),
    }
    .print(args.output)
}

fn position(event: &pb::AuditEvent) -> String {
    if event.commit_id == 0 {
        event.global_position.to_string()
    } else {
        format!("{}:{}", event.commit_id, event.global_position)
    }
}

fn line(event: &pb::AuditEvent) -> String {
    format!(
        "{} {} {} {}@{} {} by {} {}",
        event.recorded_at,
        event.service,
        position(event),
        event.stream_id,
        event.stream_version,
        event.event_type,
        event.actor,
        event.payload_json
    )
}

fn abbreviated(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

fn event_json(event: &pb::AuditEvent) -> serde_json::Value {
    let payload = serde_json::from_str::<serde_json::Value>(&event.payload_json)
        .unwrap_or_else(|_| serde_json::json!({"undecoded_base64": event.payload_base64}));
    serde_json::json!({
        "service": event.service, "commit_id": event.commit_id,
        "global_position": event.global_position, "stream_id": event.stream_id,
        "stream_version": event.stream_version, "event_id": event.event_id,
        "event_type": event.event_type, "schema_version": event.schema_version,
        "recorded_at": event.recorded_at, "actor": event.actor,
        "correlation_id": event.correlation_id, "causation_id": event.causation_id,
        "traceparent": event.traceparent, "payload": payload,
    })
}
