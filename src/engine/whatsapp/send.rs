//! Sending a message and waiting for WhatsApp's ack, and what the library's errors mean
//! to a caller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use std::sync::Arc;
use tokio::sync::oneshot;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::media::{AudioOptions, DocumentOptions, ImageOptions, VideoOptions};
use whatsapp_rust::pair_code::PairError;
use whatsapp_rust::request::IqError;
use whatsapp_rust::send::{SendError, SendOptions};
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore::pair_code::PairCodeError;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, ClientError, Jid};

use super::client::WaClient;
use super::{ACK_WAIT, MAX_DOCUMENT_BYTES, MAX_MEDIA_BYTES, SEND_WAIT, UPLOAD_WAIT};
use crate::engine::{EngineClient, EngineError, OutgoingMedia, OutgoingMessage};
use crate::store::MessageKind;

impl WaClient {
    pub(super) async fn send_message(
        &self,
        message: &OutgoingMessage,
    ) -> Result<String, EngineError> {
        let lib = self.connected_lib()?;
        if message.id.trim().is_empty() {
            return Err(EngineError::Invalid("the message has no id".into()));
        }
        let text = message.text.clone().filter(|t| !t.trim().is_empty());
        if let Some(media) = &message.media {
            check_media(media)?;
        } else if text.is_none() {
            return Err(EngineError::Invalid(
                "the message has neither text nor a file".into(),
            ));
        }
        let to = Jid::pn(message.to.digits());
        self.check_recipient(&lib, &to, message).await?;
        let content = match &message.media {
            Some(media) => self.media_content(&lib, media, text).await?,
            None => wa::Message {
                conversation: text,
                ..Default::default()
            },
        };
        // Registered before the stanza leaves: the ack can come back before the send returns.
        let mut ticket = self.acks.expect(&message.id);
        let options = SendOptions::default().with_message_id(message.id.clone());
        let sent = tokio::time::timeout(
            SEND_WAIT,
            lib.send_message_with_options(to, content, options),
        )
        .await;
        let sent = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(e)) => {
                self.acks.forget(&ticket);
                return Err(send_error(e, &lib));
            }
            Err(_) => {
                self.acks.forget(&ticket);
                return Err(EngineError::Failed(format!(
                    "the message could not be handed to WhatsApp within {} s",
                    SEND_WAIT.as_secs()
                )));
            }
        };
        let verdict = tokio::select! {
            v = tokio::time::timeout(ACK_WAIT, &mut ticket.rx) => v,
            _ = self.stop.cancelled() => {
                self.acks.forget(&ticket);
                return Err(EngineError::ClientGone);
            }
        };
        match verdict {
            Ok(Ok(None)) => Ok(sent.message_id),
            Ok(Ok(Some(code))) => Err(nack_error(&code)),
            // Only a newer send of the same id replaces the waiter; that send reports.
            Ok(Err(_)) => Err(EngineError::Busy(format!(
                "message {} is being sent again meanwhile",
                message.id
            ))),
            Err(_) => {
                self.acks.forget(&ticket);
                Err(if lib.is_connected() {
                    EngineError::Failed(format!(
                        "the message went out but WhatsApp did not confirm it within {} s",
                        ACK_WAIT.as_secs()
                    ))
                } else {
                    EngineError::NotConnected
                })
            }
        }
    }
}

impl WaClient {
    /// The library client, if it is alive and connected right now.
    pub(super) fn connected_lib(&self) -> Result<Arc<Client>, EngineError> {
        let lib = match self.lib() {
            Some(lib) if self.is_alive() => lib,
            _ => return Err(EngineError::ClientGone),
        };
        if !lib.is_connected() {
            return Err(EngineError::NotConnected);
        }
        Ok(lib)
    }

