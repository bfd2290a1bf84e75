//! Pure catalog logic: `decide(state, command) -> events` and `evolve(state, event) -> state`.

mod id;
mod update;
mod vulnerability;

pub use id::{CveId, UpdateId};
pub use update::{UpdateCommand, UpdateState, decide, evolve};
pub use vulnerability::{VulnerabilityState, decide_vulnerability, evolve_vulnerability};

/// What a catalog command can fail with; each says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("update '{0}' is not in the catalog")]
    UnknownUpdate(String),
    #[error("update '{0}' has expired and cannot change any more")]
    Expired(String),
}
