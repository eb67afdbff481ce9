#[path = "../api/helpers.rs"]
mod helpers;

// Black-box tests of the Slack channel: the real service, its real
// endpoints and outbox, against a fake Slack Web API on loopback
// (`fake_slack`), with requests signed as Slack signs them (`support`).

mod fake_slack;
mod fake_socket;
mod support;

mod audit_command;
mod checkpoints;
mod decisions;
mod delivery;
mod escalation;
mod inert;
mod kit;
mod manifest;
mod signatures;
mod socket_mode;
