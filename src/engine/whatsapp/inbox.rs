//! The inbox's side of the real engine: what an incoming file is and how to fetch it again
//! later, its download, and read receipts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use whatsapp_rust::Jid;
use whatsapp_rust::download::{DownloadParams, Downloadable, MediaType};
use whatsapp_rust::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;

use super::client::WaClient;
use super::{SEND_WAIT, UPLOAD_WAIT};
use crate::domain::PhoneNumber;
use crate::engine::{EngineError, IncomingMedia};

/// Everything a later download needs: WhatsApp's CDN keeps the encrypted file under
/// `direct_path`, and only the message's keys open and verify it. Stored as the message's
/// `media_ref`, so a file can be fetched after a restart, with the message long gone.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct MediaRef {
    /// `image`, `video`, `audio`, `document` or `sticker`: picks the key derivation.
    media_type: String,
    direct_path: String,
    /// Base64.
    media_key: String,
    file_sha256: String,
    file_enc_sha256: String,
    file_length: u64,
    mime: Option<String>,
}

/// What an incoming media message says: its kind, caption and file. `None` when the message
/// holds no file of a kind the inbox shows.
pub(super) fn media_content(
    m: &wa::Message,
) -> Option<(&'static str, Option<String>, Option<IncomingMedia>)> {
    let m = m.get_base_message();
    let caption = |c: &Option<String>| c.clone().filter(|c| !c.trim().is_empty());
    if let Some(i) = m.image_message.as_option() {
        let file = file(i, "image", i.mimetype.clone(), None, false);
        return Some(("image", caption(&i.caption), file));
    }
    if let Some(d) = m.document_message.as_option() {
        let name = d.file_name.clone().or_else(|| d.title.clone());
        let file = file(d, "document", d.mimetype.clone(), name, false);
        return Some(("document", caption(&d.caption), file));
    }
    if let Some(v) = m.video_message.as_option() {
        let file = file(v, "video", v.mimetype.clone(), None, false);
        return Some(("video", caption(&v.caption), file));
    }
    if let Some(a) = m.audio_message.as_option() {
        let voice = a.ptt.unwrap_or(false);
        let file = file(a, "audio", a.mimetype.clone(), None, voice);
        return Some(("audio", None, file));
    }
    if let Some(s) = m.sticker_message.as_option() {
        let file = file(s, "sticker", s.mimetype.clone(), None, false);
        return Some(("sticker", None, file));
    }
    None
}

/// The file of a media message; `None` when it lacks what a download needs (a sticker
/// from a pack the phone names only, a message cut short).
fn file(
    d: &dyn Downloadable,
    media_type: &str,
    mime: Option<String>,
    file_name: Option<String>,
    voice_note: bool,
) -> Option<IncomingMedia> {
    let mime = mime.filter(|m| !m.trim().is_empty());
    let r = MediaRef {
        media_type: media_type.to_string(),
        direct_path: d.direct_path().filter(|p| !p.is_empty())?.to_string(),
        media_key: B64.encode(d.media_key()?),
        file_sha256: B64.encode(d.file_sha256()?),
        file_enc_sha256: B64.encode(d.file_enc_sha256()?),
        file_length: d.file_length().unwrap_or(0),
        mime: mime.clone(),
    };
    let media_ref = serde_json::to_string(&r).ok()?;
    Some(IncomingMedia {
        mime,
        size: d.file_length().and_then(|n| i64::try_from(n).ok()),
        file_name: file_name.filter(|n| !n.trim().is_empty()),
        voice_note,
        media_ref,
    })
}

fn params(media_ref: &str) -> Result<DownloadParams, EngineError> {
    let bad = |why: &str| EngineError::Invalid(format!("not a WhatsApp file reference: {why}"));
    let r: MediaRef = serde_json::from_str(media_ref).map_err(|e| bad(&e.to_string()))?;
    let media_type = match r.media_type.as_str() {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" => MediaType::Audio,
        "document" => MediaType::Document,
        "sticker" => MediaType::Sticker,
        other => return Err(bad(&format!("unknown media type {other:?}"))),
    };
    let key = |name: &str, v: &str| {
        B64.decode(v)
            .map_err(|_| bad(&format!("{name} is not base64")))
    };
    let media_key = key("media_key", &r.media_key)?;
    if media_key.len() != 32 {
        return Err(bad("media_key is not 32 bytes"));
    }
    Ok(DownloadParams::encrypted(
        r.direct_path,
        &media_key,
        &key("file_sha256", &r.file_sha256)?,
        &key("file_enc_sha256", &r.file_enc_sha256)?,
        r.file_length,
        media_type,
    ))
}

