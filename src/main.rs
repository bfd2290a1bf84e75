//! The `patchbay` binary: every service, the embedded server and the client in one executable.

use std::process::ExitCode;

/// Scans build many small strings on worker threads and free them elsewhere, where glibc's malloc
/// takes its slow path: mimalloc makes a fleet scan 1.6x faster (docs/scanning-engine.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    patchbay::cli::run().await
}
