//! QR codes as PNG data URLs, rendered once per code (not per status read).

use std::io::Cursor;

use anyhow::Context;
use base64::Engine as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrImage {
    /// Exactly the string the engine emitted; never logged.
    pub raw: String,
    pub png: Vec<u8>,
    pub data_url: String,
}

impl QrImage {
    pub fn render(raw: String) -> anyhow::Result<Self> {
        let code =
            qrcode::QrCode::new(raw.as_bytes()).context("QR payload does not fit a QR code")?;
        let img = code
            .render::<image::Luma<u8>>()
            .min_dimensions(264, 264)
            .build();
        let mut png = Vec::new();
        image::DynamicImage::ImageLuma8(img)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .context("PNG encoding failed")?;
        let data_url = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        Ok(Self { raw, png, data_url })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_png_data_url() {
        let qr = QrImage::render("2@abc,def,ghi,jkl".into()).unwrap();
        assert!(qr.data_url.starts_with("data:image/png;base64,"));
        let b64 = qr.data_url.trim_start_matches("data:image/png;base64,");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
