//! The sending half of Signal for everyone who writes to a companion: the
//! account's own phone (key share, history sync) and other users (contacts).
//!
//! Each sender has an identity key and keeps one session per companion
//! (device id + companion identity), started from the companion's uploaded
//! pre-key bundle. Until the companion answers on it, every message stays a
//! `pkmsg` carrying the session's base key: the client can decrypt it whatever
//! it stored before (a restarted client, a PN→LID session move, …), and a
//! sender's later messages advance the same chain. A companion's reply on that
//! session (`msg`) is read with it, as a phone would.

use std::collections::HashMap;

use anyhow::anyhow;
use async_trait::async_trait;
use wacore::libsignal::protocol::{
    CiphertextMessage, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord,
    PreKeySignalMessage, PreKeyStore, ProtocolAddress, PublicKey, SessionRecord, SessionStore,
    SignalMessage, SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore,
    Timestamp, UsePQRatchet, message_decrypt, message_encrypt, process_prekey_bundle,
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

/// The one-time pre-keys a user handed out, for decrypting what they start.
#[derive(Default)]
struct PreKeys(HashMap<u32, PreKeyRecord>);

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .get(&u32::from(prekey_id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(
        &mut self,
        prekey_id: PreKeyId,
        record: &PreKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(prekey_id.into(), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(prekey_id));
        Ok(())
    }
}

/// A user's one signed pre-key.
struct SignedPreKey {
    id: u32,
    record: SignedPreKeyRecord,
    public: [u8; 32],
    signature: [u8; 64],
}

#[async_trait]
impl SignedPreKeyStore for SignedPreKey {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        if u32::from(id) == self.id {
            Ok(self.record.clone())
        } else {
            Err(SignalProtocolError::InvalidSignedPreKeyId)
        }
    }

    async fn save_signed_pre_key(
        &mut self,
        _id: SignedPreKeyId,
        _record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        Ok(())
    }
}

/// One Signal user's primary device (the account's own phone, or another
/// WhatsApp user): its sessions with the companions it writes to, and the
/// keys companions use to write to it (a signed pre-key and one-time
/// pre-keys, handed out by the server's pre-key fetch).
pub(crate) struct SignalSender {
    identity: KeyPair,
    registration_id: u32,
    /// Keyed by companion device id and companion identity key: a re-linked
    /// companion (new identity) gets a new session.
    sessions: HashMap<(u16, [u8; 32]), SessionRecord>,
    signed_pre_key: SignedPreKey,
    pre_keys: PreKeys,
    next_pre_key: u32,
    /// Sessions companions started with this device, by their address.
    inbound: HashMap<String, SessionRecord>,
}

impl SignalSender {
    pub(crate) fn new(identity: KeyPair, registration_id: u32) -> Self {
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let spk = KeyPair::generate(&mut rng);
        // Signed like a real device does, so the client's bundle check passes.
        let signature = identity
            .calculate_signature(&spk.public_key.serialize(), &mut rng)
            .unwrap_or([0; 64]);
        let mut public = [0u8; 32];
        public.copy_from_slice(spk.public_key.public_key_bytes());
        let id = 1;
        let record = SignedPreKeyRecord::new(
            id.into(),
            Timestamp::from_epoch_millis(wacore::time::now_millis().max(0) as u64),
            &spk,
            &signature,
        );
        Self {
            identity,
            registration_id: registration_id.clamp(1, 16380),
            sessions: HashMap::new(),
            signed_pre_key: SignedPreKey {
                id,
                record,
                public,
                signature,
            },
            pre_keys: PreKeys::default(),
            next_pre_key: 1,
            inbound: HashMap::new(),
        }
    }

    /// The `<user jid=..>` entry of a pre-key fetch answer: registration id,
    /// identity, a fresh one-time pre-key and the signed pre-key.
    pub(crate) fn bundle_node(&mut self, jid: &str) -> Node {
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let id = self.next_pre_key;
        // Pre-key ids are 3 bytes on the wire.
        self.next_pre_key = (self.next_pre_key % 0x00FF_FFFF) + 1;
        let key = KeyPair::generate(&mut rng);
        self.pre_keys
            .0
            .insert(id, PreKeyRecord::new(id.into(), &key));
        let three = |v: u32| v.to_be_bytes()[1..].to_vec();
        NodeBuilder::new("user")
            .attr("jid", jid.to_string())
            .children([
                NodeBuilder::new("registration")
                    .bytes(self.registration_id.to_be_bytes().to_vec())
                    .build(),
                NodeBuilder::new("type").bytes(vec![5u8]).build(),
                NodeBuilder::new("identity")
                    .bytes(self.identity.public_key.public_key_bytes().to_vec())
                    .build(),
                NodeBuilder::new("key")
                    .children([
                        NodeBuilder::new("id").bytes(three(id)).build(),
                        NodeBuilder::new("value")
                            .bytes(key.public_key.public_key_bytes().to_vec())
                            .build(),
                    ])
                    .build(),
                NodeBuilder::new("skey")
                    .children([
                        NodeBuilder::new("id")
                            .bytes(three(self.signed_pre_key.id))
                            .build(),
                        NodeBuilder::new("value")
                            .bytes(self.signed_pre_key.public.to_vec())
                            .build(),
                        NodeBuilder::new("signature")
                            .bytes(self.signed_pre_key.signature.to_vec())
                            .build(),
                    ])
                    .build(),
            ])
            .build()
    }

    /// Decrypts what the companion at `from` (any stable name) sent this
    /// device: `pkmsg` or `msg`, as the `<enc type>` says. Returns the padded
    /// plaintext.
    pub(crate) async fn decrypt(
        &mut self,
        from: &str,
        from_device: u16,
        enc_type: &str,
        ciphertext: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let message = match enc_type {
            "pkmsg" => CiphertextMessage::PreKeySignalMessage(
                PreKeySignalMessage::try_from(ciphertext)
                    .map_err(|e| anyhow!("reading the pkmsg: {e}"))?,
            ),
            "msg" => CiphertextMessage::SignalMessage(
                SignalMessage::try_from(ciphertext).map_err(|e| anyhow!("reading the msg: {e}"))?,
            ),
            other => return Err(anyhow!("cannot decrypt <enc type={other:?}>")),
        };
        let address = ProtocolAddress::new(from, u32::from(from_device).into());
        if enc_type == "msg" && !self.inbound.contains_key(address.as_str()) {
            // A reply on a session this sender started (a contact who wrote first): the
            // same session, read the other way, and advanced for what they write next.
            let started: Vec<_> = self
                .sessions
                .keys()
                .filter(|(device, _)| *device == from_device)
                .copied()
                .collect();
            for key in started {
                let Some(record) = self.sessions.get(&key).cloned() else {
                    continue;
                };
                let one = HashMap::from([(address.as_str().to_string(), record)]);
                let (result, mut one) = self.open(&message, &address, one).await;
                if let Ok(plaintext) = result {
                    if let Some(record) = one.remove(address.as_str()) {
                        self.sessions.insert(key, record);
                    }
                    return Ok(plaintext);
                }
            }
        }
        let inbound = std::mem::take(&mut self.inbound);
        let (result, inbound) = self.open(&message, &address, inbound).await;
        self.inbound = inbound;
        result.map_err(|e| anyhow!("decrypting the companion's message: {e}"))
    }

    /// Decrypts `message` from `address` with `sessions`; gives them back as they are after.
    async fn open(
        &mut self,
        message: &CiphertextMessage,
        address: &ProtocolAddress,
        sessions: HashMap<String, SessionRecord>,
    ) -> (SignalResult<Vec<u8>>, HashMap<String, SessionRecord>) {
        let mut sessions = OneSession(sessions);
        let mut identities = SenderIdentity {
            pair: IdentityKeyPair::from(self.identity.clone()),
            registration_id: self.registration_id,
            known: HashMap::new(),
        };
        let result = message_decrypt(
            message,
            address,
            &mut sessions,
            &mut identities,
            &mut self.pre_keys,
            &self.signed_pre_key,
            &mut rand::make_rng::<rand::rngs::StdRng>(),
            UsePQRatchet::No,
        )
        .await;
        (result.map(|r| r.plaintext), sessions.0)
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

/// The Signal user behind `pn_jid` (`<digits>@s.whatsapp.net`), created on
/// first use: the account's own phone keeps its identity key, anyone else
/// gets a fresh one. Senders and receivers are the same entry, so a contact
/// the client wrote to writes back with the identity the client already saw.
pub(crate) fn user<'a>(
    senders: &'a mut HashMap<String, SignalSender>,
    account: &PhoneAccount,
    pn_jid: &str,
) -> &'a mut SignalSender {
    senders.entry(pn_jid.to_string()).or_insert_with(|| {
        if pn_jid == account.pn_jid().to_string() {
            SignalSender::new(
                account.identity.clone(),
                crate::keyshare::phone_registration_id(account),
            )
        } else {
            SignalSender::generate()
        }
    })
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
