//! One sync run's summary, folded from its stream: started, progress, completed or failed.

use chrono::{DateTime, Utc};
use patchbay_proto::wsus::v1 as pb;

use crate::events::WsusEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunState {
    #[default]
    Running,
    Completed,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
        }
    }
}

/// What `patchbay wsus runs` shows of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub state: RunState,
    pub trigger: String,
    pub incremental: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub phase: String,
    pub done: u32,
    pub total: u32,
    pub completed: Option<pb::WsusSyncCompleted>,
    pub failed: Option<pb::WsusSyncFailed>,
}

/// Folds one event of a run's stream into its summary (`at` = when it was recorded).
pub fn evolve_run(mut run: RunSummary, event: &WsusEvent, at: DateTime<Utc>) -> RunSummary {
    match event {
        WsusEvent::WsusSyncStarted(started) => {
            run.run_id = started.run_id.clone();
            run.trigger = started.trigger.clone();
            run.incremental = started.incremental;
            run.started_at = Some(at);
            run.state = RunState::Running;
            run.phase = "authorization".into();
        }
        WsusEvent::WsusSyncProgressed(progress) => {
            run.phase = progress.phase.clone();
            run.done = progress.done;
            run.total = progress.total;
        }
        WsusEvent::WsusSyncCompleted(completed) => {
            run.state = RunState::Completed;
            run.finished_at = Some(at);
            run.completed = Some(completed.clone());
        }
        WsusEvent::WsusSyncFailed(failed) => {
            run.state = RunState::Failed;
            run.finished_at = Some(at);
            run.phase = failed.phase.clone();
            run.failed = Some(failed.clone());
        }
        _ => {}
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_goes_from_started_through_progress_to_completed_or_failed() {
        let at = Utc::now();
        let started = evolve_run(
            RunSummary::default(),
            &WsusEvent::WsusSyncStarted(pb::WsusSyncStarted {
                run_id: "r1".into(),
                trigger: "manual".into(),
                ..Default::default()
            }),
            at,
        );
        assert_eq!(started.state, RunState::Running);
        let progressed = evolve_run(
            started.clone(),
            &WsusEvent::WsusSyncProgressed(pb::WsusSyncProgressed {
                phase: "updates".into(),
                done: 50,
                total: 120,
                ..Default::default()
            }),
            at,
        );
        assert_eq!((progressed.done, progressed.total), (50, 120));
        let failed = evolve_run(
            progressed,
            &WsusEvent::WsusSyncFailed(pb::WsusSyncFailed {
                phase: "updates".into(),
                reason: "the upstream is busy".into(),
                error_code: "ServerBusy".into(),
                ..Default::default()
            }),
            at,
        );
        assert_eq!(failed.state, RunState::Failed);
        assert_eq!(failed.finished_at, Some(at));
        let completed = evolve_run(
            started,
            &WsusEvent::WsusSyncCompleted(pb::WsusSyncCompleted::default()),
            at,
        );
        assert_eq!(completed.state, RunState::Completed);
    }
}
