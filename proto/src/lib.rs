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

pub mod system {
    pub mod v1 {
        tonic::include_proto!("patchbay.system.v1");
    }
}
