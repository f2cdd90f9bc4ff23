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

use crate::Inner;

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

/// The plaintext of the image a message points to, if it was uploaded here
/// and its key opens it.
pub(crate) fn open_image(
    uploads: &std::collections::HashMap<String, Vec<u8>>,
    image: &waproto::whatsapp::message::ImageMessage,
) -> Option<Vec<u8>> {
    let blob = uploads.get(image.direct_path.as_deref()?)?;
    wacore::download::DownloadUtils::verify_and_decrypt(
        blob,
        image.media_key.as_deref()?,
        wacore::download::MediaType::Image,
    )
    .ok()
}
