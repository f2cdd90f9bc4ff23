//! Fetching a message's image (or any media) from a URL the client gave: http(s) only, a
//! content type of the media's kind (`image/*` for an image), at most its size cap (10 MB for
//! an `image_url`), 30 s in all, and only from addresses the outbound policy allows, on every
//! hop (a URL must not turn the server into a way to reach the private network behind it).

use std::time::Duration;

use reqwest::Url;

use crate::outbound::{OutboundPolicy, Refusal, refusal_of};
use crate::store::MessageKind;

pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
pub const IMAGE_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_URL_CHARS: usize = 2_048;
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Clone)]
pub struct FetchedImage {
    pub bytes: Vec<u8>,
    pub mime: String,
    pub final_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image_url must be an http or https URL of at most 2048 characters")]
    InvalidUrl,
    /// The URL itself may not be fetched: refused before any connection.
    #[error("image_url {0}")]
    Refused(Refusal),
    #[error("the image server answered {0}")]
    Status(u16),
    #[error("the URL does not point to an image (content type: {0})")]
    NotImage(String),
    #[error("the image is larger than 10 MB")]
    TooLarge,
    #[error("the image did not download within 30 seconds")]
    Timeout,
    #[error("the image URL redirects to a URL that {0}")]
    RefusedRedirect(Refusal),
    #[error("the image URL redirects too many times")]
    TooManyRedirects,
    #[error("cannot download the image: {0}")]
    Unreachable(String),
}

/// The URL if it is one at all (the outbound policy is applied when it is fetched).
pub fn check_url(raw: &str) -> Result<Url, ImageError> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(ImageError::InvalidUrl);
    }
    let url = Url::parse(raw.trim()).map_err(|_| ImageError::InvalidUrl)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ImageError::InvalidUrl);
    }
    Ok(url)
}

/// Image downloads under the outbound policy. Cheap to clone.
#[derive(Clone)]
pub struct Images {
    /// Redirects are followed by [`Images::fetch`] itself, so each hop is checked; names
    /// resolve only to allowed addresses.
    client: reqwest::Client,
    policy: OutboundPolicy,
}

impl Images {
    pub fn new(policy: &OutboundPolicy) -> Self {
        let client = policy
            .client(reqwest::Client::builder())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("whatsapp-manager/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            client,
            policy: policy.clone(),
        }
    }

    /// An `image_url`: an `image/*` answer of at most 10 MB.
    pub async fn fetch(&self, raw: &str) -> Result<FetchedImage, ImageError> {
        let f = self
            .fetch_as(raw, MessageKind::Image, MAX_IMAGE_BYTES)
            .await
            .map_err(ImageError::from)?;
        Ok(FetchedImage {
            bytes: f.bytes,
            mime: f.mime,
            final_url: f.final_url,
        })
    }

