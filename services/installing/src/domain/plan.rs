//! The planner's decision, pure: given what changed since its last step, which install and uninstall
//! jobs to queue, which to cancel, and which task runs have finished.

use std::collections::{BTreeMap, HashMap, HashSet};

use patchbay_eventstore::{ExpectedVersion, LogPosition};
use patchbay_proto::approvals::v1::ApprovalStatus;
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::installing::v1 as pb;

use super::rules::{Verdict, covers, max_attempts, verdict};
use super::state::{Cause, InstallingState, JobKey, JobStatus, Trigger};
use crate::events::{InstallingEvent, PLANNER_STREAM, job_stream, task_stream};

/// Events for one stream, appended at `expected`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<InstallingEvent>,
    /// For each event, the event it was decided on, if one.
    pub causes: Vec<Option<Cause>>,
}

/// Decides on everything dirty in `state` (which has applied the log up to `through`). Returns the
/// appends to commit in one transaction, the planner's `PlannedThrough` last; empty when there is
/// nothing to decide. `new_job_id` names new jobs.
pub fn plan(
    state: &InstallingState,
    through: LogPosition,
    server: &semver::Version,
    mut new_job_id: impl FnMut() -> String,
) -> Vec<StreamAppend> {
    if state.dirty.is_empty() {
        return Vec::new();
    }
    let mut planner = Planner {
        state,
        server,
        new_job_id: &mut new_job_id,
        queued: HashMap::new(),
        cancelled: HashSet::new(),
        opened_runs: HashMap::new(),
        new_run_jobs: HashMap::new(),
        appends: Vec::new(),
        index: HashMap::new(),
    };
    planner.run();
    let mut appends = planner.appends;
    appends.push(StreamAppend {
        stream: PLANNER_STREAM.to_owned(),
        expected: ExpectedVersion::Exact(state.planner_version),
        events: vec![InstallingEvent::PlannedThrough(pb::PlannedThrough {
            position: through.global_position,
            commit_id: through.commit_id,
        })],
        causes: vec![None],
    });
    appends
}

struct Planner<'a, F> {
    state: &'a InstallingState,
    server: &'a semver::Version,
    new_job_id: &'a mut F,
    /// Jobs queued in this step, by key.
    queued: HashMap<JobKey, pb::Job>,
    cancelled: HashSet<String>,
    /// Runs opened in this step: task → run number.
    opened_runs: HashMap<String, u64>,
    new_run_jobs: HashMap<String, usize>,
    appends: Vec<StreamAppend>,
    index: HashMap<String, usize>,
}

