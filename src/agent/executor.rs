//! What runs an install or uninstall job on the device: apt-get on Debian/Ubuntu, or an in-memory
//! simulation for tests and load runs.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use patchbay_debian::{Architecture, DebianVersion};
use patchbay_proto::installing::v1 as ipb;
use patchbay_proto::scanning::v1 as spb;

/// How a job ended, as reported to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    RebootRequired,
}

impl Outcome {
    pub fn proto(self) -> ipb::JobOutcome {
        match self {
            Self::Succeeded => ipb::JobOutcome::Succeeded,
            Self::Failed => ipb::JobOutcome::Failed,
            Self::RebootRequired => ipb::JobOutcome::RebootRequired,
        }
    }

    /// True when the device's software changed, so its inventory is worth reporting again.
    pub fn changed_device(self) -> bool {
        matches!(self, Self::Succeeded | Self::RebootRequired)
    }
}

/// The result of one job: the outcome, why it failed (empty otherwise) and what the executor printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub outcome: Outcome,
    pub reason: String,
    pub output: String,
}

impl JobResult {
    fn failed(reason: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Failed,
            reason: reason.into(),
            output: String::new(),
        }
    }
}

/// Runs jobs one at a time.
#[derive(Debug, Clone)]
pub enum JobExecutor {
    Debian(DebianJobs),
    Simulated(SimulatedJobs),
}

impl JobExecutor {
    pub async fn run(&self, job: &ipb::Job) -> JobResult {
        match self {
            Self::Debian(debian) => debian.run(job).await,
            Self::Simulated(simulated) => simulated.run(job),
        }
    }
}

/// Settings of the apt-get executor.
#[derive(Debug, Clone)]
pub struct DebianJobs {
    /// The apt-get program; tests point it at a script.
    pub apt_get: PathBuf,
    /// Simulate with `apt-get -s`: nothing is installed, and a reboot is never reported.
    pub dry_run: bool,
    /// After this long apt-get is killed and the job fails.
    pub timeout: Duration,
    /// The file Debian's packages create when the machine needs a reboot.
    pub reboot_required: PathBuf,
    /// The device's dpkg architecture; packages of another architecture are named `PKG:ARCH`.
    /// `None` when unknown, in which case every architecture-specific package is qualified.
    pub native_architecture: Option<String>,
}

impl Default for DebianJobs {
    fn default() -> Self {
        Self {
            apt_get: PathBuf::from("apt-get"),
            dry_run: false,
            timeout: Duration::from_secs(30 * 60),
            reboot_required: PathBuf::from("/var/run/reboot-required"),
            native_architecture: None,
        }
    }
}

/// Most of apt-get's output kept in a report; the end is what explains a failure.
const MAX_OUTPUT: usize = 8 * 1024;

impl DebianJobs {
    /// The apt-get arguments for a job, or why the job cannot be run. Every value is checked against
    /// Debian Policy's character sets first, so a job can never smuggle an option or a second package.
    pub fn arguments(&self, job: &ipb::Job) -> Result<Vec<String>, String> {
        if !job.kb_article.is_empty() {
            return Err(format!(
                "job asks for Windows update {}, but this device's executor is apt-get; target Windows devices with Windows update tasks",
                job.kb_article
            ));
        }
        validate_package_name(&job.package)?;
        let package = match self.qualifier(&job.architecture)? {
            Some(architecture) => format!("{}:{architecture}", job.package),
            None => job.package.clone(),
        };
        let mut arguments = Vec::new();
        if self.dry_run {
            arguments.push("-s".to_owned());
        }
        match ipb::JobKind::try_from(job.kind) {
            Ok(ipb::JobKind::Install) => {
                validate_version(&job.version)?;
                arguments.extend([
                    "install".to_owned(),
                    "-y".to_owned(),
                    "--no-install-recommends".to_owned(),
                    format!("{package}={}", job.version),
                ]);
            }
            Ok(ipb::JobKind::Uninstall) => {
                arguments.extend(["remove".to_owned(), "-y".to_owned(), package]);
            }
            Err(_) => {
                return Err(format!(
                    "job kind {} is unknown to this agent; upgrade the agent",
                    job.kind
                ));
            }
        }
        Ok(arguments)
    }