    /// A file of `kind` (its content type must be the kind's, any for a document) of at most
    /// `cap` bytes.
    pub async fn fetch_as(
        &self,
        raw: &str,
        kind: MessageKind,
        cap: usize,
    ) -> Result<FetchedImage, FetchError> {
        // The first URL is judged before the clock starts: a refusal must not wait on a
        // slow download of anything.
        let url = check_url(raw).map_err(|_| FetchError::InvalidUrl)?;
        self.policy.check(&url).await.map_err(FetchError::Refused)?;
        match tokio::time::timeout(IMAGE_TIMEOUT, self.fetch_from(url, kind, cap)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn fetch_from(
        &self,
        mut url: Url,
        kind: MessageKind,
        cap: usize,
    ) -> Result<FetchedImage, FetchError> {
        let mut hops = 0;
        let mut resp =
            loop {
                let resp =
                    self.client.get(url.clone()).send().await.map_err(|e| {
                        match refusal_of(&e) {
                            Some(r) if hops == 0 => FetchError::Refused(r),
                            Some(r) => FetchError::RefusedRedirect(r),
                            None => FetchError::Unreachable(describe(e)),
                        }
                    })?;
                if !resp.status().is_redirection() {
                    break resp;
                }
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(FetchError::TooManyRedirects);
                }
                let next = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or(FetchError::Status(resp.status().as_u16()))?;
                let next = check_url(next.as_str()).map_err(|_| FetchError::InvalidUrl)?;
                self.policy
                    .check(&next)
                    .await
                    .map_err(FetchError::RefusedRedirect)?;
                url = next;
            };
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let mime = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !mime_fits(kind, &mime) {
            return Err(FetchError::WrongType {
                kind,
                mime: if mime.is_empty() { "none".into() } else { mime },
            });
        }
        let too_large = || FetchError::TooLarge { kind, cap };
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        // The declared length may be absent or wrong: count what actually arrives.
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Unreachable(describe(e)))?
        {
            if bytes.len() + chunk.len() > cap {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Err(FetchError::Empty(mime));
        }
        let mime = if mime.is_empty() {
            "application/octet-stream".into()
        } else {
            mime
        };
        Ok(FetchedImage {
            bytes,
            mime,
            final_url: url.to_string(),
        })
    }
}

/// Whether a file of content type `mime` may go as `kind`: a document may be anything.
pub fn mime_fits(kind: MessageKind, mime: &str) -> bool {
    match kind {
        MessageKind::Image => mime.starts_with("image/"),
        MessageKind::Video => mime.starts_with("video/"),
        MessageKind::Audio => mime.starts_with("audio/"),
        _ => true,
    }
}

/// Why a `media.url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("media.url must be an http or https URL of at most 2048 characters")]
    InvalidUrl,
    #[error("media.url {0}")]
    Refused(Refusal),
    #[error("the file server answered {0}")]
    Status(u16),
    #[error("the URL does not point to {} (content type: {mime})", a_kind(*kind))]
    WrongType { kind: MessageKind, mime: String },
    #[error("the file is empty (content type: {0})")]
    Empty(String),
    #[error("the file is larger than {} MB, WhatsApp's limit for {}", cap / (1024 * 1024), a_kind(*kind))]
    TooLarge { kind: MessageKind, cap: usize },
    #[error("the file did not download within 30 seconds")]
    Timeout,
    #[error("the URL redirects to a URL that {0}")]
    RefusedRedirect(Refusal),
    #[error("the URL redirects too many times")]
    TooManyRedirects,
    #[error("cannot download the file: {0}")]
    Unreachable(String),
}

fn a_kind(kind: MessageKind) -> String {
    match kind {
        MessageKind::Image => "an image".into(),
        MessageKind::Audio => "an audio".into(),
        other => format!("a {}", other.as_str()),
    }
}

/// `image_url` keeps the words it always had.
impl From<FetchError> for ImageError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::InvalidUrl => Self::InvalidUrl,
            FetchError::Refused(r) => Self::Refused(r),
            FetchError::Status(s) => Self::Status(s),
            FetchError::WrongType { mime, .. } => Self::NotImage(mime),
            FetchError::Empty(mime) => Self::NotImage(format!("{mime}, but empty")),
            FetchError::TooLarge { .. } => Self::TooLarge,
            FetchError::Timeout => Self::Timeout,
            FetchError::RefusedRedirect(r) => Self::RefusedRedirect(r),
            FetchError::TooManyRedirects => Self::TooManyRedirects,
            FetchError::Unreachable(m) => Self::Unreachable(m),
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the server did not answer in time".into()
    } else if e.is_connect() {
        "cannot connect to the server".into()
    } else {
        e.without_url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_fetched() {
        assert!(check_url("https://example.com/a.png").is_ok());
        assert!(check_url("http://127.0.0.1:8080/a.png").is_ok());
        for bad in [
            "ftp://example.com/a.png",
            "file:///etc/passwd",
            "example.com/a.png",
            "http://",
            "javascript:alert(1)",
        ] {
            assert_eq!(check_url(bad).err(), Some(ImageError::InvalidUrl), "{bad}");
        }
    }
}
