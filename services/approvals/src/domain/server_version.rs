//! Whether an update needs a newer Patchbay server than the running one (semver).

use semver::Version;

/// Why an update cannot be approved on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRequirement {
    /// The minimum version as the catalog states it.
    pub required: String,
    /// The stated version could not be parsed: treated as needing a newer server.
    pub unparsable: bool,
    /// The running server's version.
    pub running: String,
}

/// The update's requirement if `min_server_version` is newer than `running` (or unparsable); `None`
/// when the running server can install it. An empty minimum means any server.
///
/// `2` and `2.1` are read as `2.0.0` and `2.1.0`: catalogs often leave the trailing parts out.
pub fn needs_newer_server(
    min_server_version: &str,
    running: &Version,
) -> Option<ServerRequirement> {
    let stated = min_server_version.trim();
    if stated.is_empty() {
        return None;
    }
    match parse_lenient(stated) {
        Some(min) if min <= *running => None,
        parsed => Some(ServerRequirement {
            required: stated.to_owned(),
            unparsable: parsed.is_none(),
            running: running.to_string(),
        }),
    }
}

fn parse_lenient(version: &str) -> Option<Version> {
    let version = version.strip_prefix('v').unwrap_or(version);
    Version::parse(version).ok().or_else(|| {
        let padded = match version.matches('.').count() {
            0 => format!("{version}.0.0"),
            1 => format!("{version}.0"),
            _ => return None,
        };
        Version::parse(&padded).ok()
    })
}

/// The higher of two stated versions; a parsable one wins over an unparsable one.
pub(crate) fn higher(a: &str, b: &str) -> String {
    match (parse_lenient(a), parse_lenient(b)) {
        (Some(x), Some(y)) if y > x => b.to_owned(),
        (None, Some(_)) => b.to_owned(),
        _ => a.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Version {
        Version::new(0, 4, 2)
    }

    #[test]
    fn an_older_equal_or_empty_minimum_is_installable() {
        for min in ["", " ", "0.4.2", "0.4.1", "0.1", "0", "v0.3.0"] {
            assert_eq!(needs_newer_server(min, &running()), None, "{min:?}");
        }
    }

    #[test]
    fn a_newer_minimum_needs_a_newer_server() {
        for min in ["0.4.3", "0.5", "1", "1.0.0-rc.1"] {
            let requirement = needs_newer_server(min, &running()).unwrap();
            assert_eq!(
                (requirement.required.as_str(), requirement.unparsable),
                (min, false)
            );
        }
        // A pre-release of the running version is older than it.
        assert_eq!(needs_newer_server("0.4.2-beta.1", &running()), None);
    }

    #[test]
    fn an_unparsable_minimum_is_treated_as_newer_and_said_so() {
        let requirement = needs_newer_server("fourteen", &running()).unwrap();
        assert!(requirement.unparsable);
        assert_eq!(higher("fourteen", "1.0.0"), "1.0.0");
        assert_eq!(higher("2.0.0", "1.0.0"), "2.0.0");
    }
}
