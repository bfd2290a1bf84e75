//! The `patchbay` binary: every service, the embedded server and the client in one executable.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    patchbay::cli::run().await
}
