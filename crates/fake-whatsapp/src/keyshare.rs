//! The phone's app-state key share.
//!
//! Right after pairing, a real phone sends the new companion its app-state
//! sync key in an end-to-end encrypted `<message>` (a Signal `pkmsg` built
//! from the companion's pre-key bundle). The client waits up to 10 s for that
//! key before its first app-state sync; sending it keeps the first `Connected`
//! after pairing (and after an interrupted bootstrap) immediate.
//!
//! The fake builds a fresh Signal session from the companion's bundle for
//! every share, so it keeps no Signal state between connections.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use wacore::libsignal::protocol::{
    CiphertextMessage, Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore,
    PreKeyBundle, ProtocolAddress, PublicKey, SessionRecord, SessionStore, UsePQRatchet,
    message_encrypt, process_prekey_bundle,
};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::{Node, NodeContent};
use waproto::buffa::Message as _;
use waproto::whatsapp as wa;

use crate::phone::PhoneAccount;

/// What the fake knows of a companion's Signal identity (from its
/// registration payload, refreshed by its pre-key uploads).
#[derive(Debug, Clone)]
pub(crate) struct DeviceBundle {
    pub registration_id: u32,
    pub identity: [u8; 32],
    pub signed_pre_key_id: u32,
    pub signed_pre_key: [u8; 32],
    pub signed_pre_key_signature: Vec<u8>,
}

fn be_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

fn key32(bytes: &[u8]) -> Option<[u8; 32]> {
    match bytes.len() {
        32 => bytes.try_into().ok(),
        // A 0x05-prefixed (type byte) Curve25519 key.
        33 if bytes[0] == 5 => bytes[1..].try_into().ok(),
        _ => None,
    }
}

impl DeviceBundle {
    pub(crate) fn from_pairing_data(
        data: &wa::client_payload::DevicePairingRegistrationData,
    ) -> Option<Self> {
        Some(Self {
            registration_id: be_uint(data.e_regid.as_deref()?)?,
            identity: key32(data.e_ident.as_deref()?)?,
            signed_pre_key_id: be_uint(data.e_skey_id.as_deref()?)?,
            signed_pre_key: key32(data.e_skey_val.as_deref()?)?,
            signed_pre_key_signature: data.e_skey_sig.clone()?,
        })
    }

    /// Takes the newer signed pre-key (and identity) from a pre-key upload IQ
    /// (`<registration/><type/><identity/><list/><skey><id/><value/><signature/></skey>`).
    pub(crate) fn update_from_upload(&mut self, iq: &Node) {
        let bytes = |n: Option<&Node>| match n.and_then(|n| n.content.as_ref()) {
            Some(NodeContent::Bytes(b)) => Some(b.clone()),
            _ => None,
        };
        let skey = iq.get_optional_child("skey");
        let parsed = (|| {
            Some((
                be_uint(&bytes(iq.get_optional_child("registration"))?)?,
                key32(&bytes(iq.get_optional_child("identity"))?)?,
                be_uint(&bytes(skey?.get_optional_child("id"))?)?,
                key32(&bytes(skey?.get_optional_child("value"))?)?,
                bytes(skey?.get_optional_child("signature"))?,
            ))
        })();
        if let Some((reg, identity, id, value, sig)) = parsed {
            self.registration_id = reg;
            self.identity = identity;
            self.signed_pre_key_id = id;
            self.signed_pre_key = value;
            self.signed_pre_key_signature = sig;
        }
    }
}

/// The account's app-state sync key (what the phone shares).
#[derive(Debug, Clone)]
pub(crate) struct AppStateKey {
    pub id: Vec<u8>,
    pub data: [u8; 32],
    pub timestamp_ms: i64,
}

impl AppStateKey {
    pub(crate) fn generate() -> Self {
        use rand::RngExt;
        let mut rng = rand::rng();
        let mut data = [0u8; 32];
        rng.fill(&mut data[..]);
        let mut id = vec![0u8, 0, 0, 0, 0, 0];
        rng.fill(&mut id[4..]);
        Self {
            id,
            data,
            timestamp_ms: wacore::time::now_secs().max(0) * 1000,
        }
    }
}

/// One-shot session store: holds the session built for a single message.
#[derive(Default)]
struct OneSession(HashMap<String, SessionRecord>);

