//! The embedded server starts, answers health, reflection and `SystemService`, and stops cleanly.

use patchbay_proto::system::v1::GetServerInfoRequest;
use patchbay_proto::system::v1::system_service_client::SystemServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::spawn_app;

#[tokio::test]
async fn embedded_server_reports_every_service_and_is_healthy() {
    let app = spawn_app().await;
    let mut system = SystemServiceClient::connect(app.url()).await.unwrap();
    let info = system
        .get_server_info(GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.mode, "embedded");
    let names: Vec<_> = info.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "catalog",
            "approvals",
            "scanning",
            "installing",
            "wsus-sync"
        ]
    );
    // A new server's logs are empty, but for the default weekly scan task (and its first run).
    for service in &info.services {
        match service.name.as_str() {
            "scanning" => assert!(service.event_count >= 1, "{service:?}"),
            _ => assert_eq!(service.event_count, 0, "{service:?}"),
        }
    }

    let channel = tonic::transport::Channel::from_shared(app.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel);
    // Ready once every consumer is bound and caught up; alive from the start.
    for service in [
        "",
        "liveness",
        "patchbay.system.v1.SystemService",
        "patchbay.approvals",
    ] {
        crate::installing::eventually(&format!("{service:?} to be SERVING"), || {
            let mut health = health.clone();
            async move {
                let status = health
                    .check(HealthCheckRequest {
                        service: service.to_owned(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .status;
                (status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    .then_some(())
            }
        })
        .await;
    }
    // Each service's log exists on disk, beside the bus.
    let data_dir = app.data.dir.path().join("patchbay-data");
    for file in [
        "catalog.db",
        "approvals.db",
        "scanning.db",
        "installing.db",
        "wsus-sync.db",
        "bus.db",
    ] {
        assert!(data_dir.join(file).exists(), "{file}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let app = spawn_app().await;
    let other = tempfile_dir();
    let error = patchbay::embedded::EmbeddedServer::build(&patchbay::embedded::EmbeddedConfig {
        data_dir: other.dir.path().to_path_buf(),
        listen: app.address,
        operations: Default::default(),
    })
    .await
    .unwrap_err();
    assert!(format!("{error:#}").contains("--listen"), "{error:#}");
    app.stop().await.unwrap();
}

fn tempfile_dir() -> patchbay_testkit::TestSqlite {
    patchbay_testkit::TestSqlite::new()
}
