//! What WhatsApp's history chunks, contact actions and messages say, as plain facts.

use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::store::CachedContact;

/// `("text" | "image" | "other", text or caption)`, or `None` for what is not a message a
/// person wrote (protocol traffic, reactions, key distribution, poll votes).
pub(super) fn message_content(m: &wa::Message) -> Option<(&'static str, Option<String>)> {
    let m = m.get_base_message();
    if m.protocol_message.is_set()
        || m.reaction_message.is_set()
        || m.enc_reaction_message.is_set()
        || m.poll_update_message.is_set()
        || m.keep_in_chat_message.is_set()
    {
        return None;
    }
    if let Some(text) = m.text_content() {
        return Some(("text", Some(text.to_string())));
    }
    if let Some(image) = m.image_message.as_option() {
        return Some(("image", image.caption.clone().filter(|c| !c.is_empty())));
    }
    // A sender-key handout alone (the first message of a group) carries nothing to show.
    let mut rest = m.clone();
    rest.sender_key_distribution_message = Default::default();
    rest.message_context_info = Default::default();
    // Compared on the wire: a present but empty part (a sticker with no fields we know)
    // still counts, where struct equality would call it absent.
    if whatsapp_rust::waproto::codec::message_to_vec(&rest).is_empty() {
        return None;
    }
    Some(("other", m.get_caption().map(str::to_string)))
}

pub(super) fn is_pn(jid: &str) -> bool {
    jid.ends_with("@s.whatsapp.net") || jid.ends_with("@c.us")
}

pub(super) fn is_lid(jid: &str) -> bool {
    jid.ends_with("@lid")
}

pub(super) fn opt(s: &Option<String>) -> Option<String> {
    s.clone().filter(|v| !v.trim().is_empty())
}

/// What a contact saved on the phone (app state) says, and its LID ↔ number pair.
pub(super) fn contact_action_fact(
    jid: String,
    a: &wa::sync_action_value::ContactAction,
) -> (CachedContact, Option<(String, String)>) {
    let name = opt(&a.full_name).or_else(|| opt(&a.first_name));
    let pn = opt(&a.pn_jid).or_else(|| is_pn(&jid).then(|| jid.clone()));
    let lid = opt(&a.lid_jid).or_else(|| is_lid(&jid).then(|| jid.clone()));
    let pair = pn.clone().zip(lid.clone()).map(|(p, l)| (l, p));
    let entry = CachedContact {
        jid,
        pn_jid: pn,
        lid_jid: lid,
        name,
        ..Default::default()
    };
    (entry, pair)
}

