//! `GET /ui/events`: Server-Sent Events for the live inbox. A `changed`
//! event follows every wake-up of the long-poll waiters (a request made,
//! decided, expired or cancelled, on this replica or, through PostgreSQL's
//! notifications, on another); the page's script then re-reads its list.
//! Nothing about the change is sent: the list is read with the session's
//! own rights.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use super::session::Signed;
use crate::service::App;

pub async fn stream(
    State(app): State<App>,
    _signed: Signed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changed = app.store.waiters.changed();
    let stopping = app.stopping.clone();
    let events =
        futures::stream::unfold((changed, stopping), |(mut changed, stopping)| async move {
            tokio::select! {
                r = changed.changed() => r.ok()?,
                _ = stopping.cancelled() => return None,
            }
            // A burst of commits becomes one event.
            tokio::time::sleep(Duration::from_millis(150)).await;
            changed.borrow_and_update();
            Some((
                Ok(Event::default().event("changed").data("changed")),
                (changed, stopping),
            ))
        });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
