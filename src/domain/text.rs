//! The rules for text people give us: names a caller sets, and names that arrive from phones.
//!
//! A caller's name is shown to other people (in a back office, in a message), so it may not
//! carry what changes how text around it is shown: control characters (a NUL ends the string
//! for C code, a line break forges log lines or CSV rows) and bidirectional embeddings,
//! overrides and isolates (which reorder what follows, so `txt.exe` can read `exe.txt`).
//! It is stored in NFC, so the same name typed on two keyboards is the same string.

use std::borrow::Cow;

use unicode_normalization::{UnicodeNormalization, is_nfc};

/// What a piece of caller text may hold besides the printable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A name, a tag, a key: one line, nothing invisible that changes its display.
    Name,
    /// Free text such as a description: may also hold line breaks and tabs.
    Prose,
}

/// Why a caller's text was refused; names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{field} must not contain control characters or bidirectional override characters")]
    Name { field: String },
    #[error(
        "{field} must not contain control characters (other than line breaks and tabs) or \
         bidirectional override characters"
    )]
    Prose { field: String },
}

impl TextError {
    pub fn field(&self) -> &str {
        match self {
            Self::Name { field } | Self::Prose { field } => field,
        }
    }
}

/// U+202A–U+202E (embeddings, overrides, pop) and U+2066–U+2069 (isolates): they reorder
/// the text that follows them. The marks U+200E/U+200F/U+061C only nudge neutral
/// characters and are allowed (they are ignored when names are compared).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn allowed(c: char, kind: TextKind) -> bool {
    if is_bidi_control(c) {
        return false;
    }
    // `is_control` is exactly Unicode's Cc: C0, DEL and C1.
    !c.is_control() || (kind == TextKind::Prose && matches!(c, '\n' | '\r' | '\t'))
}

/// A caller's text, checked and in NFC: the one rule every handler applies to the names it
/// stores or matches (group names and descriptions, tags, custom fields, key names,
/// template variables). `field` is how the caller knows the value, for the message.
pub fn caller_text(field: &str, raw: &str, kind: TextKind) -> Result<String, TextError> {
    if !raw.chars().all(|c| allowed(c, kind)) {
        let field = field.to_owned();
        return Err(match kind {
            TextKind::Name => TextError::Name { field },
            TextKind::Prose => TextError::Prose { field },
        });
    }
    // NFC neither adds nor removes control or bidi characters: checking before is enough.
    Ok(nfc(raw).into_owned())
}

/// [`caller_text`] for names.
pub fn caller_name(field: &str, raw: &str) -> Result<String, TextError> {
    caller_text(field, raw, TextKind::Name)
}

fn nfc(s: &str) -> Cow<'_, str> {
    if is_nfc(s) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().collect())
    }
}

/// Unicode's Default_Ignorable_Code_Point: characters with no glyph of their own (zero-width
/// space and joiners, word joiner, BOM, soft hyphen, Mongolian vowel separator, the bidi
/// marks, variation selectors, Hangul fillers, tag characters). Two names that differ only
/// by them look the same.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Whether a name shows nothing at all: only spaces and invisible characters.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || is_invisible(c))
}

/// What two names are compared by when they must not look alike (group names of one pair):
/// invisible characters removed, compatibility forms unified (Arabic presentation forms,
/// full-width Latin, ligatures), and Unicode case folding (`SHOP`, `shop`, `Straße` and
/// `STRASSE` are one name). Close to Unicode's NFKC_Casefold; only for comparing, never
/// shown.
pub fn name_key(name: &str) -> String {
    let visible: String = name.chars().filter(|c| !is_invisible(*c)).collect();
    let decomposed: String = visible.nfkd().collect();
    let folded = unicase::UniCase::unicode(decomposed.as_str()).to_folded_case();
    // Folding can bring back a compatibility form or an ignorable; one more pass settles.
    folded.nfkc().filter(|c| !is_invisible(*c)).collect()
}

