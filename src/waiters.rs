//! In-process wake-up of long-polling agents.
//!
//! A waiter subscribes *before* it reads the request, then sleeps on its
//! `Notified`; the writer wakes every waiter of a request after the commit
//! that changed it. Subscribing first closes the gap in which a decision
//! could land between the read and the sleep. Nothing polls the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Clone)]
pub struct Waiters {
    inner: Arc<Mutex<HashMap<Uuid, Arc<Notify>>>>,
    /// Bumped with every wake-up: the console's live pages (`/ui/events`)
    /// hear of any change through the same wake-ups as the long-polls. A
    /// watch, not a `Notify`: a change while the page is being told of the
    /// last one is not lost.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            inner: Default::default(),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

/// A subscription; dropping it forgets the request once nobody waits.
pub struct Subscription {
    id: Uuid,
    notify: Arc<Notify>,
    waiters: Waiters,
}

impl Waiters {
    pub fn subscribe(&self, id: Uuid) -> Subscription {
        let notify = self
            .inner
            .lock()
            .expect("waiters lock")
            .entry(id)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        Subscription {
            id,
            notify,
            waiters: self.clone(),
        }
    }

    pub fn wake(&self, id: &Uuid) {
        if let Some(n) = self.inner.lock().expect("waiters lock").get(id) {
            n.notify_waiters();
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever any request's waiters are woken.
    pub fn changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes every waiter (each re-reads its request): when wake-ups may
    /// have been missed, e.g. while the listener for other replicas'
    /// commits was reconnecting.
    pub fn wake_all(&self) {
        for n in self.inner.lock().expect("waiters lock").values() {
            n.notify_waiters();
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("waiters lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Subscription {
    /// A future that completes on the next wake. Call `enable` on it (via
    /// `std::pin::pin!` + `as_mut().enable()`) before reading state.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.waiters.inner.lock().expect("waiters lock");
        // Two references left: the map's and ours.
        if Arc::strong_count(&self.notify) <= 2 {
            map.remove(&self.id);
        }
    }
}
