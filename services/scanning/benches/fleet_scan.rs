//! Fleet-scan benchmark: a synthetic Debian catalog and fleet, the index build and `evaluate_fleet` timed, peak RSS reported.
//!
//! Run with `cargo bench -p patchbay-scanning --bench fleet_scan`. Sizes default to the target
//! of the design (100,000 devices × ~300 packages against 50,000 updates); override them with
//! `PATCHBAY_BENCH_DEVICES` and `PATCHBAY_BENCH_UPDATES`; `PATCHBAY_BENCH_BEHIND` (default 45)
//! is the mean percentage of a device's packages installed at a random catalog version rather
//! than the newest (so fewer are actually behind). Devices are generated and scanned in
//! chunks so that their inventories do not dominate memory; the scan time counts what a scan run
//! computes per device (`evaluate_fleet_with`, encoding each device's `ScanCompleted` payload on
//! the workers, as the service does), generation is reported apart, and the peak RSS covers
//! everything.

use std::time::{Duration, Instant};

/// The allocator the `patchbay` binary ships with, so the figures are the shipped ones.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use patchbay_proto::catalog::v1 as pb;
use patchbay_scanning::engine::{
    DeviceInventory, InstalledPackage, MatchingIndex, evaluate_fleet_with,
};
use patchbay_scanning::scan_payload::{ScanHeader, encode_scan_completed};

/// Devices generated and scanned at a time.
const CHUNK: usize = 500;
/// Installed packages per device, before duplicates are dropped.
const PACKAGES_PER_DEVICE: usize = 300;
const SUITES: [&str; 3] = ["bookworm", "bookworm-security", "bookworm-updates"];

/// SplitMix64: small, fast and good enough for synthetic data; seeded for reproducible runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Skewed towards 0, like package popularity: the square of a uniform draw.
    fn popular(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u) * n as f64) as usize
    }
}

/// One synthetic source of updates: a package name and the versions published for it.
struct Name {
    name: String,
    /// `[epoch:]upstream-revision` of the release version; updates append `+deb12uN`.
    base: String,
    /// Number of versions in the catalog (the release plus its updates).
    versions: usize,
    /// `amd64` or `all`.
    architecture: &'static str,
    /// Also built for i386 (multiarch libraries).
    i386: bool,
}

impl Name {
    fn version(&self, k: usize) -> String {
        if k == 0 {
            self.base.clone()
        } else {
            format!("{}+deb12u{k}", self.base)
        }
    }
}

const PREFIXES: [&str; 8] = [
    "lib", "python3-", "node-", "golang-", "r-cran-", "ruby-", "libperl-", "",
];
const SYLLABLES: [&str; 16] = [
    "ssl", "xml", "gtk", "curl", "z", "krb", "sql", "png", "font", "cairo", "dbus", "glib", "jpeg",
    "audio", "x11", "qt",
];

fn names(count: usize, updates: usize, rng: &mut Rng) -> Vec<Name> {
    let mut names: Vec<Name> = (0..count)
        .map(|i| {
            let epoch = if rng.chance(10) {
                format!("{}:", 1 + rng.below(2))
            } else {
                String::new()
            };
            Name {
                name: format!(
                    "{}{}{}{i}",
                    PREFIXES[rng.below(PREFIXES.len())],
                    SYLLABLES[rng.below(SYLLABLES.len())],
                    SYLLABLES[rng.below(SYLLABLES.len())],
                ),
                base: format!(
                    "{epoch}{}.{}.{}-{}",
                    rng.below(10),
                    rng.below(40),
                    rng.below(20),
                    1 + rng.below(5)
                ),
                versions: 1,
                architecture: if rng.chance(25) { "all" } else { "amd64" },
                i386: false,
            }
        })
        .collect();
    for name in names.iter_mut().filter(|n| n.architecture == "amd64") {
        name.i386 = rng.chance(3);
    }
    // Spread the remaining updates, popular packages getting more (they get more security fixes).
    let mut total: usize = names.iter().map(|n| if n.i386 { 2 } else { 1 }).sum();
    let popular = (count / 5).max(1);
    while total < updates {
        let i = if rng.chance(60) {
            rng.popular(popular)
        } else {
            rng.below(count)
        };
        let name = &mut names[i];
        if name.versions < 12 {
            name.versions += 1;
            total += if name.i386 { 2 } else { 1 };
        }
    }
    names
}

