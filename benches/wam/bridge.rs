//! density-real's wire between the server process and the fake WhatsApp server; the
//! two-node test of the real engine (`tests/whatsapp_engine_e2e/nodes.rs`) compiles this
//! file too.
//!
//! The fake lives in the benchmark process, so that its memory stays out of the server's
//! resident size; the server's whatsapp-rust clients reach it through [`BridgeFactory`],
//! a [`TransportFactory`] that opens one loopback TCP connection per `create_transport()`.
//! The benchmark side ([`serve`]) answers each connection with one connection of the fake
//! (`fake.factory().create_transport()`) and pumps both ways.
//!
//! Every write and every transport event travels as one message, `len: u32` (big endian,
//! of what follows) `kind: u8` `body`, so the client and the fake get exactly the chunks
//! they would get from each other in one process. From the benchmark to the server:
//! `CONNECTED`, `DATA`, `DISCONNECTED` (a reason) as the fake's events, or one `REFUSED`
//! (an error text) in place of them all when the fake would not open the connection. From
//! the server: `DATA`, and `CLOSE` when the client calls `disconnect()`. A side that is
//! done shuts its writing half down: the fake's event channel closing becomes the event
//! channel closing in the client, and the client dropping its transport becomes the fake's
//! transport being dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use fake_whatsapp::FakeWhatsApp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use whatsapp_rust::async_channel;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::transport::{DisconnectReason, Transport, TransportEvent, TransportFactory};

const CONNECTED: u8 = 0;
const DATA: u8 = 1;
const DISCONNECTED: u8 = 2;
const REFUSED: u8 = 3;
const CLOSE: u8 = 4;
/// WhatsApp frames carry a 3-byte length; anything near this is a broken stream.
const MAX_MESSAGE: usize = 32 << 20;

/// One message off the wire: its kind and body.
struct Message {
    kind: u8,
    body: Bytes,
}

/// `Ok(None)` at a clean end of stream, between messages.
async fn read_message(r: &mut (impl AsyncRead + Unpin)) -> anyhow::Result<Option<Message>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("bridge read"),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE {
        bail!("bridge: message of {len} bytes");
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.context("bridge read")?;
    let kind = buf[0];
    Ok(Some(Message {
        kind,
        body: Bytes::from(buf).slice(1..),
    }))
}

/// Header and body in one write: one segment for a small message, as a socket would send it.
async fn write_message(
    w: &mut (impl AsyncWrite + Unpin),
    kind: u8,
    body: &[u8],
) -> anyhow::Result<()> {
    let len = u32::try_from(body.len() + 1).context("bridge: message too long")?;
    let mut buf = Vec::with_capacity(body.len() + 5);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
    w.write_all(&buf).await.context("bridge write")
}

/// `tag` then the variant's fields; strings are the rest of the body.
fn encode_reason(reason: &DisconnectReason) -> Vec<u8> {
    match reason {
        DisconnectReason::ServerClose { code, reason } => {
            let mut v = vec![0, u8::from(code.is_some())];
            v.extend_from_slice(&code.unwrap_or(0).to_be_bytes());
            v.extend_from_slice(reason.as_bytes());
            v
        }
        DisconnectReason::StreamEnded => vec![1],
        DisconnectReason::ReadError(e) => [&[2u8][..], e.as_bytes()].concat(),
        DisconnectReason::Unknown => vec![3],
    }
}

fn decode_reason(b: &[u8]) -> anyhow::Result<DisconnectReason> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(match b {
        [0, has_code, hi, lo, rest @ ..] => DisconnectReason::ServerClose {
            code: (*has_code != 0).then_some(u16::from_be_bytes([*hi, *lo])),
            reason: text(rest),
        },
        [1] => DisconnectReason::StreamEnded,
        [2, rest @ ..] => DisconnectReason::ReadError(text(rest)),
        [3] => DisconnectReason::Unknown,
        _ => bail!("bridge: bad disconnect reason {b:?}"),
    })
}

async fn write_event(
    w: &mut (impl AsyncWrite + Unpin),
    event: &TransportEvent,
) -> anyhow::Result<()> {
    match event {
        TransportEvent::Connected => write_message(w, CONNECTED, &[]).await,
        TransportEvent::DataReceived(b) => write_message(w, DATA, b).await,
        TransportEvent::Disconnected(r) => write_message(w, DISCONNECTED, &encode_reason(r)).await,
    }
}

