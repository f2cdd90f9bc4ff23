//! The phone's app-state key share.
//!
//! Right after pairing, a real phone sends the new companion its app-state
//! sync key in an end-to-end encrypted `<message>` (a Signal `pkmsg` built
//! from the companion's pre-key bundle). The client waits up to 10 s for that
//! key before its first app-state sync; sending it keeps the first `Connected`
//! after pairing (and after an interrupted bootstrap) immediate.
//!
//! The encryption (and the phone's Signal sessions) live in [`crate::signal`].

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

/// A stable Signal registration id for the phone.
pub(crate) fn phone_registration_id(account: &PhoneAccount) -> u32 {
    (account.adv_raw_id % 16380) + 1
}

/// The padded plaintext of the app-state key share from the account's phone
/// to the companion `device_id`.
pub(crate) fn key_share_plaintext(
    account: &PhoneAccount,
    device_id: u16,
    key: &AppStateKey,
) -> Vec<u8> {
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
    wacore::messages::MessageUtils::pad_message_v2(msg.encode_to_vec())
}
