//! Building and running the service: open the store, load the policy, wire
//! the outbox handlers and channel routers, bind, serve, shut down cleanly.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::{NetworkSettings, Settings};
use crate::domain::Policy;
use crate::outbox::Outbox;
use crate::service::App;
use crate::store::Store;

/// Installs the process-wide TLS crypto provider (ring). reqwest is built
/// without one, and a second provider in the build would make the first
/// TLS client panic; doing it here covers the binary and the tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn load_policy(settings: &Settings) -> anyhow::Result<Policy> {
    match &settings.policy {
        Some(path) => Policy::load(path).map_err(|e| anyhow::anyhow!(e)),
        None => Ok(Policy::built_in()),
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub app: App,
    listener: TcpListener,
    router: Router,
    outbox: Outbox,
    checkpoints: Option<crate::checkpoint_sinks::Publisher>,
    slack_socket_mode: Option<crate::channels::slack::socket_mode::SocketMode>,
}

impl Server {
    /// Everything that can fail at start fails here, before the port opens.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        install_crypto_provider();
        crate::http::ops::metrics_handle();
        let policy = load_policy(&settings)?;
        let store = Store::open_with_signer(
            &settings.db,
            crate::store::audit::Signer::from_settings(&settings)?,
            settings.read_connections,
        )
        .await?;
        crate::store::audit::warn_if_key_beside_db(&settings);
        if let Some(path) = &settings.audit_checkpoints {
            store.start_checkpoints(path)?;
        }
        let channels = crate::channels::enabled(&settings);
        let app = App::new(store.clone(), settings.clone(), policy, channels)?;
        let mut outbox = Outbox::new(store, settings.outbox.clone());
        if let Some(secret) = &settings.webhook_secret {
            outbox.register(
                crate::webhook::KIND,
                Arc::new(crate::webhook::WebhookDeliverer {
                    client: crate::net::egress::webhook_client(&settings.webhook_destinations)?,
                    secret: secret.clone(),
                    destinations: settings.webhook_destinations.clone(),
                }),
            );
        }
        let channels = crate::channels::install(&app, &mut outbox).await?;
        let checkpoints = crate::checkpoint_sinks::install(&app, &mut outbox)?;
        let readiness = crate::http::ops::Readiness {
            slack_socket_mode: channels.slack_socket_mode.as_ref().map(|s| s.status()),
        };
        let router =
            crate::http::router(app.clone(), channels.routers).layer(axum::Extension(readiness));
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener.local_addr()?;
        crate::permits::service::install(&app, addr)?;
        let _ = app.console_base.set(format!("http://{addr}"));
        Ok(Self {
            addr,
            app,
            listener,
            router,
            outbox,
            checkpoints,
            slack_socket_mode: channels.slack_socket_mode,
        })
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, lets
    /// in-flight requests finish and stops the workers.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let workers = CancellationToken::new();
        let outbox = tokio::spawn(self.outbox.run(workers.clone()));
        let expiry = tokio::spawn(self.app.clone().run_expiry(workers.clone()));
        let reminders = tokio::spawn(self.app.clone().run_reminders(workers.clone()));
        let checkpoints = self
            .checkpoints
            .map(|p| tokio::spawn(p.run(workers.clone())));
        let socket_mode = self
            .slack_socket_mode
            .map(|s| tokio::spawn(s.run(workers.clone())));
        tracing::info!(addr = %self.addr, db = %self.app.settings.db, policy = %self.app.policy().origin, "countersign listening");
        // Long-polls answer as soon as shutdown begins, so the connections
        // they hold can close and graceful shutdown does not wait a minute.
        let stopping = self.app.stopping.clone();
        let begun = shutdown.clone();
        tokio::spawn(async move {
            begun.cancelled().await;
            stopping.cancel();
        });
        serve_http(
            self.listener,
            self.router,
            self.app.settings.network.clone(),
            shutdown,
        )
        .await;
        workers.cancel();
        let _ = tokio::join!(outbox, expiry, reminders);
        if let Some(c) = checkpoints {
            let _ = c.await;
        }
        if let Some(s) = socket_mode {
            let _ = s.await;
        }
        tracing::info!("countersign stopped");
        Ok(())
    }
}

