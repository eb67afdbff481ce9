//! How the HTTP/1 server holds connections, so that sockets which send
//! nothing, or half a request, cannot starve the clients that matter.
//!
//! - **Header timeout** (`COUNTERSIGN_HEADER_TIMEOUT`, 10 s): a connection
//!   must deliver a whole request head within this time of opening, or of
//!   its first byte when it is a keep-alive connection between requests.
//!   Slowloris clients are closed.
//! - **Idle timeout** (`COUNTERSIGN_IDLE_TIMEOUT`, 30 s): a keep-alive
//!   connection with no request in flight is closed after this long. A
//!   request is in flight from its head until the last byte of its
//!   response, so a parked long-poll or a streaming export is never idle.
//! - **Connection cap** (`COUNTERSIGN_MAX_CONNECTIONS`, 10,000, kept below
//!   the process's file limit with room for the database and outbound
//!   clients): a permit is taken *before* `accept`, so excess clients wait
//!   in the kernel's backlog (back-pressure) instead of costing a file
//!   descriptor each.
//! - **Under pressure**: when no permit is left, every connection that has
//!   had no request in flight for [`PRESSURE_GRACE`] is closed at once
//!   (idle keep-alives and half-sent heads alike), so a new client, a
//!   `/healthz` probe among them, is served within about a second instead
//!   of waiting for the timeouts. Only requests actually in flight (e.g.
//!   long-polls) keep their connections; size the cap for them.
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a
//! keep-alive connection waits for its next request, so it would close idle
//! connections at the header timeout whatever the idle timeout says.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::NetworkSettings;

/// Under pressure, a connection without a request in flight for this long
/// is closed to make room.
pub const PRESSURE_GRACE: Duration = Duration::from_secs(1);

/// File descriptors kept free for the database, outbound clients and logs.
const FD_HEADROOM: u64 = 256;

/// The connection cap in force: the configured one (default 10,000), but
/// never more than the file limit leaves room for. Raises the soft file
/// limit to the hard one first, as the Go runtime does, since a server that
/// holds sockets has no use for the lower default.
pub fn connection_cap(settings: &NetworkSettings) -> (usize, Option<u64>) {
    let wanted = settings.max_connections.unwrap_or(10_000);
    let Some(limit) = raise_fd_limit() else {
        return (wanted, None);
    };
    let headroom = if limit >= 4 * FD_HEADROOM {
        FD_HEADROOM
    } else {
        limit / 4
    };
    let room = limit.saturating_sub(headroom).max(16);
    (
        wanted.min(usize::try_from(room).unwrap_or(usize::MAX)),
        Some(limit),
    )
}

#[cfg(unix)]
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<u64> {
    None
}

/// The cap and the signal that tells idle connections to make room.
pub struct Gate {
    permits: Arc<Semaphore>,
    pressure: Notify,
}

impl Gate {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(cap)),
            pressure: Notify::new(),
        })
    }

    /// A permit for the next connection. When none is left, asks idle
    /// connections to close (again every 250 ms) until one is.
    pub async fn admit(&self) -> OwnedSemaphorePermit {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return p;
        }
        tracing::warn!("connection cap reached: closing idle connections to make room");
        let acquire = self.permits.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            self.pressure.notify_waiters();
            tokio::select! {
                p = &mut acquire => return p.expect("the semaphore is never closed"),
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}

/// What one connection's watchdog needs to know. Times are milliseconds
/// since the connection opened.
pub struct ConnState {
    opened: Instant,
    in_flight: AtomicUsize,
    /// When the connection last had no request in flight.
    idle_since: AtomicU64,
    /// 1 + when the first byte of the next request head arrived; 0: none yet.
    head_started: AtomicU64,
    served: AtomicBool,
    became_idle: Notify,
    peer: SocketAddr,
}

impl ConnState {
    pub fn new(peer: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            served: AtomicBool::new(false),
            became_idle: Notify::new(),
            peer,
        })
    }

    fn ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn saw_bytes(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(self.ms() + 1, Ordering::Relaxed);
        }
    }

    /// Resolves when the connection should be closed: a timeout passed, or
    /// the gate is under pressure and the connection has been without a
    /// request in flight for [`PRESSURE_GRACE`].
    pub async fn watchdog(&self, settings: &NetworkSettings, gate: &Gate) {
        let header = settings.header_timeout.as_millis() as u64;
        let idle = settings.idle_timeout.as_millis() as u64;
        let grace = PRESSURE_GRACE.as_millis() as u64;
        loop {
            let changed = self.became_idle.notified();
            let pressed = gate.pressure.notified();
            tokio::pin!(changed, pressed);
            changed.as_mut().enable();
            pressed.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::select! {
                    _ = changed => {}
                    _ = pressed => {}
                }
                continue;
            }
            let idle_since = self.idle_since.load(Ordering::Acquire);
            let head = self.head_started.load(Ordering::Relaxed);
            let deadline = match (self.served.load(Ordering::Relaxed), head) {
                // A new connection's whole head is due within the header timeout.
                (false, 0) => idle_since + header.min(idle),
                (false, _) => idle_since + header,
                (true, 0) => idle_since + idle,
                (true, h) => h - 1 + header,
            };
            let now = self.ms();
            if now >= deadline {
                tracing::debug!(peer = %self.peer, "closing a connection: header or idle timeout");
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(deadline - now)) => {}
                _ = changed => {}
                _ = pressed => {
                    if self.in_flight.load(Ordering::Acquire) == 0
                        && self.ms().saturating_sub(self.idle_since.load(Ordering::Acquire)) >= grace
                    {
                        tracing::debug!(peer = %self.peer, "closing an idle connection: connection cap reached");
                        return;
                    }
                }
            }
        }
    }
}

/// Marks a request in flight from its head to the end of its response body.
pub struct InFlight(Arc<ConnState>);

impl InFlight {
    pub fn enter(state: Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.served.store(true, Ordering::Relaxed);
        state.head_started.store(0, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        s.head_started.store(0, Ordering::Relaxed);
        s.idle_since.store(s.ms(), Ordering::Release);
        if s.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.became_idle.notify_one();
        }
    }
}

/// The socket, noting when a request head starts arriving.
pub struct Watched {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl Watched {
    pub fn new(io: TcpStream, state: Arc<ConnState>) -> Self {
        Self { io, state }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.saw_bytes();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The router as one connection's hyper service: each request carries the
/// peer address (`ConnectInfo`, for per-address rate limits) and is marked
/// in flight until its response body ends.
#[derive(Clone)]
pub struct ConnService {
    router: axum::Router,
    state: Arc<ConnState>,
}

impl ConnService {
    pub fn new(router: axum::Router, state: Arc<ConnState>) -> Self {
        Self { router, state }
    }
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnService {
    type Response = http::Response<Guarded>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        use tower::ServiceExt;
        let guard = InFlight::enter(self.state.clone());
        req.extensions_mut().insert(ConnectInfo(self.state.peer));
        let served = self.router.clone().oneshot(req);
        Box::pin(async move {
            let res: Response = served.await?;
            Ok(res.map(|inner| Guarded {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is done.
pub struct Guarded {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