    /// `Some(arch)` when the package must be named `PKG:ARCH`: a real architecture that is not the
    /// device's own.
    fn qualifier(&self, architecture: &str) -> Result<Option<String>, String> {
        if architecture.is_empty() {
            return Ok(None);
        }
        let parsed: Architecture = architecture
            .parse()
            .map_err(|error| format!("job's architecture is not valid: {error}"))?;
        match parsed {
            Architecture::All => Ok(None),
            Architecture::Any => Err(
                "job's architecture is 'any', which names no binary package; the server must send a concrete architecture"
                    .to_owned(),
            ),
            _ if self.native_architecture.as_deref() == Some(architecture) => Ok(None),
            _ => Ok(Some(architecture.to_owned())),
        }
    }

    async fn run(&self, job: &ipb::Job) -> JobResult {
        let arguments = match self.arguments(job) {
            Ok(arguments) => arguments,
            Err(reason) => return JobResult::failed(reason),
        };
        let mut command = tokio::process::Command::new(&self.apt_get);
        command
            .args(&arguments)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Nothing may wait for an answer: a prompt fails instead of hanging the job loop.
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // On timeout the output future is dropped, and with it the child.
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return JobResult::failed(format!(
                    "cannot run {}: {error}; install apt or pass --apt-get PATH",
                    self.apt_get.display()
                ));
            }
        };
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                return JobResult::failed(format!(
                    "lost track of {}: {error}",
                    self.apt_get.display()
                ));
            }
            Err(_) => {
                return JobResult::failed(format!(
                    "apt-get did not finish within {} s and was stopped; if dpkg was interrupted run `dpkg --configure -a` on the device",
                    self.timeout.as_secs()
                ));
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let printed = tail(&format!("{stdout}{stderr}"), MAX_OUTPUT);
        if output.status.success() {
            // A dry run installs nothing, so a reboot flag left by something else is not ours.
            let reboot = !self.dry_run && self.reboot_required.exists();
            return JobResult {
                outcome: if reboot {
                    Outcome::RebootRequired
                } else {
                    Outcome::Succeeded
                },
                reason: String::new(),
                output: printed,
            };
        }
        let status = output.status.code().map_or_else(
            || "was killed by a signal".to_owned(),
            |code| format!("exited with status {code}"),
        );
        let why = failure_lines(&stderr).or_else(|| failure_lines(&stdout));
        JobResult {
            outcome: Outcome::Failed,
            reason: match why {
                Some(why) => format!("apt-get {status}: {why}"),
                None => format!("apt-get {status} without saying why"),
            },
            output: printed,
        }
    }
}

/// The lines that explain a failure: apt's `E:` lines if any, else the last non-empty lines.
fn failure_lines(text: &str) -> Option<String> {
    const KEEP: usize = 3;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("E:"))
        .collect();
    let chosen = if errors.is_empty() { lines } else { errors };
    if chosen.is_empty() {
        return None;
    }
    let start = chosen.len().saturating_sub(KEEP);
    Some(tail(&chosen[start..].join("; "), 1024))
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Debian Policy §5.6.7: lowercase letters, digits, `+`, `-`, `.`; at least two characters,
/// starting with a letter or digit (so never an option).
fn validate_package_name(name: &str) -> Result<(), String> {
    let valid = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "job's package name {name:?} is not a Debian package name (lowercase letters, digits, '+', '-', '.'; at least two characters); the job was not run"
        ))
    }
}

/// A version dpkg parses without warnings (Policy §5.6.12), written without surrounding blanks.
fn validate_version(version: &str) -> Result<(), String> {
    let parsed: DebianVersion = version
        .parse()
        .map_err(|error| format!("job's version is not valid: {error}; the job was not run"))?;
    if parsed.as_str() != version {
        return Err(format!(
            "job's version {version:?} has surrounding blanks; the job was not run"
        ));
    }
    match parsed.policy_violation() {
        None => Ok(()),
        Some(violation) => Err(format!(
            "job's version {version:?} breaks Debian Policy ({violation:?}); the job was not run"
        )),
    }
}

/// The simulated device's inventory, shared by the job executor (which changes it) and the
/// inventory reports (which read it).
#[derive(Debug, Clone, Default)]
pub struct SimulatedInventory(Arc<Mutex<spb::Inventory>>);

