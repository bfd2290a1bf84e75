//! `ScanCompleted` payloads encoded straight from the engine's borrowed [`Findings`]: the bytes prost writes for the equal message, without building it first.
//!
//! A scan run's events are almost all string copies: a device far behind has ~90 required updates
//! and ~590 vulnerabilities, and the prost message for them is ~2,900 owned strings and vectors
//! that exist only to be encoded and dropped. Here every string goes from the index or the device
//! into the payload once. The layout is `ScanCompleted` of
//! `proto/patchbay/scanning/v1/events.proto`, proto3 as prost encodes it: fields in tag order,
//! empty strings, zeros and `false` left out, every element of a repeated field written.
//! `tests::equals_prost` and the engine's property test hold it to prost byte for byte.

use patchbay_eventstore::NewEvent;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::engine::{Findings, RequiredView, VulnerabilityView};
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
pub fn encode_scan_completed(header: &ScanHeader<'_>, findings: &Findings<'_>) -> Vec<u8> {
    let required_len: usize = findings
        .required()
        .map(|r| delimited_len(4, required_body_len(&r)))
        .sum();
    let vulnerabilities_len: usize = findings
        .vulnerabilities()
        .map(|v| delimited_len(5, vulnerability_body_len(&v)))
        .sum();
    let len = string_len(1, header.device_id)
        + string_len(2, header.task_id)
        + u64_len(3, header.run)
        + required_len
        + vulnerabilities_len
        + u64_len(6, header.catalog_position)
        + repeated_len(7, findings.problems().iter().map(String::as_str));

    let mut out = Vec::with_capacity(len);
    string(1, header.device_id, &mut out);
    string(2, header.task_id, &mut out);
    uint64(3, header.run, &mut out);
    for required in findings.required() {
        nested(4, required_body_len(&required), &mut out);
        string(1, required.update_id, &mut out);
        string(2, required.package_or_product, &mut out);
        string(3, required.installed_version, &mut out);
        string(4, required.required_version, &mut out);
        string(5, required.architecture, &mut out);
        repeated(6, required.cve_ids(), &mut out);
        boolean(7, required.known_exploited, &mut out);
    }
    for vulnerability in findings.vulnerabilities() {
        nested(5, vulnerability_body_len(&vulnerability), &mut out);
        string(1, vulnerability.cve_id, &mut out);
        boolean(2, vulnerability.known_exploited, &mut out);
        repeated(3, vulnerability.fixed_by(), &mut out);
    }
    uint64(6, header.catalog_position, &mut out);
    repeated(7, findings.problems().iter().map(String::as_str), &mut out);
    debug_assert_eq!(out.len(), len);
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

fn required_body_len(required: &RequiredView<'_>) -> usize {
    string_len(1, required.update_id)
        + string_len(2, required.package_or_product)
        + string_len(3, required.installed_version)
        + string_len(4, required.required_version)
        + string_len(5, required.architecture)
        + repeated_len(6, required.cve_ids())
        + bool_len(7, required.known_exploited)
}

fn vulnerability_body_len(vulnerability: &VulnerabilityView<'_>) -> usize {
    string_len(1, vulnerability.cve_id)
        + bool_len(2, vulnerability.known_exploited)
        + repeated_len(3, vulnerability.fixed_by())
}

fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        delimited_len(tag, value.len())
    }
}

fn repeated_len<'a>(tag: u32, values: impl Iterator<Item = &'a str>) -> usize {
    values.map(|value| delimited_len(tag, value.len())).sum()
}

fn u64_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

fn bool_len(tag: u32, value: bool) -> usize {
    if value { key_len(tag) + 1 } else { 0 }
}

fn delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
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

/// The key and length of an embedded message; its fields follow.
fn nested(tag: u32, body: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(body as u64, out);
}

fn uint64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

fn boolean(tag: u32, value: bool, out: &mut Vec<u8>) {
    if value {
        encode_key(tag, WireType::Varint, out);
        encode_varint(1, out);
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
            vulnerabilities: findings
                .vulnerabilities
                .iter()
                .map(|v| pb::FoundVulnerability {
                    cve_id: v.cve_id.clone(),
                    known_exploited: v.known_exploited,
                    fixed_by: v.fixed_by.clone(),
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
}
