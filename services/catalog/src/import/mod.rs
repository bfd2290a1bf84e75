//! Importers that turn a source's data (CISA KEV JSON, apt indexes) into catalog commands.

pub mod apt;
pub mod kev;
