//! Importers that turn a source's data (CISA KEV JSON, apt indexes, update manifests) into catalog commands.

pub mod apt;
pub mod kev;
pub mod manifest;