/// Accepts HTTP/1.1 and HTTP/2 (cleartext, prior knowledge: h2c)
/// connections on one port until `shutdown`, then lets the ones in flight
/// finish (long-polls answer at once: `App::stopping`).
///
/// Served with hyper's builder rather than `axum::serve` for settings it
/// does not expose: HTTP/1's read buffer is capped at hyper's minimum
/// (8 KiB) instead of growing to 16 KiB and more, which is most of what a
/// parked long-poll costs on its own connection, and `TCP_NODELAY`, so
/// small answers leave at once. An agent that holds many waits can hold
/// them as streams of one HTTP/2 connection instead (at most
/// [`MAX_STREAMS`] each), not a connection, a descriptor and a slot of the
/// cap per wait (docs/BENCH.md, g.h2, for what a stream costs).
///
/// Each connection takes a permit of the cap before it is accepted and
/// runs beside its watchdog (header and idle timeouts, closing under
/// pressure): see [`crate::net::connections`]. An HTTP/2 connection is
/// idle when none of its streams is in flight.
async fn serve_http(
    listener: TcpListener,
    router: Router,
    settings: NetworkSettings,
    shutdown: CancellationToken,
) {
    use crate::net::connections::{ConnService, ConnState, Gate, Watched, connection_cap};
    use hyper_util::rt::TokioIo;

    let (cap, fd_limit) = connection_cap(&settings);
    tracing::info!(
        max_connections = cap,
        fd_limit = fd_limit.map(|l| l.to_string()).unwrap_or_else(|| "unlimited".into()),
        header_timeout = ?settings.header_timeout,
        idle_timeout = ?settings.idle_timeout,
        "connection limits"
    );
    let gate = Gate::new(cap);
    let settings = Arc::new(settings);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // The watchdog times heads and idleness; hyper's header timer (which
    // would also cut idle keep-alives) stays off.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .max_buf_size(8 * 1024)
        .keep_alive(true)
        .header_read_timeout(None);
    // The same 8 KiB of headers HTTP/1 accepts.
    let mut http2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    http2
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(8 * 1024);
    let (http1, http2) = (Arc::new(http1), Arc::new(http2));
    loop {
        let permit = tokio::select! {
            p = gate.admit() => p,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = ConnState::new(peer);
        let service = ConnService::new(router.clone(), state.clone(), settings.header_timeout);
        let watcher = graceful.watcher();
        let (settings, gate) = (settings.clone(), gate.clone());
        let (http1, http2) = (http1.clone(), http2.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let serve = async {
                // Each protocol's connection in a box of its own size:
                // hyper_util's auto builder holds both inline, so every
                // HTTP/1 connection (every parked long-poll) would pay
                // for HTTP/2's state too.
                let h2 = starts_with_h2_preface(&stream).await;
                let io = TokioIo::new(Watched::new(stream, state.clone()));
                let connection: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> = if h2 {
                    Box::pin(watcher.watch(http2.serve_connection(io, service)))
                } else {
                    Box::pin(watcher.watch(http1.serve_connection(io, service)))
                };
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            };
            tokio::select! {
                _ = serve => {}
                // Dropping the connection closes the socket. The watchdog
                // also times a client that never sends its first bytes.
                _ = state.watchdog(&settings, &gate) => {}
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Whether a new connection opens with HTTP/2's preface (`PRI *
/// HTTP/2.0…`), which no HTTP/1 request line can start with. Peeks, so
/// the bytes stay for hyper; waits for the first four (a client that
/// trickles them is timed by the watchdog), and a closed or failing
/// socket is left to HTTP/1 to find out.
async fn starts_with_h2_preface(stream: &TcpStream) -> bool {
    let mut head = [0u8; 4];
    loop {
        match stream.peek(&mut head).await {
            Ok(n) if n >= head.len() => return &head == b"PRI ",
            Ok(n) if n > 0 && b"PRI "[..n] == head[..n] => {
                // Part of a preface: peek again once more has arrived.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            _ => return false,
        }
    }
}

/// Streams one HTTP/2 connection may have open at once (hyper's default,
/// said here so it is a decision): the connection cap times this bounds
/// the requests in flight.
pub const MAX_STREAMS: u32 = 200;

/// Cancels `token` on SIGTERM or Ctrl-C; reloads the policy on SIGHUP.
pub fn handle_signals(app: App, token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                    _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: shutting down"); break; }
                    _ = hup.recv() => {
                        if let Err(e) = app.reload_policy().await {
                            tracing::error!(error = %e, "policy reload failed");
                        }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    /// Two TLS providers in the build compile fine and panic at the first
    /// TLS client; building one here catches that regression.
    #[test]
    fn a_tls_client_builds_with_the_one_crypto_provider() {
        super::install_crypto_provider();
        reqwest::Client::builder()
            .https_only(true)
            .build()
            .expect("a TLS client builds");
    }
}