impl SimulatedInventory {
    pub fn new(inventory: spb::Inventory) -> Self {
        Self(Arc::new(Mutex::new(inventory)))
    }

    pub fn snapshot(&self) -> spb::Inventory {
        // A panic while holding the lock cannot leave the inventory half-edited in a harmful way,
        // so a poisoned lock is used as is.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut spb::Inventory)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Succeeds, or fails a fixed share of jobs chosen by their id, and keeps the simulated inventory in
/// step with what it "installed".
#[derive(Debug, Clone)]
pub struct SimulatedJobs {
    pub inventory: SimulatedInventory,
    /// Share of jobs that fail, 0.0 to 1.0.
    pub fail_share: f64,
}

impl SimulatedJobs {
    fn run(&self, job: &ipb::Job) -> JobResult {
        if fails(&job.job_id, self.fail_share) {
            return JobResult::failed(format!(
                "simulated failure (--fail-share {})",
                self.fail_share
            ));
        }
        let uninstall = job.kind == ipb::JobKind::Uninstall as i32;
        let what = if job.kb_article.is_empty() {
            format!("{} {}", job.package, job.version)
        } else {
            job.kb_article.clone()
        };
        self.inventory.update(|inventory| {
            if !job.kb_article.is_empty() {
                inventory.installed_kbs.retain(|kb| kb != &job.kb_article);
                if !uninstall {
                    inventory.installed_kbs.push(job.kb_article.clone());
                }
                return;
            }
            let same = |p: &spb::InstalledPackage| {
                p.name == job.package
                    && (job.architecture.is_empty() || p.architecture == job.architecture)
            };
            if uninstall {
                inventory.packages.retain(|p| !same(p));
            } else if let Some(package) = inventory.packages.iter_mut().find(|p| same(p)) {
                package.version = job.version.clone();
            } else {
                let architecture = if job.architecture.is_empty() {
                    inventory.native_architecture.clone()
                } else {
                    job.architecture.clone()
                };
                inventory.packages.push(spb::InstalledPackage {
                    name: job.package.clone(),
                    version: job.version.clone(),
                    architecture,
                });
            }
        });
        JobResult {
            outcome: Outcome::Succeeded,
            reason: String::new(),
            output: format!(
                "simulated: {} {what}",
                if uninstall { "removed" } else { "installed" }
            ),
        }
    }
}

/// Whether the simulation fails this job: FNV-1a of the id mapped onto [0, 1), so the same job
/// fails on every run and machine (std's hasher is not stable across Rust releases).
fn fails(job_id: &str, share: f64) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in job_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // The top 53 bits give an exactly representable fraction.
    let fraction = (hash >> 11) as f64 / (1u64 << 53) as f64;
    fraction < share
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, package: &str, version: &str) -> ipb::Job {
        ipb::Job {
            job_id: id.to_owned(),
            device_id: "d1".to_owned(),
            update_id: "u1".to_owned(),
            package: package.to_owned(),
            version: version.to_owned(),
            architecture: "amd64".to_owned(),
            attempt: 1,
            ..Default::default()
        }
    }

    fn debian(dir: &std::path::Path, dry_run: bool) -> DebianJobs {
        DebianJobs {
            apt_get: dir.join("apt-get"),
            dry_run,
            timeout: Duration::from_secs(20),
            reboot_required: dir.join("reboot-required"),
            native_architecture: Some("amd64".to_owned()),
        }
    }

