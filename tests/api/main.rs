//! Black-box tests of the core service over HTTP and the CLI.

mod helpers;

mod approvals;
mod audit;
mod bad_input;
mod checkpoints;
mod crash;
mod decisions;
mod signals;
mod tamper;
mod webhooks;