    /// A number with no WhatsApp account would get nothing while the send looked fine (the
    /// library then encrypts for our own devices only). Its device list is what the send
    /// reads anyway, and is cached; only an empty one costs a second question.
    pub(super) async fn check_recipient(
        &self,
        lib: &Client,
        to: &Jid,
        message: &OutgoingMessage,
    ) -> Result<(), EngineError> {
        let devices = tokio::time::timeout(
            SEND_WAIT,
            lib.signal().get_user_devices(std::slice::from_ref(to)),
        )
        .await
        .map_err(|_| lookup_timeout())?
        .map_err(|e| lookup_error(lib, &e))?;
        if !devices.is_empty() {
            return Ok(());
        }
        let found = tokio::time::timeout(
            SEND_WAIT,
            lib.contacts().is_on_whatsapp(std::slice::from_ref(to)),
        )
        .await
        .map_err(|_| lookup_timeout())?
        .map_err(|e| lookup_error(lib, &e))?;
        if found.iter().any(|r| r.is_registered) {
            return Ok(());
        }
        Err(EngineError::Invalid(format!(
            "{} is not on WhatsApp",
            message.to
        )))
    }

    /// Encrypts and uploads the file to WhatsApp's media servers; the message then only
    /// carries where it is, its key, and what the recipient sees before downloading it.
    pub(super) async fn media_content(
        &self,
        lib: &Client,
        media: &OutgoingMedia,
        caption: Option<String>,
    ) -> Result<wa::Message, EngineError> {
        let (media_type, what) = match media.kind {
            MessageKind::Image => (MediaType::Image, "image"),
            MessageKind::Video => (MediaType::Video, "video"),
            MessageKind::Audio => (MediaType::Audio, "audio"),
            _ => (MediaType::Document, "document"),
        };
        let upload = tokio::time::timeout(
            UPLOAD_WAIT,
            lib.upload(media.bytes.to_vec(), media_type, UploadOptions::default()),
        )
        .await;
        let upload = match upload {
            Ok(Ok(u)) => u,
            Ok(Err(_)) if !lib.is_connected() => return Err(EngineError::NotConnected),
            Ok(Err(e)) => {
                return Err(EngineError::Failed(format!(
                    "cannot upload the {what} to WhatsApp: {e:#}"
                )));
            }
            Err(_) => {
                return Err(EngineError::Failed(format!(
                    "uploading the {what} to WhatsApp took over {} s",
                    UPLOAD_WAIT.as_secs()
                )));
            }
        };
        // A voice note is Opus in Ogg, and phones are told so: the codec parameter of the
        // content type it came with was dropped when the type was read.
        let mimetype = Some(if media.voice_note && media.mime == "audio/ogg" {
            "audio/ogg; codecs=opus".to_owned()
        } else {
            media.mime.clone()
        });
        Ok(match media.kind {
            MessageKind::Image => {
                let mut m = whatsapp_rust::media::image_message(
                    upload,
                    ImageOptions {
                        caption,
                        mimetype,
                        jpeg_thumbnail: media.thumbnail.clone(),
                        ..Default::default()
                    },
                );
                if let Some(img) = m.image_message.as_option_mut() {
                    img.width = media.width;
                    img.height = media.height;
                }
                m
            }
            MessageKind::Video => whatsapp_rust::media::video_message(
                upload,
                VideoOptions {
                    caption,
                    mimetype,
                    ..Default::default()
                },
            ),
            MessageKind::Audio => whatsapp_rust::media::audio_message(
                upload,
                AudioOptions {
                    mimetype,
                    ptt: Some(media.voice_note),
                    ..Default::default()
                },
            ),
            _ => {
                let name = media.file_name.clone().unwrap_or_else(|| "document".into());
                whatsapp_rust::media::document_message(
                    upload,
                    DocumentOptions {
                        mimetype,
                        file_name: Some(name.clone()),
                        title: Some(name),
                        caption,
                        ..Default::default()
                    },
                )
            }
        })
    }
}

