//! Server (responder) side of the WhatsApp Noise handshake and the transport
//! ciphers used afterwards.
//!
//! The client speaks one of three patterns:
//! - `XX` on a cold start (and while pairing): ClientHello carries only the
//!   ephemeral key; the server answers with its ephemeral, its encrypted static
//!   key and the encrypted certificate chain; the client finishes with its
//!   encrypted static key and the encrypted `ClientPayload`.
//! - `IK` once a paired client has cached the server's certificate chain: the
//!   ClientHello already carries the encrypted static key and payload.
//! - `XXfallback` when the server cannot (or does not want to) accept IK: the
//!   server answers an IK hello with an XX-shaped ServerHello and the client
//!   continues as in XX, re-using the ephemeral it already sent.

use anyhow::{Context, anyhow, bail};
use buffa::Message;
use bytes::BytesMut;
use wacore::handshake::{NoiseCipher, NoiseHandshake};
use wacore::libsignal::protocol::KeyPair;
use wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use wacore_binary::node::Node;
use waproto::whatsapp as wa;

/// The long-lived identity of the fake server: its static Noise key pair and
/// the certificate chain that vouches for it.
pub(crate) struct ServerIdentity {
    key: KeyPair,
    public: [u8; 32],
    cert_chain: Vec<u8>,
}

impl ServerIdentity {
    /// `leaf_not_after` is the expiry (unix seconds) written into the leaf
    /// certificate. A paired client only tries IK while the cached leaf is
    /// still valid.
    pub(crate) fn generate(leaf_not_after: u64) -> Self {
        let key = KeyPair::generate(&mut rand::rng());
        let public = public_bytes(&key);
        let cert_chain = build_cert_chain(&public, leaf_not_after);
        Self {
            key,
            public,
            cert_chain,
        }
    }

    fn private(&self) -> &[u8] {
        self.key.private_key.serialize()
    }
}

fn public_bytes(key: &KeyPair) -> [u8; 32] {
    let mut out = [0u8; 32];
    let bytes = key.public_key.public_key_bytes();
    // X25519 public keys are always 32 bytes.
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// An unsigned two-level chain (intermediate + leaf). The client only checks
/// the signatures when built without `danger-skip-cert-chain-verify`; the
/// serials and the leaf key are always checked.
fn build_cert_chain(server_static: &[u8; 32], leaf_not_after: u64) -> Vec<u8> {
    use wa::cert_chain::{NoiseCertificate, noise_certificate::Details};
    let now = wacore::time::now_secs().max(0) as u64;
    let not_before = now.saturating_sub(24 * 3600);
    let intermediate = Details {
        serial: Some(7),
        issuer_serial: Some(0),
        key: Some(
            KeyPair::generate(&mut rand::rng())
                .public_key
                .public_key_bytes()
                .to_vec(),
        ),
        not_before: Some(not_before),
        not_after: Some(leaf_not_after.max(not_before + 1)),
    };
    let leaf = Details {
        serial: Some(8),
        issuer_serial: Some(7),
        key: Some(server_static.to_vec()),
        not_before: Some(not_before),
        not_after: Some(leaf_not_after),
    };
    wa::CertChain {
        intermediate: buffa::MessageField::some(NoiseCertificate {
            details: Some(intermediate.encode_to_vec()),
            signature: Some(vec![0u8; 64]),
        }),
        leaf: buffa::MessageField::some(NoiseCertificate {
            details: Some(leaf.encode_to_vec()),
            signature: Some(vec![0u8; 64]),
        }),
    }
    .encode_to_vec()
}

/// Which pattern the handshake ended up using.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    Xx,
    Ik,
    XxFallback,
}

/// Result of the handshake: the transport cipher plus what the client told us.
pub(crate) struct Handshaked {
    pub cipher: TransportCipher,
    pub client_static: [u8; 32],
    pub payload: wa::ClientPayload,
    pub pattern: Pattern,
}

/// Server responder state between the ServerHello and the ClientFinish.
pub(crate) struct AwaitFinish {
    noise: NoiseHandshake,
    server_ephemeral: KeyPair,
    pattern: Pattern,
}

/// What to do after reading the ClientHello.
pub(crate) enum HelloOutcome {
    /// Send `reply`, then wait for a ClientFinish.
    NeedFinish {
        reply: Vec<u8>,
        state: Box<AwaitFinish>,
    },
    /// IK accepted: send `reply` (still unframed) and the handshake is done.
    Done {
        reply: Vec<u8>,
        done: Box<Handshaked>,
    },
}