    /// A fake apt-get that records its arguments and environment, fails like apt for `broken`,
    /// and otherwise succeeds.
    fn fake_apt_get(dir: &std::path::Path) {
        let script = format!(
            r#"#!/bin/sh
printf '%s\n' "$*" >> '{log}'
printf '%s\n' "$DEBIAN_FRONTEND" >> '{log}'
for arg in "$@"; do
  case "$arg" in
    broken=*|broken) echo "Reading package lists..."; echo "E: Version '9.9' for 'broken' was not found" >&2; echo "W: some warning" >&2; exit 100 ;;
    slow=*) sleep 30 ;;
  esac
done
echo "Setting up $*"
exit 0
"#,
            log = dir.join("calls").display()
        );
        let path = dir.join("apt-get");
        std::fs::write(&path, script).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    fn calls(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn arguments_follow_the_job() {
        let jobs = DebianJobs {
            native_architecture: Some("amd64".to_owned()),
            ..DebianJobs::default()
        };
        let install = job("j", "libssl3", "3.0.15-1~deb12u1");
        assert_eq!(
            jobs.arguments(&install).unwrap(),
            [
                "install",
                "-y",
                "--no-install-recommends",
                "libssl3=3.0.15-1~deb12u1"
            ]
        );
        let foreign = ipb::Job {
            architecture: "i386".to_owned(),
            ..install.clone()
        };
        assert_eq!(
            jobs.arguments(&foreign).unwrap()[3],
            "libssl3:i386=3.0.15-1~deb12u1"
        );
        let all = ipb::Job {
            architecture: "all".to_owned(),
            ..install.clone()
        };
        assert_eq!(jobs.arguments(&all).unwrap()[3], "libssl3=3.0.15-1~deb12u1");
        let remove = ipb::Job {
            kind: ipb::JobKind::Uninstall as i32,
            ..install.clone()
        };
        assert_eq!(
            jobs.arguments(&remove).unwrap(),
            ["remove", "-y", "libssl3"]
        );
        let dry = DebianJobs {
            dry_run: true,
            ..jobs.clone()
        };
        assert_eq!(dry.arguments(&install).unwrap()[..2], ["-s", "install"]);
    }

    #[test]
    fn injected_names_and_versions_are_refused() {
        let jobs = DebianJobs::default();
        for (package, version) in [
            ("-o", "1.0"),
            ("--allow-downgrades", "1.0"),
            ("foo bar", "1.0"),
            ("Foo", "1.0"),
            ("f", "1.0"),
            ("foo", "1.0 bar"),
            ("foo", "-1.0"),
            ("foo", "1.0;rm"),
            ("foo", ""),
            ("foo", "a1.0"),
            ("foo=1", "1.0"),
        ] {
            let reason = jobs.arguments(&job("j", package, version)).unwrap_err();
            assert!(reason.contains("not"), "{package:?} {version:?}: {reason}");
        }
        let bad_arch = ipb::Job {
            architecture: "-all".to_owned(),
            ..job("j", "foo", "1.0")
        };
        assert!(jobs.arguments(&bad_arch).is_err());
        let windows = ipb::Job {
            kb_article: "KB5034441".to_owned(),
            ..job("j", "", "")
        };
        assert!(jobs.arguments(&windows).unwrap_err().contains("KB5034441"));
    }

    #[tokio::test]
    async fn apt_get_success_failure_and_reboot() {
        let dir = tempfile::tempdir().unwrap();
        fake_apt_get(dir.path());
        let jobs = debian(dir.path(), false);

        let ok = jobs.run(&job("j1", "curl", "7.88.1-10+deb12u8")).await;
        assert_eq!(ok.outcome, Outcome::Succeeded, "{ok:?}");
        assert!(ok.output.contains("Setting up"));

        let failed = jobs.run(&job("j2", "broken", "9.9")).await;
        assert_eq!(failed.outcome, Outcome::Failed);
        assert_eq!(
            failed.reason,
            "apt-get exited with status 100: E: Version '9.9' for 'broken' was not found"
        );

        std::fs::write(dir.path().join("reboot-required"), "").unwrap();
        let reboot = jobs.run(&job("j3", "linux-image-amd64", "6.1.129-1")).await;
        assert_eq!(reboot.outcome, Outcome::RebootRequired);

        // A dry run simulates, and a reboot flag is not its doing.
        let dry = debian(dir.path(), true);
        let simulated = dry.run(&job("j4", "curl", "7.88.1-10+deb12u8")).await;
        assert_eq!(simulated.outcome, Outcome::Succeeded);

        // A refused job never reaches apt-get.
        let refused = jobs.run(&job("j5", "--purge", "1.0")).await;
        assert_eq!(refused.outcome, Outcome::Failed);

        assert_eq!(
            calls(dir.path()),
            [
                "install -y --no-install-recommends curl=7.88.1-10+deb12u8",
                "noninteractive",
                "install -y --no-install-recommends broken=9.9",
                "noninteractive",
                "install -y --no-install-recommends linux-image-amd64=6.1.129-1",
                "noninteractive",
                "-s install -y --no-install-recommends curl=7.88.1-10+deb12u8",
                "noninteractive",
            ]
        );
    }

    #[tokio::test]
    async fn apt_get_missing_or_too_slow_fails_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let missing = debian(dir.path(), true).run(&job("j", "curl", "1.0")).await;
        assert_eq!(missing.outcome, Outcome::Failed);
        assert!(missing.reason.contains("--apt-get"), "{}", missing.reason);

        fake_apt_get(dir.path());
        let slow = DebianJobs {
            timeout: Duration::from_millis(300),
            ..debian(dir.path(), true)
        };
        let result = slow.run(&job("j", "slow", "1.0")).await;
        assert_eq!(result.outcome, Outcome::Failed);
        assert!(
            result.reason.contains("did not finish"),
            "{}",
            result.reason
        );
    }

    #[test]
    fn failure_lines_prefer_apt_errors() {
        assert_eq!(
            failure_lines("W: a\nE: first\n\nE: second\nN: note\n").as_deref(),
            Some("E: first; E: second")
        );
        assert_eq!(
            failure_lines("one\ntwo\nthree\nfour\n").as_deref(),
            Some("two; three; four")
        );
        assert_eq!(failure_lines("  \n"), None);
    }

    #[test]
    fn simulated_jobs_change_the_inventory() {
        let inventory = SimulatedInventory::new(spb::Inventory {
            native_architecture: "amd64".to_owned(),
            packages: vec![spb::InstalledPackage {
                name: "curl".to_owned(),
                version: "7.88.1-10+deb12u5".to_owned(),
                architecture: "amd64".to_owned(),
            }],
            ..Default::default()
        });
        let jobs = SimulatedJobs {
            inventory: inventory.clone(),
            fail_share: 0.0,
        };
        let result = jobs.run(&job("j1", "curl", "7.88.1-10+deb12u8"));
        assert_eq!(result.outcome, Outcome::Succeeded);
        let new = ipb::Job {
            architecture: String::new(),
            ..job("j2", "git", "1:2.39.5-0+deb12u1")
        };
        jobs.run(&new);
        let windows = ipb::Job {
            kb_article: "KB5034441".to_owned(),
            ..job("j3", "", "")
        };
        jobs.run(&windows);
        let after = inventory.snapshot();
        let versions: Vec<_> = after
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.architecture.as_str()))
            .collect();
        assert_eq!(
            versions,
            [
                ("curl", "7.88.1-10+deb12u8", "amd64"),
                ("git", "1:2.39.5-0+deb12u1", "amd64")
            ]
        );
        assert_eq!(after.installed_kbs, ["KB5034441"]);

        let remove = ipb::Job {
            kind: ipb::JobKind::Uninstall as i32,
            ..job("j4", "curl", "")
        };
        jobs.run(&remove);
        let remove_kb = ipb::Job {
            kind: ipb::JobKind::Uninstall as i32,
            ..windows.clone()
        };
        jobs.run(&remove_kb);
        let after = inventory.snapshot();
        assert_eq!(after.packages.len(), 1);
        assert!(after.installed_kbs.is_empty());
    }

    #[test]
    fn simulated_failures_are_a_reproducible_share() {
        let inventory = SimulatedInventory::default();
        let jobs = SimulatedJobs {
            inventory: inventory.clone(),
            fail_share: 0.2,
        };
        let ids: Vec<String> = (0..2000).map(|i| format!("job-{i}")).collect();
        let failed: Vec<bool> = ids
            .iter()
            .map(|id| jobs.run(&job(id, "curl", "1.0")).outcome == Outcome::Failed)
            .collect();
        let share = failed.iter().filter(|f| **f).count() as f64 / ids.len() as f64;
        assert!((0.15..0.25).contains(&share), "share {share}");
        // The same ids fail again.
        let again: Vec<bool> = ids
            .iter()
            .map(|id| jobs.run(&job(id, "curl", "1.0")).outcome == Outcome::Failed)
            .collect();
        assert_eq!(failed, again);
        assert!(!fails("anything", 0.0));
        assert!(fails("anything", 1.0));
    }
}
