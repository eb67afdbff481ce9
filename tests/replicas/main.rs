//! Several replicas of the real binary on one PostgreSQL database, as an
//! operator runs them behind a load balancer: real processes sharing one
//! database URL, one signing key and one permit key, each on its own port.
//! Skipped with a note when `COUNTERSIGN_TEST_POSTGRES_URL` is unset.
//!
//! The tests here run one at a time ([`SERIAL`]): one of them stops the
//! PostgreSQL server itself, and the others measure wake-up times.

#[path = "../slack/fake_slack.rs"]
mod fake_slack;
#[path = "../slack/fake_socket.rs"]
mod fake_socket;
#[path = "../api/helpers.rs"]
mod helpers;

mod cluster;

mod everywhere;
mod outage;
mod socket_mode;
mod sweepers;
mod waking;
mod writers;

/// Held by each test for its whole run.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
