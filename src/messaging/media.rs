//! A message's file as a request gives it (`media: {type, url | media_id, caption?,
//! file_name?, voice_note?}`), WhatsApp's size caps by kind, and the name a document shows.
//! Nothing here knows HTTP: errors are [`ContentError`]s naming the field.

use serde_json::Value;

use super::content::ContentError;
use super::image::{self, FetchError};
use crate::store::{MediaFields, MessageKind, UploadInfo};

const MB: usize = 1024 * 1024;
/// WhatsApp's own caps: 16 MB for an image, a video or an audio, 100 MB for a document.
pub const MAX_MEDIA_BYTES: usize = 16 * MB;
pub const MAX_DOCUMENT_BYTES: usize = 100 * MB;
pub const FILE_NAME_MAX_CHARS: usize = 255;
pub const MEDIA_ID_MAX_CHARS: usize = 100;
/// The kinds a request may send.
pub const SENDABLE: [MessageKind; 4] = [
    MessageKind::Image,
    MessageKind::Document,
    MessageKind::Video,
    MessageKind::Audio,
];
/// What WhatsApp's clients want for a voice note; other audio goes as a plain audio file.
pub const VOICE_NOTE_MIME: &str = "audio/ogg; codecs=opus";

/// The largest file of `kind` WhatsApp takes.
pub fn cap(kind: MessageKind) -> usize {
    if kind == MessageKind::Document {
        MAX_DOCUMENT_BYTES
    } else {
        MAX_MEDIA_BYTES
    }
}

/// The kind a file of content type `mime` goes as when none is given.
pub fn kind_of_mime(mime: &str) -> MessageKind {
    let mime = mime.trim().to_ascii_lowercase();
    if mime.starts_with("image/") {
        MessageKind::Image
    } else if mime.starts_with("video/") {
        MessageKind::Video
    } else if mime.starts_with("audio/") {
        MessageKind::Audio
    } else {
        MessageKind::Document
    }
}

/// A sendable kind by name, or the error naming `field` and the allowed ones.
pub fn parse_kind(raw: &str, field: &str) -> Result<MessageKind, ContentError> {
    MessageKind::parse(raw.trim())
        .filter(|k| SENDABLE.contains(k))
        .ok_or_else(|| {
            invalid(format!(
                "{field} must be one of: image, document, video, audio"
            ))
        })
}

/// A file name as a recipient's phone shows it: no path, no control characters.
pub fn file_name(raw: &str, field: &str) -> Result<String, ContentError> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= FILE_NAME_MAX_CHARS
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(invalid(format!(
            "{field} must be a file name of 1 to {FILE_NAME_MAX_CHARS} characters, without / \
             or control characters"
        )))
    }
}

/// The last segment of a URL's path, as a document's name when nothing better is known.
pub fn url_file_name(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let last = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    let decoded = percent_decode(last);
    file_name(&decoded, "").ok()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn invalid(m: impl Into<String>) -> ContentError {
    ContentError::Invalid(m.into())
}

/// Where the file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// Downloaded when the message is sent (and once when queued, to check it).
    Url(String),
    /// An upload (`POST /api/whatsapp/media`).
    Upload(String),
}

/// A request's `media`, checked, and once looked at, what the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRequest {
    pub kind: MessageKind,
    pub source: MediaSource,
    pub caption: Option<String>,
    /// As the request gave it (a document only).
    pub file_name: Option<String>,
    pub voice_note: bool,
    /// The file's content type and size, once downloaded or its upload read.
    pub mime: Option<String>,
    pub size: Option<i64>,
    /// The upload's name, or the URL's last segment.
    pub found_name: Option<String>,
}