pub(super) fn check_media(media: &OutgoingMedia) -> Result<(), EngineError> {
    let (fits, cap) = match media.kind {
        MessageKind::Image => (media.mime.starts_with("image/"), MAX_MEDIA_BYTES),
        MessageKind::Video => (media.mime.starts_with("video/"), MAX_MEDIA_BYTES),
        MessageKind::Audio => (media.mime.starts_with("audio/"), MAX_MEDIA_BYTES),
        MessageKind::Document => (true, MAX_DOCUMENT_BYTES),
        other => {
            return Err(EngineError::Invalid(format!(
                "a {} cannot be sent",
                other.as_str()
            )));
        }
    };
    let what = media.kind.as_str();
    if !fits {
        return Err(EngineError::Invalid(format!(
            "the attachment is {}, not an {what}",
            media.mime
        )));
    }
    if media.bytes.is_empty() {
        return Err(EngineError::Invalid(format!("the {what} is empty")));
    }
    if media.bytes.len() > cap {
        return Err(EngineError::Invalid(format!(
            "the {what} is {} bytes; WhatsApp takes at most {cap}",
            media.bytes.len()
        )));
    }
    Ok(())
}

pub(super) fn lookup_timeout() -> EngineError {
    EngineError::Failed(format!(
        "WhatsApp did not say within {} s whether the recipient has an account",
        SEND_WAIT.as_secs()
    ))
}

pub(super) fn lookup_error(lib: &Client, e: &dyn std::fmt::Display) -> EngineError {
    if lib.is_connected() {
        EngineError::Failed(format!("cannot look up the recipient on WhatsApp: {e}"))
    } else {
        EngineError::NotConnected
    }
}

pub(super) fn send_error(e: SendError, lib: &Client) -> EngineError {
    match e {
        SendError::NotLoggedIn
        | SendError::Client(
            ClientError::NotConnected | ClientError::NotLoggedIn | ClientError::Socket(_),
        ) => EngineError::NotConnected,
        SendError::Iq(iq) | SendError::Client(ClientError::Iq(iq)) => iq_error(iq),
        SendError::InvalidRequest(m) => {
            EngineError::Invalid(format!("WhatsApp will not take this message: {m}"))
        }
        // A connection lost mid-send surfaces as whatever step it broke.
        _ if !lib.is_connected() => EngineError::NotConnected,
        other => EngineError::Failed(format!("sending failed: {other}")),
    }
}

pub(super) fn iq_error(e: IqError) -> EngineError {
    match e {
        IqError::NotConnected
        | IqError::Disconnected(_)
        | IqError::InternalChannelClosed
        | IqError::Socket(_) => EngineError::NotConnected,
        IqError::ServerError { code, backoff, .. } if code == 429 || backoff.is_some() => {
            EngineError::RateLimited(match backoff {
                Some(secs) => format!(
                    "WhatsApp is limiting this number; try again in {}",
                    human_duration(i64::from(secs))
                ),
                None => "WhatsApp is limiting this number; try again later".into(),
            })
        }
        IqError::ServerError { code, text, .. } => EngineError::Failed(format!(
            "WhatsApp refused a step of the send: {code} {text}"
        )),
        IqError::Timeout => EngineError::Failed("WhatsApp did not answer in time".into()),
        other => EngineError::Failed(format!("sending failed: {other}")),
    }
}

/// A message WhatsApp acknowledged with an error code. Only "no such recipient" is known to
/// be final; the meaning of the rest is undocumented, so they stay worth another try.
pub(super) fn nack_error(code: &str) -> EngineError {
    match code {
        "404" => EngineError::Invalid(
            "WhatsApp refused the message: the recipient has no account (error 404)".into(),
        ),
        "429" => {
            EngineError::RateLimited("WhatsApp is limiting this number; try again later".into())
        }
        // A time lock on writing to people the account has not talked to before.
        "463" => EngineError::RateLimited(
            "WhatsApp is holding back this number's messages to new contacts (error 463); try \
             again later"
                .into(),
        ),
        _ => EngineError::Failed(format!("WhatsApp refused the message (error {code})")),
    }
}

