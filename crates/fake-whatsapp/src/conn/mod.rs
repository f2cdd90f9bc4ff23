//! One fake connection: a tokio task per `create_transport()`.
//!
//! The task owns the Noise state. It reads the client's bytes from the
//! transport, answers stanzas, and executes commands sent by
//! [`crate::FakeWhatsApp`] (fault scripts, pairing). It ends when either side
//! closes; nothing in here panics on client input.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::nodes::attr;
use anyhow::bail;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use wacore::framing::FrameDecoder;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;
use whatsapp_rust::transport::{DisconnectReason, TransportEvent};

use crate::iq::{self, IqCtx, SERVER};
use crate::noise::{self, Handshaked, HelloOutcome, TransportCipher};
use crate::{ConnKind, Inner};

mod account;
mod login;

/// The client gives up on a handshake after 20 s; so do we.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// A client that sends no connection header within this many bytes is broken.
const MAX_PREFIX: usize = 64 * 1024;

/// From the client's transport.
pub(crate) enum Input {
    Data(Bytes),
    Closed,
}

/// From the [`crate::FakeWhatsApp`] handle.
pub(crate) enum Cmd {
    /// Send an IQ and hand the client's answer (same id) to `reply`.
    SendAwait {
        node: Node,
        id: String,
        reply: oneshot::Sender<Node>,
    },
    /// Send a node (the `primary_hello` notification) and hand the client's
    /// next `companion_finish` IQ to `reply`.
    SendAwaitFinish {
        node: Node,
        reply: oneshot::Sender<Node>,
    },
    /// Send a `<stream:error>` (after `delay`), then close the connection.
    StreamErrorClose { node: Node, delay: Duration },
    /// Send a node (a message pushed to the client).
    Send(Node),
    /// Close abruptly, as a network failure would.
    Drop,
}

enum Wake {
    Data(Option<Input>),
    Cmd(Option<Cmd>),
}

/// How the main loop continues after handling something.
pub(super) enum Flow {
    Continue,
    /// Close; push this reason to the client first (None: just close).
    Close(Option<DisconnectReason>),
}

#[derive(Debug, Clone)]
enum Role {
    Registration,
    Login { phone: String, device: u16 },
}

struct Conn {
    inner: Arc<Inner>,
    id: u64,
    data_rx: mpsc::UnboundedReceiver<Input>,
    cmd_rx: Option<mpsc::UnboundedReceiver<Cmd>>,
    ev_tx: async_channel::Sender<TransportEvent>,
    prefix: BytesMut,
    header_done: bool,
    decoder: FrameDecoder,
    waiters: HashMap<String, oneshot::Sender<Node>>,
    /// Who waits for the client's `companion_finish` (phone-number linking).
    finish_waiter: Option<oneshot::Sender<Node>>,
    role: Option<Role>,
}

pub(crate) async fn run(
    inner: Arc<Inner>,
    id: u64,
    data_rx: mpsc::UnboundedReceiver<Input>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    ev_tx: async_channel::Sender<TransportEvent>,
) {
    let mut conn = Conn {
        inner: inner.clone(),
        id,
        data_rx,
        cmd_rx: Some(cmd_rx),
        ev_tx,
        prefix: BytesMut::new(),
        header_done: false,
        decoder: FrameDecoder::new(),
        waiters: HashMap::new(),
        finish_waiter: None,
        role: None,
    };
    match conn.serve().await {
        Ok(()) => tracing::debug!(conn = id, "fake-whatsapp: connection closed"),
        Err(e) => tracing::warn!(conn = id, "fake-whatsapp: connection ended: {e:#}"),
    }
    inner.lock().conns.remove(&id);
    inner.notify_changed();
    // `conn` (and with it the event sender) drops here: the client sees the
    // event channel close.
}