/// What a history chunk says about chats and contacts, and its LID ↔ number pairs.
pub(super) fn history_facts(h: &wa::HistorySync) -> (Vec<CachedContact>, Vec<(String, String)>) {
    let mut entries = Vec::with_capacity(h.conversations.len() + h.pushnames.len());
    let mut pairs = Vec::new();
    for c in &h.conversations {
        let jid = c.id.clone();
        // The last message, else the chat's own time: both are WhatsApp's, never ours.
        let last = c
            .last_msg_timestamp
            .or(c.conversation_timestamp)
            .filter(|t| *t > 0)
            .and_then(|t| i64::try_from(t).ok());
        let pn = opt(&c.pn_jid);
        let lid = opt(&c.lid_jid);
        if is_lid(&jid)
            && let Some(pn) = &pn
        {
            pairs.push((jid.clone(), pn.clone()));
        }
        if is_pn(&jid)
            && let Some(lid) = &lid
        {
            pairs.push((lid.clone(), jid.clone()));
        }
        entries.push(CachedContact {
            jid,
            pn_jid: pn,
            lid_jid: lid,
            name: opt(&c.name).or_else(|| opt(&c.display_name)),
            last_message_at: last,
            ..Default::default()
        });
    }
    for p in &h.pushnames {
        if let (Some(jid), Some(name)) = (opt(&p.id), opt(&p.pushname)) {
            entries.push(CachedContact {
                jid,
                push_name: Some(name),
                ..Default::default()
            });
        }
    }
    for c in &h.inline_contacts {
        let Some(jid) = opt(&c.pn_jid).or_else(|| opt(&c.lid_jid)) else {
            continue;
        };
        if let (Some(pn), Some(lid)) = (opt(&c.pn_jid), opt(&c.lid_jid)) {
            pairs.push((lid, pn));
        }
        entries.push(CachedContact {
            jid,
            pn_jid: opt(&c.pn_jid),
            lid_jid: opt(&c.lid_jid),
            name: opt(&c.full_name).or_else(|| opt(&c.first_name)),
            ..Default::default()
        });
    }
    for m in &h.phone_number_to_lid_mappings {
        if let (Some(pn), Some(lid)) = (opt(&m.pn_jid), opt(&m.lid_jid)) {
            pairs.push((lid, pn));
        }
    }
    (entries, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::buffa;

    #[test]
    fn a_history_chunk_becomes_cached_facts_and_lid_pairs() {
        let h = wa::HistorySync {
            conversations: vec![
                wa::Conversation {
                    id: "966501112222@s.whatsapp.net".into(),
                    name: Some("Ali".into()),
                    last_msg_timestamp: Some(1_700_000_000),
                    lid_jid: Some("111@lid".into()),
                    ..Default::default()
                },
                wa::Conversation {
                    id: "222@lid".into(),
                    pn_jid: Some("966503334444@s.whatsapp.net".into()),
                    conversation_timestamp: Some(1_600_000_000),
                    display_name: Some("Sara".into()),
                    ..Default::default()
                },
            ],
            pushnames: vec![wa::Pushname {
                id: Some("966501112222@s.whatsapp.net".into()),
                pushname: Some("Ali P".into()),
            }],
            phone_number_to_lid_mappings: vec![wa::PhoneNumberToLIDMapping {
                pn_jid: Some("966505556666@s.whatsapp.net".into()),
                lid_jid: Some("333@lid".into()),
            }],
            ..Default::default()
        };
        let (entries, pairs) = history_facts(&h);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].name.as_deref(), Some("Ali"));
        assert_eq!(entries[0].last_message_at, Some(1_700_000_000));
        assert_eq!(entries[1].name.as_deref(), Some("Sara"));
        assert_eq!(entries[1].last_message_at, Some(1_600_000_000));
        assert_eq!(entries[2].push_name.as_deref(), Some("Ali P"));
        let mut pairs = pairs;
        pairs.sort();
        assert_eq!(
            pairs,
            vec![
                (
                    "111@lid".to_string(),
                    "966501112222@s.whatsapp.net".to_string()
                ),
                (
                    "222@lid".to_string(),
                    "966503334444@s.whatsapp.net".to_string()
                ),
                (
                    "333@lid".to_string(),
                    "966505556666@s.whatsapp.net".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_saved_contact_gives_its_name_and_lid_pair() {
        let action = wa::sync_action_value::ContactAction {
            full_name: Some("Sara Ahmed".into()),
            first_name: Some("Sara".into()),
            pn_jid: Some("966503334444@s.whatsapp.net".into()),
            ..Default::default()
        };
        let (c, pair) = contact_action_fact("222@lid".into(), &action);
        assert_eq!(c.name.as_deref(), Some("Sara Ahmed"));
        assert_eq!(c.pn_jid.as_deref(), Some("966503334444@s.whatsapp.net"));
        assert_eq!(
            pair,
            Some(("222@lid".into(), "966503334444@s.whatsapp.net".into()))
        );
        let first_only = wa::sync_action_value::ContactAction {
            full_name: Some(" ".into()),
            first_name: Some("Ali".into()),
            ..Default::default()
        };
        let (c, pair) = contact_action_fact("966501112222@s.whatsapp.net".into(), &first_only);
        assert_eq!(c.name.as_deref(), Some("Ali"));
        assert_eq!(c.pn_jid.as_deref(), Some("966501112222@s.whatsapp.net"));
        assert_eq!(pair, None);
    }

    #[test]
    fn only_what_a_person_wrote_counts_as_a_message() {
        let text = wa::Message {
            conversation: Some("hi".into()),
            ..Default::default()
        };
        assert_eq!(message_content(&text), Some(("text", Some("hi".into()))));

        let extended = wa::Message {
            extended_text_message: buffa::MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("see https://example.com".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            message_content(&extended),
            Some(("text", Some("see https://example.com".into())))
        );

        let image = |caption: Option<&str>| wa::Message {
            image_message: buffa::MessageField::some(wa::message::ImageMessage {
                caption: caption.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            message_content(&image(Some("menu"))),
            Some(("image", Some("menu".into())))
        );
        assert_eq!(message_content(&image(None)), Some(("image", None)));

        // Wrapped in a disappearing-messages envelope: the same text.
        let ephemeral = wa::Message {
            ephemeral_message: buffa::MessageField::some(wa::message::FutureProofMessage {
                message: buffa::MessageField::some(text.clone()),
            }),
            ..Default::default()
        };
        assert_eq!(
            message_content(&ephemeral),
            Some(("text", Some("hi".into())))
        );

        let sticker = wa::Message {
            sticker_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&sticker), Some(("other", None)));

        let reaction = wa::Message {
            reaction_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&reaction), None);
        let protocol = wa::Message {
            protocol_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&protocol), None);
        let key_only = wa::Message {
            sender_key_distribution_message: buffa::MessageField::some(Default::default()),
            ..Default::default()
        };
        assert_eq!(message_content(&key_only), None);
    }
}
