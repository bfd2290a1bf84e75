//! Spawns the embedded server on a free port with a data directory of its own.

use std::net::SocketAddr;

use patchbay::embedded::{EmbeddedConfig, EmbeddedServer};
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
    let data = TestSqlite::new();
    let config = EmbeddedConfig {
        data_dir: data.dir.path().join("patchbay-data"),
        listen: "127.0.0.1:0".parse().unwrap(),
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