/// The catalog's updates for `names`, as `UpdatePublished` would carry them, and the ids to expire.
fn catalog(
    names: &[Name],
    updates: usize,
    rng: &mut Rng,
) -> (Vec<(String, pb::UpdateDetails)>, Vec<String>, Vec<String>) {
    let mut catalog = Vec::with_capacity(updates);
    let mut expired = Vec::new();
    let mut cves = 0usize;
    let mut known_exploited = Vec::new();
    'names: for name in names {
        let architectures: &[&str] = if name.i386 {
            &[name.architecture, "i386"]
        } else {
            &[name.architecture]
        };
        for k in 0..name.versions {
            let version = name.version(k);
            let suites: Vec<String> = match k {
                0 => vec!["bookworm".into()],
                // Older fixes were folded into a point release.
                k if k + 2 < name.versions => vec!["bookworm".into(), "bookworm-security".into()],
                _ if rng.chance(80) => vec!["bookworm-security".into()],
                _ => vec!["bookworm-updates".into()],
            };
            let security = suites.iter().any(|s| s.ends_with("-security"));
            let cve_ids: Vec<String> = if security && k > 0 {
                (0..1 + rng.below(3))
                    .map(|_| {
                        cves += 1;
                        let id = format!("CVE-{}-{}", 2023 + cves % 4, 1000 + cves);
                        if rng.chance(1) {
                            known_exploited.push(id.clone());
                        }
                        id
                    })
                    .collect()
            } else {
                Vec::new()
            };
            for &architecture in architectures {
                if catalog.len() == updates {
                    break 'names;
                }
                let id = format!("deb:{}:{version}:{architecture}", name.name);
                if rng.chance(1) && rng.chance(50) {
                    expired.push(id.clone());
                }
                let details = pb::UpdateDetails {
                    title: format!("{} {version}", name.name),
                    vendor: "Debian".into(),
                    product: name.name.clone(),
                    version: version.clone(),
                    kind: pb::UpdateKind::ThirdParty as i32,
                    cve_ids: cve_ids.clone(),
                    source: "apt:deb.debian.org/debian".into(),
                    applicability: Some(pb::update_details::Applicability::Debian(
                        pb::DebianPackage {
                            package: name.name.clone(),
                            version: version.clone(),
                            architecture: architecture.into(),
                            suites: suites.clone(),
                            component: "main".into(),
                            source_package: name.name.clone(),
                        },
                    )),
                    ..Default::default()
                };
                catalog.push((id, details));
            }
        }
    }
    (catalog, expired, known_exploited)
}

/// Device `n`: ~300 packages, mostly popular ones, some up to date and some behind; 10% are
/// multiarch, a few have local packages the catalog does not know.
fn device(n: usize, names: &[Name], behind: u64) -> DeviceInventory {
    let mut rng = Rng(0x5eed_0000_0000_0000 ^ (n as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let popular = (names.len() / 5).max(1);
    let mut picks: Vec<usize> = (0..PACKAGES_PER_DEVICE)
        .map(|_| {
            if rng.chance(85) {
                rng.popular(popular)
            } else {
                rng.below(names.len())
            }
        })
        .collect();
    picks.sort_unstable();
    picks.dedup();
    let multiarch = rng.chance(10);
    // This device's share of packages left behind: the mean, give or take 25 points.
    let behind = (behind + rng.below(51) as u64).saturating_sub(25).min(100);
    let mut packages = Vec::with_capacity(picks.len() + 4);
    for i in picks {
        let name = &names[i];
        let k = if rng.chance(behind) {
            rng.below(name.versions)
        } else {
            name.versions - 1
        };
        let version = name.version(k);
        if multiarch && name.i386 {
            packages.push(InstalledPackage {
                name: name.name.clone(),
                version: version.clone(),
                architecture: "i386".into(),
            });
        }
        packages.push(InstalledPackage {
            name: name.name.clone(),
            version,
            architecture: name.architecture.into(),
        });
    }
    for local in 0..rng.below(4) {
        packages.push(InstalledPackage {
            name: format!("local-tool-{local}"),
            version: "1.0-1".into(),
            architecture: "amd64".into(),
        });
    }
    let apt_suites = match rng.below(100) {
        0..85 => SUITES.iter().map(|s| (*s).to_owned()).collect(),
        85..95 => vec!["bookworm".into(), "bookworm-updates".into()],
        _ => Vec::new(),
    };
    DeviceInventory {
        native_architecture: "amd64".into(),
        packages,
        apt_suites,
        ..Default::default()
    }
}

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A line of /proc/self/status in MiB, e.g. `VmHWM` (peak RSS); 0 where there is no /proc.
fn memory_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0)
        })
        .unwrap_or(0.0)
}

/// CPU time (user + system) of the whole process so far, from /proc/self/stat; zero without /proc.
/// With other work on the machine, wall time alone would understate the engine.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The fields after the parenthesised command name; utime and stime are the 12th and 13th.
            let fields: Vec<u64> = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse().ok())
                .collect();
            Some(fields.iter().sum::<u64>())
        })
        .unwrap_or(0);
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every mainstream architecture.
    Duration::from_millis(ticks * 10)
}

