//! Log lines: every line starts its message with the notes' emoji, even the WhatsApp
//! library's own lines (which know nothing of them).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `RUST_LOG`, or a default that keeps the WhatsApp library at `warn`: it is chatty at info
/// (every reconnect attempt), and our own lines say what a person needs, with the session id.
pub fn filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,sqlx=warn,whatsapp_rust=warn,wacore=warn,whatsapp_rust_tokio_transport=warn",
        )
    });
    // Whatever the level asked for: the library prints pairing codes at info under this
    // target, and a pairing code is a credential.
    match "Client/PairCode=warn".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

const PREFIXES: [&str; 7] = ["✅", "ℹ️", "⚠️", "❌", "🏗️", "⚡", "🔄"];

/// Wraps a formatter; a message without one of the prefixes gets the one of its level.
pub struct EmojiPrefix<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for EmojiPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut message = MessageText(String::new());
        event.record(&mut message);
        let text = message.0.trim_start();
        if PREFIXES.iter().any(|p| text.starts_with(p)) || text.is_empty() {
            return self.0.format_event(ctx, writer, event);
        }
        let emoji = match *event.metadata().level() {
            Level::ERROR => "❌",
            Level::WARN => "⚠️",
            _ => "ℹ️",
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.find(text) {
            Some(at) => {
                line.insert(at, ' ');
                line.insert_str(at, emoji);
            }
            None => line.insert_str(0, &format!("{emoji} ")),
        }
        writer.write_str(&line)
    }
}

struct MessageText(String);

impl Visit for MessageText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
