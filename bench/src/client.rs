//! The load client: plain HTTP/1.1 keep-alive connections (and, for g.h2,
//! HTTP/2 ones) driven by hyper's connection API (no pool, no redirects, no per-request allocations beyond
//! the request itself), so as little of the machine as possible goes to the
//! client. Every connection runs a closed loop: send, read the whole answer,
//! record the latency, send the next.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Body = Full<Bytes>;

/// A latency histogram in microseconds, 1 µs to 120 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Body>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, req: Request<Body>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends one request; the answer's headers too.
    pub async fn send_with_headers(
        &mut self,
        req: Request<Body>,
    ) -> anyhow::Result<(StatusCode, hyper::HeaderMap, Bytes)> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// Sends and insists on `want`; the error carries the answer's body.
    pub async fn expect(&mut self, req: Request<Body>, want: StatusCode) -> anyhow::Result<Bytes> {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body) = self.send(req).await?;
        if status != want {
            bail!(
                "{what}: expected {want}, got {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// One HTTP/2 connection (cleartext, prior knowledge); clones share it,
/// each request on a stream of its own, as many at once as the server's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` lets (more wait for a free stream).
#[derive(Clone)]
pub struct H2Conn {
    addr: SocketAddr,
    sender: hyper::client::conn::http2::SendRequest<Body>,
}

impl H2Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends one request (built by [`Api`]) on a new stream and reads the
    /// whole answer. HTTP/2 names the host in `:authority`, so the path
    /// becomes an absolute URI and the `host` header goes.
    pub async fn send(&self, req: Request<Body>) -> anyhow::Result<(StatusCode, Bytes)> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("http://{}{path}", self.addr).parse()?;
        parts.headers.remove(hyper::header::HOST);
        let mut sender = self.sender.clone();
        sender.ready().await?;
        let resp = sender
            .send_request(Request::from_parts(parts, body))
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Builds requests with the headers every scenario needs.
#[derive(Clone)]
pub struct Api {
    /// The first replica (the only one, unless [`Api::across`]).
    pub addr: SocketAddr,
    /// Every replica, `addr` first: load spreads across them as a load
    /// balancer would, one connection at a time.
    pub replicas: Vec<SocketAddr>,
    host: String,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self::across(vec![addr])
    }

    /// An API served by several replicas of one database.
    pub fn across(replicas: Vec<SocketAddr>) -> Self {
        let addr = replicas[0];
        Self {
            addr,
            replicas,
            host: addr.to_string(),
        }
    }

    /// The `n`-th replica, round robin.
    pub fn replica(&self, n: usize) -> SocketAddr {
        self.replicas[n % self.replicas.len()]
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", &self.host);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::default()).expect("a valid request")
    }

    pub fn post_json(&self, path: &str, token: &str, body: impl Into<Bytes>) -> Request<Body> {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .expect("a valid request")
    }

    pub fn post_form(&self, path: &str, headers: &[(&str, String)], body: String) -> Request<Body> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        b.body(Full::new(Bytes::from(body)))
            .expect("a valid request")
    }
}

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: usize,
    /// Run but not recorded: lets caches, pools and the writer settle.
    pub warmup: Duration,
    pub duration: Duration,
}

/// What a closed-loop run measured.
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Makes the `n`-th request of connection `conn`.
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Body> + Send + Sync>;

/// Runs `load.connections` closed loops for warm-up plus duration; only
/// answers with status `want` that finish inside the measured window count.
pub async fn closed_loop(
    api: &Api,
    load: Load,
    want: StatusCode,
    make: MakeRequest,
) -> anyhow::Result<Outcome> {
    let mut conns = Vec::with_capacity(load.connections);
    for i in 0..load.connections {
        conns.push(Conn::open(api.replica(i)).await?);
    }
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = Vec::with_capacity(load.connections);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None::<String>);
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let req = make(i, n);
                n += 1;
                let result = conn.send(req).await;
                let t1 = Instant::now();
                let counted = t0 >= measure_from && t1 <= end;
                match result {
                    Ok((status, _)) if status == want => {
                        if counted {
                            ok += 1;
                            hist.saturating_record(t1.duration_since(t0).as_micros() as u64);
                        }
                    }
                    Ok((status, body)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        // A broken connection is replaced, not retried forever.
                        match Conn::open(conn.addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            (hist, ok, errors, first_error)
        }));
    }
    let mut out = Outcome {
        requests: 0,
        errors: 0,
        elapsed: load.duration,
        latency: histogram(),
        first_error: None,
    };
    for t in tasks {
        let (hist, ok, errors, first_error) = t.await?;
        out.latency.add(&hist).expect("same bounds");
        out.requests += ok;
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    Ok(out)
}
