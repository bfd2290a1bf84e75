//! Wire encodings of simple values: GUIDs, xsd:boolean, xsd:dateTime and base64.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use chrono::{DateTime, NaiveDateTime, Timelike as _, Utc};

/// Standard alphabet, padding optional: the spec's samples (and some proxies) cut base64 values.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A GUID in the spec's form (2.2.5.1), lowercased; `None` when `text` is not one.
pub fn normalize_guid(text: &str) -> Option<String> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let well_formed = bytes.iter().enumerate().all(|(index, byte)| match index {
        8 | 13 | 18 | 23 => *byte == b'-',
        _ => byte.is_ascii_hexdigit(),
    });
    well_formed.then(|| text.to_ascii_lowercase())
}

/// xsd:boolean: "true", "false", "1" or "0".
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// xsd:dateTime as .NET writes it: "2006-06-08T19:32:23.7190987Z", with or without the
/// fraction, and with "Z", an offset, or no zone (read as UTC).
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(zoned) = DateTime::parse_from_rfc3339(text) {
        return Some(zoned.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// xsd:dateTime with .NET's seven fractional digits, so a cookie goes back as it came.
pub(crate) fn format_datetime(time: &DateTime<Utc>) -> String {
    // Leap seconds show as nanosecond >= 1e9; .NET has no such value.
    let ticks = time.nanosecond().min(999_999_999) / 100;
    format!("{}.{ticks:07}Z", time.format("%Y-%m-%dT%H:%M:%S"))
}

/// Decodes base64 text, ignoring whitespace (values arrive wrapped) and surplus padding.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64_LENIENT.decode(compact.trim_end_matches('='))
}

/// Encodes bytes as padded standard base64.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_validated_and_lowercased() {
        assert_eq!(
            normalize_guid("ADB2FE48-0B2E-451e-8FC8-44B29845B0C6").as_deref(),
            Some("adb2fe48-0b2e-451e-8fc8-44b29845b0c6")
        );
        for bad in [
            "",
            "adb2fe48-0b2e-451e-8fc8-44b29845b0c",
            "{adb2fe48-0b2e-451e-8fc8-44b29845b0c6}",
            "adb2fe48x0b2e-451e-8fc8-44b29845b0c6",
            "gdb2fe48-0b2e-451e-8fc8-44b29845b0c6",
        ] {
            assert_eq!(normalize_guid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn datetimes_round_trip_with_seven_digits() {
        let cookie_time = "2006-06-08T19:32:23.7190987Z";
        let parsed = parse_datetime(cookie_time).unwrap();
        assert_eq!(format_datetime(&parsed), cookie_time);
        for other in [
            "2006-06-08T19:32:23Z",
            "2006-06-08T19:32:23",
            "2006-06-08T19:32:23.719",
            "2006-06-08T21:32:23+02:00",
        ] {
            let time = parse_datetime(other).unwrap();
            assert_eq!(
                time.format("%Y-%m-%d %H:%M:%S").to_string(),
                "2006-06-08 19:32:23"
            );
        }
        assert_eq!(
            parse_datetime("9999-12-31T23:59:59.9999999").map(|t| t.timestamp() > 0),
            Some(true)
        );
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn base64_tolerates_wrapping_and_cut_padding() {
        assert_eq!(decode_base64("aGVs\n  bG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbA==").unwrap(), b"hell");
        assert!(decode_base64("a").is_err());
        assert!(decode_base64("a$b=").is_err());
    }
}
