//! `patchbay serve` as separate processes: start one on free ports, ask its gRPC health and its
//! metrics endpoint, stop it with SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A `patchbay serve` process, killed when dropped.
pub struct Service {
    child: Child,
    pub address: SocketAddr,
    pub metrics: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub async fn serve(service: &str, database_url: &str, nats: &str, prefix: &str) -> Service {
    serve_at(service, database_url, nats, prefix, free_address()).await
}

pub async fn serve_at(
    service: &str,
    database_url: &str,
    nats: &str,
    prefix: &str,
    address: SocketAddr,
) -> Service {
    let metrics = free_address();
    let child = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args([
            "serve",
            service,
            "--database-url",
            database_url,
            "--nats-url",
            nats,
            "--subject-prefix",
            prefix,
        ])
        .args(["--listen", &address.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        // Several tests run a handful of processes each against one PostgreSQL server (100
        // connections by default): keep each pool small.
        .args(["--database-max-connections", "4"])
        .env("PATCHBAY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let process = Service {
        child,
        address,
        metrics,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("patchbay serve {service} did not start listening on {address}");
}

impl Service {
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The gRPC health status of `service` ("" is readiness, "liveness" liveness).
    pub async fn health(&self, service: &str) -> Option<ServingStatus> {
        let channel = tonic::transport::Endpoint::from_shared(self.url())
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut client = HealthClient::new(channel);
        let response = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(response.into_inner().status).ok()
    }

    /// Waits until the process reports itself ready (databases, NATS, consumers caught up).
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.health("").await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not become ready", self.address);
    }

    /// The Prometheus metrics text.
    pub async fn scrape(&self) -> String {
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: patchbay\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        body.to_owned()
    }

    /// Sends SIGTERM and waits for the process to exit; panics if it takes longer than `limit`.
    pub async fn terminate(mut self, limit: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the process did not exit within {limit:?} of SIGTERM");
    }
}

/// The value of the metric line that starts with `series` (name and labels), if it is there.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
