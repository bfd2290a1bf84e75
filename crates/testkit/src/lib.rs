//! Test helpers shared by every crate: a fresh PostgreSQL database per test, the NATS URL, temporary
//! SQLite files, and the rule that under `CI=true` the real-service tests must run, not skip.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

mod proxy;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};

pub use proxy::TcpProxy;

/// Environment variable naming the PostgreSQL server the tests may create databases on.
pub const DATABASE_URL_VAR: &str = "PATCHBAY_TEST_DATABASE_URL";
/// Environment variable naming the NATS server (with JetStream) the tests may use.
pub const NATS_URL_VAR: &str = "PATCHBAY_TEST_NATS_URL";

/// Reads a real-service URL from the environment. Without it the test is skipped, except under
/// `CI=true`, where a missing service is a failure: CI must never pass by skipping.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("{var} is not set, and CI=true requires the real-service tests to run")
        }
        _ => {
            eprintln!("skipping: set {var} to run this test against a real service");
            None
        }
    }
}

/// The NATS URL for tests, or None (skip) outside CI.
pub fn nats_url() -> Option<String> {
    service_url(NATS_URL_VAR)
}

/// A database created for one test and dropped when the value is dropped.
#[derive(Debug)]
pub struct TestPostgres {
    /// URL of the fresh database.
    pub url: String,
    admin: PgConnectOptions,
    name: String,
}

impl TestPostgres {
    /// Creates a fresh database on the server named by `PATCHBAY_TEST_DATABASE_URL`, or returns None
    /// (skip) when it is unset outside CI.
    pub async fn create() -> Option<Self> {
        let server = service_url(DATABASE_URL_VAR)?;
        Some(Self::create_on(&server).await)
    }

    /// Creates a fresh database on the PostgreSQL server at `server` (benchmarks name their own).
    pub async fn create_on(server: &str) -> Self {
        let admin = PgConnectOptions::from_str(server)
            .unwrap_or_else(|e| panic!("{server} is not a PostgreSQL URL: {e}"));
        let name = format!("patchbay_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn: PgConnection = admin
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {server}: {e}"));
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        Self {
            url: with_database(server, &name),
            admin,
            name,
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn: PgConnection = admin.connect().await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop a test database");
        }
    }
}

/// Replaces the database name in a PostgreSQL URL, keeping user, host and query parameters.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Replaces `host:port` in a URL (`postgres://user@host:port/db`, `nats://host:port`), keeping the rest.
pub fn with_address(url: &str, address: std::net::SocketAddr) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host_start = rest[..authority_end].rfind('@').map_or(0, |i| i + 1);
    format!(
        "{}{}{address}{}",
        &url[..authority_start],
        &rest[..host_start],
        &rest[authority_end..]
    )
}

/// A temporary directory holding SQLite files; removed when dropped.
#[derive(Debug)]
pub struct TestSqlite {
    pub dir: tempfile::TempDir,
}

impl TestSqlite {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    /// A `sqlite://` URL for `name` inside the directory.
    pub fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.dir.path().join(name).display())
    }
}

impl Default for TestSqlite {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn address_is_replaced_and_the_rest_kept() {
        let proxy: std::net::SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(
            super::with_address("postgres://postgres@127.0.0.1:5432/db?x=1", proxy),
            "postgres://postgres@127.0.0.1:6000/db?x=1"
        );
        assert_eq!(
            super::with_address("nats://127.0.0.1:4222", proxy),
            "nats://127.0.0.1:6000"
        );
    }

    #[test]
    fn database_is_replaced_and_parameters_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