fn read_event(m: Message) -> anyhow::Result<TransportEvent> {
    Ok(match m.kind {
        CONNECTED => TransportEvent::Connected,
        DATA => TransportEvent::DataReceived(m.body),
        DISCONNECTED => TransportEvent::Disconnected(decode_reason(&m.body)?),
        k => bail!("bridge: unexpected message kind {k} from the fake's side"),
    })
}

/// The server side: connections go to the benchmark process at `addr`.
#[derive(Debug, Clone)]
pub struct BridgeFactory {
    pub addr: SocketAddr,
}

#[whatsapp_rust::async_trait]
impl TransportFactory for BridgeFactory {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("bridge: connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (mut rd, wr) = stream.into_split();
        // Like a socket that returns once connected: the fake's verdict comes first.
        let first = read_message(&mut rd)
            .await?
            .context("bridge: closed before the fake answered")?;
        if first.kind == REFUSED {
            bail!("{}", String::from_utf8_lossy(&first.body));
        }
        let (tx, rx) = async_channel::unbounded();
        // Unbounded and just created: this cannot fail.
        let _ = tx.try_send(read_event(first)?);
        tokio::spawn(forward_events(rd, tx));
        let transport = BridgeTransport {
            wr: tokio::sync::Mutex::new(Some(wr)),
        };
        Ok((Arc::new(transport), rx))
    }
}

/// The fake's events, into the client's channel; the channel closes when the fake's does.
async fn forward_events(mut rd: OwnedReadHalf, tx: async_channel::Sender<TransportEvent>) {
    loop {
        let event = match read_message(&mut rd)
            .await
            .and_then(|m| m.map(read_event).transpose())
        {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("⚠️ {e:#}");
                TransportEvent::Disconnected(DisconnectReason::ReadError(format!("{e:#}")))
            }
        };
        let last = matches!(
            event,
            TransportEvent::Disconnected(DisconnectReason::ReadError(_))
        );
        if tx.send(event).await.is_err() || last {
            return;
        }
    }
}

/// The client's end: its writes, in order, as `DATA` messages. Dropping it closes the
/// writing half, which the fake sees as its transport dropped.
struct BridgeTransport {
    wr: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
}

#[whatsapp_rust::async_trait]
impl Transport for BridgeTransport {
    async fn send(&self, data: Bytes) -> anyhow::Result<()> {
        let mut wr = self.wr.lock().await;
        let w = wr.as_mut().context("bridge: connection closed")?;
        write_message(w, DATA, &data).await
    }

    async fn disconnect(&self) {
        if let Some(mut w) = self.wr.lock().await.take() {
            let _ = write_message(&mut w, CLOSE, &[]).await;
            let _ = w.shutdown().await;
        }
    }
}

/// The benchmark side: one fake connection per accepted bridge connection, until the
/// listener fails.
pub async fn serve(listener: TcpListener, fake: FakeWhatsApp) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let fake = fake.clone();
                tokio::spawn(async move {
                    if let Err(e) = pump(stream, &fake).await {
                        eprintln!("bridge connection: {e:#}");
                    }
                });
            }
            Err(e) => {
                eprintln!("bridge listener: {e}");
                return;
            }
        }
    }
}

async fn pump(stream: TcpStream, fake: &FakeWhatsApp) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let (transport, events) = match fake.factory().create_transport().await {
        Ok(t) => t,
        Err(e) => {
            write_message(&mut wr, REFUSED, format!("{e:#}").as_bytes()).await?;
            return Ok(wr.shutdown().await?);
        }
    };
    // The fake's events until its connection ends, then end of stream.
    let down = async move {
        while let Ok(ev) = events.recv().await {
            write_event(&mut wr, &ev).await?;
        }
        wr.shutdown().await?;
        anyhow::Ok(())
    };
    // The client's bytes until it hangs up; the transport is dropped then, as the
    // client's own would be.
    let up = async move {
        let ended = loop {
            match read_message(&mut rd).await {
                Ok(Some(Message { kind: DATA, body })) => {
                    // An error means the fake closed already; `down` tells the client.
                    let _ = transport.send(body).await;
                }
                Ok(Some(Message { kind: CLOSE, .. })) => transport.disconnect().await,
                Ok(Some(Message { kind, .. })) => {
                    break Err(anyhow::anyhow!(
                        "bridge: unexpected kind {kind} from the client"
                    ));
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(transport);
        ended
    };
    let (down, up) = tokio::join!(down, up);
    down.and(up)
}
