//! `ScanCompleted` payloads encoded straight from the engine's borrowed [`Findings`]: the bytes prost writes for the equal message, without building it first.
//!
//! A scan run's events are almost all string copies: a device far behind has ~90 required updates
//! and ~590 vulnerabilities, and the prost message for them is ~2,900 owned strings and vectors
//! that exist only to be encoded and dropped. Here every string goes from the index or the device
//! into the payload once. The layout is `ScanCompleted` (schema version 2) of
//! `proto/patchbay/scanning/v1/events.proto`, proto3 as prost encodes it: fields in tag order,
//! empty strings, zeros and `false` left out, each element of a repeated string a field of its
//! own, repeated integers packed.
//! `tests::equals_prost` and the engine's property test hold it to prost byte for byte.

use patchbay_eventstore::NewEvent;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::engine::Findings;
use crate::events::schema_version;

/// The event type of the events built here.
pub const SCAN_COMPLETED: &str = "ScanCompleted";

/// The fields of a `ScanCompleted` that do not come from the findings.
#[derive(Debug, Clone, Copy)]
pub struct ScanHeader<'a> {
    pub device_id: &'a str,
    pub task_id: &'a str,
    pub run: u64,
    pub catalog_position: u64,
}

/// The encoded `ScanCompleted` for `findings`.
///
/// One pass: each embedded message gets a one-byte length that is patched once its body is
/// written, and shifted in the rare case the length takes more bytes (a required update's body
/// usually does: ~190 bytes). Computing every length first, as before, walked the findings twice
/// and cost more than the shifts.
pub fn encode_scan_completed(header: &ScanHeader<'_>, findings: &Findings<'_>) -> Vec<u8> {
    // Typical sizes (a required update ~200 bytes, a vulnerability ~22), so that the buffer
    // rarely grows.
    let mut out = Vec::with_capacity(
        64 + header.device_id.len()
            + header.task_id.len()
            + findings.required_count() * 224
            + findings.exposures.len() * 24,
    );
    string(1, header.device_id, &mut out);
    string(2, header.task_id, &mut out);
    uint64(3, header.run, &mut out);
    for required in findings.required() {
        let body = begin_nested(4, &mut out);
        string(1, required.update_id, &mut out);
        string(2, required.package_or_product, &mut out);
        string(3, required.installed_version, &mut out);
        string(4, required.required_version, &mut out);
        string(5, required.architecture, &mut out);
        repeated(6, required.cve_ids(), &mut out);
        boolean(7, required.known_exploited, &mut out);
        end_nested(body, &mut out);
    }
    for vulnerability in findings.vulnerabilities() {
        let body = begin_nested(5, &mut out);
        string(1, vulnerability.cve_id, &mut out);
        boolean(2, vulnerability.known_exploited, &mut out);
        packed_u32(4, vulnerability.fixed_by_required(), &mut out);
        end_nested(body, &mut out);
    }
    uint64(6, header.catalog_position, &mut out);
    repeated(7, findings.problems().iter().map(String::as_str), &mut out);
    out
}

/// The `ScanCompleted` event for `findings`, ready to append (fresh event id; the caller stamps
/// actor and trace context), as `ScanningEvent::ScanCompleted(..).to_new_event()` would build it.
pub fn scan_completed_event(header: &ScanHeader<'_>, findings: &Findings<'_>) -> NewEvent {
    NewEvent::new(
        SCAN_COMPLETED,
        schema_version(SCAN_COMPLETED),
        encode_scan_completed(header, findings),
    )
}

/// A field's key. Every tag here is below 16, so a key is one byte; `encode_key` (a call and a
/// loop per key, ~2,900 keys per device) writes the same byte.
#[inline]
fn key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    let key = (tag << 3) | wire_type as u32;
    if key < 0x80 {
        out.push(key as u8);
    } else {
        encode_key(tag, wire_type, out);
    }
}

