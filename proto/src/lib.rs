//! Patchbay's protobuf messages and gRPC services, generated at build time from `proto/`.

#![allow(missing_debug_implementations, clippy::all)]

/// Encoded `FileDescriptorSet` of every Patchbay proto, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/patchbay_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("patchbay.common.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("patchbay.catalog.v1");
    }
}

pub mod scanning {
    pub mod v1 {
        tonic::include_proto!("patchbay.scanning.v1");
    }
}

pub mod approvals {
    pub mod v1 {
        tonic::include_proto!("patchbay.approvals.v1");
    }
}

pub mod installing {
    pub mod v1 {
        tonic::include_proto!("patchbay.installing.v1");
    }
}

pub mod wsus {
    pub mod v1 {
        tonic::include_proto!("patchbay.wsus.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("patchbay.audit.v1");
    }
}

pub mod system {
    pub mod v1 {
        tonic::include_proto!("patchbay.system.v1");
    }
}

/// gRPC metadata naming who makes a request (e.g. `user:alice`); recorded as the actor of the events
/// the request causes.
pub const ACTOR_HEADER: &str = "x-patchbay-actor";

/// The actor a request names in [`ACTOR_HEADER`] (at most 200 characters), or `user:anonymous`.
pub fn request_actor<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(ACTOR_HEADER)
        .and_then(|value| value.to_str().ok())
        .map_or_else(
            || "user:anonymous".to_owned(),
            |value| value.chars().take(200).collect(),
        )
}

/// A stored event that cannot be turned back into a service's event enum.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    #[error(
        "{event_type} v{schema_version} is newer than this Patchbay understands; upgrade Patchbay"
    )]
    FutureVersion {
        event_type: String,
        schema_version: u32,
    },
    /// An old payload reached a decoder: it is read through a store opened without the service's
    /// upcasters, and decoding it as the current message would silently drop what moved.
    #[error(
        "{event_type} v{schema_version} was not upgraded to v{current_version} before decoding; \
         open the service's event store with its upcasters"
    )]
    NotUpcast {
        event_type: String,
        schema_version: u32,
        current_version: u32,
    },
    #[error("{event_type} payload does not decode: {source}")]
    Payload {
        event_type: String,
        source: prost::DecodeError,
    },
}

/// Declares a service's event enum over its protobuf messages, with the event type name (the variant
/// name, which is also the last token of the bus subject) and payload encoding in both directions.
#[macro_export]
macro_rules! event_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident($message:ty)),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $($variant($message)),*
        }

        impl $name {
            /// The stored event type: the variant's name.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),*
                }
            }

            /// The protobuf payload.
            pub fn encode_payload(&self) -> Vec<u8> {
                match self {
                    $(Self::$variant(message) => ::prost::Message::encode_to_vec(message)),*
                }
            }

            /// Decodes a stored event of `event_type`'s `current_version`: a newer one is from a
            /// newer Patchbay, an older one should have been upcast on read.
            pub fn decode_versioned(
                event_type: &str,
                schema_version: u32,
                current_version: u32,
                payload: &[u8],
            ) -> Result<Self, $crate::EventDecodeError> {
                if schema_version > current_version {
                    return Err($crate::EventDecodeError::FutureVersion {
                        event_type: event_type.to_owned(),
                        schema_version,
                    });
                }
                if schema_version < current_version {
                    return Err($crate::EventDecodeError::NotUpcast {
                        event_type: event_type.to_owned(),
                        schema_version,
                        current_version,
                    });
                }
                Self::decode_payload(event_type, payload)
                    .ok_or_else(|| $crate::EventDecodeError::UnknownType(event_type.to_owned()))?
                    .map_err(|source| $crate::EventDecodeError::Payload {
                        event_type: event_type.to_owned(),
                        source,
                    })
            }

            /// Decodes a payload of `event_type`; `None` if the type is not one of this enum's.
            pub fn decode_payload(
                event_type: &str,
                payload: &[u8],
            ) -> Option<Result<Self, ::prost::DecodeError>> {
                match event_type {
                    $(stringify!($variant) => Some(<$message as ::prost::Message>::decode(payload).map(Self::$variant)),)*
                    _ => None,
                }
            }
        }
    };
}
