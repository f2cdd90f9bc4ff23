//! What WhatsApp shows of an image before it is downloaded: a small JPEG of it (at most 72
//! pixels on its long side, as WhatsApp Web makes them) and its width and height; without
//! them the recipient sees a grey box. The size is read from the file's header (PNG, JPEG,
//! GIF, WebP), so it is known even when the picture cannot be decoded.

/// An image's size and, when one could be made, its JPEG preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub width: u32,
    pub height: u32,
    pub jpeg: Option<Vec<u8>>,
}

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 72;

/// The image's preview, or `None` when its format is not one of those read here. Decoding
/// is CPU work: call it off the async threads.
pub fn preview(bytes: &[u8]) -> Option<Preview> {
    let (width, height) = dimensions(bytes)?;
    Some(Preview {
        width,
        height,
        jpeg: thumbnail(bytes),
    })
}

/// A JPEG of the image at most [`THUMBNAIL_SIDE`] pixels on its long side; `None` when the
/// picture cannot be decoded (the message then goes without one).
pub fn thumbnail(bytes: &[u8]) -> Option<Vec<u8>> {
    let img = image::load_from_memory(bytes).ok()?;
    let small = img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 60)
        .encode_image(&small)
        .ok()?;
    Some(out)
}

/// Width and height from the header of a PNG, JPEG, GIF or WebP file.
pub fn dimensions(b: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as u32);
    let le16 = |i: usize| Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]) as u32);
    let be32 = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let le24 = |i: usize| {
        let s = b.get(i..i + 3)?;
        Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
    };
    let dims = if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(b"IHDR") {
        (be32(16)?, be32(20)?)
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        (le16(6)?, le16(8)?)
    } else if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        match b.get(12..16)? {
            b"VP8 " => (le16(26)? & 0x3fff, le16(28)? & 0x3fff),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                ((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1)
            }
            b"VP8X" => (le24(24)? + 1, le24(27)? + 1),
            _ => return None,
        }
    } else if b.starts_with(&[0xff, 0xd8]) {
        // Segments up to the first start-of-frame, which holds the size.
        let mut i = 2;
        loop {
            while *b.get(i)? == 0xff && *b.get(i + 1)? == 0xff {
                i += 1;
            }
            if *b.get(i)? != 0xff {
                return None;
            }
            let marker = *b.get(i + 1)?;
            let len = be16(i + 2)? as usize;
            let sof = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
            if sof {
                break (be16(i + 7)?, be16(i + 5)?);
            }
            i += 2 + len;
        }
    } else {
        return None;
    };
    (dims.0 > 0 && dims.1 > 0).then_some(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_come_from_each_formats_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend(640u32.to_be_bytes());
        png.extend(480u32.to_be_bytes());
        assert_eq!(dimensions(&png), Some((640, 480)));
        let gif = b"GIF89a\x20\x03\x58\x02rest";
        assert_eq!(dimensions(gif), Some((800, 600)));
        // A JPEG with an APP0 segment before its baseline frame.
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x01,
            0x2c, 0x00, 0xc8, 0x03,
        ];
        assert_eq!(dimensions(&jpeg), Some((200, 300)));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend([0x3f, 0x01, 0x00, 0xef, 0x00, 0x00]);
        assert_eq!(dimensions(&webp), Some((320, 240)));
        assert_eq!(dimensions(b"%PDF-1.7"), None);
        assert_eq!(
            preview(&jpeg).map(|p| (p.width, p.height, p.jpeg)),
            Some((200, 300, None))
        );
        assert_eq!(dimensions(&jpeg[..10]), None);
    }

    #[test]
    fn a_decodable_image_gets_a_jpeg_thumbnail_of_at_most_72_pixels() {
        let img = image::RgbImage::from_fn(400, 100, |x, _| image::Rgb([(x % 256) as u8, 0, 0]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let p = preview(&png).expect("a PNG");
        assert_eq!((p.width, p.height), (400, 100));
        let thumb = image::load_from_memory(&p.jpeg.expect("a thumbnail")).unwrap();
        assert_eq!(
            image::guess_format(&thumbnail(&png).unwrap()).unwrap(),
            image::ImageFormat::Jpeg
        );
        assert_eq!((thumb.width(), thumb.height()), (72, 18));
    }
}
