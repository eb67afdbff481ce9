#[path = "../api/helpers.rs"]
mod helpers;

// Black-box tests of the agent side: the real service on loopback, the
// real `countersign` binary as Claude Code, a CI step or a shell would run
// it (COUNTERSIGN_URL / COUNTERSIGN_TOKEN), and a person deciding over the
// API while the binary waits.

mod support;

mod exec;
mod hook;
mod permits;
mod request;