impl MediaRequest {
    /// Checks `media`; the caption is checked by the caller as the message's text.
    pub fn parse(raw: &Value) -> Result<Self, ContentError> {
        let Value::Object(o) = raw else {
            return Err(invalid(
                "media must be an object {type, url | media_id, caption?, file_name?, voice_note?}",
            ));
        };
        let given = |k: &str| o.get(k).filter(|v| !v.is_null());
        let kind = match given("type") {
            None => {
                return Err(invalid(
                    "media.type is required: one of image, document, video, audio",
                ));
            }
            Some(Value::String(t)) => parse_kind(t, "media.type")?,
            Some(_) => {
                return Err(invalid(
                    "media.type must be one of: image, document, video, audio",
                ));
            }
        };
        let source = match (given("url"), given("media_id")) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid(
                    "media needs exactly one of media.url or media.media_id",
                ));
            }
            (Some(Value::String(u)), None) => MediaSource::Url(
                image::check_url(u)
                    .map_err(|_| ContentError::Media(FetchError::InvalidUrl))?
                    .to_string(),
            ),
            (Some(_), None) => return Err(ContentError::Media(FetchError::InvalidUrl)),
            (None, Some(Value::String(id)))
                if !id.trim().is_empty() && id.trim().chars().count() <= MEDIA_ID_MAX_CHARS =>
            {
                MediaSource::Upload(id.trim().to_owned())
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "media.media_id must be the media_id of an upload (POST /api/whatsapp/media)",
                ));
            }
        };
        let caption = match given("caption") {
            None => None,
            Some(Value::String(c)) => Some(c.clone()),
            Some(_) => return Err(invalid("media.caption must be a string")),
        };
        let file_name = match given("file_name") {
            None => None,
            Some(Value::String(n)) if kind == MessageKind::Document => {
                Some(file_name(n, "media.file_name")?)
            }
            Some(Value::String(_)) => {
                return Err(invalid("media.file_name is only for a document"));
            }
            Some(_) => return Err(invalid("media.file_name must be a string")),
        };
        let voice_note = match given("voice_note") {
            None => false,
            Some(Value::Bool(v)) => *v,
            Some(_) => return Err(invalid("media.voice_note must be true or false")),
        };
        if voice_note && kind != MessageKind::Audio {
            return Err(invalid("media.voice_note is only for audio"));
        }
        if let Some(k) = o.keys().find(|k| {
            ![
                "type",
                "url",
                "media_id",
                "caption",
                "file_name",
                "voice_note",
            ]
            .contains(&k.as_str())
        }) {
            return Err(invalid(format!(
                "media.{k} is not a field of media (type, url, media_id, caption, file_name, \
                 voice_note)"
            )));
        }
        Ok(Self {
            kind,
            source,
            caption,
            file_name,
            voice_note,
            mime: None,
            size: None,
            found_name: None,
        })
    }

    /// What a download of the URL found.
    pub fn downloaded(&mut self, mime: &str, size: usize, final_url: &str) {
        self.mime = Some(mime.to_owned());
        self.size = Some(size as i64);
        self.found_name = url_file_name(final_url);
    }

    /// Takes the upload as this message's file, if it fits the kind; the caller has checked
    /// that the upload may be used by the sender.
    pub fn uploaded(&mut self, up: &UploadInfo) -> Result<(), ContentError> {
        if !image::mime_fits(self.kind, &up.mime) {
            return Err(invalid(format!(
                "media.type is {} but upload {} is {}",
                self.kind.as_str(),
                up.id,
                up.mime
            )));
        }
        if up.size as u64 > cap(self.kind) as u64 {
            return Err(invalid(format!(
                "upload {} is larger than {} MB, WhatsApp's limit for media.type {}",
                up.id,
                cap(self.kind) / MB,
                self.kind.as_str()
            )));
        }
        self.mime = Some(up.mime.clone());
        self.size = Some(up.size);
        self.found_name = up.file_name.clone();
        Ok(())
    }

    /// The name a document shows: the request's, else the upload's or the URL's, else
    /// "document". Other kinds have none.
    pub fn shown_name(&self) -> Option<String> {
        (self.kind == MessageKind::Document).then(|| {
            self.file_name
                .clone()
                .or_else(|| self.found_name.clone())
                .or_else(|| match &self.source {
                    MediaSource::Url(u) => url_file_name(u),
                    MediaSource::Upload(_) => None,
                })
                .unwrap_or_else(|| "document".into())
        })
    }

    /// The log's fields of the message.
    pub fn fields(&self) -> MediaFields {
        let (url, media_id) = match &self.source {
            MediaSource::Url(u) => (Some(u.clone()), None),
            MediaSource::Upload(id) => (None, Some(id.clone())),
        };
        MediaFields {
            url,
            media_id,
            mime: self.mime.clone(),
            size: self.size,
            file_name: self.shown_name(),
            voice_note: self.voice_note,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused(v: Value) -> String {
        match MediaRequest::parse(&v) {
            Err(e) => e.to_string(),
            Ok(m) => panic!("{v} was taken: {m:?}"),
        }
    }

    #[test]
    fn media_names_the_field_it_refuses() {
        let m = MediaRequest::parse(&json!({"type": "document", "media_id": "abc"})).unwrap();
        assert_eq!(m.kind, MessageKind::Document);
        assert_eq!(m.shown_name().as_deref(), Some("document"));
        assert!(
            refused(json!({"type": "sticker", "url": "https://e.com/a"}))
                .contains("media.type must be one of: image, document, video, audio")
        );
        assert!(refused(json!({"url": "https://e.com/a"})).contains("media.type is required"));
        assert!(refused(json!({"type": "image"})).contains("exactly one of media.url"));
        assert!(
            refused(json!({"type": "image", "url": "https://e.com/a", "media_id": "x"}))
                .contains("exactly one of media.url")
        );
        assert!(refused(json!({"type": "image", "url": "ftp://e.com/a"})).contains("media.url"));
        assert!(
            refused(json!({"type": "video", "url": "https://e.com/a", "voice_note": true}))
                .contains("media.voice_note is only for audio")
        );
        assert!(
            refused(json!({"type": "image", "url": "https://e.com/a", "file_name": "a.png"}))
                .contains("media.file_name is only for a document")
        );
        assert!(
            refused(json!({"type": "document", "url": "https://e.com/a", "file_name": "a/b"}))
                .contains("media.file_name must be")
        );
        assert!(refused(json!("x")).contains("media must be an object"));
    }

    #[test]
    fn a_document_is_named_by_the_request_then_the_file_then_the_url() {
        let mut m = MediaRequest::parse(
            &json!({"type": "document", "url": "https://e.com/x/inv%20one.pdf?a=1"}),
        )
        .unwrap();
        assert_eq!(m.shown_name().as_deref(), Some("inv one.pdf"));
        m.downloaded("application/pdf", 3, "https://e.com/final/b.pdf");
        assert_eq!(m.shown_name().as_deref(), Some("b.pdf"));
        m.file_name = Some("Invoice.pdf".into());
        assert_eq!(m.fields().file_name.as_deref(), Some("Invoice.pdf"));
        assert_eq!(m.fields().size, Some(3));
        assert_eq!(kind_of_mime("Audio/ogg"), MessageKind::Audio);
        assert_eq!(kind_of_mime("application/pdf"), MessageKind::Document);
    }
}
