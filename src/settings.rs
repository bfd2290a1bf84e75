//! The settings file of `patchbay server` and `patchbay serve`: every setting comes from a flag, a
//! `PATCHBAY_*` variable or this file, in that order of precedence, then the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::cli::LogFormatArg;

/// A TOML file whose keys are the long flag names with underscores (`database_url = "..."`).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: Option<LogFormatArg>,
    pub database_url: Option<String>,
    pub database_max_connections: Option<u32>,
    pub nats_url: Option<String>,
    pub subject_prefix: Option<String>,
    pub content_dir: Option<PathBuf>,
    pub shutdown_timeout: Option<u64>,
    pub snapshot_every: Option<u64>,
}

/// Why the settings file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings file {path}: {source}; check --config / PATCHBAY_CONFIG")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the settings file {path} is not valid: {message}; keys are the long flag names with underscores, see docs/deployment.md"
    )]
    Invalid { path: PathBuf, message: String },
}

impl SettingsFile {
    /// Reads `path`; a missing or unreadable file, an unknown key or a wrong value is an error.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| SettingsError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|error| error.message().to_owned())
    }
}

/// Sets `value` from the settings file unless the command line or the environment gave argument
/// `id` (so a flag beats a variable, which beats the file, which beats the default).
pub fn layer<T>(matches: &ArgMatches, id: &str, value: &mut T, from_file: Option<T>) {
    let given = matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    if !given && let Some(from_file) = from_file {
        *value = from_file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses() {
        let file = SettingsFile::parse(
            r#"
            data_dir = "/var/lib/patchbay"
            listen = "0.0.0.0:50051"
            metrics_listen = "0.0.0.0:9464"
            log_format = "json"
            database_url = "postgres://db/catalog"
            database_max_connections = 4
            nats_url = "nats://nats:4222"
            subject_prefix = "acme"
            content_dir = "/content"
            shutdown_timeout = 15
            "#,
        )
        .unwrap();
        assert_eq!(file.listen, Some("0.0.0.0:50051".parse().unwrap()));
        assert_eq!(file.log_format, Some(LogFormatArg::Json));
        assert_eq!(file.shutdown_timeout, Some(15));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let error = SettingsFile::parse("databse_url = \"x\"").unwrap_err();
        assert!(error.contains("databse_url"), "{error}");
        assert!(error.contains("database_url"), "{error}");
    }

    #[test]
    fn a_wrong_value_is_refused() {
        let error = SettingsFile::parse("listen = \"not an address\"").unwrap_err();
        assert!(error.contains("address"), "{error}");
    }

    #[test]
    fn a_missing_file_says_which() {
        let error = SettingsFile::load(Path::new("/nonexistent/patchbay.toml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/patchbay.toml"));
    }
}