/// Sends waiting for WhatsApp's `<ack>` of their message, by message id. The value a waiter
/// gets is the nack code, if the server refused the message.
#[derive(Default)]
pub(super) struct AckWaiters {
    waiting: Mutex<HashMap<String, (u64, AckSender)>>,
    /// Tells a waiter from a later one for the same id, which a give-up must leave alone.
    next: std::sync::atomic::AtomicU64,
}

/// Answers one send with the nack code, or `None` for a plain ack.
pub(super) type AckSender = oneshot::Sender<Option<String>>;

/// One send's claim on the ack of its message.
pub(super) struct AckTicket {
    id: String,
    ticket: u64,
    rx: oneshot::Receiver<Option<String>>,
}

impl AckWaiters {
    pub(super) fn expect(&self, id: &str) -> AckTicket {
        let (tx, rx) = oneshot::channel();
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.waiting.lock() {
            g.insert(id.to_string(), (ticket, tx));
        }
        AckTicket {
            id: id.to_string(),
            ticket,
            rx,
        }
    }

    pub(super) fn forget(&self, t: &AckTicket) {
        if let Ok(mut g) = self.waiting.lock()
            && g.get(&t.id).is_some_and(|(ticket, _)| *ticket == t.ticket)
        {
            g.remove(&t.id);
        }
    }

    pub(super) fn acked(&self, id: &str, error: Option<String>) {
        let waiter = self.waiting.lock().ok().and_then(|mut g| g.remove(id));
        if let Some((_, tx)) = waiter {
            let _ = tx.send(error);
        }
    }
}

pub(super) fn pair_error(e: PairError) -> EngineError {
    match &e {
        PairError::PairCode(PairCodeError::CodeAlreadyOutstanding { remaining }) => {
            EngineError::Busy(format!(
                "A pairing code was already issued for this session and is valid for another {} \
                 s: enter that one on the phone, or ask again after it expires.",
                remaining.as_secs()
            ))
        }
        PairError::PairCode(
            PairCodeError::PhoneNumberRequired
            | PairCodeError::PhoneNumberTooShort
            | PairCodeError::PhoneNumberNotInternational,
        ) => EngineError::Invalid(format!("phone_number is not usable for WhatsApp: {e}")),
        _ => match e.backoff() {
            Some(wait) => EngineError::RateLimited(format!(
                "WhatsApp is limiting pairing-code requests for this number; try again in {}.",
                human_duration(wait.as_secs() as i64)
            )),
            None => EngineError::Failed(format!("WhatsApp refused the pairing code: {e}")),
        },
    }
}

pub(super) fn human_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s} s"),
        _ => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_step_is_rate_limited_and_a_lost_connection_is_not_connected() {
        let throttled = iq_error(IqError::ServerError {
            code: 429,
            text: "rate-overlimit".into(),
            error_type: None,
            backoff: Some(90),
        });
        match throttled {
            EngineError::RateLimited(m) => assert!(m.contains("1 min 30 s"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            iq_error(IqError::NotConnected),
            EngineError::NotConnected
        ));
        assert!(matches!(
            iq_error(IqError::ServerError {
                code: 500,
                text: "internal".into(),
                error_type: None,
                backoff: None,
            }),
            EngineError::Failed(_)
        ));
        assert!(matches!(nack_error("429"), EngineError::RateLimited(_)));
        assert!(matches!(nack_error("463"), EngineError::RateLimited(_)));
        assert!(matches!(nack_error("404"), EngineError::Invalid(_)));
        assert!(matches!(nack_error("479"), EngineError::Failed(_)));
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(42), "42 s");
        assert_eq!(human_duration(125), "2 min 5 s");
        assert_eq!(human_duration(3 * 3600 + 60 * 7), "3 h 7 min");
    }
}
