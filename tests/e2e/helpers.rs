//! Spawns the embedded server on a free port with a data directory of its own.

use std::net::SocketAddr;
use std::path::PathBuf;

use patchbay::embedded::{EmbeddedConfig, EmbeddedServer};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use patchbay_testkit::TestSqlite;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub address: SocketAddr,
    pub data: TestSqlite,
    pub shutdown: CancellationToken,
    pub running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops the server and returns what it ended with.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.running.await?
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(TestSqlite::new(), Default::default()).await
}

/// The embedded server with these operational settings (snapshot cadence, shutdown bound, ...).
pub async fn spawn_app_with(operations: patchbay::host::Operations) -> TestApp {
    spawn_app_on(TestSqlite::new(), operations).await
}

/// The embedded server on a data directory the test may have written logs into (under
/// `patchbay-data`).
pub async fn spawn_app_on(data: TestSqlite, operations: patchbay::host::Operations) -> TestApp {
    let config = EmbeddedConfig {
        data_dir: data.dir.path().join("patchbay-data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        operations,
    };
    let server = EmbeddedServer::build(&config).await.unwrap();
    let address = server.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server.run_until_stopped(shutdown.clone()));
    TestApp {
        address,
        data,
        shutdown,
        running,
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Imports one apt `Packages` fixture through the catalog API.
pub async fn import_apt(
    client: &mut CatalogServiceClient<tonic::transport::Channel>,
    file: &str,
    suite: &str,
) {
    use catalog::import_apt_index_request::Part;
    let data = std::fs::read(fixture(file)).unwrap();
    let header = catalog::AptIndexHeader {
        file_name: file.into(),
        suite: suite.into(),
        origin: "deb.debian.org/debian".into(),
        ..Default::default()
    };
    let messages = vec![
        catalog::ImportAptIndexRequest {
            part: Some(Part::Header(header)),
        },
        catalog::ImportAptIndexRequest {
            part: Some(Part::Chunk(data)),
        },
    ];
    let summary = client
        .import_apt_index(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert!(summary.problems.is_empty(), "{:?}", summary.problems);
}

/// Starts a WSUS sync and polls it until it is no longer running (at most 15 s).
pub async fn sync_wsus(
    client: &mut patchbay_proto::wsus::v1::wsus_service_client::WsusServiceClient<
        tonic::transport::Channel,
    >,
) -> patchbay_proto::wsus::v1::SyncRun {
    use patchbay_proto::wsus::v1 as wsus;
    let mut run = client
        .start_sync(wsus::StartSyncRequest {})
        .await
        .unwrap()
        .into_inner();
    for _ in 0..300 {
        if run.state != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        run = client
            .get_run(wsus::GetRunRequest {
                run_id: run.run_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
    }
    run
}
