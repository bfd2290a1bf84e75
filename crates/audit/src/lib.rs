//! Reading the services' logs for auditors: which events a query selects, and each event's
//! protobuf payload decoded to readable JSON with its metadata.

pub mod decode;
pub mod filter;
pub mod state;
pub mod trail;

pub use decode::{EventDecoder, audit_event};
pub use filter::{EventFilter, FilterError};
pub use state::{StateError, StateQuery, parse_at, state_at};
pub use trail::{TrailError, TrailSubject, trail};
