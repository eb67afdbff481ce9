//! Connection discipline, over raw TCP: half-sent heads and idle keep-alive
//! sockets are closed, requests in flight are not, and a full connection cap
//! still lets `/healthz` through. Timing bounds are generous on purpose
//! (a loaded 2-core machine): each test only asserts "closed, and not
//! before the timeout" or "answered well before the timeouts could have
//! freed anything".

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Reads until the peer closes; returns what was read, or `None` if the
/// socket was still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a keep-alive GET and reads its whole response (bodies here are small).
async fn get_keep_alive(stream: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before answering");
        all.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&all).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if all.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_client_that_trickles_half_a_request_head_is_disconnected_after_the_header_timeout() {
    let app = spawn_with(|s| s.network.header_timeout = Duration::from_secs(1)).await;
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let opened = Instant::now();
    // One byte every 100 ms: activity must not extend the deadline.
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(8), read.read(&mut buf)).await;
    let elapsed = opened.elapsed();
    trickle.abort();
    match closed {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("the slow client was not disconnected: {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed before the header timeout: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_request_body_that_does_not_arrive_within_the_header_timeout_is_refused_and_nothing_is_created()
 {
    let app = spawn_with(|s| s.network.header_timeout = Duration::from_secs(1)).await;
    let agent = app.agent().await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/approvals HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {agent}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"action\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(8))
        .await
        .expect("the slow body was given up and the connection closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(app.count("approval_requests").await, 0);
}

#[tokio::test]
async fn a_client_that_opens_a_connection_and_sends_nothing_is_disconnected() {
    let app = spawn_with(|s| s.network.header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(8))
            .await
            .is_some(),
        "a silent connection was kept open"
    );
}

#[tokio::test]
async fn a_client_that_sends_half_of_http2s_preface_and_stops_is_disconnected() {
    let app = spawn_with(|s| s.network.header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"PR").await.unwrap();
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(8))
            .await
            .is_some(),
        "a connection stuck in its first bytes was kept open"
    );
    // The service is none the worse for it.
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_with(|s| s.network.idle_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let first = get_keep_alive(&mut stream, "/healthz").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Still usable right away: keep-alive works.
    let second = get_keep_alive(&mut stream, "/healthz").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let idle = Instant::now();
    let rest = read_until_closed(&mut stream, Duration::from_secs(8)).await;
    assert_eq!(
        rest.as_deref(),
        Some(&[][..]),
        "the idle connection was kept open"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("countersign_connections_closed_total{reason=\"idle_timeout\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_long_poll_that_outlasts_the_idle_and_header_timeouts_is_still_answered() {
    let app = spawn_with(|s| {
        s.network.idle_timeout = Duration::from_secs(1);
        s.network.header_timeout = Duration::from_secs(1);
    })
    .await;
    let agent = app.agent().await;
    let id = app.create_default(&agent).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let req = format!(
        "GET /v1/approvals/{id}?wait=3 HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {agent}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"pending\""), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_the_connection_cap_full_of_idle_and_half_sent_sockets_healthz_still_answers() {
    // The timeouts are left long (10 s head, 30 s idle): what frees room
    // within the client's 8 s is the cap closing idle connections.
    let app = spawn_with(|s| s.network.max_connections = Some(20)).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let res = get_keep_alive(&mut s, "/healthz").await;
        assert!(res.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    for _ in 0..10 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
            .await
            .unwrap();
        held.push(s);
    }
    // Let the server accept all twenty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(8))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("/healthz answered while the cap was full");
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn beyond_the_connection_cap_a_client_waits_in_the_backlog_until_a_connection_frees() {
    let app = spawn_with(|s| s.network.max_connections = Some(3)).await;
    let agent = app.agent().await;
    // Three long-polls in flight fill the cap; in flight, they are never cut.
    let mut polls = Vec::new();
    for _ in 0..3 {
        let id = app.create_default(&agent).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (client, url, agent) = (
            reqwest::Client::new(),
            app.url(&format!("/v1/approvals/{id}?wait=10")),
            agent.clone(),
        );
        polls.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(agent)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for _ in 0..200 {
        if app.app.store.waiters.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.app.store.waiters.len(), 3);
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    assert!(
        quick.get(app.url("/healthz")).send().await.is_err(),
        "a fourth connection was served while the cap of three was in use"
    );
    // When the long-polls answer, the waiting client gets in.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(
        patient
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for p in polls {
        assert_eq!(p.await.unwrap(), 200);
    }
}

#[tokio::test]
async fn an_agent_holds_many_long_polls_as_streams_of_one_http2_connection() {
    // A cap of one connection: everything below shares it, or hangs.
    let app = spawn_with(|s| s.network.max_connections = Some(1)).await;
    let (agent, bob) = (app.agent().await, app.human("bob@example.com").await);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = h2
            .post(app.url("/v1/approvals"))
            .bearer_auth(&agent)
            .json(&export_request())
            .send()
            .await
            .unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert_eq!(res.status(), 201);
        let v: serde_json::Value = res.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let polls: Vec<_> = ids
        .iter()
        .map(|id| {
            let req = h2
                .get(app.url(&format!("/v1/approvals/{id}?wait=20")))
                .bearer_auth(&agent);
            tokio::spawn(async move { req.send().await.unwrap().json::<serde_json::Value>().await })
        })
        .collect();
    for _ in 0..200 {
        if app.app.store.waiters.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.app.store.waiters.len(), 3, "three waits parked at once");
    // Decided over the same connection, while the three waits hold it.
    for id in &ids {
        let res = h2
            .post(app.url(&format!("/v1/approvals/{id}/decisions")))
            .bearer_auth(&bob)
            .json(&serde_json::json!({ "verdict": "approve" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    for p in polls {
        assert_eq!(p.await.unwrap().unwrap()["status"], "approved");
    }
}

#[tokio::test]
async fn an_http2_request_with_more_than_8_kib_of_headers_is_refused_as_over_http1() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let ok = h2
        .get(app.url("/healthz"))
        .header("x-padding", "a".repeat(4 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    for client in [&h2, &app.client] {
        let big = client
            .get(app.url("/v1/approvals"))
            .bearer_auth(&agent)
            .header("x-padding", "a".repeat(9 * 1024))
            .send()
            .await
            .unwrap();
        assert_eq!(big.status(), 431, "{:?}", big.version());
    }
}
