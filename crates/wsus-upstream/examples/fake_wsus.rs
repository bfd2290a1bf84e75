//! Runs the fake upstream WSUS until Ctrl-C, to try `patchbay wsus` against it:
//! `cargo run -p patchbay-wsus-upstream --example fake_wsus [-- UPDATES]` prints its URL. With no
//! argument it serves the small sample catalog; with a number, that many generated updates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example: failing loudly is the point

use patchbay_wsus_upstream::{FakeUpstream, FixtureCatalog, UpstreamOptions};

#[tokio::main]
async fn main() {
    let catalog = match std::env::args().nth(1) {
        Some(count) => {
            FixtureCatalog::generated(count.parse().expect("UPDATES must be a number"), 1)
        }
        None => FixtureCatalog::sample(),
    };
    let upstream = FakeUpstream::start(catalog, UpstreamOptions::default())
        .await
        .expect("start the fake upstream");
    println!("fake upstream WSUS at {}", upstream.url());
    println!(
        "  patchbay wsus config set --upstream {} --schedule manual",
        upstream.url()
    );
    println!("  patchbay wsus sync --wait");
    tokio::signal::ctrl_c().await.expect("wait for Ctrl-C");
    upstream.shutdown().await;
}