/// Processes the client's first handshake message (already stripped of the
/// connection header and the frame length).
pub(crate) fn read_client_hello(
    server: &ServerIdentity,
    hello: &[u8],
    allow_ik: bool,
) -> anyhow::Result<HelloOutcome> {
    let msg = wa::HandshakeMessage::decode_from_slice(hello).context("decoding ClientHello")?;
    let hello = msg
        .client_hello
        .into_option()
        .ok_or_else(|| anyhow!("handshake message without client_hello"))?;
    let client_eph: [u8; 32] = hello
        .ephemeral
        .as_deref()
        .ok_or_else(|| anyhow!("ClientHello without ephemeral"))?
        .try_into()
        .map_err(|_| anyhow!("ClientHello ephemeral is not 32 bytes"))?;

    if let (Some(enc_static), Some(enc_payload)) = (hello.r#static.as_ref(), hello.payload.as_ref())
    {
        if allow_ik {
            match try_ik(server, &client_eph, enc_static, enc_payload) {
                Ok(outcome) => return Ok(outcome),
                Err(e) => {
                    tracing::debug!("IK hello rejected ({e:#}); answering with XXfallback");
                }
            }
        }
        return xx_server_hello(server, &client_eph, Pattern::XxFallback);
    }
    xx_server_hello(server, &client_eph, Pattern::Xx)
}

fn xx_server_hello(
    server: &ServerIdentity,
    client_eph: &[u8; 32],
    pattern: Pattern,
) -> anyhow::Result<HelloOutcome> {
    let name = match pattern {
        Pattern::XxFallback => NOISE_PATTERN_XXFALLBACK,
        _ => NOISE_PATTERN_XX,
    };
    let mut noise = NoiseHandshake::new(name, &WA_CONN_HEADER)?;
    noise.authenticate(client_eph);
    let eph = KeyPair::generate(&mut rand::rng());
    let eph_pub = public_bytes(&eph);
    noise.authenticate(&eph_pub);
    noise.mix_shared_secret(eph.private_key.serialize(), client_eph)?;
    let enc_static = noise.encrypt(&server.public)?;
    noise.mix_shared_secret(server.private(), client_eph)?;
    let enc_cert = noise.encrypt(&server.cert_chain)?;
    let reply = server_hello_bytes(eph_pub, Some(enc_static), enc_cert);
    Ok(HelloOutcome::NeedFinish {
        reply,
        state: Box::new(AwaitFinish {
            noise,
            server_ephemeral: eph,
            pattern,
        }),
    })
}

fn try_ik(
    server: &ServerIdentity,
    client_eph: &[u8; 32],
    enc_static: &[u8],
    enc_payload: &[u8],
) -> anyhow::Result<HelloOutcome> {
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
    noise.authenticate(&server.public);
    noise.authenticate(client_eph);
    noise.mix_shared_secret(server.private(), client_eph)?;
    let client_static: [u8; 32] = noise
        .decrypt(enc_static)
        .context("decrypting IK client static")?
        .try_into()
        .map_err(|_| anyhow!("IK client static is not 32 bytes"))?;
    noise.mix_shared_secret(server.private(), &client_static)?;
    let payload_bytes = noise
        .decrypt(enc_payload)
        .context("decrypting IK payload")?;
    let payload = wa::ClientPayload::decode_from_slice(payload_bytes.as_slice())
        .context("decoding IK ClientPayload")?;

    let eph = KeyPair::generate(&mut rand::rng());
    let eph_pub = public_bytes(&eph);
    noise.authenticate(&eph_pub);
    noise.mix_shared_secret(eph.private_key.serialize(), client_eph)?;
    noise.mix_shared_secret(eph.private_key.serialize(), &client_static)?;
    let enc_cert = noise.encrypt(&server.cert_chain)?;
    let reply = server_hello_bytes(eph_pub, None, enc_cert);
    let (client_write, client_read) = noise.finish()?;
    Ok(HelloOutcome::Done {
        reply,
        done: Box::new(Handshaked {
            cipher: TransportCipher::new(client_write, client_read),
            client_static,
            payload,
            pattern: Pattern::Ik,
        }),
    })
}

fn server_hello_bytes(
    ephemeral: [u8; 32],
    enc_static: Option<Vec<u8>>,
    enc_cert: Vec<u8>,
) -> Vec<u8> {
    wa::HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral.to_vec()),
            r#static: enc_static,
            payload: Some(enc_cert),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

impl AwaitFinish {
    /// Processes the ClientFinish (unframed).
    pub(crate) fn read_client_finish(mut self, finish: &[u8]) -> anyhow::Result<Handshaked> {
        let msg =
            wa::HandshakeMessage::decode_from_slice(finish).context("decoding ClientFinish")?;
        let fin = msg
            .client_finish
            .into_option()
            .ok_or_else(|| anyhow!("handshake message without client_finish"))?;
        let enc_static = fin
            .r#static
            .as_deref()
            .ok_or_else(|| anyhow!("ClientFinish without static"))?;
        let enc_payload = fin
            .payload
            .as_deref()
            .ok_or_else(|| anyhow!("ClientFinish without payload"))?;
        let client_static: [u8; 32] = self
            .noise
            .decrypt(enc_static)
            .context("decrypting client static")?
            .try_into()
            .map_err(|_| anyhow!("client static is not 32 bytes"))?;
        self.noise.mix_shared_secret(
            self.server_ephemeral.private_key.serialize(),
            &client_static,
        )?;
        let payload_bytes = self
            .noise
            .decrypt(enc_payload)
            .context("decrypting client payload")?;
        let payload = wa::ClientPayload::decode_from_slice(payload_bytes.as_slice())
            .context("decoding ClientPayload")?;
        let (client_write, client_read) = self.noise.finish()?;
        Ok(Handshaked {
            cipher: TransportCipher::new(client_write, client_read),
            client_static,
            payload,
            pattern: self.pattern,
        })
    }
}

/// Strips the connection header (optionally preceded by an edge-routing
/// pre-intro) from the start of the client's byte stream.
///
/// Returns `Ok(None)` while more bytes are needed, `Ok(Some(n))` with the
/// header length once it is complete.
pub(crate) fn connection_header_len(buf: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut offset = 0usize;
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf.starts_with(b"ED") {
        if buf.len() < 7 {
            return Ok(None);
        }
        let len = ((buf[4] as usize) << 16) | ((buf[5] as usize) << 8) | buf[6] as usize;
        offset = 7 + len;
    }
    if buf.len() < offset + WA_CONN_HEADER.len() {
        return Ok(None);
    }
    if buf[offset..offset + 2] != *b"WA" {
        bail!("client stream does not start with the WA connection header");
    }
    Ok(Some(offset + WA_CONN_HEADER.len()))
}

/// Per-connection transport encryption (server's point of view).
pub(crate) struct TransportCipher {
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl TransportCipher {
    fn new(client_write: NoiseCipher, client_read: NoiseCipher) -> Self {
        // What the client writes with, we read with, and vice versa.
        Self {
            read: client_write,
            write: client_read,
            read_counter: 0,
            write_counter: 0,
        }
    }

    /// Encrypts a node and returns the framed bytes ready for the wire.
    pub(crate) fn seal_node(&mut self, node: &Node) -> anyhow::Result<Vec<u8>> {
        let plain = wacore_binary::marshal::marshal(node).context("marshalling node")?;
        let counter = self.write_counter;
        self.write_counter = counter
            .checked_add(1)
            .ok_or_else(|| anyhow!("write counter exhausted"))?;
        let sealed = self.write.encrypt_with_counter(counter, &plain)?;
        wacore::framing::encode_frame(&sealed, None)
    }

    /// Decrypts one frame (without its length prefix) into a node.
    pub(crate) fn open_frame(&mut self, mut frame: BytesMut) -> anyhow::Result<Node> {
        let counter = self.read_counter;
        self.read_counter = counter
            .checked_add(1)
            .ok_or_else(|| anyhow!("read counter exhausted"))?;
        self.read
            .decrypt_in_place_with_counter(counter, &mut frame)
            .context("decrypting frame")?;
        let unpacked = wacore_binary::util::unpack(&frame).context("unpacking frame")?;
        let node = wacore_binary::marshal::unmarshal_ref(&unpacked).context("decoding node")?;
        Ok(node.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        assert_eq!(connection_header_len(b"W").unwrap(), None);
        assert_eq!(connection_header_len(&WA_CONN_HEADER).unwrap(), Some(4));
        let mut ed = b"ED\x00\x01\x00\x00\x02ab".to_vec();
        assert_eq!(connection_header_len(&ed).unwrap(), None);
        ed.extend_from_slice(&WA_CONN_HEADER);
        assert_eq!(connection_header_len(&ed).unwrap(), Some(13));
        assert!(connection_header_len(b"XXXX").is_err());
    }
}
