//! Subject and stream names: `<prefix>.<service>.<event_type>`, one stream per producing service.

use crate::error::BusError;

/// Names on the bus for one deployment. Tests use a unique prefix so they never share streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: "patchbay".to_owned(),
        }
    }
}

/// The stream that holds messages no consumer could handle.
pub const DEAD_LETTER_SERVICE: &str = "dlq";

impl Subjects {
    pub fn new(prefix: &str) -> Result<Self, BusError> {
        validate_token("subject prefix", prefix)?;
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.<service>.<event_type>`.
    pub fn event(&self, service: &str, event_type: &str) -> String {
        format!("{}.{service}.{event_type}", self.prefix)
    }

    /// Every subject of one service's stream: `<prefix>.<service>.>`.
    pub fn service_wildcard(&self, service: &str) -> String {
        format!("{}.{service}.>", self.prefix)
    }

    /// Where a consumer's poison messages go: `<prefix>.dlq.<consumer>`.
    pub fn dead_letter(&self, consumer: &str) -> String {
        format!("{}.{DEAD_LETTER_SERVICE}.{consumer}", self.prefix)
    }

    /// JetStream stream name of a service: `PATCHBAY_WSUS_SYNC` for `wsus-sync`.
    pub fn stream_name(&self, service: &str) -> String {
        format!("{}_{service}", self.prefix)
            .to_ascii_uppercase()
            .replace('-', "_")
    }
}

/// Service names, consumer names and prefixes become subject tokens and JetStream names.
pub fn validate_token(what: &str, token: &str) -> Result<(), BusError> {
    let valid = !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(BusError::InvalidInput(format!(
            "{what} {token:?} is not valid: use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"
        )))
    }
}

/// NATS subject matching: `*` matches one token, a final `>` matches one or more.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for filter_token in filter.split('.') {
        match (filter_token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(token)) if literal == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let subjects = Subjects::default();
        assert_eq!(
            subjects.event("approvals", "UpdateApproved"),
            "patchbay.approvals.UpdateApproved"
        );
        assert_eq!(subjects.service_wildcard("catalog"), "patchbay.catalog.>");
        assert_eq!(subjects.stream_name("wsus-sync"), "PATCHBAY_WSUS_SYNC");
        assert_eq!(
            subjects.dead_letter("installing-on-scan"),
            "patchbay.dlq.installing-on-scan"
        );
    }

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("p.a.>", "p.a.E"));
        assert!(subject_matches("p.a.>", "p.a.E.x"));
        assert!(!subject_matches("p.a.>", "p.a"));
        assert!(subject_matches("p.*.E", "p.a.E"));
        assert!(!subject_matches("p.*.E", "p.a.F"));
        assert!(subject_matches("p.a.E", "p.a.E"));
        assert!(!subject_matches("p.a.E", "p.a.E.x"));
        assert!(!subject_matches("p.a.E.x", "p.a.E"));
    }

    #[test]
    fn tokens_that_would_break_subjects_are_refused() {
        for bad in ["", "a.b", "a b", "*", ">", &"x".repeat(65)] {
            assert!(validate_token("consumer", bad).is_err(), "{bad:?}");
        }
        assert!(validate_token("consumer", "installing-on_scan1").is_ok());
    }
}