fn main() {
    let devices = env_size("PATCHBAY_BENCH_DEVICES", 100_000);
    let updates = env_size("PATCHBAY_BENCH_UPDATES", 50_000);
    let behind = env_size("PATCHBAY_BENCH_BEHIND", 45) as u64;
    let name_count = (updates * 2 / 5).max(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "fleet_scan: {devices} devices x ~{PACKAGES_PER_DEVICE} packages ({behind}% at a random version), {updates} updates over {name_count} package names, {threads} threads"
    );

    let mut rng = Rng(42);
    let names = names(name_count, updates, &mut rng);
    let (catalog, expired, known_exploited) = catalog(&names, updates, &mut rng);

    let rss_before_index = memory_mib("VmRSS:");
    let started = Instant::now();
    let mut index = MatchingIndex::new();
    let mut unmatchable = 0;
    for (id, details) in &catalog {
        if let Err(error) = index.upsert(id, details) {
            unmatchable += 1;
            eprintln!("update {id} is not matchable: {error}");
        }
    }
    for id in &expired {
        index.expire(id);
    }
    for cve in &known_exploited {
        index.set_known_exploited(cve, true);
    }
    let build = started.elapsed();
    let index_rss = memory_mib("VmRSS:") - rss_before_index;
    drop(catalog);
    let stats = index.stats();
    println!(
        "index: {} updates ({} expired, {unmatchable} unmatchable), {} package names, {} CVEs ({} KEV); built in {:.3} s; it added {:.0} MiB of RSS",
        stats.updates,
        stats.expired,
        stats.package_names,
        stats.cves,
        stats.known_exploited,
        build.as_secs_f64(),
        index_rss,
    );

    let (mut generating, mut scanning, mut scanning_cpu) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (
        mut packages,
        mut required,
        mut known_exploited_required,
        mut vulnerabilities,
        mut problems,
        mut payload_bytes,
    ) = (0, 0, 0, 0, 0, 0);
    let device_ids: Vec<String> = (0..CHUNK).map(|n| format!("device-{n:06}")).collect();
    let mut start = 0;
    while start < devices {
        let end = (start + CHUNK).min(devices);
        let started = Instant::now();
        let chunk: Vec<DeviceInventory> = (start..end).map(|n| device(n, &names, behind)).collect();
        generating += started.elapsed();

        let (started, cpu) = (Instant::now(), cpu_time());
        let scans = evaluate_fleet_with(&index, &chunk, |position, findings| {
            let header = ScanHeader {
                device_id: &device_ids[position],
                task_id: "fleet-bench",
                run: 1,
                catalog_position: 50_000,
            };
            let payload = encode_scan_completed(&header, &findings);
            let kev = findings.required().filter(|r| r.known_exploited).count();
            (
                payload,
                findings.required_count(),
                kev,
                findings.vulnerability_count(),
                findings.problems().len(),
            )
        });
        scanning += started.elapsed();
        scanning_cpu += cpu_time().saturating_sub(cpu);

        packages += chunk.iter().map(|d| d.packages.len()).sum::<usize>();
        for (payload, found, kev, exposed, problem_count) in &scans {
            payload_bytes += payload.len();
            required += found;
            known_exploited_required += kev;
            vulnerabilities += exposed;
            problems += problem_count;
        }
        start = end;
    }

    let seconds = scanning.as_secs_f64();
    println!(
        "scan (evaluate, encode each ScanCompleted): {devices} devices ({packages} installed packages) in {seconds:.3} s = {:.0} devices/s ({:.1} M packages/s); generating them took {:.3} s more",
        devices as f64 / seconds,
        packages as f64 / seconds / 1e6,
        generating.as_secs_f64(),
    );
    println!(
        "scan CPU time: {:.3} s over {threads} threads ({:.1} us per device); load average at the end: {}",
        scanning_cpu.as_secs_f64(),
        scanning_cpu.as_secs_f64() * 1e6 / devices.max(1) as f64,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
    );
    println!(
        "found: {required} required updates ({:.1} per device, {known_exploited_required} known exploited), {vulnerabilities} device vulnerabilities, {problems} problems",
        required as f64 / devices.max(1) as f64,
    );
    println!(
        "ScanCompleted payloads: {:.0} MiB in all, {:.1} kB per device",
        payload_bytes as f64 / (1024.0 * 1024.0),
        payload_bytes as f64 / 1000.0 / devices.max(1) as f64,
    );
    println!("peak RSS (VmHWM): {:.0} MiB", memory_mib("VmHWM:"));
}
