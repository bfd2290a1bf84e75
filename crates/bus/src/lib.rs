//! Patchbay's event bus: one API over NATS JetStream (production) and an in-process bus (embedded),
//! the outbox relay that publishes a service's log, and the consumer runner that handles each event
//! exactly once per consumer through the store's inbox.

mod bus;
mod envelope;
mod error;
mod in_process;
mod lag;
mod nats;
mod relay;
mod runner;
mod subject;

pub use bus::{Bus, BusConsumer, ConsumerConfig, Delivery, PendingAcks, PublishAck};
pub use envelope::{
    BusMessage, DEAD_LETTER_REASON, IncomingEvent, MESSAGE_ID, ORIGINAL_SUBJECT, TRACEPARENT,
    TRACESTATE, decode_envelope, encode_envelope, stamped,
};
pub use error::BusError;
pub use in_process::{InProcessBus, InProcessConsumer};
pub use lag::ConsumerLag;
pub use nats::{NatsBus, NatsConsumer};
pub use relay::{RELAY_CHECKPOINT, Relay};
pub use runner::{ConsumerRunner, EventHandler, HandlerError, RunStats};
pub use subject::{DEAD_LETTER_SERVICE, Subjects, subject_matches, validate_token};
