//! The opt-out words (`--opt-out-words`): a message that is exactly one of them, however it
//! is cased or spaced, means "stop writing to me".

use unicode_normalization::UnicodeNormalization;

/// The list when the flag is not given: English and Arabic.
pub const DEFAULT_OPT_OUT_WORDS: &str = "STOP,UNSUBSCRIBE,إيقاف,الغاء";

/// The words, each kept as configured (what an event names) and as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutWords {
    words: Vec<(String, String)>,
}

impl Default for OptOutWords {
    fn default() -> Self {
        Self::parse(DEFAULT_OPT_OUT_WORDS)
    }
}

/// How two spellings of a word are made one: the same Unicode form (an Arabic letter typed
/// composed or decomposed), lowercase, no surrounding spaces.
fn fold(s: &str) -> String {
    s.trim().nfc().collect::<String>().to_lowercase()
}

impl OptOutWords {
    /// A comma-separated list; blank entries are dropped, so an empty value disables it.
    pub fn parse(raw: &str) -> Self {
        let mut words: Vec<(String, String)> = Vec::new();
        for word in raw.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let folded = fold(word);
            if !words.iter().any(|(_, f)| *f == folded) {
                words.push((word.to_owned(), folded));
            }
        }
        Self { words }
    }

    /// The flag's value parser: every list is valid.
    pub fn parse_flag(raw: &str) -> Result<Self, std::convert::Infallible> {
        Ok(Self::parse(raw))
    }

    /// The configured word this text is, if it is exactly one.
    pub fn matched(&self, text: &str) -> Option<&str> {
        let folded = fold(text);
        self.words
            .iter()
            .find(|(_, f)| *f == folded)
            .map(|(w, _)| w.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_matches_whatever_its_case_and_surrounding_spaces() {
        let w = OptOutWords::default();
        assert_eq!(w.matched("STOP"), Some("STOP"));
        assert_eq!(w.matched("  stop \n"), Some("STOP"));
        assert_eq!(w.matched("Unsubscribe"), Some("UNSUBSCRIBE"));
        assert_eq!(w.matched(" إيقاف "), Some("إيقاف"));
        assert_eq!(w.matched("الغاء"), Some("الغاء"));
        assert_eq!(w.matched("please stop"), None);
        assert_eq!(w.matched("stopp"), None);
        assert_eq!(w.matched(""), None);
    }

    #[test]
    fn composed_and_decomposed_spellings_are_one_word() {
        let w = OptOutWords::parse("ARRÊT");
        // "e" followed by a combining circumflex.
        assert_eq!(w.matched("arre\u{0302}t"), Some("ARRÊT"));
    }

    fn flag(args: &[&str]) -> OptOutWords {
        use crate::config::{Cli, Command};
        use clap::Parser;
        let mut all = vec!["whatsapp-manager", "serve"];
        all.extend_from_slice(args);
        let Cli {
            command: Command::Serve(a),
        } = Cli::try_parse_from(all).unwrap();
        crate::Config::from(a).opt_out_words
    }

    #[test]
    fn the_flag_defaults_to_the_four_words_and_an_empty_one_disables() {
        assert_eq!(flag(&[]), OptOutWords::default());
        assert_eq!(flag(&[]).matched("stop"), Some("STOP"));
        assert!(flag(&["--opt-out-words", ""]).is_empty());
        let w = flag(&["--opt-out-words", "halt, Basta"]);
        assert_eq!(w.matched("basta"), Some("Basta"));
        assert_eq!(w.matched("stop"), None);
    }

    #[test]
    fn an_empty_list_matches_nothing() {
        let w = OptOutWords::parse(" , ");
        assert!(w.is_empty());
        assert_eq!(w.matched(""), None);
        assert_eq!(w.matched("STOP"), None);
    }
}
