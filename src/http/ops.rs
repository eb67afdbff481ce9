//! Health, readiness and Prometheus metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::service::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

/// The process-wide recorder. Installed once, so several apps in one test
/// process share it.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("countersign_time_to_decision_seconds".into()),
                &[
                    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0,
                ],
            )
            .expect("valid buckets")
            .set_buckets_for_metric(
                Matcher::Full("countersign_write_batch_size".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            )
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// What `/readyz` reports beside the database, set at start
/// ([`crate::startup`]).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Slack's Socket Mode connection, when an app token is set.
    pub slack_socket_mode: Option<crate::channels::slack::socket_mode::SocketStatus>,
}

/// The database answers reads. With Slack Socket Mode configured, the
/// answer also says whether its connection is up (`slack_socket_mode`);
/// a replica without it still serves the API and still gets 200, since
/// another replica's connection may take the clicks.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "The database does not answer")))]
pub async fn readyz(
    State(app): State<App>,
    readiness: Option<Extension<Readiness>>,
) -> impl IntoResponse {
    let socket = readiness.and_then(|Extension(r)| r.slack_socket_mode);
    match app.store.ping().await {
        Ok(()) => {
            let mut body = json!({ "status": "ready" });
            if let Some(s) = socket {
                body["slack_socket_mode"] = s.report();
            }
            (StatusCode::OK, Json(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "detail": "the database does not answer" })),
            )
        }
    }
}

/// Prometheus text: final statuses, time to decision, pending count, outbox backlog.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics_text(State(app): State<App>) -> impl IntoResponse {
    let handle = metrics_handle();
    // Gauges read from the database at scrape time, so they are right even
    // after a restart or when several processes share the file.
    if let Ok(pending) = crate::store::requests::pending_count(&app.store).await {
        metrics::gauge!("countersign_pending_requests").set(pending as f64);
    }
    if let Ok(backlog) = crate::store::outbox::backlog(&app.store).await {
        metrics::gauge!("countersign_outbox_backlog").set(backlog as f64);
    }
    metrics::gauge!("countersign_long_polls_waiting").set(app.store.waiters.len() as f64);
    metrics::gauge!("countersign_wal_frames_pending").set(
        app.store
            .wal_backlog
            .load(std::sync::atomic::Ordering::Relaxed) as f64,
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
