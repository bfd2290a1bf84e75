//! Authorization cookies and protocol cookies: opaque byte strings the server can verify later (fields plus a keyed SHA-256 tag).
//!
//! `CookieData` = `auth|<account guid>|<account name>|<expiry ms>|<identity generation>` and
//! `EncryptedData` = `cookie|<account guid>|<expiry ms>|<protocol version>|<identity generation>`,
//! each followed by 16 bytes of SHA-256(secret ‖ text). Nothing is encrypted: the tag only
//! proves the bytes came from this server (MS-WSUSSS 2.2.4.7/2.2.4.8 leave the format open).

use sha2::{Digest as _, Sha256};
use thiserror::Error;

const TAG_LEN: usize = 16;

/// What an authorization cookie (`CookieData`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizationClaims {
    pub account_guid: String,
    pub expires_at_ms: i64,
    pub generation: u64,
}

/// What a protocol cookie (`EncryptedData`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CookieClaims {
    pub account_guid: String,
    pub expires_at_ms: i64,
    pub protocol_version: String,
    pub generation: u64,
}

/// Why cookie bytes were refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum CookieError {
    #[error("the cookie data was not issued by this server")]
    Forged,
    #[error("the cookie data is not in this server's format")]
    Garbled,
}

/// Issues and verifies cookies with a per-server secret.
#[derive(Debug)]
pub(crate) struct CookieAuthority {
    secret: [u8; 32],
}

impl CookieAuthority {
    pub fn new() -> Self {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self { secret }
    }

    pub fn issue_authorization(
        &self,
        account_guid: &str,
        account_name: &str,
        expires_at_ms: i64,
        generation: u64,
    ) -> Vec<u8> {
        let account_name = account_name.replace('|', "_");
        self.seal(format!(
            "auth|{account_guid}|{account_name}|{expires_at_ms}|{generation}"
        ))
    }

    pub fn verify_authorization(&self, data: &[u8]) -> Result<AuthorizationClaims, CookieError> {
        let fields = self.open(data, "auth", 5)?;
        Ok(AuthorizationClaims {
            account_guid: fields[1].to_owned(),
            expires_at_ms: fields[3].parse().map_err(|_| CookieError::Garbled)?,
            generation: fields[4].parse().map_err(|_| CookieError::Garbled)?,
        })
    }

    pub fn issue_cookie(&self, claims: &CookieClaims) -> Vec<u8> {
        self.seal(format!(
            "cookie|{}|{}|{}|{}",
            claims.account_guid, claims.expires_at_ms, claims.protocol_version, claims.generation
        ))
    }

    pub fn verify_cookie(&self, data: &[u8]) -> Result<CookieClaims, CookieError> {
        let fields = self.open(data, "cookie", 5)?;
        Ok(CookieClaims {
            account_guid: fields[1].to_owned(),
            expires_at_ms: fields[2].parse().map_err(|_| CookieError::Garbled)?,
            protocol_version: fields[3].to_owned(),
            generation: fields[4].parse().map_err(|_| CookieError::Garbled)?,
        })
    }

    fn tag(&self, text: &[u8]) -> [u8; TAG_LEN] {
        let digest = Sha256::new()
            .chain_update(self.secret)
            .chain_update(text)
            .finalize();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }

    fn seal(&self, text: String) -> Vec<u8> {
        let mut bytes = text.into_bytes();
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        bytes
    }

    fn open<'a>(
        &self,
        data: &'a [u8],
        kind: &str,
        field_count: usize,
    ) -> Result<Vec<&'a str>, CookieError> {
        if data.len() <= TAG_LEN {
            return Err(CookieError::Garbled);
        }
        let (text, tag) = data.split_at(data.len() - TAG_LEN);
        if self.tag(text) != tag {
            return Err(CookieError::Forged);
        }
        let text = std::str::from_utf8(text).map_err(|_| CookieError::Garbled)?;
        let fields: Vec<&str> = text.split('|').collect();
        if fields.len() != field_count || fields[0] != kind {
            return Err(CookieError::Garbled);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_tampering() {
        let authority = CookieAuthority::new();
        let claims = CookieClaims {
            account_guid: "adb2fe48-0b2e-451e-8fc8-44b29845b0c6".into(),
            expires_at_ms: 1_700_000_000_000,
            protocol_version: "1.20".into(),
            generation: 2,
        };
        let mut bytes = authority.issue_cookie(&claims);
        assert_eq!(authority.verify_cookie(&bytes), Ok(claims));
        bytes[8] ^= 1;
        assert_eq!(authority.verify_cookie(&bytes), Err(CookieError::Forged));
        let auth = authority.issue_authorization("g", "dss.example.org", 5, 1);
        assert_eq!(authority.verify_cookie(&auth), Err(CookieError::Garbled));
        assert_eq!(
            CookieAuthority::new().verify_authorization(&auth),
            Err(CookieError::Forged)
        );
    }
}