/// A varint; most here (lengths, positions) take one byte.
#[inline]
fn varint(value: u64, out: &mut Vec<u8>) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        encode_varint(value, out);
    }
}

fn delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    key(tag, WireType::LengthDelimited, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A packed `repeated uint32` (proto3's default), left out when empty as prost does.
fn packed_u32(tag: u32, values: impl Iterator<Item = u32> + Clone, out: &mut Vec<u8>) {
    let body: usize = values
        .clone()
        .map(|value| encoded_len_varint(value.into()))
        .sum();
    if body == 0 {
        return;
    }
    key(tag, WireType::LengthDelimited, out);
    varint(body as u64, out);
    for value in values {
        varint(value.into(), out);
    }
}

fn string(tag: u32, value: &str, out: &mut Vec<u8>) {
    if !value.is_empty() {
        delimited(tag, value.as_bytes(), out);
    }
}

fn repeated<'a>(tag: u32, values: impl Iterator<Item = &'a str>, out: &mut Vec<u8>) {
    for value in values {
        delimited(tag, value.as_bytes(), out);
    }
}

/// Starts an embedded message: its key and a one-byte length that [`end_nested`] patches. Returns
/// where the length byte is.
#[inline]
fn begin_nested(tag: u32, out: &mut Vec<u8>) -> usize {
    key(tag, WireType::LengthDelimited, out);
    out.push(0);
    out.len() - 1
}

/// Ends the embedded message whose length byte is at `at`: writes its body's length there, moving
/// the body up when the length needs more than one byte.
#[inline]
fn end_nested(at: usize, out: &mut Vec<u8>) {
    let body = out.len() - at - 1;
    if body < 0x80 {
        out[at] = body as u8;
        return;
    }
    let mut buffer = [0_u8; 10];
    let mut unused = &mut buffer[..];
    encode_varint(body as u64, &mut unused);
    let length_len = 10 - unused.len();
    out.resize(out.len() + length_len - 1, 0);
    out.copy_within(at + 1..at + 1 + body, at + length_len);
    out[at..at + length_len].copy_from_slice(&buffer[..length_len]);
}

fn uint64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        key(tag, WireType::Varint, out);
        varint(value, out);
    }
}

