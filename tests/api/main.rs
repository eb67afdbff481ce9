//! Black-box tests of the core service over HTTP and the CLI.

mod helpers;

mod approvals;
mod audit;
mod bad_input;
mod connections;
mod crash;
mod decisions;
mod rate_limit;
mod signals;
mod ssrf;
mod webhooks;
