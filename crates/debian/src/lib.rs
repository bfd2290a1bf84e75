//! Debian/Ubuntu package metadata without apt: dpkg version ordering, `Packages`/`status`/`Release` parsing, compressed apt lists, and upgradable packages.
//!
//! The catalog imports apt `Packages` indexes ([`read_packages_file`], [`IndexOrigin`],
//! [`parse_release`]); the agent reads dpkg's `status` database ([`read_status_file`]); the
//! scanner asks which installed packages have a newer candidate ([`upgradable`],
//! [`CandidateIndex`]). Parsing is pure; only [`read`] touches files.

pub mod arch;
pub mod deb822;
pub mod origin;
pub mod packages;
pub mod read;
pub mod upgrade;
pub mod version;

pub use arch::{Architecture, ArchitectureError};
pub use deb822::{Field, ParseError, Stanza, StanzaReader, parse_stanzas};
pub use origin::{IndexOrigin, OriginError, Release, parse_release};
pub use packages::{
    InstalledPackage, PackageEntry, PackageStatus, Parsed, State, Want, parse_packages,
    parse_status, read_packages, read_status,
};
pub use read::{
    Compression, IndexReader, LimitExceeded, ReadError, ReadOptions, UnsupportedFormat, decompress,
    open_index, read_index_bytes, read_packages_file, read_release_file, read_status_file,
};
pub use upgrade::{CandidateIndex, Upgrade, native_architecture, upgradable};
pub use version::{DebianVersion, PolicyViolation, VersionError};
