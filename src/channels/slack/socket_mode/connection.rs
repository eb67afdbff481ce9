//! One Socket Mode connection: reads Slack's frames, hands each envelope
//! to its own task (a slow one must not hold up the next one's 3 seconds)
//! and writes their acknowledgements, until Slack says `disconnect`, the
//! socket drops or goes silent, or the service stops.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::SocketMode;
use super::envelope::{self, Frame};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// We ping this often; a connection that shows no frame at all (not even
/// the pong) for three of these is taken as dead.
const PING_EVERY: Duration = Duration::from_secs(10);

pub enum Ended {
    Stopped,
    /// Slack sent `disconnect`.
    Refresh {
        reason: String,
        greeted: bool,
    },
    /// Closed, broken or silent.
    Dropped {
        why: String,
        greeted: bool,
    },
}

pub async fn serve(mode: &SocketMode, ws: Socket, stop: &CancellationToken) -> Ended {
    let (mut sink, mut frames) = ws.split();
    let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
    // Owns the write half until every sender is gone: the loop's, and
    // those of handlers still working, whose acknowledgements go out on
    // this connection even after Slack asked for a new one.
    tokio::spawn(async move {
        while let Some(m) = queue.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut greeted = false;
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ended::Stopped,
            _ = ping.tick() => {
                if heard.elapsed() > PING_EVERY * 3 {
                    return Ended::Dropped { why: format!("no frame from Slack for {:?}", heard.elapsed()), greeted };
                }
                let _ = outgoing.send(Message::Ping(Default::default()));
            }
            frame = frames.next() => {
                heard = Instant::now();
                let text = match frame {
                    None => return Ended::Dropped { why: "the Socket Mode connection closed".into(), greeted },
                    Some(Err(e)) => return Ended::Dropped { why: format!("the Socket Mode connection broke: {e}"), greeted },
                    Some(Ok(Message::Close(_))) => return Ended::Dropped { why: "Slack closed the Socket Mode connection".into(), greeted },
                    Some(Ok(Message::Text(t))) => t,
                    // Pings are answered by tungstenite; pongs only prove life.
                    Some(Ok(_)) => continue,
                };
                match envelope::read(text.as_str()) {
                    Frame::Hello => {
                        greeted = true;
                        mode.status.connected();
                        tracing::info!("Slack Socket Mode connected");
                    }
                    Frame::Disconnect { reason } => return Ended::Refresh { reason, greeted },
                    Frame::Envelope(e) => {
                        let mode = mode.clone();
                        let outgoing = outgoing.clone();
                        tokio::spawn(async move {
                            if let Some(ack) = mode.handle(e).await {
                                let _ = outgoing.send(Message::Text(ack.into()));
                            }
                        });
                    }
                    Frame::Unreadable { envelope_id, why } => {
                        tracing::warn!(envelope_id = ?envelope_id, %why, "an unreadable Socket Mode frame was dropped");
                        if let Some(id) = envelope_id {
                            let _ = outgoing.send(Message::Text(envelope::ack(&id, None).into()));
                        }
                    }
                    Frame::Other => {}
                }
            }
        }
    }
}
