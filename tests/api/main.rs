//! Black-box tests of the core service over HTTP and the CLI.

mod helpers;

mod approvals;
mod audit;
mod bad_input;
mod canonical;
mod checkpoint_sinks;
mod checkpoints;
mod connections;
mod contract;
mod crash;
mod decisions;
mod exact_json;
mod fuzz_found;
mod rate_limit;
mod rule_leaks;
mod signals;
mod ssrf;
mod tamper;
mod webhooks;
