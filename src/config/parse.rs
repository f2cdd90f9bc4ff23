//! The flags' values as read from the command line or the environment: each parser says
//! why a value is refused, and those for secrets never repeat the value.

use std::time::Duration;

use crate::auth::Secret;

pub(super) fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(format!("{s:?} is not a usable number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The database URL, by its scheme: `sqlite:` (or a plain file path) is the embedded
/// database, `postgres:`/`postgresql:` a PostgreSQL server. Anything else is refused before
/// anything is opened or created, so a URL meant for another server can never quietly
/// become a SQLite file named after it.
pub(super) fn database_url(s: &str) -> Result<String, String> {
    let url = s.trim();
    if url.is_empty() {
        return Err("the database URL is empty; give sqlite://PATH or postgres://…".into());
    }
    let scheme = url.split_once(':').map(|(head, _)| head).filter(|h| {
        h.starts_with(|c: char| c.is_ascii_alphabetic())
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    match scheme.map(str::to_ascii_lowercase).as_deref() {
        None | Some("sqlite" | "postgres" | "postgresql") => Ok(url.to_owned()),
        Some(other) => Err(format!(
            "unsupported database URL scheme {other:?}; give sqlite://PATH (a path that \
             contains ':' must start with ./ or /) or postgres://USER@HOST/DATABASE"
        )),
    }
}

/// [`database_url`] as a parser that refuses without repeating the value: clap's usual
/// "invalid value '…'" would print a password the URL carries.
#[derive(Clone)]
pub(super) struct DatabaseUrlParser;

impl clap::builder::TypedValueParser for DatabaseUrlParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid --database: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let s = value
            .to_str()
            .ok_or_else(|| refuse("the database URL must be valid UTF-8".into()))?;
        database_url(s).map_err(refuse)
    }
}

/// Requests per second: 0 (off) or a positive number.
pub(super) fn per_second(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of requests per second"))?;
    if !v.is_finite() || !(0.0..=1_000_000.0).contains(&v) {
        return Err(format!(
            "{s:?} is not a usable rate (0 for off, up to 1000000 per second)"
        ));
    }
    Ok(v)
}

/// The admin key's own rule (see [`Secret::admin_key`]), as a parser that refuses without
/// printing the value: clap's usual "invalid value '…'" would put the key in the logs.
#[derive(Clone)]
pub(super) struct AdminKeyParser;

impl clap::builder::TypedValueParser for AdminKeyParser {
    type Value = Secret;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Secret, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{why}\n"))
                .with_cmd(cmd)
        };
        let s = value
            .to_str()
            .ok_or_else(|| refuse("the admin API key must be valid UTF-8".into()))?;
        Secret::admin_key(s).map_err(refuse)
    }
}

pub(super) fn node_id(s: &str) -> Result<String, String> {
    let id = s.trim();
    if id.is_empty() || id.len() > 128 {
        return Err("a node id is 1 to 128 characters".into());
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{id:?} holds a space or a control character"));
    }
    Ok(id.to_owned())
}

pub(super) fn advertise_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{s:?} is not an http:// or https:// address other nodes can reach"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

pub(super) fn lease_seconds(s: &str) -> Result<Duration, String> {
    let d = seconds(s)?;
    // Renewals go at a third of the lease and a node gives up at half of it: below 3 s the
    // margins are shorter than a busy database's pause.
    if d < Duration::from_secs(3) || d > Duration::from_secs(600) {
        return Err(format!("{s:?}: a lease lasts 3 to 600 seconds"));
    }
    Ok(d)
}

pub(super) fn rebalance_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of sessions per second"))?;
    if !v.is_finite() || !(0.1..=1_000.0).contains(&v) {
        return Err(format!("{s:?}: give 0.1 to 1000 sessions per second"));
    }
    Ok(v)
}
