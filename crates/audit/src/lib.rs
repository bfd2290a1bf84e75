//! Reading the services' logs for auditors: which events a query selects, and each event's
//! protobuf payload decoded to readable JSON with its metadata.

pub mod decode;
pub mod filter;

pub use decode::{EventDecoder, audit_event};
pub use filter::{EventFilter, FilterError};
