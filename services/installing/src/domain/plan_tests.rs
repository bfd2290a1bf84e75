//! Given/when/then tests of the planner: facts in, jobs out.

use chrono::Utc;
use patchbay_eventstore::LogPosition;
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::installing::v1 as pb;
use patchbay_proto::scanning::v1 as scanning;
use prost::Message;

use super::plan::plan;
use super::state::InstallingState;
use crate::events::InstallingEvent;

/// The cause the world gives the event at `position`.
fn cause_at(position: u64) -> super::state::Cause {
    super::state::Cause {
        event_id: uuid::Uuid::from_u128(u128::from(position)),
        correlation_id: uuid::Uuid::from_u128(1_000_000 + u128::from(position)),
        traceparent: Some(format!("00-{position:032x}-{position:016x}-01")),
        tracestate: None,
    }
}

struct World {
    state: InstallingState,
    position: u64,
    versions: std::collections::HashMap<String, u64>,
    next_job: u32,
    server: semver::Version,
}

impl World {
    fn new() -> Self {
        Self {
            state: InstallingState::default(),
            position: 0,
            versions: Default::default(),
            next_job: 0,
            server: semver::Version::new(0, 1, 0),
        }
    }

    fn apply(&mut self, stream: &str, event: &InstallingEvent) {
        self.position += 1;
        let version = self.versions.entry(stream.to_owned()).or_default();
        *version += 1;
        let position = LogPosition {
            commit_id: 0,
            global_position: self.position,
        };
        self.state
            .apply(
                event,
                position,
                *version,
                Utc::now(),
                Some(cause_at(self.position)),
            )
            .unwrap();
    }

    fn fact(&mut self, service: &str, event_type: &str, payload: impl Message) {
        let event = InstallingEvent::ForeignEventObserved(pb::ForeignEventObserved {
            service: service.into(),
            event_type: event_type.into(),
            schema_version: 1,
            payload: payload.encode_to_vec(),
            position: 0,
        });
        self.apply(&format!("facts-{service}"), &event);
    }

    fn update(&mut self, id: &str, details: catalog::UpdateDetails) {
        self.fact(
            "catalog",
            "UpdatePublished",
            catalog::UpdatePublished {
                update_id: id.into(),
                details: Some(details),
            },
        );
    }