impl WaClient {
    pub(super) async fn download_file(&self, media_ref: &str) -> Result<Vec<u8>, EngineError> {
        let params = params(media_ref)?;
        let lib = self.connected_lib()?;
        match tokio::time::timeout(UPLOAD_WAIT, lib.download_from_params(&params)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) if lib.is_connected() => Err(EngineError::Failed(format!(
                "WhatsApp did not hand the file over (it may have expired): {e}"
            ))),
            Ok(Err(_)) => Err(EngineError::NotConnected),
            Err(_) => Err(EngineError::Failed(format!(
                "the file did not download within {} s",
                UPLOAD_WAIT.as_secs()
            ))),
        }
    }

    pub(super) async fn send_read_receipts(
        &self,
        chat: &PhoneNumber,
        ids: &[String],
    ) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Ok(());
        }
        let lib = self.connected_lib()?;
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        // A one-to-one chat: the receipt goes to the chat, with no participant.
        let chat = Jid::pn(chat.digits());
        match tokio::time::timeout(SEND_WAIT, lib.mark_as_read(&chat, None, &ids)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if lib.is_connected() => Err(EngineError::Failed(format!(
                "cannot send read receipts: {e}"
            ))),
            Ok(Err(_)) => Err(EngineError::NotConnected),
            Err(_) => Err(EngineError::Failed(format!(
                "read receipts did not go out within {} s",
                SEND_WAIT.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> wa::Message {
        wa::Message {
            document_message: wa::message::DocumentMessage {
                mimetype: Some("application/pdf".into()),
                file_name: Some("invoice.pdf".into()),
                caption: Some("your invoice".into()),
                direct_path: Some("/v/t62/abc".into()),
                media_key: Some(vec![7; 32]),
                file_sha256: Some(vec![1; 32]),
                file_enc_sha256: Some(vec![2; 32]),
                file_length: Some(1234),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_document_names_its_file_and_a_reference_that_downloads_it() {
        let (kind, text, media) = media_content(&document()).unwrap();
        assert_eq!(kind, "document");
        assert_eq!(text.as_deref(), Some("your invoice"));
        let media = media.unwrap();
        assert_eq!(media.mime.as_deref(), Some("application/pdf"));
        assert_eq!(media.size, Some(1234));
        assert_eq!(media.file_name.as_deref(), Some("invoice.pdf"));
        assert!(!media.voice_note);
        let p = params(&media.media_ref).unwrap();
        assert_eq!(p.direct_path, "/v/t62/abc");
        assert_eq!(p.media_key.as_deref(), Some(&[7u8; 32][..]));
        assert_eq!(p.file_sha256, vec![1; 32]);
        assert_eq!(p.file_enc_sha256.as_deref(), Some(&[2u8; 32][..]));
        assert_eq!(p.file_length, 1234);
        assert_eq!(p.media_type, MediaType::Document);
    }

    #[test]
    fn a_voice_note_is_audio_marked_as_one() {
        let m = wa::Message {
            audio_message: wa::message::AudioMessage {
                mimetype: Some("audio/ogg; codecs=opus".into()),
                ptt: Some(true),
                direct_path: Some("/v/t62/voice".into()),
                media_key: Some(vec![3; 32]),
                file_sha256: Some(vec![1; 32]),
                file_enc_sha256: Some(vec![2; 32]),
                file_length: Some(99),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        };
        let (kind, text, media) = media_content(&m).unwrap();
        assert_eq!((kind, text), ("audio", None));
        let media = media.unwrap();
        assert!(media.voice_note);
        assert_eq!(
            params(&media.media_ref).unwrap().media_type,
            MediaType::Audio
        );
    }

    #[test]
    fn a_file_without_its_keys_has_no_reference_and_text_is_no_media() {
        let mut m = document();
        if let Some(d) = m.document_message.as_option_mut() {
            d.media_key = None;
        }
        let (kind, _, media) = media_content(&m).unwrap();
        assert_eq!(kind, "document");
        assert!(media.is_none());
        let text = wa::Message {
            conversation: Some("hi".into()),
            ..Default::default()
        };
        assert!(media_content(&text).is_none());
    }

    #[test]
    fn a_bad_reference_is_invalid() {
        for bad in [
            "",
            "{}",
            "not json",
            r#"{"media_type":"image","direct_path":"/x","media_key":"!!","file_sha256":"","file_enc_sha256":"","file_length":1,"mime":null}"#,
            r#"{"media_type":"fax","direct_path":"/x","media_key":"","file_sha256":"","file_enc_sha256":"","file_length":1,"mime":null}"#,
            r#"{"media_type":"image","direct_path":"/x","media_key":"AAAA","file_sha256":"","file_enc_sha256":"","file_length":1,"mime":null}"#,
        ] {
            assert!(
                matches!(params(bad), Err(EngineError::Invalid(_))),
                "{bad} is refused"
            );
        }
    }
}
