//! The device aggregate (`device-<id>` stream): registration with a credential, inventory reports.

use std::sync::Arc;

use patchbay_proto::scanning::v1 as pb;
use sha2::{Digest, Sha256};

use super::ScanningError;
use crate::events::ScanningEvent;

/// Most packages an inventory may list; a larger report is refused as oversized.
pub const MAX_PACKAGES: usize = 100_000;
const MAX_FIELD: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceState {
    pub device_id: Option<String>,
    pub hostname: String,
    pub credential_sha256: String,
    pub groups: Vec<String>,
    /// Shared, so that a scan takes the inventories of a chunk of devices under the view's lock
    /// without copying them (a device's is ~900 strings).
    pub inventory: Option<Arc<pb::Inventory>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceCommand {
    Register {
        device_id: String,
        hostname: String,
        credential_sha256: String,
        groups: Vec<String>,
    },
    /// `credential` is what the agent presented; only its digest is compared.
    ReportInventory {
        device_id: String,
        credential: String,
        inventory: pb::Inventory,
    },
    SetGroups {
        device_id: String,
        groups: Vec<String>,
    },
}

/// SHA-256 of a credential, hex.
pub fn credential_digest(credential: &str) -> String {
    hex::encode(Sha256::digest(credential.as_bytes()))
}

pub fn decide_device(
    state: &DeviceState,
    command: DeviceCommand,
) -> Result<Vec<ScanningEvent>, ScanningError> {
    match command {
        DeviceCommand::Register {
            device_id,
            hostname,
            credential_sha256,
            groups,
        } => {
            if state.device_id.is_some() {
                return Err(ScanningError::AlreadyRegistered(device_id));
            }
            check_text("hostname", &hostname)?;
            let groups = normalise_groups(groups)?;
            Ok(vec![ScanningEvent::DeviceRegistered(
                pb::DeviceRegistered {
                    device_id,
                    hostname,
                    credential_sha256,
                    groups,
                },
            )])
        }
        DeviceCommand::ReportInventory {
            device_id,
            credential,
            inventory,
        } => {
            authenticate(state, &device_id, &credential)?;
            validate_inventory(&inventory)?;
            if state.inventory.as_deref() == Some(&inventory) {
                return Ok(vec![]);
            }
            Ok(vec![ScanningEvent::InventoryReported(
                pb::InventoryReported {
                    device_id,
                    inventory: Some(inventory),
                },
            )])
        }
        DeviceCommand::SetGroups { device_id, groups } => {
            if state.device_id.is_none() {
                return Err(ScanningError::UnknownDevice(device_id));
            }
            let groups = normalise_groups(groups)?;
            if groups == state.groups {
                return Ok(vec![]);
            }
            Ok(vec![ScanningEvent::DeviceGroupsSet(pb::DeviceGroupsSet {
                device_id,
                groups,
            })])
        }
    }
}

pub fn evolve_device(mut state: DeviceState, event: &ScanningEvent) -> DeviceState {
    match event {
        ScanningEvent::DeviceRegistered(e) => {
            state.device_id = Some(e.device_id.clone());
            state.hostname = e.hostname.clone();
            state.credential_sha256 = e.credential_sha256.clone();
            state.groups = e.groups.clone();
        }
        ScanningEvent::InventoryReported(e) => {
            state.inventory = e.inventory.clone().map(Arc::new);
        }
        ScanningEvent::DeviceGroupsSet(e) => state.groups = e.groups.clone(),
        _ => {}
    }
    state
}

fn authenticate(
    state: &DeviceState,
    device_id: &str,
    credential: &str,
) -> Result<(), ScanningError> {
    if state.device_id.is_none() {
        return Err(ScanningError::UnknownDevice(device_id.to_owned()));
    }
    // Both sides are digests of equal length, so this comparison leaks nothing useful about the secret.
    if credential_digest(credential) != state.credential_sha256 {
        return Err(ScanningError::BadCredential(device_id.to_owned()));
    }
    Ok(())
}

fn check_text(what: &str, value: &str) -> Result<(), ScanningError> {
    if value.trim().is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(ScanningError::InvalidInput(format!(
            "{what} {value:?} is not valid: 1 to {MAX_FIELD} characters, no control characters"
        )));
    }
    Ok(())
}

