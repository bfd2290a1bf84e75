//! The services Patchbay is made of; each owns one event log and publishes it on its own stream.

use patchbay_eventstore::{EventStore, EventStoreError, StoreOptions, Upcasters};

/// Service names as used for log files, databases, bus streams and health checks.
pub const SERVICES: [&str; 5] = [
    "catalog",
    "approvals",
    "scanning",
    "installing",
    "wsus-sync",
];

/// The upgrades of `service`'s older payloads. Every store of a service's log that Patchbay reads
/// is opened with them ([`open_store`]), so its decoders and read models only see current versions.
pub fn upcasters(service: &str) -> Upcasters {
    match service {
        "scanning" => patchbay_scanning::upcast::upcasters(),
        _ => Upcasters::new(),
    }
}

/// Opens (and migrates) `service`'s event log at `url` with `options` and the service's upcasters.
pub async fn open_store(
    service: &str,
    url: &str,
    options: StoreOptions,
) -> Result<EventStore, EventStoreError> {
    let options = StoreOptions {
        upcasters: upcasters(service),
        ..options
    };
    EventStore::connect_with(url, options).await
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use patchbay_eventstore::{ExpectedVersion, LogPosition, NewEvent};
    use patchbay_proto::scanning::v1 as pb;
    use patchbay_scanning::Scanning;
    use patchbay_scanning::events::ScanningEvent;
    use patchbay_testkit::TestSqlite;

    use super::*;

    /// The v1 `ScanTaskCreated` of the manual task in the golden fixture (written by Patchbay
    /// before the schedule became an enum).
    const GOLDEN_V1_MANUAL_TASK: &str = "CiQwMWEyMmE1NS0zNTcwLTczNTMtOTc2ZS01MTcwY2I5ZjJhZmESKUZpbmQgdnVsbmVyYWJpbGl0aWVzIGFuZCByZXF1aXJlZCB1cGRhdGVzGgIIASIGbWFudWFs";

    #[tokio::test]
    async fn a_scanning_log_written_at_v1_reads_back_at_v2_and_rebuilds_the_service() {
        // Given a scanning log holding a ScanTaskCreated as version 1 wrote it,
        let dir = TestSqlite::new();
        let url = dir.url("scanning.db");
        let v1 = base64::engine::general_purpose::STANDARD
            .decode(GOLDEN_V1_MANUAL_TASK)
            .unwrap();
        let raw = EventStore::connect(&url).await.unwrap();
        raw.append(
            "scantask-legacy",
            ExpectedVersion::NoStream,
            &[NewEvent::new("ScanTaskCreated", 1, v1)],
        )
        .await
        .unwrap();
        raw.close().await;

        // when Patchbay opens it as the scanning service's log,
        let store = open_store("scanning", &url, StoreOptions::default())
            .await
            .unwrap();

        // then the event reads as version 2, the schedule as the enum,
        let events = store.read_all(LogPosition::START, 10).await.unwrap();
        assert_eq!(events[0].schema_version, 2);
        let ScanningEvent::ScanTaskCreated(created) = ScanningEvent::decode(
            &events[0].event_type,
            events[0].schema_version,
            &events[0].payload,
        )
        .unwrap() else {
            panic!("not a ScanTaskCreated: {:?}", events[0].event_type)
        };
        assert_eq!(created.schedule(), pb::ScanSchedule::Manual);
        assert_eq!(created.task_id, "01a22a55-3570-7353-976e-5170cb9f2afa");
        // and the service rebuilds its read model from it: the task is still manual.
        let scanning = Scanning::open(store).await.unwrap();
        let view = scanning.view();
        let task = &view.tasks["01a22a55-3570-7353-976e-5170cb9f2afa"];
        assert_eq!(
            (task.state.name.as_str(), task.state.schedule.as_str()),
            ("Find vulnerabilities and required updates", "manual")
        );
    }

    #[test]
    fn only_the_services_with_a_changed_schema_have_upcasters() {
        assert!(!upcasters("scanning").is_empty());
        for service in ["catalog", "approvals", "installing", "wsus-sync"] {
            assert!(upcasters(service).is_empty(), "{service}");
        }
    }
}
