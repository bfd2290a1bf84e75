//! The installing domain, pure and synchronous: the state folded from the log, the rules tasks apply,
//! the planner's decisions, and the commands on tasks and jobs.

pub mod commands;
pub mod plan;
pub mod rules;
pub mod state;

#[cfg(test)]
mod plan_tests;

pub use commands::{
    InstallingError, JobCommand, TaskCommand, credential_digest, decide_job, decide_task,
};
pub use plan::{StreamAppend, plan};
pub use state::{InstallingState, JobEntry, JobStatus, TaskEntry};