impl Conn {
    async fn wake(&mut self) -> Wake {
        let cmd_rx = &mut self.cmd_rx;
        let data_rx = &mut self.data_rx;
        tokio::select! {
            biased;
            c = async {
                match cmd_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::Cmd(c),
            d = data_rx.recv() => Wake::Data(d),
        }
    }

    fn push(&self, ev: TransportEvent) -> bool {
        self.ev_tx.try_send(ev).is_ok()
    }

    fn push_disconnect(&self, reason: DisconnectReason) {
        let _ = self.push(TransportEvent::Disconnected(reason));
    }

    async fn serve(&mut self) -> anyhow::Result<()> {
        let hs = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake()).await {
            Err(_) => bail!("handshake timed out"),
            Ok(r) => r?,
        };
        let Some(hs) = hs else {
            return Ok(());
        };
        let Handshaked {
            mut cipher,
            client_static,
            payload,
            pattern,
        } = hs;
        tracing::debug!(
            conn = self.id,
            ?pattern,
            "fake-whatsapp: handshake complete"
        );
        if pattern == noise::Pattern::Ik {
            self.inner.lock().ik_handshakes += 1;
        }

        let is_registration = payload.device_pairing_data.is_set() || payload.username.is_none();
        let first = if is_registration {
            let bundle = payload
                .device_pairing_data
                .as_option()
                .and_then(crate::keyshare::DeviceBundle::from_pairing_data);
            self.start_registration(&mut cipher, client_static, bundle)?
        } else {
            let phone = payload.username.unwrap_or_default().to_string();
            let device = payload.device.unwrap_or(0).min(u16::MAX as u32) as u16;
            self.start_login(&mut cipher, client_static, phone, device)?
        };
        if let Flow::Close(reason) = first {
            if let Some(r) = reason {
                self.push_disconnect(r);
            }
            return Ok(());
        }

        loop {
            while let Some(frame) = self.decoder.decode_frame() {
                let node = match cipher.open_frame(frame) {
                    Ok(n) => n,
                    Err(e) => {
                        // Counters are out of step: nothing after this frame
                        // can be read. Close like a real server would.
                        self.push_disconnect(DisconnectReason::ReadError(format!(
                            "fake-whatsapp: bad frame: {e:#}"
                        )));
                        return Err(e);
                    }
                };
                if let Flow::Close(reason) = self.handle_node(&mut cipher, node).await {
                    if let Some(r) = reason {
                        self.push_disconnect(r);
                    }
                    return Ok(());
                }
            }
            match self.wake().await {
                Wake::Data(Some(Input::Data(b))) => self.decoder.feed(&b),
                Wake::Data(Some(Input::Closed)) | Wake::Data(None) => return Ok(()),
                Wake::Cmd(None) => self.cmd_rx = None,
                Wake::Cmd(Some(cmd)) => {
                    if let Flow::Close(reason) = self.handle_cmd(&mut cipher, cmd).await {
                        if let Some(r) = reason {
                            self.push_disconnect(r);
                        }
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Runs the Noise handshake. `Ok(None)`: the connection closed meanwhile.
    async fn handshake(&mut self) -> anyhow::Result<Option<Handshaked>> {
        let Some(hello) = self.handshake_frame().await? else {
            return Ok(None);
        };
        let allow_ik = self.inner.lock().allow_ik;
        match noise::read_client_hello(self.inner.identity(), &hello, allow_ik)? {
            HelloOutcome::Done { reply, done } => {
                self.send_raw(wacore::framing::encode_frame(&reply, None)?)?;
                Ok(Some(*done))
            }
            HelloOutcome::NeedFinish { reply, state } => {
                self.send_raw(wacore::framing::encode_frame(&reply, None)?)?;
                let Some(finish) = self.handshake_frame().await? else {
                    return Ok(None);
                };
                Ok(Some(state.read_client_finish(&finish)?))
            }
        }
    }

    /// Next handshake frame (the first one behind the connection header).
    async fn handshake_frame(&mut self) -> anyhow::Result<Option<BytesMut>> {
        loop {
            if !self.header_done
                && let Some(n) = noise::connection_header_len(&self.prefix)?
            {
                let rest = self.prefix.split_off(n);
                self.decoder.feed(&rest);
                self.prefix = BytesMut::new();
                self.header_done = true;
            }
            if self.header_done
                && let Some(frame) = self.decoder.decode_frame()
            {
                return Ok(Some(frame));
            }
            if self.prefix.len() > MAX_PREFIX {
                bail!("no connection header in the first {MAX_PREFIX} bytes");
            }
            match self.wake().await {
                Wake::Data(Some(Input::Data(b))) => {
                    if self.header_done {
                        self.decoder.feed(&b);
                    } else {
                        self.prefix.extend_from_slice(&b);
                    }
                }
                Wake::Data(Some(Input::Closed)) | Wake::Data(None) => return Ok(None),
                Wake::Cmd(Some(Cmd::Drop)) => {
                    self.push_disconnect(dropped_reason());
                    return Ok(None);
                }
                Wake::Cmd(Some(Cmd::StreamErrorClose { .. })) => {
                    // Nothing encrypted can be sent yet: just close.
                    self.push_disconnect(DisconnectReason::StreamEnded);
                    return Ok(None);
                }
                // Dropping `reply` tells the waiter the connection is not usable.
                Wake::Cmd(Some(
                    Cmd::SendAwait { .. } | Cmd::SendAwaitFinish { .. } | Cmd::Send(_),
                )) => {}
                Wake::Cmd(None) => self.cmd_rx = None,
            }
        }
    }

    fn send_raw(&self, bytes: Vec<u8>) -> anyhow::Result<()> {
        if !self.push(TransportEvent::DataReceived(Bytes::from(bytes))) {
            bail!("client went away");
        }
        Ok(())
    }

    fn send_node(&self, cipher: &mut TransportCipher, node: &Node) -> anyhow::Result<()> {
        tracing::trace!(conn = self.id, "fake-whatsapp -> {}", node.tag);
        let frame = cipher.seal_node(node)?;
        self.send_raw(frame)
    }

    fn set_kind(&self, kind: ConnKind) {
        if let Some(entry) = self.inner.lock().conns.get_mut(&self.id) {
            entry.kind = kind;
        }
        self.inner.notify_changed();
    }

    async fn handle_node(&mut self, cipher: &mut TransportCipher, node: Node) -> Flow {
        tracing::trace!(conn = self.id, "fake-whatsapp <- {}", node.tag);
        let result = match node.tag.as_ref() {
            "iq" => self.handle_iq(cipher, node).await,
            "message" | "receipt" | "call" => {
                if node.tag.as_ref() == "message" {
                    self.record_message(&node).await;
                }
                if node.tag.as_ref() == "receipt"
                    && let Some(Role::Login { phone, device }) = &self.role
                {
                    crate::receipts::record(&self.inner, phone, *device, &node);
                }
                // Acknowledge like the server does, so senders are not left
                // waiting; nothing is delivered anywhere.
                let mut ack = NodeBuilder::new("ack")
                    .attr("class", node.tag.to_string())
                    .attr("id", attr(&node, "id").unwrap_or_default())
                    .attr(
                        "from",
                        attr(&node, "to").unwrap_or_else(|| SERVER.to_string()),
                    );
                if let Some(t) = attr(&node, "type") {
                    ack = ack.attr("type", t);
                }
                if node.tag.as_ref() == "message" {
                    ack = ack.attr("t", wacore::time::now_secs().max(0).to_string());
                    let to = attr(&node, "to").unwrap_or_default();
                    let number = to.strip_suffix("@s.whatsapp.net").unwrap_or(&to);
                    if let Some(code) = self.inner.lock().nacks.get(number) {
                        ack = ack.attr("error", code.clone());
                    }
                }
                self.send_node(cipher, &ack.build()).map(|_| Flow::Continue)
            }
            _ => Ok(Flow::Continue),
        };
        match result {
            Ok(flow) => flow,
            Err(e) => {
                tracing::debug!(
                    conn = self.id,
                    "fake-whatsapp: cannot reach the client: {e:#}"
                );
                Flow::Close(None)
            }
        }
    }

    async fn handle_iq(
        &mut self,
        cipher: &mut TransportCipher,
        node: Node,
    ) -> anyhow::Result<Flow> {
        let kind = attr(&node, "type").unwrap_or_default();
        if kind == "result" || kind == "error" {
            if let Some(id) = attr(&node, "id")
                && let Some(waiter) = self.waiters.remove(&id)
            {
                let _ = waiter.send(node);
            }
            return Ok(Flow::Continue);
        }
        if attr(&node, "id").is_none() {
            tracing::debug!(conn = self.id, "fake-whatsapp: ignoring iq without id");
            return Ok(Flow::Continue);
        }

        if let Some(reply) = self.answer_send_iq(&node).await {
            self.send_node(cipher, &reply)?;
            return Ok(Flow::Continue);
        }
        let ctx = IqCtx {
            prekey_count: self.with_device(|d| d.prekeys).unwrap_or(0),
            contacts: self.contacts_ctx(),
        };
        let answer = iq::answer(&node, &ctx);
        self.send_node(cipher, &answer.reply)?;

        if let Some(v) = answer.effects.contacts_sent {
            self.with_device(|d| d.contacts_sent = v);
        }
        if let Some(n) = answer.effects.uploaded_prekeys {
            self.with_device(|d| {
                d.prekeys = d.prekeys.saturating_add(n);
                if let Some(b) = d.bundle.as_mut() {
                    b.update_from_upload(&node);
                }
            });
        }
        if answer
            .effects
            .synced_collections
            .iter()
            .any(|c| c == "regular")
        {
            self.with_device(|d| d.bootstrapped = true);
        }
        if answer.effects.went_active {
            self.send_key_share(cipher).await?;
            self.send_history(cipher).await?;
            // Offline delivery: nothing queued. Without this the client waits
            // 60 s before it considers the login complete.
            let ib = NodeBuilder::new("ib")
                .attr("from", SERVER)
                .children([NodeBuilder::new("offline").attr("count", "0").build()])
                .build();
            self.send_node(cipher, &ib)?;
        }
        if let Some(request) = answer.effects.code_request {
            if let Some(crate::ConnEntry {
                kind: ConnKind::Registration { code, .. },
                ..
            }) = self.inner.lock().conns.get_mut(&self.id)
            {
                tracing::debug!(
                    conn = self.id,
                    phone = request.phone,
                    "fake-whatsapp: pair code requested"
                );
                *code = Some(Box::new(request));
            }
            self.inner.notify_changed();
        }
        if answer.effects.companion_finish
            && let Some(waiter) = self.finish_waiter.take()
        {
            let _ = waiter.send(node.clone());
        }
        if answer.effects.removed_self
            && let Some(Role::Login { phone, device }) = &self.role
        {
            if let Some(acc) = self.inner.lock().accounts.get_mut(phone) {
                acc.devices.remove(device);
            }
            self.inner.notify_changed();
        }
        Ok(Flow::Continue)
    }

    async fn handle_cmd(&mut self, cipher: &mut TransportCipher, cmd: Cmd) -> Flow {
        match cmd {
            Cmd::SendAwait { node, id, reply } => {
                if self.send_node(cipher, &node).is_err() {
                    return Flow::Close(None);
                }
                self.waiters.insert(id, reply);
                Flow::Continue
            }
            Cmd::SendAwaitFinish { node, reply } => {
                if self.send_node(cipher, &node).is_err() {
                    return Flow::Close(None);
                }
                self.finish_waiter = Some(reply);
                Flow::Continue
            }
            Cmd::StreamErrorClose { node, delay } => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let _ = self.send_node(cipher, &node);
                Flow::Close(Some(DisconnectReason::StreamEnded))
            }
            Cmd::Send(node) => {
                if self.send_node(cipher, &node).is_err() {
                    return Flow::Close(None);
                }
                Flow::Continue
            }
            Cmd::Drop => Flow::Close(Some(dropped_reason())),
        }
    }
}

fn dropped_reason() -> DisconnectReason {
    DisconnectReason::ReadError("fake-whatsapp: connection dropped".to_string())
}

/// A pairing ref: like the server's, an opaque printable token.
pub(crate) fn random_ref() -> String {
    use base64::Engine;
    use rand::RngExt;
    let mut raw = [0u8; 24];
    rand::rng().fill(&mut raw[..]);
    format!(
        "2@{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}