fn boolean(tag: u32, value: bool, out: &mut Vec<u8>) {
    if value {
        key(tag, WireType::Varint, out);
        out.push(1);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use patchbay_proto::scanning::v1 as pb;
    use prost::Message as _;

    use super::*;
    use crate::engine::{DeviceFindings, DeviceInventory, InstalledPackage, MatchingIndex};
    use crate::events::ScanningEvent;

    /// The message prost would encode for `findings`.
    pub(crate) fn prost_message(
        header: &ScanHeader<'_>,
        findings: &DeviceFindings,
    ) -> pb::ScanCompleted {
        pb::ScanCompleted {
            device_id: header.device_id.to_owned(),
            task_id: header.task_id.to_owned(),
            run: header.run,
            required: findings
                .required
                .iter()
                .map(|r| pb::RequiredUpdate {
                    update_id: r.update_id.clone(),
                    package_or_product: r.package_or_product.clone(),
                    installed_version: r.installed_version.clone(),
                    required_version: r.required_version.clone(),
                    architecture: r.architecture.clone(),
                    cve_ids: r.cve_ids.clone(),
                    known_exploited: r.known_exploited,
                })
                .collect(),
            // Version 2 names each fix by the position in `required` of its update's first entry
            // that carries the CVE.
            vulnerabilities: findings
                .vulnerabilities
                .iter()
                .map(|v| pb::ScanVulnerability {
                    cve_id: v.cve_id.clone(),
                    known_exploited: v.known_exploited,
                    fixed_by_required: v
                        .fixed_by
                        .iter()
                        .map(|id| {
                            let position = findings
                                .required
                                .iter()
                                .position(|r| r.update_id == *id && r.cve_ids.contains(&v.cve_id))
                                .expect("a fix is a required update carrying the CVE");
                            u32::try_from(position).unwrap()
                        })
                        .collect(),
                })
                .collect(),
            catalog_position: header.catalog_position,
            problems: findings.problems.clone(),
        }
    }

    fn debian(
        package: &str,
        version: &str,
        cves: &[&str],
    ) -> patchbay_proto::catalog::v1::UpdateDetails {
        use patchbay_proto::catalog::v1 as catalog;
        catalog::UpdateDetails {
            cve_ids: cves.iter().map(|&c| c.to_owned()).collect(),
            applicability: Some(catalog::update_details::Applicability::Debian(
                catalog::DebianPackage {
                    package: package.into(),
                    version: version.into(),
                    architecture: "amd64".into(),
                    suites: vec!["s".into()],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn equals_prost() {
        let mut index = MatchingIndex::new();
        index
            .upsert(
                "bash-2",
                &debian("bash", "5.2-2", &["CVE-2024-1", "CVE-2024-20000"]),
            )
            .unwrap();
        index
            .upsert("bash-3", &debian("bash", "5.2-3", &["CVE-2023-5"]))
            .unwrap();
        // A long id, so that a nested message's length takes two varint bytes.
        let long = format!("zsh-{}", "x".repeat(200));
        index
            .upsert(&long, &debian("zsh", "5.9-5", &["CVE-2024-1"]))
            .unwrap();
        index.set_known_exploited("CVE-2023-5", true);
        let device = DeviceInventory {
            native_architecture: "amd64".into(),
            packages: [("bash", "5.2-1"), ("zsh", "5.9-4"), ("broken", "1.0-")]
                .iter()
                .map(|&(name, version)| InstalledPackage {
                    name: name.into(),
                    version: version.into(),
                    architecture: "amd64".into(),
                })
                .collect(),
            ..Default::default()
        };
        let findings = index.findings(&device);
        assert_eq!(findings.required_count(), 2);
        assert_eq!(findings.problems().len(), 1);

        for header in [
            ScanHeader {
                device_id: "d1",
                task_id: "t1",
                run: 3,
                catalog_position: 300,
            },
            ScanHeader {
                device_id: "",
                task_id: "",
                run: 0,
                catalog_position: 0,
            },
        ] {
            let expected = prost_message(&header, &findings.to_device_findings());
            let encoded = encode_scan_completed(&header, &findings);
            assert_eq!(encoded, expected.encode_to_vec());
            assert_eq!(
                pb::ScanCompleted::decode(encoded.as_slice()).unwrap(),
                expected
            );
            let event = scan_completed_event(&header, &findings);
            let from_enum = ScanningEvent::ScanCompleted(expected).to_new_event();
            assert_eq!(
                (
                    event.event_type.as_str(),
                    event.schema_version,
                    &event.payload
                ),
                (
                    from_enum.event_type.as_str(),
                    from_enum.schema_version,
                    &from_enum.payload
                )
            );
        }

        let nothing = DeviceInventory::default();
        let header = ScanHeader {
            device_id: "d2",
            task_id: "t",
            run: 1,
            catalog_position: 1,
        };
        let empty = index.findings(&nothing);
        assert_eq!(
            encode_scan_completed(&header, &empty),
            prost_message(&header, &DeviceFindings::default()).encode_to_vec()
        );
    }

    #[test]
    fn a_nested_length_of_any_size_is_the_minimal_varint_before_its_body() {
        for body_len in [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_152] {
            let body: Vec<u8> = (0..body_len).map(|n| (n % 251) as u8).collect();
            let mut out = vec![9_u8];
            let at = begin_nested(4, &mut out);
            out.extend_from_slice(&body);
            end_nested(at, &mut out);

            let mut expected = vec![9_u8];
            encode_key(4, WireType::LengthDelimited, &mut expected);
            encode_varint(body_len as u64, &mut expected);
            expected.extend_from_slice(&body);
            assert!(out == expected, "body of {body_len} bytes");
        }
    }
}
