//! The Socket Mode connection's state, as `/readyz` reports it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::clock;

#[derive(Debug, Default)]
struct State {
    connected_since: Option<DateTime<Utc>>,
    /// Connections opened (said hello) since start.
    connections: u64,
    /// Why the last attempt or connection ended, for the operator.
    last_problem: Option<String>,
}

/// Shared between the listener, which writes it, and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct SocketStatus(Arc<Mutex<State>>);

impl SocketStatus {
    pub fn connected(&self) {
        let mut s = self.0.lock().expect("status lock");
        s.connected_since = Some(clock::now());
        s.connections += 1;
    }

    /// Not connected any more (or not yet), and why.
    pub fn down(&self, why: impl Into<String>) {
        let mut s = self.0.lock().expect("status lock");
        s.connected_since = None;
        s.last_problem = Some(why.into());
    }

    pub fn is_connected(&self) -> bool {
        self.0
            .lock()
            .expect("status lock")
            .connected_since
            .is_some()
    }

    /// What `/readyz` shows under `slack_socket_mode`.
    pub fn report(&self) -> Value {
        let s = self.0.lock().expect("status lock");
        json!({
            "connected": s.connected_since.is_some(),
            "connected_since": s.connected_since.map(clock::fmt),
            "connections_opened": s.connections,
            "last_problem": s.last_problem,
        })
    }
}
