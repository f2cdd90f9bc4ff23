//! Files a contact's phone sends the account. As a real phone does, it first puts the file
//! encrypted on the media server, then sends a message naming where it is and the keys to
//! open it: the client downloads it from [`crate::FakeWhatsApp::http_client`].

use wacore::download::MediaType;
use waproto::whatsapp::message::{
    AudioMessage, DocumentMessage, ImageMessage, StickerMessage, VideoMessage,
};

use crate::{FakeWhatsApp, signal};

/// Which message a [`PhoneMedia`] goes out as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneMediaKind {
    Image,
    Document,
    Video,
    /// An audio file, or a voice note with [`PhoneMedia::voice_note`].
    Audio,
    Sticker,
}

/// A file the phone sends.
#[derive(Debug, Clone)]
pub struct PhoneMedia {
    pub kind: PhoneMediaKind,
    pub bytes: Vec<u8>,
    pub mime: String,
    /// A document's name.
    pub file_name: Option<String>,
    /// Shown under an image, a video or a document.
    pub caption: Option<String>,
    /// An audio recorded as a voice note (`ptt`).
    pub voice_note: bool,
}

impl PhoneMedia {
    pub fn new(kind: PhoneMediaKind, bytes: Vec<u8>, mime: &str) -> Self {
        Self {
            kind,
            bytes,
            mime: mime.to_string(),
            file_name: None,
            caption: None,
            voice_note: false,
        }
    }
}

impl FakeWhatsApp {
    /// Like [`Self::send_message`], with a file: encrypted with a fresh key, kept on the
    /// media server, and the message pointing to it. Answers the message's id.
    pub async fn send_media(
        &self,
        phone_digits: &str,
        from_jid: &str,
        push_name: &str,
        media: PhoneMedia,
        timestamp: i64,
    ) -> anyhow::Result<String> {
        let media_type = match media.kind {
            PhoneMediaKind::Image => MediaType::Image,
            PhoneMediaKind::Document => MediaType::Document,
            PhoneMediaKind::Video => MediaType::Video,
            PhoneMediaKind::Audio => MediaType::Audio,
            PhoneMediaKind::Sticker => MediaType::Sticker,
        };
        let enc = wacore::upload::encrypt_media(&media.bytes, media_type)?;
        let id = signal::message_id();
        let direct_path = format!("/v/t62.fake/in-{id}");
        self.inner
            .lock()
            .uploads
            .insert(direct_path.clone(), enc.data_to_upload);
        let url = format!("https://{}{direct_path}", crate::media::HOST);
        let length = media.bytes.len() as u64;
        macro_rules! file {
            ($ty:ident { $($extra:tt)* }) => {
                $ty {
                    url: Some(url),
                    direct_path: Some(direct_path),
                    mimetype: Some(media.mime.clone()),
                    media_key: Some(enc.media_key.to_vec()),
                    file_sha256: Some(enc.file_sha256.to_vec()),
                    file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
                    file_length: Some(length),
                    $($extra)*
                    ..Default::default()
                }
                .into()
            };
        }
        let mut msg = waproto::whatsapp::Message::default();
        match media.kind {
            PhoneMediaKind::Image => {
                msg.image_message = file!(ImageMessage {
                    caption: media.caption,
                })
            }
            PhoneMediaKind::Document => {
                msg.document_message = file!(DocumentMessage {
                    caption: media.caption,
                    file_name: media.file_name.clone(),
                    title: media.file_name,
                })
            }
            PhoneMediaKind::Video => {
                msg.video_message = file!(VideoMessage {
                    caption: media.caption,
                })
            }
            PhoneMediaKind::Audio => {
                msg.audio_message = file!(AudioMessage {
                    ptt: Some(media.voice_note),
                })
            }
            PhoneMediaKind::Sticker => msg.sticker_message = file!(StickerMessage {}),
        }
        self.deliver(
            phone_digits,
            from_jid,
            push_name,
            msg,
            "media",
            &id,
            timestamp,
        )
        .await?;
        Ok(id)
    }
}
