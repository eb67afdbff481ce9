//! A fake Slack Socket Mode server on loopback: the WebSocket end of
//! `apps.connections.open` (the fake Web API hands out [`FakeSocket::url`]).
//! Each connection is greeted with `hello`; the test then delivers
//! envelopes, sends `disconnect`, or drops a connection without a close
//! frame, and reads back every frame the service sent (its
//! acknowledgements).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The one-time ticket in the URL; like the app token, it must not be logged.
pub const TICKET: &str = "fake-ticket-never-logged";

enum Command {
    Send(String),
    /// Ends the TCP connection without a WebSocket close.
    Drop,
}

#[derive(Default)]
struct Inner {
    /// The sender of each connection, in the order they were accepted.
    connections: Mutex<Vec<mpsc::UnboundedSender<Command>>>,
    /// Every text frame the service sent: (connection index, JSON).
    received: Mutex<Vec<(usize, Value)>>,
    next_envelope: AtomicUsize,
}

#[derive(Clone)]
pub struct FakeSocket {
    addr: std::net::SocketAddr,
    inner: Arc<Inner>,
}

impl FakeSocket {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner::default());
        let accepting = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let index = {
                    let mut c = accepting.connections.lock().unwrap();
                    c.push(tx);
                    c.len() - 1
                };
                tokio::spawn(serve(ws, index, rx, accepting.clone()));
            }
        });
        Self { addr, inner }
    }

    /// What `apps.connections.open` answers.
    pub fn url(&self) -> String {
        format!(
            "ws://{}/link/?ticket={TICKET}&app_id=A0COUNTERSIGN",
            self.addr
        )
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.inner.connections.lock().unwrap().len()
    }

    /// Waits (up to 15 s) until `n` connections have been accepted.
    pub async fn wait_connections(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.connections() < n {
            assert!(
                Instant::now() < deadline,
                "waited 15 s for {n} Socket Mode connection(s); got {}",
                self.connections()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn command(&self, connection: usize, c: Command) {
        let sender = self.inner.connections.lock().unwrap()[connection].clone();
        let _ = sender.send(c);
    }

    fn latest(&self) -> usize {
        self.connections()
            .checked_sub(1)
            .expect("no Socket Mode connection yet")
    }

    /// Sends a raw frame on connection `n`.
    pub fn send_raw(&self, connection: usize, text: String) {
        self.command(connection, Command::Send(text));
    }

    /// Delivers `envelope` on the newest connection.
    pub fn send(&self, envelope: &Value) {
        self.send_raw(self.latest(), envelope.to_string());
    }

    /// A new envelope of `kind` around `payload`, with a fresh id.
    pub fn envelope(&self, kind: &str, payload: Value) -> Value {
        let n = self.inner.next_envelope.fetch_add(1, Ordering::SeqCst) + 1;
        json!({
            "envelope_id": format!("{kind}-envelope-{n}"),
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "interactive" || payload_is_submission(&payload),
            "retry_attempt": 0,
            "retry_reason": "",
        })
    }

    /// Delivers a new envelope on the newest connection; returns its id.
    pub fn deliver(&self, kind: &str, payload: Value) -> String {
        let envelope = self.envelope(kind, payload);
        self.send(&envelope);
        envelope["envelope_id"].as_str().unwrap().to_string()
    }

    /// Slack's "this connection will be closed, open another one".
    pub fn disconnect(&self, reason: &str) {
        let frame = json!({ "type": "disconnect", "reason": reason,
                            "debug_info": { "host": "applink-fake" } });
        self.send_raw(self.latest(), frame.to_string());
    }

    /// Ends the newest connection abruptly, as a network failure would.
    pub fn drop_latest(&self) {
        self.command(self.latest(), Command::Drop);
    }

    /// Every frame the service sent naming `envelope_id`.
    pub fn acks(&self, envelope_id: &str) -> Vec<Value> {
        self.inner
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["envelope_id"] == envelope_id)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits (up to 15 s) for `n` acknowledgements of `envelope_id`.
    pub async fn wait_acks(&self, envelope_id: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let acks = self.acks(envelope_id);
            if acks.len() >= n {
                return acks;
            }
            assert!(
                Instant::now() < deadline,
                "waited 15 s for {n} acknowledgement(s) of {envelope_id}; got {acks:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the acknowledgement of `envelope_id` and returns it.
    pub async fn wait_ack(&self, envelope_id: &str) -> Value {
        self.wait_acks(envelope_id, 1).await.remove(0)
    }
}

fn payload_is_submission(payload: &Value) -> bool {
    payload["type"] == "view_submission"
}

async fn serve(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    index: usize,
    mut commands: mpsc::UnboundedReceiver<Command>,
    inner: Arc<Inner>,
) {
    let (mut sink, mut frames) = ws.split();
    let hello = json!({
        "type": "hello", "num_connections": index + 1,
        "debug_info": { "host": "applink-fake", "approximate_connection_time": 18060 },
        "connection_info": { "app_id": "A0COUNTERSIGN" },
    });
    if sink
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            c = commands.recv() => match c {
                Some(Command::Send(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // Dropping both halves closes the socket with no close frame.
                Some(Command::Drop) | None => return,
            },
            frame = frames.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                        inner.received.lock().unwrap().push((index, v));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}
