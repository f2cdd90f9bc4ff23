//! The phone's initial history sync.
//!
//! Right after a companion links, the phone sends it a
//! `ProtocolMessage { type: HISTORY_SYNC_NOTIFICATION }`. A real phone uploads
//! the zlib-compressed `HistorySync` blob to the media servers and sends only
//! its location; for the first (`INITIAL_BOOTSTRAP`) chunk it may inline the
//! blob instead (`initial_hist_bootstrap_inline_payload`), which is what the
//! fake does, so the client never downloads anything.

use std::io::Write as _;

use anyhow::Context as _;
use waproto::buffa::Message as _;
use waproto::whatsapp as wa;

/// One chat of the history the phone sends a new companion.
#[derive(Clone, Debug, Default)]
pub struct HistoryChat {
    /// The chat id: `<digits>@s.whatsapp.net`, `<lid>@lid`, `<id>@g.us`,
    /// `<id>@broadcast`, … (`Conversation.id`).
    pub jid: String,
    /// `Conversation.pn_jid`: the phone-number JID of a LID chat.
    pub pn_jid: Option<String>,
    /// `Conversation.lid_jid`: the LID of a phone-number chat.
    pub lid_jid: Option<String>,
    /// `Conversation.name` (a group subject, or the contact's name as saved
    /// on the phone).
    pub name: Option<String>,
    /// `Conversation.last_msg_timestamp` (unix seconds).
    pub last_msg_timestamp: Option<u64>,
    /// `Conversation.conversation_timestamp` (unix seconds).
    pub conversation_timestamp: Option<u64>,
}

/// What the phone sends in its history sync.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub chats: Vec<HistoryChat>,
    /// `(jid, push name)` pairs (`HistorySync.pushnames`).
    pub pushnames: Vec<(String, String)>,
    /// `(lid jid, pn jid)` pairs, e.g. `("123456789012345@lid",
    /// "966500000001@s.whatsapp.net")` (`HistorySync.phone_number_to_lid_mappings`).
    pub lid_pn: Vec<(String, String)>,
}

impl History {
    /// The `HistorySync` proto for this history (one chunk, complete).
    pub(crate) fn to_proto(&self) -> wa::HistorySync {
        wa::HistorySync {
            sync_type: wa::history_sync::HistorySyncType::INITIAL_BOOTSTRAP,
            conversations: self
                .chats
                .iter()
                .map(|c| wa::Conversation {
                    id: c.jid.clone(),
                    pn_jid: c.pn_jid.clone(),
                    lid_jid: c.lid_jid.clone(),
                    name: c.name.clone(),
                    last_msg_timestamp: c.last_msg_timestamp,
                    conversation_timestamp: c.conversation_timestamp,
                    ..Default::default()
                })
                .collect(),
            chunk_order: Some(1),
            progress: Some(100),
            pushnames: self
                .pushnames
                .iter()
                .map(|(id, name)| wa::Pushname {
                    id: Some(id.clone()),
                    pushname: Some(name.clone()),
                })
                .collect(),
            phone_number_to_lid_mappings: self
                .lid_pn
                .iter()
                .map(|(lid, pn)| wa::PhoneNumberToLIDMapping {
                    pn_jid: Some(pn.clone()),
                    lid_jid: Some(lid.clone()),
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// The padded plaintext of the phone's history-sync notification carrying
/// `history` inline.
pub(crate) fn notification_plaintext(history: &History) -> anyhow::Result<Vec<u8>> {
    let blob = history.to_proto().encode_to_vec();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&blob).context("compressing the history sync")?;
    let compressed = z.finish().context("compressing the history sync")?;
    let oldest = history
        .chats
        .iter()
        .filter_map(|c| c.last_msg_timestamp.or(c.conversation_timestamp))
        .min()
        .and_then(|t| i64::try_from(t).ok());
    let msg = wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::HISTORY_SYNC_NOTIFICATION),
            history_sync_notification: buffa::MessageField::some(
                wa::message::HistorySyncNotification {
                    file_length: Some(compressed.len() as u64),
                    sync_type: Some(wa::message::HistorySyncType::INITIAL_BOOTSTRAP),
                    chunk_order: Some(1),
                    progress: Some(100),
                    oldest_msg_in_chunk_timestamp_sec: oldest,
                    initial_hist_bootstrap_inline_payload: Some(compressed),
                    ..Default::default()
                },
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(wacore::messages::MessageUtils::pad_message_v2(
        msg.encode_to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_parses_the_inline_payload() {
        let history = History {
            chats: vec![HistoryChat {
                jid: "966500000001@s.whatsapp.net".into(),
                name: Some("Ali".into()),
                last_msg_timestamp: Some(1_700_000_000),
                ..Default::default()
            }],
            pushnames: vec![("966500000001@s.whatsapp.net".into(), "Ali P".into())],
            lid_pn: vec![(
                "123456789012345@lid".into(),
                "966500000001@s.whatsapp.net".into(),
            )],
        };
        let padded = notification_plaintext(&history).unwrap();
        let (msg, detached) =
            wacore::messages::decode_plaintext_detached_history_sync(padded, 2).unwrap();
        assert!(msg.protocol_message.is_set());
        let detached = detached.expect("a history sync notification");
        let payload = detached.inline_payload.expect("inline payload");
        let result = wacore::history_sync::process_history_sync_bytes_with_record_sink(
            payload,
            Some("15551234567"),
            true,
            NoSecrets,
        )
        .unwrap();
        assert_eq!(result.conversations_processed, 1);
        assert_eq!(result.lid_mappings.len(), 1);
        assert_eq!(result.lid_mappings[0].lid, "123456789012345");
        assert_eq!(result.lid_mappings[0].phone_number, "966500000001");
    }

    struct NoSecrets;
    impl wacore::history_sync::HistoryMsgSecretRecordVisitor for NoSecrets {
        fn visit(&mut self, _record: wacore::history_sync::HistoryMsgSecretRecordRef<'_>) -> usize {
            0
        }
    }
}
