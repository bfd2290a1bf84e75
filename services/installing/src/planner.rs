//! The planner loop: whenever the installing log moves on, decide on what changed and commit the
//! decisions together with the planner's marker, so a crash re-plans exactly what was not committed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::{Installing, InstallingServiceError};

/// Plans until `shutdown`; a failed step is logged and retried with a growing pause.
pub async fn run_planner(
    installing: Installing,
    shutdown: CancellationToken,
) -> Result<(), InstallingServiceError> {
    let mut changes = installing.changes();
    let mut pause = Duration::from_millis(50);
    loop {
        match installing.plan_once().await {
            // More may be dirty (a conflict, or facts that arrived meanwhile): go again at once.
            Ok(true) => {
                pause = Duration::from_millis(50);
                continue;
            }
            Ok(false) => pause = Duration::from_millis(50),
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, "install planning failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(error) => return Err(error),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            // A safety net: planning is cheap when nothing is dirty.
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