/// A name as a phone sent it (a contact's saved name, a push name, the account's name),
/// with its control characters removed and nothing else changed: WhatsApp already shows it
/// to people, so it is kept as it comes, but a NUL or a line break must not reach logs,
/// CSV files or the back office.
pub fn phone_name(raw: &str) -> Cow<'_, str> {
    if raw.chars().any(char::is_control) {
        Cow::Owned(raw.chars().filter(|c| !c.is_control()).collect())
    } else {
        Cow::Borrowed(raw)
    }
}

/// [`phone_name`], trimmed, and `None` when nothing is left.
pub fn phone_name_opt(raw: Option<&str>) -> Option<String> {
    let cleaned = phone_name(raw?);
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIDI: [char; 9] = [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}',
    ];

    #[test]
    fn names_refuse_every_control_and_bidi_character_naming_the_field() {
        let mut bad: Vec<char> = (0u32..0x20)
            .chain(0x7F..0xA0)
            .filter_map(char::from_u32)
            .collect();
        bad.extend(BIDI);
        for c in bad {
            let err = caller_name("tags", &format!("vip{c}x")).unwrap_err();
            assert_eq!(
                err.to_string(),
                "tags must not contain control characters or bidirectional override characters",
                "U+{:04X}",
                c as u32
            );
            assert_eq!(err.field(), "tags");
        }
    }

    #[test]
    fn prose_allows_line_breaks_and_tabs_only() {
        assert_eq!(
            caller_text("description", "a\r\nb\tc", TextKind::Prose).unwrap(),
            "a\r\nb\tc"
        );
        for c in [
            '\0', '\u{7}', '\u{1B}', '\u{7F}', '\u{85}', '\u{202E}', '\u{2067}',
        ] {
            let err = caller_text("description", &format!("a{c}"), TextKind::Prose).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("description must not contain control")
            );
            assert!(err.to_string().contains("other than line breaks and tabs"));
        }
        assert!(caller_name("name", "a\nb").is_err());
    }

    #[test]
    fn caller_text_is_stored_composed() {
        let decomposed = "Cafe\u{301} e\u{301}";
        assert_eq!(caller_name("name", decomposed).unwrap(), "Café é");
        // Arabic, emoji with a joiner, and the bidi marks pass unchanged.
        for ok in [
            "جميع الارقام",
            "👩\u{200D}💻 team",
            "a\u{200F}b",
            "x\u{200B}y",
        ] {
            assert_eq!(caller_name("name", ok).unwrap(), ok);
        }
    }

    #[test]
    fn lookalike_names_share_a_key() {
        let same = [
            ("جميع الارقام", "جميع الارقام\u{200D}"),
            ("اخر الارقام (90 يوم)", "اخر الارقام\u{200B} (90 يوم)"),
            ("SHOP", "shop"),
            ("Shop", "\u{FEFF}sh\u{00AD}op\u{2060}"),
            ("Straße", "STRASSE"),
            ("Café", "CAFE\u{301}"),
            ("Café", "cafe\u{200C}\u{301}"),
            ("SHOP", "ＳＨＯＰ"),
            // The same Arabic word in presentation forms (how some old keyboards type it).
            ("لا", "\u{FEFB}"),
            ("a\u{200E}b", "a\u{200F}b\u{061C}\u{180E}"),
        ];
        for (a, b) in same {
            assert_eq!(name_key(a), name_key(b), "{a:?} vs {b:?}");
        }
        let different = [
            ("shop", "shops"),
            ("جميع الارقام", "جميع الأرقام"),
            ("a b", "ab"),
        ];
        for (a, b) in different {
            assert_ne!(name_key(a), name_key(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn blank_means_nothing_visible() {
        assert!(is_blank(" \u{200B}\u{FEFF} "));
        assert!(is_blank(""));
        assert!(!is_blank("\u{200B}a"));
    }

    #[test]
    fn phone_names_lose_control_characters_only() {
        assert_eq!(phone_name("Ali\0\n\u{85}Ahmed"), "AliAhmed");
        let kept = "\u{202E}علي\u{200D} 👍";
        assert!(matches!(phone_name(kept), Cow::Borrowed(s) if s == kept));
        assert_eq!(phone_name_opt(Some(" \u{7} ")), None);
        assert_eq!(phone_name_opt(Some(" Sara\r\n")).as_deref(), Some("Sara"));
        assert_eq!(phone_name_opt(None), None);
    }
}
