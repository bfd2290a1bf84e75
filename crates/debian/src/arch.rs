//! Debian architecture names as they appear in `Architecture:` fields (`amd64`, `all`, ...).

use std::fmt;
use std::str::FromStr;

/// The `Architecture` of a binary package, or a wildcard of a source package.
///
/// Build one with [`str::parse`]: it maps the well-known names to their variants, so that
/// `Other` only ever holds names without a variant of their own. Names are case-sensitive, as in
/// dpkg (`AMD64` is `Other("AMD64")`, not `Amd64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Architecture {
    /// Architecture-independent packages.
    All,
    /// The wildcard for "any architecture", used by source packages.
    Any,
    Amd64,
    Arm64,
    Armel,
    Armhf,
    I386,
    Mips64el,
    Ppc64el,
    Riscv64,
    S390x,
    /// A valid name without a variant of its own, e.g. `loong64` or `hurd-amd64`.
    Other(String),
}

/// Why a string is not an architecture name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchitectureError {
    #[error("architecture name is empty; expected a name such as 'amd64' or 'all'")]
    Empty,
    #[error(
        "architecture name {name:?} is not valid: it must start with a letter or digit and contain only letters, digits and '-'"
    )]
    Invalid { name: String },
}

impl Architecture {
    /// The name as written in control files.
    pub fn as_str(&self) -> &str {
        match self {
            Architecture::All => "all",
            Architecture::Any => "any",
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
            Architecture::Armel => "armel",
            Architecture::Armhf => "armhf",
            Architecture::I386 => "i386",
            Architecture::Mips64el => "mips64el",
            Architecture::Ppc64el => "ppc64el",
            Architecture::Riscv64 => "riscv64",
            Architecture::S390x => "s390x",
            Architecture::Other(name) => name,
        }
    }

    /// True for `all`.
    pub fn is_all(&self) -> bool {
        matches!(self, Architecture::All)
    }
}

impl FromStr for Architecture {
    type Err = ArchitectureError;

    /// Accepts what dpkg's `dpkg_arch_name_is_illegal` accepts: an ASCII letter or digit followed
    /// by letters, digits and hyphens.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let Some(first) = name.chars().next() else {
            return Err(ArchitectureError::Empty);
        };
        let valid = first.is_ascii_alphanumeric()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(ArchitectureError::Invalid {
                name: name.to_owned(),
            });
        }
        Ok(match name {
            "all" => Architecture::All,
            "any" => Architecture::Any,
            "amd64" => Architecture::Amd64,
            "arm64" => Architecture::Arm64,
            "armel" => Architecture::Armel,
            "armhf" => Architecture::Armhf,
            "i386" => Architecture::I386,
            "mips64el" => Architecture::Mips64el,
            "ppc64el" => Architecture::Ppc64el,
            "riscv64" => Architecture::Riscv64,
            "s390x" => Architecture::S390x,
            other => Architecture::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_round_trip() {
        for name in [
            "all", "any", "amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el",
            "riscv64", "s390x",
        ] {
            let arch: Architecture = name.parse().unwrap();
            assert!(!matches!(arch, Architecture::Other(_)), "{name}");
            assert_eq!(arch.to_string(), name);
        }
    }

    #[test]
    fn unknown_valid_names_are_kept() {
        assert_eq!(
            "loong64".parse::<Architecture>(),
            Ok(Architecture::Other("loong64".to_owned()))
        );
        assert_eq!(
            "hurd-amd64".parse::<Architecture>().unwrap().as_str(),
            "hurd-amd64"
        );
        assert_eq!(
            "AMD64".parse::<Architecture>(),
            Ok(Architecture::Other("AMD64".to_owned()))
        );
    }

    #[test]
    fn invalid_names_are_errors() {
        assert_eq!("".parse::<Architecture>(), Err(ArchitectureError::Empty));
        for name in [
            "amd 64",
            " amd64",
            "-amd64",
            "amd64,i386",
            "amd64\n",
            "ämd64",
        ] {
            assert!(
                matches!(
                    name.parse::<Architecture>(),
                    Err(ArchitectureError::Invalid { .. })
                ),
                "{name:?}"
            );
        }
    }
}
