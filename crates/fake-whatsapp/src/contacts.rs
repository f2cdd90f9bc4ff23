//! The phone's address book as app state (`critical_unblock_low`).
//!
//! Every [`crate::FakeWhatsApp::set_contacts`] call is one version of the
//! collection: a patch of `SET ["contact", jid]` mutations. The patches are
//! rebuilt on demand from the contact batches and the account's shared
//! app-state key, with the library's own encoder, LT-hash and MAC helpers.
//! IVs are derived deterministically, so a rebuilt patch is byte-identical to
//! one sent earlier and the client's LT-hash stays in step with the fake's.

use std::collections::HashMap;

use wacore::appstate::hash::{HashState, generate_index_mac, generate_patch_mac};
use wacore::appstate::{encode_record, expand_app_state_keys};
use waproto::whatsapp as wa;

use crate::keyshare::AppStateKey;

/// The collection that carries contacts.
pub(crate) const COLLECTION: &str = "critical_unblock_low";

/// One address-book entry of the phone (a `ContactAction`).
#[derive(Clone, Debug, Default)]
pub struct PhoneContact {
    /// The contact's JID, the mutation index: `"9665...@s.whatsapp.net"` or `"...@lid"`.
    pub jid: String,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    /// The contact's phone-number JID (for a LID contact).
    pub pn_jid: Option<String>,
    /// The contact's LID JID (for a phone-number contact).
    pub lid_jid: Option<String>,
}

/// A JSON string literal (the index is a JSON array of strings).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn index_of(contact: &PhoneContact) -> Vec<u8> {
    format!("[{},{}]", json_str("contact"), json_str(&contact.jid)).into_bytes()
}

fn action_of(contact: &PhoneContact, timestamp_ms: i64) -> wa::SyncActionValue {
    wa::SyncActionValue {
        timestamp: Some(timestamp_ms),
        contact_action: buffa::MessageField::some(wa::sync_action_value::ContactAction {
            full_name: contact.full_name.clone(),
            first_name: contact.first_name.clone(),
            lid_jid: contact.lid_jid.clone(),
            pn_jid: contact.pn_jid.clone(),
            save_on_primary_addressbook: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The encoded patches (`SyncdPatch` bytes) for versions `from + 1 ..=
/// batches.len()`; each batch is one version.
pub(crate) fn patches_since(
    batches: &[Vec<PhoneContact>],
    key: &AppStateKey,
    from: u64,
) -> Vec<Vec<u8>> {
    let keys = expand_app_state_keys(&key.data);
    let mut state = HashState::default();
    // index MAC -> value MAC of the live SET for that index.
    let mut live: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let version = i as u64 + 1;
        let mutations: Vec<wa::SyncdMutation> = batch
            .iter()
            .enumerate()
            .map(|(n, contact)| {
                let index = index_of(contact);
                let mut seed = format!("fake-iv|{version}|{n}|").into_bytes();
                seed.extend_from_slice(&index);
                let iv: [u8; 16] = generate_index_mac(&seed, &key.data)[..16]
                    .try_into()
                    .expect("HMAC-SHA256 is 32 bytes");
                let ts = key.timestamp_ms + version as i64;
                encode_record(
                    wa::syncd_mutation::SyncdOperation::SET,
                    &index,
                    &action_of(contact, ts),
                    &keys,
                    &key.id,
                    &iv,
                    2,
                )
                .0
            })
            .collect();
        let (_, res) =
            state.update_hash(&mutations, |index_mac, _| Ok(live.get(index_mac).cloned()));
        if let Err(e) = res {
            tracing::warn!("fake-whatsapp: contact patch v{version}: {e:#}");
        }
        for m in &mutations {
            let (Some(index_mac), Some(value)) =
                (m.record.index.blob.clone(), m.record.value.blob.as_deref())
            else {
                continue;
            };
            live.insert(index_mac, value[value.len() - 32..].to_vec());
        }
        state.version = version;
        if version <= from {
            continue;
        }
        let mut patch = wa::SyncdPatch {
            version: buffa::MessageField::some(wa::SyncdVersion {
                version: Some(version),
            }),
            snapshot_mac: Some(state.generate_snapshot_mac(COLLECTION, &keys.snapshot_mac)),
            key_id: buffa::MessageField::some(wa::KeyId {
                id: Some(key.id.clone()),
            }),
            mutations,
            ..Default::default()
        };
        patch.patch_mac = Some(generate_patch_mac(
            &patch,
            COLLECTION,
            &keys.patch_mac,
            version,
        ));
        out.push(waproto::codec::syncd_patch_to_vec(&patch));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn patches_decode_and_verify_like_the_client() {
        let key = AppStateKey::generate();
        let c = |jid: &str, name: &str| PhoneContact {
            jid: jid.into(),
            full_name: Some(name.into()),
            ..Default::default()
        };
        let batches = vec![
            vec![c("1@s.whatsapp.net", "A"), c("2@lid", "B")],
            vec![c("1@s.whatsapp.net", "A2")],
        ];
        let keys = Arc::new(expand_app_state_keys(&key.data));
        let mut state = HashState::default();
        let mut macs: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut names = Vec::new();
        for raw in patches_since(&batches, &key, 0) {
            let patch = waproto::codec::syncd_patch_decode(&raw).unwrap();
            let r = wacore::appstate::process_patch(
                &patch,
                &mut state,
                |_| Ok(keys.clone()),
                |im| Ok(macs.get(im).cloned()),
                true,
                COLLECTION,
            )
            .unwrap();
            assert!(!state.mac_mismatch_fatal);
            for m in r.added_macs {
                macs.insert(m.index_mac, m.value_mac);
            }
            for m in r.mutations {
                names.push(
                    m.action_value
                        .unwrap()
                        .contact_action
                        .full_name
                        .clone()
                        .unwrap(),
                );
            }
        }
        assert_eq!(state.version, 2);
        assert_eq!(names, ["A", "B", "A2"]);
        // Rebuilding from version 1 gives the same v2 patch.
        assert_eq!(
            patches_since(&batches, &key, 1),
            patches_since(&batches, &key, 0)[1..]
        );
    }
}
