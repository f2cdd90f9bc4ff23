//! A fake media server: where clients upload encrypted media (images,
//! documents, …) before they send a message that points to it.
//!
//! The client asks the chat server for upload hosts and a token
//! (`<iq xmlns="w:m"><media_conn/></iq>`, answered in `iq`), then POSTs the
//! encrypted blob over HTTP to `https://<host>/mms/<kind>/<token>?auth=…`.
//! Hand [`crate::FakeWhatsApp::http_client`] to the client as its HTTP client:
//! it keeps each upload under the `direct_path` it answers with, and serves
//! it back on a GET of the returned URL.

use std::sync::Arc;

use anyhow::anyhow;
use async_trait::async_trait;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};

use crate::{Inner, PhoneMedia, PhoneMediaKind};

/// The one upload host `media_conn` names.
pub(crate) const HOST: &str = "mmg.fake.whatsapp.net";
pub(crate) const AUTH: &str = "fake-media-auth";

/// The client side of HTTP, answered by the fake media server. Requests to
/// any other host fail like an unreachable network.
#[derive(Clone)]
pub struct FakeMediaServer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeMediaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeMediaServer").finish()
    }
}

#[async_trait]
impl HttpClient for FakeMediaServer {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let rest = request
            .url
            .strip_prefix(&format!("https://{HOST}"))
            .ok_or_else(|| anyhow!("fake-whatsapp: no route to {}", request.url))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if self.inner.lock().uploads_refused {
            return Ok(status(503, "media server unavailable"));
        }
        match request.method.as_str() {
            "POST" if path.starts_with("/mms/") => {
                if !query.split('&').any(|p| p == format!("auth={AUTH}")) {
                    return Ok(status(401, "bad auth"));
                }
                // A resume check: nothing is ever half-uploaded here.
                if query.split('&').any(|p| p == "resume=1") {
                    return Ok(status(404, "not found"));
                }
                let token = path.rsplit('/').next().unwrap_or_default();
                let direct_path = format!("/v/t62.fake/{token}");
                let body = request.body.map(|b| b.to_vec()).unwrap_or_default();
                self.inner.lock().uploads.insert(direct_path.clone(), body);
                self.inner.notify_changed();
                let json = format!(
                    r#"{{"url":"https://{HOST}{direct_path}?ccb=fake","direct_path":"{direct_path}"}}"#
                );
                Ok(HttpResponse {
                    status_code: 200,
                    body: json.into_bytes(),
                })
            }
            "GET" => match self.inner.lock().uploads.get(path) {
                Some(blob) => Ok(HttpResponse {
                    status_code: 200,
                    body: blob.clone(),
                }),
                None => Ok(status(404, "not found")),
            },
            _ => Ok(status(404, "not found")),
        }
    }
}

fn status(code: u16, text: &str) -> HttpResponse {
    HttpResponse {
        status_code: code,
        body: text.as_bytes().to_vec(),
    }
}

/// The plaintext of the blob at `direct_path`, if it was uploaded here and `key` opens it
/// as `kind`.
fn open(
    uploads: &std::collections::HashMap<String, Vec<u8>>,
    direct_path: Option<&str>,
    key: Option<&[u8]>,
    kind: wacore::download::MediaType,
) -> Option<Vec<u8>> {
    let blob = uploads.get(direct_path?)?;
    wacore::download::DownloadUtils::verify_and_decrypt(blob, key?, kind).ok()
}

/// The plaintext of the image a message points to, if it was uploaded here
/// and its key opens it.
pub(crate) fn open_image(
    uploads: &std::collections::HashMap<String, Vec<u8>>,
    image: &waproto::whatsapp::message::ImageMessage,
) -> Option<Vec<u8>> {
    open(
        uploads,
        image.direct_path.as_deref(),
        image.media_key.as_deref(),
        wacore::download::MediaType::Image,
    )
}

/// The file a message carries, as the recipient's phone sees it once downloaded: its kind,
/// what the message says about it, and its bytes opened with the message's key. `None`
/// for a message without a file, or whose file is not here or does not open.
pub(crate) fn open_file(
    uploads: &std::collections::HashMap<String, Vec<u8>>,
    m: &waproto::whatsapp::Message,
) -> Option<PhoneMedia> {
    use wacore::download::MediaType;
    let file = |kind, bytes: Option<Vec<u8>>, mime: Option<&String>| {
        Some(PhoneMedia::new(
            kind,
            bytes?,
            mime.map_or("", String::as_str),
        ))
    };
    if let Some(i) = m.image_message.as_option() {
        let bytes = open(
            uploads,
            i.direct_path.as_deref(),
            i.media_key.as_deref(),
            MediaType::Image,
        );
        let mut f = file(PhoneMediaKind::Image, bytes, i.mimetype.as_ref())?;
        f.caption = i.caption.clone();
        return Some(f);
    }
    if let Some(d) = m.document_message.as_option() {
        let bytes = open(
            uploads,
            d.direct_path.as_deref(),
            d.media_key.as_deref(),
            MediaType::Document,
        );
        let mut f = file(PhoneMediaKind::Document, bytes, d.mimetype.as_ref())?;
        f.caption = d.caption.clone();
        f.file_name = d.file_name.clone();
        return Some(f);
    }
    if let Some(v) = m.video_message.as_option() {
        let bytes = open(
            uploads,
            v.direct_path.as_deref(),
            v.media_key.as_deref(),
            MediaType::Video,
        );
        let mut f = file(PhoneMediaKind::Video, bytes, v.mimetype.as_ref())?;
        f.caption = v.caption.clone();
        return Some(f);
    }
    if let Some(a) = m.audio_message.as_option() {
        let bytes = open(
            uploads,
            a.direct_path.as_deref(),
            a.media_key.as_deref(),
            MediaType::Audio,
        );
        let mut f = file(PhoneMediaKind::Audio, bytes, a.mimetype.as_ref())?;
        f.voice_note = a.ptt.unwrap_or(false);
        return Some(f);
    }
    if let Some(st) = m.sticker_message.as_option() {
        let bytes = open(
            uploads,
            st.direct_path.as_deref(),
            st.media_key.as_deref(),
            MediaType::Sticker,
        );
        return file(PhoneMediaKind::Sticker, bytes, st.mimetype.as_ref());
    }
    None
}
