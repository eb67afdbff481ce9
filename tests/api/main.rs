//! Black-box tests of the core service over HTTP and the CLI.

mod helpers;

mod approvals;
mod audit;
mod bad_input;
mod canonical;
mod crash;
mod decisions;
mod exact_json;
mod rule_leaks;
mod signals;
mod webhooks;
