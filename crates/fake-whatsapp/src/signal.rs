//! The sending half of Signal for everyone who writes to a companion: the
//! account's own phone (key share, history sync) and other users (contacts).
//!
//! Each sender has an identity key and keeps one session per companion
//! (device id + companion identity), started from the companion's uploaded
//! pre-key bundle. The companion never answers these senders, so every
//! message stays a `pkmsg` carrying the session's base key: the client can
//! decrypt it whatever it stored before (a restarted client, a PN→LID session
//! move, …), and a sender's later messages advance the same chain.

use std::collections::HashMap;

use anyhow::anyhow;
use async_trait::async_trait;
use wacore::libsignal::protocol::{
    CiphertextMessage, Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore,
    KeyPair, PreKeyBundle, ProtocolAddress, PublicKey, SessionRecord, SessionStore, UsePQRatchet,
    message_encrypt, process_prekey_bundle,
};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;

use crate::keyshare::DeviceBundle;
use crate::phone::PhoneAccount;

type SignalResult<T> = wacore::libsignal::protocol::error::Result<T>;

/// Session store holding the one session an encryption works on.
#[derive(Default)]
struct OneSession(HashMap<String, SessionRecord>);

#[async_trait]
impl SessionStore for OneSession {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(address.as_str()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(address.as_str()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(address.as_str().to_string(), record);
        Ok(())
    }
}

/// A sender's identity; trusts everyone (like WhatsApp's TOFU).
struct SenderIdentity {
    pair: IdentityKeyPair,
    registration_id: u32,
    known: HashMap<String, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for SenderIdentity {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.pair.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let changed = self
            .known
            .insert(address.as_str().to_string(), *identity)
            .is_some_and(|old| old != *identity);
        Ok(IdentityChange::from_changed(changed))
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(address.as_str()).copied())
    }
}

/// One Signal sender (a user's primary device) and its sessions with companions.
pub(crate) struct SignalSender {
    identity: KeyPair,
    registration_id: u32,
    /// Keyed by companion device id and companion identity key: a re-linked
    /// companion (new identity) gets a new session.
    sessions: HashMap<(u16, [u8; 32]), SessionRecord>,
}

impl SignalSender {
    pub(crate) fn new(identity: KeyPair, registration_id: u32) -> Self {
        Self {
            identity,
            registration_id: registration_id.clamp(1, 16380),
            sessions: HashMap::new(),
        }
    }

    /// A sender with a fresh identity key (another WhatsApp user).
    pub(crate) fn generate() -> Self {
        use rand::RngExt;
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let registration_id = rng.random_range(1..16380u32);
        Self::new(KeyPair::generate(&mut rng), registration_id)
    }

    /// Encrypts `plaintext` (already padded) for the companion `device_id` of
    /// `account_user`: `("pkmsg" | "msg", ciphertext)`.
    pub(crate) async fn encrypt(
        &mut self,
        account_user: &str,
        device_id: u16,
        bundle: &DeviceBundle,
        plaintext: &[u8],
    ) -> anyhow::Result<(&'static str, Vec<u8>)> {
        let address = ProtocolAddress::new(account_user, u32::from(device_id).into());
        let key = (device_id, bundle.identity);
        let mut store = OneSession::default();
        let mut identities = SenderIdentity {
            pair: IdentityKeyPair::from(self.identity.clone()),
            registration_id: self.registration_id,
            known: HashMap::new(),
        };
        if let Some(record) = self.sessions.get(&key) {
            store.0.insert(address.as_str().to_string(), record.clone());
        } else {
            let identity_pub = PublicKey::from_djb_public_key_bytes(&bundle.identity)
                .map_err(|e| anyhow!("companion identity key: {e}"))?;
            let spk = PublicKey::from_djb_public_key_bytes(&bundle.signed_pre_key)
                .map_err(|e| anyhow!("companion signed pre-key: {e}"))?;
            let pre_key_bundle = PreKeyBundle::new(
                bundle.registration_id,
                u32::from(device_id).into(),
                None,
                bundle.signed_pre_key_id.into(),
                spk,
                bundle.signed_pre_key_signature.clone(),
                IdentityKey::new(identity_pub),
            )
            .map_err(|e| anyhow!("building pre-key bundle: {e}"))?;
            process_prekey_bundle(
                &address,
                &mut store,
                &mut identities,
                &pre_key_bundle,
                &mut rand::make_rng::<rand::rngs::StdRng>(),
                UsePQRatchet::No,
            )
            .await
            .map_err(|e| anyhow!("starting a session with the companion: {e}"))?;
        }
        let ciphertext = message_encrypt(plaintext, &address, &mut store, &mut identities)
            .await
            .map_err(|e| anyhow!("encrypting for the companion: {e}"))?;
        if let Some(record) = store.0.remove(address.as_str()) {
            self.sessions.insert(key, record);
        }
        match &ciphertext {
            CiphertextMessage::PreKeySignalMessage(m) => Ok(("pkmsg", m.serialized().to_vec())),
            CiphertextMessage::SignalMessage(m) => Ok(("msg", m.serialized().to_vec())),
            _ => Err(anyhow!("unexpected ciphertext type")),
        }
    }
}

