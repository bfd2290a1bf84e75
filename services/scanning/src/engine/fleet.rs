//! Evaluating many devices on every core, with `std::thread::scope` and small batches handed out on demand.
//!
//! Why not rayon: the work is one flat loop over independent devices, which a scoped thread per
//! core pulling batches from a shared iterator balances just as well (a device with 1,000
//! packages costs ten times one with 100, so batches are handed out on demand rather than split
//! up front). This keeps the crate free of a second, global thread pool next to tokio's, and each
//! worker keeps one scratch buffer for all its devices.

use std::borrow::Borrow;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use super::evaluate::Scratch;
use super::{DeviceFindings, DeviceInventory, Findings, MatchingIndex};

/// Devices a worker takes at a time: large enough that the lock is taken rarely (a device takes
/// tens of microseconds), small enough to balance uneven devices at the end.
const BATCH: usize = 32;

/// [`MatchingIndex::evaluate`] for every device, in the order of `devices`, using every core the
/// process may use.
pub fn evaluate_fleet(index: &MatchingIndex, devices: &[DeviceInventory]) -> Vec<DeviceFindings> {
    evaluate_fleet_with(index, devices, |_, findings| findings.to_device_findings())
}

/// Evaluates every device and turns its [`Findings`] into `T` with `output(position, findings)`
/// on the same worker thread, so that whatever the findings become (an encoded event, say) is
/// built in parallel too and the borrowed findings never leave the worker. The results are in the
/// order of `devices`, which may hold the inventories themselves or shared handles to them
/// (`Arc<DeviceInventory>`).
pub fn evaluate_fleet_with<D, T, F>(index: &MatchingIndex, devices: &[D], output: F) -> Vec<T>
where
    D: Borrow<DeviceInventory> + Sync,
    T: Send,
    F: Fn(usize, Findings<'_>) -> T + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(devices.len().div_ceil(BATCH));
    if threads <= 1 {
        let mut scratch = Scratch::default();
        return devices
            .iter()
            .enumerate()
            .map(|(position, device)| {
                output(position, index.evaluate_with(device.borrow(), &mut scratch))
            })
            .collect();
    }

    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None)
        .take(devices.len())
        .collect();
    let batches = Mutex::new(
        devices
            .chunks(BATCH)
            .zip(results.chunks_mut(BATCH))
            .enumerate(),
    );
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
                    let Some((batch, (devices, out))) = batch else {
                        break;
                    };
                    for (offset, (device, out)) in devices.iter().zip(out).enumerate() {
                        let findings = index.evaluate_with(device.borrow(), &mut scratch);
                        *out = Some(output(batch * BATCH + offset, findings));
                    }
                }
            });
        }
    });
    // Every slot was filled: the workers took every batch, and a panic in one would have been
    // re-raised by the scope before this line.
    results.into_iter().flatten().collect()
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