    fn device(&mut self, id: &str, groups: &[&str]) {
        self.fact(
            "scanning",
            "DeviceRegistered",
            scanning::DeviceRegistered {
                device_id: id.into(),
                hostname: format!("host-{id}"),
                credential_sha256: super::credential_digest("secret"),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        );
    }

    fn scan(&mut self, device: &str, required: &[&str]) {
        self.fact(
            "scanning",
            "ScanCompleted",
            scanning::ScanCompleted {
                device_id: device.into(),
                required: required
                    .iter()
                    .map(|id| scanning::RequiredUpdate {
                        update_id: id.to_string(),
                        package_or_product: format!("pkg-{id}"),
                        required_version: "2.0".into(),
                        installed_version: "1.0".into(),
                        architecture: "amd64".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        );
    }

    fn approve(&mut self, id: &str) {
        self.fact(
            "approvals",
            "UpdateApproved",
            approvals::UpdateApproved {
                update_id: id.into(),
                ..Default::default()
            },
        );
    }

    fn decline(&mut self, id: &str) {
        self.fact(
            "approvals",
            "UpdateDeclined",
            approvals::UpdateDeclined {
                update_id: id.into(),
                ..Default::default()
            },
        );
    }

    fn task(&mut self, id: &str, rules: pb::InstallRules) {
        let created = InstallingEvent::InstallTaskCreated(pb::InstallTaskCreated {
            task_id: id.into(),
            name: id.into(),
            kind: pb::TaskKind::InstallRequired as i32,
            rules: Some(rules),
            targets: Some(pb::InstallTargets {
                all_devices: true,
                ..Default::default()
            }),
            update_ids: vec![],
            schedule: "manual".into(),
        });
        self.apply(&format!("installtask-{id}"), &created);
    }

    /// Runs the planner and commits its decisions; returns them without the marker.
    fn plan(&mut self) -> Vec<InstallingEvent> {
        let through = LogPosition {
            commit_id: 0,
            global_position: self.position,
        };
        let mut counter = self.next_job;
        let appends = plan(&self.state, through, &self.server, || {
            counter += 1;
            format!("j{counter}")
        });
        self.next_job = counter;
        let mut decided = Vec::new();
        for append in appends {
            for event in &append.events {
                self.apply(&append.stream, event);
                if !matches!(event, InstallingEvent::PlannedThrough(_)) {
                    decided.push(event.clone());
                }
            }
        }
        decided
    }

    fn report(&mut self, job_id: &str, event: InstallingEvent) {
        let dispatched = InstallingEvent::InstallJobDispatched(pb::InstallJobDispatched {
            job_id: job_id.into(),
            device_id: String::new(),
        });
        self.apply(&format!("job-{job_id}"), &dispatched);
        self.apply(&format!("job-{job_id}"), &event);
    }
}

fn security(vendor: &str) -> catalog::UpdateDetails {
    catalog::UpdateDetails {
        title: "openssl 3.0.15".into(),
        vendor: vendor.into(),
        product: "openssl".into(),
        kind: catalog::UpdateKind::ThirdParty as i32,
        classification: catalog::Classification::Security as i32,
        severity: catalog::Severity::Critical as i32,
        ..Default::default()
    }
}

fn queued(events: &[InstallingEvent]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            InstallingEvent::InstallJobQueued(pb::InstallJobQueued { job: Some(job) }) => Some((
                job.device_id.clone(),
                job.update_id.clone(),
                job.trigger.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn count(events: &[InstallingEvent], event_type: &str) -> usize {
    events
        .iter()
        .filter(|e| e.event_type() == event_type)
        .count()
}

#[test]
fn a_scan_queues_only_the_approved_updates_a_task_allows() {
    let mut world = World::new();
    world.update("u1", security("Debian"));
    world.update("u2", security("Debian"));
    world.approve("u1");
    world.device("d1", &[]);
    world.task("t", pb::InstallRules::default());
    world.plan();
    world.scan("d1", &["u1", "u2"]);

    let decided = world.plan();

    assert_eq!(
        queued(&decided),
        vec![("d1".into(), "u1".into(), "ScanCompleted".into())]
    );
    assert_eq!(count(&decided, "InstallTaskRunRequested"), 1);
    assert!(world.plan().is_empty(), "planning again decides nothing");
}

#[test]
fn an_approval_queues_the_update_on_every_covered_device_that_requires_it() {
    let mut world = World::new();
    world.update("u1", security("Debian"));
    world.device("d1", &[]);
    world.device("d2", &[]);
    world.task("t", pb::InstallRules::default());
    world.scan("d1", &["u1"]);
    world.scan("d2", &[]);
    assert!(queued(&world.plan()).is_empty());

    world.approve("u1");
    let decided = world.plan();

    assert_eq!(
        queued(&decided),
        vec![("d1".into(), "u1".into(), "UpdateApproved".into())]
    );
}

#[test]
fn rules_filter_by_severity_classification_and_vendor() {
    let mut world = World::new();
    let mut low = security("Debian");
    low.severity = catalog::Severity::Low as i32;
    world.update("low", low);
    world.update("other-vendor", security("Acme"));
    world.update("ok", security("Debian"));
    for id in ["low", "other-vendor", "ok"] {
        world.approve(id);
    }
    world.device("d1", &[]);
    world.task(
        "t",
        pb::InstallRules {
            min_severity: catalog::Severity::Important as i32,
            classifications: vec![catalog::Classification::Security as i32],
            vendors: vec!["debian".into()],
            ..Default::default()
        },
    );
    world.scan("d1", &["low", "other-vendor", "ok"]);

    assert_eq!(
        queued(&world.plan()),
        vec![("d1".into(), "ok".into(), "ScanCompleted".into())]
    );
}

#[test]
fn a_decline_cancels_queued_jobs_and_uninstalls_only_first_party_uninstallable_updates() {
    let mut world = World::new();
    let mut first_party = security("Patchbay");
    first_party.kind = catalog::UpdateKind::FirstParty as i32;
    first_party.uninstallable = true;
    world.update("fp", first_party);
    world.update("tp", security("Debian"));
    world.update("pending", security("Debian"));
    for id in ["fp", "tp", "pending"] {
        world.approve(id);
    }
    world.device("d1", &[]);
    world.task("t", pb::InstallRules::default());
    world.scan("d1", &["fp", "tp", "pending"]);
    world.plan();
    // fp and tp get installed; pending stays queued.
    let job_of = |world: &World, update: &str| {
        world
            .state
            .latest("d1", update, pb::JobKind::Install)
            .unwrap()
            .job
            .job_id
            .clone()
    };
    for update in ["fp", "tp"] {
        let job_id = job_of(&world, update);
        world.report(
            &job_id,
            InstallingEvent::InstallJobSucceeded(pb::InstallJobSucceeded {
                job_id: job_id.clone(),
                device_id: "d1".into(),
                output: String::new(),
            }),
        );
    }
    world.plan();

    world.decline("fp");
    world.decline("tp");
    world.decline("pending");
    let decided = world.plan();

    assert_eq!(count(&decided, "UninstallJobQueued"), 1);
    let InstallingEvent::UninstallJobQueued(pb::UninstallJobQueued { job: Some(job) }) = decided
        .iter()
        .find(|e| e.event_type() == "UninstallJobQueued")
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(job.update_id, "fp");
    assert_eq!(count(&decided, "InstallJobCancelled"), 1);
    assert_eq!(count(&decided, "InstallJobQueued"), 0);
}

#[test]
fn an_update_needing_a_newer_server_is_never_installed_even_by_an_install_all_task() {
    let mut world = World::new();
    let mut details = security("Debian");
    details.min_server_version = "9.0.0".into();
    world.update("new", details);
    world.approve("new");
    world.device("d1", &[]);
    world.task(
        "t",
        pb::InstallRules {
            approval: pb::ApprovalRequirement::All as i32,
            ..Default::default()
        },
    );
    world.scan("d1", &["new"]);

    assert!(queued(&world.plan()).is_empty());
}

#[test]
fn an_update_waits_for_its_eula_and_a_new_eula_text_needs_a_new_acceptance() {
    let mut world = World::new();
    let mut details = security("Debian");
    details.eula = Some(catalog::Eula {
        eula_id: "e1".into(),
        text_sha256: "aaa".into(),
    });
    world.update("u1", details.clone());
    world.approve("u1");
    world.device("d1", &[]);
    world.device("d2", &[]);
    world.task("t", pb::InstallRules::default());
    world.scan("d1", &["u1"]);
    assert!(queued(&world.plan()).is_empty(), "waits for the EULA");

    world.fact(
        "approvals",
        "EulaAccepted",
        approvals::EulaAccepted {
            eula_id: "e1".into(),
            text_sha256: "aaa".into(),
        },
    );
    assert_eq!(
        queued(&world.plan()),
        vec![("d1".into(), "u1".into(), "EulaAccepted".into())]
    );

    // A new revision changes the text: the next device waits again.
    details.eula = Some(catalog::Eula {
        eula_id: "e1".into(),
        text_sha256: "bbb".into(),
    });
    world.fact(
        "catalog",
        "UpdateRevised",
        catalog::UpdateRevised {
            update_id: "u1".into(),
            revision: 2,
            details: Some(details),
        },
    );
    world.scan("d2", &["u1"]);
    let decided = world.plan();
    assert!(queued(&decided).is_empty());
    assert_eq!(
        count(&decided, "InstallJobCancelled"),
        1,
        "d1's queued job waits for the new acceptance"
    );
}

#[test]
fn failures_are_retried_up_to_the_limit_and_the_run_ends_with_a_status() {
    let mut world = World::new();
    world.update("u1", security("Debian"));
    world.approve("u1");
    world.device("d1", &[]);
    world.task(
        "t",
        pb::InstallRules {
            max_attempts: 2,
            ..Default::default()
        },
    );
    world.scan("d1", &["u1"]);
    world.plan();
    let fail = |world: &mut World| {
        let job_id = world
            .state
            .latest("d1", "u1", pb::JobKind::Install)
            .unwrap()
            .job
            .job_id
            .clone();
        world.report(
            &job_id,
            InstallingEvent::InstallJobFailed(pb::InstallJobFailed {
                job_id: job_id.clone(),
                device_id: "d1".into(),
                reason: "E: broken".into(),
            }),
        );
        world.plan()
    };

    let retry = fail(&mut world);
    assert_eq!(queued(&retry).len(), 1, "second attempt");
    assert_eq!(count(&retry, "InstallTaskRunCompleted"), 0);

    let last = fail(&mut world);
    assert!(queued(&last).is_empty(), "no third attempt");
    let completed = last
        .iter()
        .find_map(|e| match e {
            InstallingEvent::InstallTaskRunCompleted(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(completed.status, "Failed");
    assert_eq!(completed.failed, 1, "only the last attempt counts");
}

#[test]
fn a_run_on_demand_with_nothing_to_do_completes_successfully() {
    let mut world = World::new();
    world.device("d1", &[]);
    world.task("t", pb::InstallRules::default());
    world.plan();
    world.apply(
        "installtask-t",
        &InstallingEvent::InstallTaskRunRequested(pb::InstallTaskRunRequested {
            task_id: "t".into(),
            run: 1,
            trigger: super::state::ON_DEMAND.into(),
        }),
    );

    let decided = world.plan();

    assert_eq!(count(&decided, "InstallTaskRunCompleted"), 1);
    assert_eq!(
        world.state.tasks["t"].last_run_status,
        "Completed successfully"
    );
}

#[test]
fn a_job_names_the_approval_that_queued_it_as_its_cause() {
    let mut world = World::new();
    world.update("u1", security("Debian"));
    world.device("d1", &[]);
    world.task("t", pb::InstallRules::default());
    world.scan("d1", &["u1"]);
    world.plan();
    world.approve("u1");
    let approval_at = world.position;

    let appends = plan(
        &world.state,
        LogPosition {
            commit_id: 0,
            global_position: world.position,
        },
        &world.server,
        || "j1".to_owned(),
    );

    let job = appends
        .iter()
        .find(|a| a.stream == "job-j1")
        .expect("a job for the approved update");
    assert_eq!(job.causes, [Some(cause_at(approval_at))]);
    let marker = appends.last().unwrap();
    assert_eq!(
        marker.causes,
        [None],
        "the planner's marker has no single cause"
    );
}