/// `<message from=.. id=.. type=.. t=..><enc v="2" type=..>…</enc></message>`
/// plus `extra` attributes (`notify`, `sender_lid`, `category`, …).
pub(crate) fn enc_message_node(
    from: &str,
    id: &str,
    msg_type: &str,
    timestamp: i64,
    extra: &[(&'static str, String)],
    enc: (&str, Vec<u8>),
) -> Node {
    let mut b = NodeBuilder::new("message")
        .attr("from", from.to_string())
        .attr("id", id.to_string())
        .attr("type", msg_type.to_string())
        .attr("t", timestamp.to_string());
    for &(k, ref v) in extra {
        b = b.attr(k, v.clone());
    }
    b.children([NodeBuilder::new("enc")
        .attr("v", "2")
        .attr("type", enc.0.to_string())
        .bytes(enc.1)
        .build()])
        .build()
}

/// A message id like the ones phones use (`3EB0…`, upper-case hex).
pub(crate) fn message_id() -> String {
    use rand::RngExt;
    let mut raw = [0u8; 10];
    rand::rng().fill(&mut raw[..]);
    let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
    format!("3EB0{hex}")
}

/// Encrypts `plaintext` from `sender` (created by `new_sender` on first use)
/// to the companion `device_id` of `account_user`.
pub(crate) async fn encrypt_from(
    signals: &crate::Signals,
    sender: &str,
    new_sender: impl FnOnce() -> SignalSender,
    account_user: &str,
    device_id: u16,
    bundle: &DeviceBundle,
    plaintext: &[u8],
) -> anyhow::Result<(&'static str, Vec<u8>)> {
    let mut senders = signals.lock().await;
    senders
        .entry(sender.to_string())
        .or_insert_with(new_sender)
        .encrypt(account_user, device_id, bundle, plaintext)
        .await
}

/// A `<message>` from the account's own phone (device 0) to its companion
/// `device_id`, carrying `plaintext` (padded protobuf `Message`).
pub(crate) async fn phone_message(
    account: &PhoneAccount,
    signals: &crate::Signals,
    device_id: u16,
    bundle: &DeviceBundle,
    plaintext: &[u8],
) -> anyhow::Result<Node> {
    let from = account.pn_jid().to_string();
    let enc = encrypt_from(
        signals,
        &from,
        || {
            SignalSender::new(
                account.identity.clone(),
                crate::keyshare::phone_registration_id(account),
            )
        },
        &account.phone,
        device_id,
        bundle,
        plaintext,
    )
    .await?;
    Ok(enc_message_node(
        &from,
        &message_id(),
        "text",
        wacore::time::now_secs().max(0),
        &[("category", "peer".to_string())],
        enc,
    ))
}