#[async_trait]
impl SessionStore for OneSession {
    async fn load_session(
        &self,
        address: &ProtocolAddress,
    ) -> wacore::libsignal::protocol::error::Result<Option<SessionRecord>> {
        Ok(self.0.get(address.as_str()).cloned())
    }

    async fn has_session(
        &self,
        address: &ProtocolAddress,
    ) -> wacore::libsignal::protocol::error::Result<bool> {
        Ok(self.0.contains_key(address.as_str()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> wacore::libsignal::protocol::error::Result<()> {
        self.0.insert(address.as_str().to_string(), record);
        Ok(())
    }
}

/// The phone's identity; trusts everyone (like WhatsApp's TOFU).
struct PhoneIdentity {
    pair: IdentityKeyPair,
    registration_id: u32,
    known: HashMap<String, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for PhoneIdentity {
    async fn get_identity_key_pair(
        &self,
    ) -> wacore::libsignal::protocol::error::Result<IdentityKeyPair> {
        Ok(self.pair.clone())
    }

    async fn get_local_registration_id(&self) -> wacore::libsignal::protocol::error::Result<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> wacore::libsignal::protocol::error::Result<IdentityChange> {
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
    ) -> wacore::libsignal::protocol::error::Result<bool> {
        Ok(true)
    }

    async fn get_identity(
        &self,
        address: &ProtocolAddress,
    ) -> wacore::libsignal::protocol::error::Result<Option<IdentityKey>> {
        Ok(self.known.get(address.as_str()).copied())
    }
}

/// A stable Signal registration id for the phone.
fn phone_registration_id(account: &PhoneAccount) -> u32 {
    (account.adv_raw_id % 16380) + 1
}

/// Builds the `<message>` carrying the app-state key share from the account's
/// phone (device 0) to the companion `device_id`.
pub(crate) async fn key_share_message(
    account: &PhoneAccount,
    device_id: u16,
    bundle: &DeviceBundle,
    key: &AppStateKey,
    message_id: &str,
) -> anyhow::Result<Node> {
    let msg = wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
            app_state_sync_key_share: buffa::MessageField::some(
                wa::message::AppStateSyncKeyShare {
                    keys: vec![wa::message::AppStateSyncKey {
                        key_id: buffa::MessageField::some(wa::message::AppStateSyncKeyId {
                            key_id: Some(key.id.clone()),
                        }),
                        key_data: buffa::MessageField::some(wa::message::AppStateSyncKeyData {
                            key_data: Some(key.data.to_vec()),
                            fingerprint: buffa::MessageField::some(
                                wa::message::AppStateSyncKeyFingerprint {
                                    raw_id: Some(account.adv_raw_id),
                                    current_index: Some(u32::from(device_id)),
                                    device_indexes: vec![0, u32::from(device_id)],
                                },
                            ),
                            timestamp: Some(key.timestamp_ms),
                        }),
                    }],
                },
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let plaintext = wacore::messages::MessageUtils::pad_message_v2(msg.encode_to_vec());

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

    let address = ProtocolAddress::new(&account.phone, u32::from(device_id).into());
    let mut sessions = OneSession::default();
    let mut identities = PhoneIdentity {
        pair: IdentityKeyPair::from(account.identity.clone()),
        registration_id: phone_registration_id(account),
        known: HashMap::new(),
    };
    process_prekey_bundle(
        &address,
        &mut sessions,
        &mut identities,
        &pre_key_bundle,
        &mut rand::make_rng::<rand::rngs::StdRng>(),
        UsePQRatchet::No,
    )
    .await
    .map_err(|e| anyhow!("starting a session with the companion: {e}"))?;
    let ciphertext = message_encrypt(&plaintext, &address, &mut sessions, &mut identities)
        .await
        .map_err(|e| anyhow!("encrypting the key share: {e}"))?;
    let (enc_type, body) = match &ciphertext {
        CiphertextMessage::PreKeySignalMessage(m) => ("pkmsg", m.serialized().to_vec()),
        CiphertextMessage::SignalMessage(m) => ("msg", m.serialized().to_vec()),
        _ => return Err(anyhow!("unexpected ciphertext type")).context("key share"),
    };

    Ok(NodeBuilder::new("message")
        .attr("from", account.pn_jid())
        .attr("id", message_id.to_string())
        .attr("type", "text")
        .attr("category", "peer")
        .attr("t", wacore::time::now_secs().max(0).to_string())
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", enc_type)
            .bytes(body)
            .build()])
        .build())
}
