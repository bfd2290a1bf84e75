//! The installing service: install tasks, the planner that turns scans and approvals into install and
//! uninstall jobs, and the job stream agents run them from.