fn normalise_groups(mut groups: Vec<String>) -> Result<Vec<String>, ScanningError> {
    for group in &groups {
        check_text("group", group)?;
    }
    groups.sort();
    groups.dedup();
    Ok(groups)
}

fn validate_inventory(inventory: &pb::Inventory) -> Result<(), ScanningError> {
    if inventory.packages.len() > MAX_PACKAGES {
        return Err(ScanningError::InvalidInput(format!(
            "the inventory lists {} packages, more than the limit of {MAX_PACKAGES}",
            inventory.packages.len()
        )));
    }
    for (index, package) in inventory.packages.iter().enumerate() {
        let bad = package.name.is_empty()
            || package.version.is_empty()
            || package.architecture.is_empty()
            || [&package.name, &package.version, &package.architecture]
                .iter()
                .any(|f| {
                    f.len() > MAX_FIELD || f.chars().any(|c| c.is_whitespace() || c.is_control())
                });
        if bad {
            return Err(ScanningError::InvalidInput(format!(
                "inventory package #{index} ({:?} {:?} {:?}) needs a name, version and architecture without spaces",
                package.name, package.version, package.architecture
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> Vec<ScanningEvent> {
        decide_device(
            &DeviceState::default(),
            DeviceCommand::Register {
                device_id: "d1".into(),
                hostname: "web-1".into(),
                credential_sha256: credential_digest("secret"),
                groups: vec!["web".into(), "web".into()],
            },
        )
        .unwrap()
    }

    fn state(events: &[ScanningEvent]) -> DeviceState {
        events.iter().fold(DeviceState::default(), evolve_device)
    }

    fn inventory(version: &str) -> pb::Inventory {
        pb::Inventory {
            os: "Debian 12".into(),
            native_architecture: "amd64".into(),
            packages: vec![pb::InstalledPackage {
                name: "openssl".into(),
                version: version.into(),
                architecture: "amd64".into(),
            }],
            ..Default::default()
        }
    }

    fn report(credential: &str, inventory: pb::Inventory) -> DeviceCommand {
        DeviceCommand::ReportInventory {
            device_id: "d1".into(),
            credential: credential.into(),
            inventory,
        }
    }

    #[test]
    fn a_registered_device_reports_inventory_and_an_unchanged_report_stores_nothing() {
        let history = registered();
        assert_eq!(state(&history).groups, ["web"]);
        let reported =
            decide_device(&state(&history), report("secret", inventory("3.0.16-1"))).unwrap();
        assert_eq!(reported.len(), 1);
        let history: Vec<_> = history.into_iter().chain(reported).collect();
        assert!(
            decide_device(&state(&history), report("secret", inventory("3.0.16-1")))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            decide_device(&state(&history), report("secret", inventory("3.0.17-1")))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn unknown_devices_wrong_credentials_and_bad_inventories_are_refused() {
        let unknown = decide_device(&DeviceState::default(), report("secret", inventory("1")));
        assert_eq!(unknown, Err(ScanningError::UnknownDevice("d1".into())));
        let history = registered();
        assert_eq!(
            decide_device(&state(&history), report("guess", inventory("1"))),
            Err(ScanningError::BadCredential("d1".into()))
        );
        let mut spaced = inventory("1.0 beta");
        assert!(decide_device(&state(&history), report("secret", spaced.clone())).is_err());
        spaced.packages = vec![pb::InstalledPackage::default(); MAX_PACKAGES + 1];
        let error = decide_device(&state(&history), report("secret", spaced)).unwrap_err();
        assert!(error.to_string().contains("limit"), "{error}");
        let again = decide_device(
            &state(&history),
            DeviceCommand::Register {
                device_id: "d1".into(),
                hostname: "x".into(),
                credential_sha256: String::new(),
                groups: vec![],
            },
        );
        assert_eq!(again, Err(ScanningError::AlreadyRegistered("d1".into())));
    }
}
