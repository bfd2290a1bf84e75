//! Evaluating many devices on every core, with `std::thread::scope` and small batches handed out on demand.
//!
//! Why not rayon: the work is one flat loop over independent devices, which a scoped thread per
//! core pulling batches from a shared iterator balances just as well (a device with 1,000
//! packages costs ten times one with 100, so batches are handed out on demand rather than split
//! up front). This keeps the crate free of a second, global thread pool next to tokio's, and each
//! worker keeps one scratch buffer for all its devices.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use super::evaluate::Scratch;
use super::{DeviceFindings, DeviceInventory, MatchingIndex};

/// Devices a worker takes at a time: large enough that the lock is taken rarely (a device takes
/// tens of microseconds), small enough to balance uneven devices at the end.
const BATCH: usize = 32;

/// [`MatchingIndex::evaluate`] for every device, in the order of `devices`, using every core the
/// process may use.
pub fn evaluate_fleet(index: &MatchingIndex, devices: &[DeviceInventory]) -> Vec<DeviceFindings> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(devices.len().div_ceil(BATCH));
    let mut findings: Vec<DeviceFindings> = std::iter::repeat_with(DeviceFindings::default)
        .take(devices.len())
        .collect();
    if threads <= 1 {
        let mut scratch = Scratch::default();
        for (device, out) in devices.iter().zip(&mut findings) {
            *out = index.evaluate_with(device, &mut scratch);
        }
        return findings;
    }

    let batches = Mutex::new(devices.chunks(BATCH).zip(findings.chunks_mut(BATCH)));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut scratch = Scratch::default();
                loop {
                    // A poisoned lock means another worker panicked; the scope re-raises that
                    // panic, so carrying on here is harmless.
                    let batch = batches
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .next();
                    let Some((devices, out)) = batch else {
                        break;
                    };
                    for (device, out) in devices.iter().zip(out) {
                        *out = index.evaluate_with(device, &mut scratch);
                    }
                }
            });
        }
    });
    findings
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::engine::InstalledPackage;
    use crate::engine::reference_tests::debian;

    #[test]
    fn given_many_devices_when_evaluated_as_a_fleet_then_each_matches_its_own_evaluation() {
        let mut index = MatchingIndex::new();
        for minor in 0..20 {
            let details = debian(
                &format!("pkg{}", minor % 7),
                &format!("1.{minor}-1"),
                "amd64",
                &["s"],
                &[],
            );
            index.upsert(&format!("u{minor}"), &details).unwrap();
        }
        let devices: Vec<DeviceInventory> = (0..1000)
            .map(|n| DeviceInventory {
                native_architecture: "amd64".into(),
                packages: (0..(n % 9))
                    .map(|p| InstalledPackage {
                        name: format!("pkg{p}"),
                        version: format!("1.{}-1", n % 13),
                        architecture: "amd64".into(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        let fleet = evaluate_fleet(&index, &devices);
        assert_eq!(fleet.len(), devices.len());
        for (device, findings) in devices.iter().zip(&fleet) {
            assert_eq!(findings, &index.evaluate(device));
        }
        assert!(fleet.iter().any(|f| !f.required.is_empty()));
        assert!(evaluate_fleet(&index, &[]).is_empty());
    }
}
