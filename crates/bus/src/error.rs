//! The bus error type.

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS could not be reached, or a request to it failed or timed out.
    #[error("NATS {operation} failed: {reason}")]
    Nats {
        operation: &'static str,
        reason: String,
    },
    /// The in-process bus's SQLite storage failed.
    #[error("in-process bus storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("in-process bus migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A name or subject the caller passed cannot be used.
    #[error("{0}")]
    InvalidInput(String),
    /// A delivered message is not a Patchbay event envelope.
    #[error("message on '{subject}' is not a Patchbay event: {reason}")]
    Malformed { subject: String, reason: String },
    /// The event store failed while relaying or consuming.
    #[error(transparent)]
    Store(#[from] patchbay_eventstore::EventStoreError),
}

impl BusError {
    pub(crate) fn nats(operation: &'static str, error: impl std::fmt::Display) -> Self {
        BusError::Nats {
            operation,
            reason: error.to_string(),
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            BusError::Nats { .. } | BusError::Storage(_) => true,
            BusError::Store(error) => error.is_transient(),
            _ => false,
        }
    }
}
