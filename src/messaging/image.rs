//! Fetching a message's image from a URL the client gave: http(s) only, an `image/*` answer,
//! at most 10 MB, 30 s in all, and redirects followed only to public addresses (a URL must
//! not turn the server into a way to reach the private network behind it).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

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
    #[error("the image server answered {0}")]
    Status(u16),
    #[error("the URL does not point to an image (content type: {0})")]
    NotImage(String),
    #[error("the image is larger than 10 MB")]
    TooLarge,
    #[error("the image did not download within 30 seconds")]
    Timeout,
    #[error("the image URL redirects to a private or local address, which is not allowed")]
    PrivateRedirect,
    #[error("the image URL redirects too many times")]
    TooManyRedirects,
    #[error("cannot download the image: {0}")]
    Unreachable(String),
}

/// The URL if it may be fetched at all.
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

/// A client for image downloads: redirects are followed by [`fetch`] itself, so each hop
/// is checked.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("whatsapp-manager/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

pub async fn fetch(client: &reqwest::Client, raw: &str) -> Result<FetchedImage, ImageError> {
    match tokio::time::timeout(IMAGE_TIMEOUT, fetch_inner(client, raw)).await {
        Ok(r) => r,
        Err(_) => Err(ImageError::Timeout),
    }
}

async fn fetch_inner(client: &reqwest::Client, raw: &str) -> Result<FetchedImage, ImageError> {
    let mut url = check_url(raw)?;
    let mut hops = 0;
    let mut resp = loop {
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| ImageError::Unreachable(describe(e)))?;
        if !resp.status().is_redirection() {
            break resp;
        }
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(ImageError::TooManyRedirects);
        }
        let next = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .ok_or(ImageError::Status(resp.status().as_u16()))?;
        let next = check_url(next.as_str())?;
        if !is_public_host(&next).await {
            return Err(ImageError::PrivateRedirect);
        }
        url = next;
    };
    if !resp.status().is_success() {
        return Err(ImageError::Status(resp.status().as_u16()));
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
    if !mime.starts_with("image/") {
        return Err(ImageError::NotImage(if mime.is_empty() {
            "none".into()
        } else {
            mime
        }));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_IMAGE_BYTES as u64)
    {
        return Err(ImageError::TooLarge);
    }
    // The declared length may be absent or wrong: count what actually arrives.
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ImageError::Unreachable(describe(e)))?
    {
        if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
            return Err(ImageError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.is_empty() {
        return Err(ImageError::NotImage(format!("{mime}, but empty")));
    }
    Ok(FetchedImage {
        bytes,
        mime,
        final_url: url.to_string(),
    })
}

/// Every address the host resolves to is public.
async fn is_public_host(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return is_public(ip);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| is_public(a.ip()))
        }
        Err(_) => false,
    }
}

pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                // Carrier-grade NAT, 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b))
                // Benchmarking, 198.18.0.0/15, and reserved 240.0.0.0/4.
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the image server did not answer in time".into()
    } else if e.is_connect() {
        "cannot connect to the image server".into()
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

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