impl<F: FnMut() -> String> Planner<'_, F> {
    fn run(&mut self) {
        let state = self.state;
        let mut devices: BTreeMap<&str, (Trigger, LogPosition)> = state
            .dirty
            .devices
            .iter()
            .map(|(device, (at, trigger))| (device.as_str(), (*trigger, *at)))
            .collect();
        for (task_id, (at, trigger)) in &state.dirty.tasks {
            let Some(task) = state.tasks.get(task_id) else {
                continue;
            };
            if *trigger == "RunRequested" {
                // An on-demand run: its run is already open.
                self.opened_runs.entry(task_id.clone()).or_insert(task.runs);
            }
            for (device_id, device) in &state.devices {
                if covers(&task.created, device_id, device) {
                    devices.entry(device_id).or_insert((trigger, *at));
                }
            }
        }
        for (device_id, (trigger, at)) in devices {
            self.plan_device(device_id, trigger, at);
        }
        for (update_id, (at, trigger)) in &state.dirty.updates {
            self.plan_update(update_id, trigger, *at);
        }
        let mut runs: Vec<&String> = state.dirty.runs.keys().collect();
        runs.extend(state.dirty.tasks.keys());
        let opened: Vec<String> = self.opened_runs.keys().cloned().collect();
        runs.extend(opened.iter());
        runs.sort();
        runs.dedup();
        for task_id in runs {
            self.complete_run(task_id);
        }
    }

    fn plan_device(&mut self, device_id: &str, trigger: Trigger, at: LogPosition) {
        let Some(device) = self.state.devices.get(device_id) else {
            return;
        };
        for update_id in device.required.keys() {
            self.ensure_install(device_id, update_id, trigger, at);
        }
        // Queued jobs the latest scan no longer asks for.
        if let Some(open) = self.state.open_jobs.get(device_id) {
            for job_id in open.values() {
                let Some(entry) = self.state.jobs.get(job_id) else {
                    continue;
                };
                if entry.status == JobStatus::Queued
                    && entry.job.kind == pb::JobKind::Install as i32
                    && !device.required.contains_key(&entry.job.update_id)
                {
                    self.cancel(job_id, "no longer required by the device's latest scan", at);
                }
            }
        }
    }

    fn plan_update(&mut self, update_id: &str, trigger: Trigger, at: LogPosition) {
        let state = self.state;
        if let Some(devices) = state.requiring.get(update_id) {
            for device_id in devices {
                self.ensure_install(device_id, update_id, trigger, at);
            }
        }
        let declined = state.approvals.get(update_id) == Some(&ApprovalStatus::Declined);
        let Some(update) = state.updates.get(update_id) else {
            return;
        };
        let first_party = update.details.kind == catalog::UpdateKind::FirstParty as i32;
        if !(declined && first_party && update.details.uninstallable) {
            return;
        }
        // A declined first-party update comes off every device it is installed on.
        for device_id in state.devices.keys() {
            let Some(install) = state.latest(device_id, update_id, pb::JobKind::Install) else {
                continue;
            };
            if !install.status.is_done() {
                continue;
            }
            let uninstall = state.latest(device_id, update_id, pb::JobKind::Uninstall);
            if uninstall.is_some_and(|u| u.queued_position > install.queued_position) {
                continue;
            }
            let task_id = install.job.task_id.clone();
            let mut job = install.job.clone();
            job.kind = pb::JobKind::Uninstall as i32;
            job.attempt = 1;
            self.queue(&task_id, job, trigger, at);
        }
    }

    /// Queues, retries or cancels the install of `update_id` on `device_id`.
    fn ensure_install(
        &mut self,
        device_id: &str,
        update_id: &str,
        trigger: Trigger,
        at: LogPosition,
    ) {
        let state = self.state;
        let key: JobKey = (
            device_id.to_owned(),
            update_id.to_owned(),
            pb::JobKind::Install as i32,
        );
        if self.queued.contains_key(&key) {
            return;
        }
        let Some(device) = state.devices.get(device_id) else {
            return;
        };
        let Some(requirement) = device.required.get(update_id) else {
            return;
        };
        let mut allowing = None;
        let mut refusal = None;
        for (task_id, task) in &state.tasks {
            if !covers(&task.created, device_id, device) {
                continue;
            }
            match verdict(&task.created, update_id, state, self.server) {
                Verdict::Install => {
                    allowing = Some((task_id, task));
                    break;
                }
                Verdict::Wait(reason) | Verdict::Refuse(reason) => {
                    refusal.get_or_insert(reason);
                }
            }
        }
        let latest = state.latest(device_id, update_id, pb::JobKind::Install);
        let Some((task_id, task)) = allowing else {
            if let (Some(latest), Some(reason)) = (latest, refusal)
                && latest.status == JobStatus::Queued
            {
                let job_id = latest.job.job_id.clone();
                self.cancel(&job_id, reason, at);
            }
            return;
        };
        let attempt = match latest.map(|l| (l.status, l.job.attempt)) {
            Some((JobStatus::Queued | JobStatus::Dispatched, _)) => return,
            Some((status, _)) if status.is_done() => return,
            Some((JobStatus::Failed, attempt)) if attempt >= max_attempts(&task.created) => return,
            Some((JobStatus::Failed, attempt)) => attempt + 1,
            _ => 1,
        };
        let details = state
            .updates
            .get(update_id)
            .map(|u| u.details.clone())
            .unwrap_or_default();
        let kb_article = match &details.applicability {
            Some(catalog::update_details::Applicability::Windows(windows)) => {
                windows.kb_article.clone()
            }
            _ => String::new(),
        };
        let reboot = task.created.rules.as_ref().map_or(0, |r| r.reboot);
        let job = pb::Job {
            job_id: String::new(),
            task_id: task_id.clone(),
            run: 0,
            device_id: device_id.to_owned(),
            update_id: update_id.to_owned(),
            kind: pb::JobKind::Install as i32,
            package: requirement.package.clone(),
            version: requirement.version.clone(),
            architecture: requirement.architecture.clone(),
            kb_article,
            attempt,
            reboot,
            trigger: String::new(),
        };
        self.queue(&task_id.clone(), job, trigger, at);
    }

    fn queue(&mut self, task_id: &str, mut job: pb::Job, trigger: Trigger, at: LogPosition) {
        let run = self.open_run(task_id, trigger, at);
        job.job_id = (self.new_job_id)();
        job.run = run;
        job.trigger = trigger.to_owned();
        let key = (job.device_id.clone(), job.update_id.clone(), job.kind);
        *self.new_run_jobs.entry(task_id.to_owned()).or_default() += 1;
        let event = if job.kind == pb::JobKind::Uninstall as i32 {
            InstallingEvent::UninstallJobQueued(pb::UninstallJobQueued {
                job: Some(job.clone()),
            })
        } else {
            InstallingEvent::InstallJobQueued(pb::InstallJobQueued {
                job: Some(job.clone()),
            })
        };
        self.append(
            &job_stream(&job.job_id),
            ExpectedVersion::NoStream,
            event,
            at,
        );
        self.queued.insert(key, job);
    }

    /// The task's open run, opening one (`InstallTaskRunRequested`) if none is.
    fn open_run(&mut self, task_id: &str, trigger: Trigger, at: LogPosition) -> u64 {
        if let Some(run) = self.opened_runs.get(task_id) {
            return *run;
        }
        let Some(task) = self.state.tasks.get(task_id) else {
            return 0;
        };
        if task.run_open {
            return task.runs;
        }
        let run = task.runs + 1;
        self.opened_runs.insert(task_id.to_owned(), run);
        self.append(
            &task_stream(task_id),
            ExpectedVersion::Exact(task.version),
            InstallingEvent::InstallTaskRunRequested(pb::InstallTaskRunRequested {
                task_id: task_id.to_owned(),
                run,
                trigger: trigger.to_owned(),
            }),
            at,
        );
        run
    }

    fn cancel(&mut self, job_id: &str, reason: &str, at: LogPosition) {
        let Some(entry) = self.state.jobs.get(job_id) else {
            return;
        };
        if !self.cancelled.insert(job_id.to_owned()) {
            return;
        }
        self.append(
            &job_stream(job_id),
            ExpectedVersion::Exact(entry.version),
            InstallingEvent::InstallJobCancelled(pb::InstallJobCancelled {
                job_id: job_id.to_owned(),
                device_id: entry.job.device_id.clone(),
                reason: reason.to_owned(),
            }),
            at,
        );
    }

    /// Completes the task's open run when every job in it is final.
    fn complete_run(&mut self, task_id: &str) {
        let Some(task) = self.state.tasks.get(task_id) else {
            return;
        };
        let run = match self.opened_runs.get(task_id) {
            Some(run) => *run,
            None if task.run_open => task.runs,
            None => return,
        };
        if self.new_run_jobs.get(task_id).copied().unwrap_or(0) > 0 {
            return;
        }
        let opened_now = self.opened_runs.contains_key(task_id) && !task.run_open;
        let jobs: Vec<_> = if opened_now {
            Vec::new()
        } else {
            task.run_jobs
                .iter()
                .filter_map(|job_id| self.state.jobs.get(job_id))
                .collect()
        };
        if jobs
            .iter()
            .any(|job| !job.status.is_final() && !self.cancelled.contains(&job.job.job_id))
        {
            return;
        }
        // Only the last attempt per device, update and kind counts.
        let mut last: HashMap<JobKey, (u32, JobStatus)> = HashMap::new();
        for job in &jobs {
            let status = if self.cancelled.contains(&job.job.job_id) {
                JobStatus::Cancelled
            } else {
                job.status
            };
            let key = (
                job.job.device_id.clone(),
                job.job.update_id.clone(),
                job.job.kind,
            );
            let entry = last.entry(key.clone()).or_insert((job.job.attempt, status));
            if job.job.attempt >= entry.0 {
                *entry = (job.job.attempt, status);
            }
        }
        let mut completed = pb::InstallTaskRunCompleted {
            task_id: task_id.to_owned(),
            run,
            ..Default::default()
        };
        for ((_, _, kind), (_, status)) in &last {
            let uninstall = *kind == pb::JobKind::Uninstall as i32;
            match status {
                JobStatus::Succeeded if uninstall => completed.uninstalled += 1,
                JobStatus::Succeeded => completed.succeeded += 1,
                JobStatus::RebootRequired => completed.reboot_required += 1,
                JobStatus::Failed => completed.failed += 1,
                JobStatus::Cancelled => completed.cancelled += 1,
                JobStatus::Queued | JobStatus::Dispatched => {}
            }
        }
        let done = completed.succeeded + completed.reboot_required + completed.uninstalled;
        completed.status = if completed.failed == 0 {
            "Completed successfully"
        } else if done > 0 {
            "Completed with errors"
        } else {
            "Failed"
        }
        .to_owned();
        let at = self
            .state
            .dirty
            .runs
            .get(task_id)
            .copied()
            .unwrap_or_default();
        self.append(
            &task_stream(task_id),
            ExpectedVersion::Exact(task.version),
            InstallingEvent::InstallTaskRunCompleted(completed),
            at,
        );
    }

    /// Adds an event to its stream's append; a stream's events stay together, in order.
    /// `at` is the position of the event it was decided on (its cause, if known).
    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedVersion,
        event: InstallingEvent,
        at: LogPosition,
    ) {
        let cause = self.state.dirty.causes.get(&at).cloned();
        match self.index.get(stream) {
            Some(index) => {
                self.appends[*index].events.push(event);
                self.appends[*index].causes.push(cause);
            }
            None => {
                self.index.insert(stream.to_owned(), self.appends.len());
                self.appends.push(StreamAppend {
                    stream: stream.to_owned(),
                    expected,
                    events: vec![event],
                    causes: vec![cause],
                });
            }
        }
    }
}
