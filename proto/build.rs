//! Compiles the `.proto` files with protox (pure Rust), so building Patchbay needs no `protoc`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "patchbay/common/v1/envelope.proto",
    "patchbay/system/v1/system.proto",
    "patchbay/catalog/v1/events.proto",
    "patchbay/catalog/v1/catalog.proto",
    "patchbay/scanning/v1/events.proto",
    "patchbay/scanning/v1/scanning.proto",
    "patchbay/approvals/v1/events.proto",
    "patchbay/approvals/v1/approvals.proto",
    "patchbay/installing/v1/events.proto",
    "patchbay/installing/v1/installing.proto",
    "patchbay/wsus/v1/events.proto",
    "patchbay/wsus/v1/wsus.proto",
    "patchbay/audit/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The encoded descriptor set feeds the gRPC reflection service.
    std::fs::write(
        out_dir.join("patchbay_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Read models hold messages and are snapshotted with serde (docs/audit.md, "Snapshots").
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
