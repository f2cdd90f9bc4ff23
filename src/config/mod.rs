//! Command line and environment: every flag also reads an environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::limits::Rate;
use crate::auth::{AdminKeyHash, Limits, Secret};
use crate::engine::sim::SimConfig;

mod parse;

use parse::*;

#[derive(Debug, Parser)]
#[command(
    name = "whatsapp-manager",
    version,
    about = "Links many WhatsApp numbers at once and turns their contacts into contact groups"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API server.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// A simulated phone network, for demos, tests and benchmarks.
    Sim,
    /// The real WhatsApp Web multi-device protocol.
    Whatsapp,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Whatsapp => "whatsapp",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WAM_LISTEN", default_value = "127.0.0.1:5000")]
    pub listen: String,

    /// A second address (`IP:PORT`) that serves only `GET /metrics`, without a key: for a
    /// Prometheus scraper on a private network. Off by default; `/metrics` on `--listen`
    /// always needs the admin key.
    #[arg(long, env = "WAM_METRICS_LISTEN", value_name = "IP:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Database URL: `sqlite://PATH` (the file and its folder are created if missing) or
    /// `postgres://USER:PASSWORD@HOST/DATABASE` (`?sslmode=require` for TLS; the tables are
    /// created at start). Any other scheme is refused (exit code 2).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_parser = DatabaseUrlParser,
        default_value = "sqlite://data/whatsapp-manager.db"
    )]
    pub database: String,

    /// Connections to the database at most: PostgreSQL's pool, or SQLite's readers (its
    /// writes take turns on one more).
    #[arg(long, env = "WAM_DATABASE_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub database_max_connections: u32,

    /// Folder for engine files (credentials of linked sessions, simulated phones).
    #[arg(long, env = "WAM_DATA_DIR", default_value = "data/")]
    pub data_dir: PathBuf,

    /// Admin API key (at least 16 characters): manages tenant keys and may act on every
    /// user. Without it the API is open, to this machine only: the server listens on
    /// loopback and refuses requests from web pages.
    #[arg(long, env = "WAM_API_KEY", hide_env_values = true, value_parser = AdminKeyParser)]
    pub api_key: Option<Secret>,

    /// Failed API key checks one client address may make in a minute; further failing
    /// requests answer 429 until the minute frees (correct keys always pass).
    #[arg(long, env = "WAM_AUTH_FAILURE_LIMIT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub auth_failure_limit: u32,

    /// WhatsApp sessions one user_id may hold at once (0: no limit); `init` of one more
    /// pair answers 429.
    #[arg(long, env = "WAM_MAX_SESSIONS_PER_USER", default_value_t = 100)]
    pub max_sessions_per_user: u32,

    /// Requests per second per API key (without an admin key: per client address); 0: off.
    #[arg(long, env = "WAM_RATE_LIMIT", value_parser = per_second, default_value = "0")]
    pub rate_limit: f64,

    /// Requests a key may send at once before --rate-limit applies [default: twice the
    /// rate, at least 1].
    #[arg(long, env = "WAM_RATE_LIMIT_BURST", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: Option<u32>,

    /// Seconds after which a request still running is answered 408.
    #[arg(long, env = "WAM_REQUEST_TIMEOUT", value_parser = seconds, default_value = "60")]
    pub request_timeout: Duration,

    /// Seconds a client has to send the whole head of a request (request line and headers);
    /// also how long a kept-alive connection may wait for its next request.
    #[arg(long, env = "WAM_HEADER_TIMEOUT", value_parser = seconds, default_value = "10")]
    pub header_timeout: Duration,

    /// Seconds after which a connection where no bytes move, and no request is being
    /// handled, is closed (a client that stopped reading a streamed answer, for one).
    #[arg(long, env = "WAM_IDLE_TIMEOUT", value_parser = seconds, default_value = "60")]
    pub idle_timeout: Duration,

    /// Connections open at once; more clients wait to be accepted until one closes.
    #[arg(long, env = "WAM_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Contact fetches running at once across the server; more wait in a queue.
    #[arg(long, env = "WAM_MAX_CONCURRENT_FETCHES", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrent_fetches: u32,

    /// Which engine speaks to WhatsApp: the real one (`whatsapp`) or a simulated network (`sim`).
    #[arg(long, env = "WAM_ENGINE", value_enum, default_value = "whatsapp")]
    pub engine: EngineKind,

    /// sim: size of the generated phone book of a pair nobody set one for.
    #[arg(long, env = "WAM_SIM_CONTACTS", default_value_t = 200)]
    pub sim_contacts: usize,

    /// sim: the phone scans the first QR code this many seconds after it shows (unset: never).
    #[arg(long, env = "WAM_SIM_AUTO_SCAN", value_parser = seconds)]
    pub sim_auto_scan: Option<Duration>,

    /// sim: seconds between QR code rotations.
    #[arg(long, env = "WAM_SIM_QR_INTERVAL", value_parser = seconds, default_value = "20")]
    pub sim_qr_interval: Duration,

    /// sim: QR codes shown before the session gives up with an error.
    #[arg(long, env = "WAM_SIM_QR_ATTEMPTS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..))]
    pub sim_qr_attempts: u32,

    /// Least seconds between two messages of one number (anti-ban pace).
    #[arg(long, env = "WAM_MESSAGE_INTERVAL", value_parser = seconds, default_value = "3")]
    pub message_interval: Duration,

    /// Up to this many more seconds, drawn anew for each gap, so sends do not look scripted.
    #[arg(long, env = "WAM_MESSAGE_JITTER", value_parser = seconds, default_value = "2")]
    pub message_jitter: Duration,

    /// Messages one number sends in any 24 hours at most; the rest wait.
    #[arg(long, env = "WAM_DAILY_MESSAGE_CAP", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub daily_message_cap: u32,

    /// Seconds a webhook receiver has to answer.
    #[arg(long, env = "WAM_WEBHOOK_TIMEOUT", value_parser = seconds, default_value = "10")]
    pub webhook_timeout: Duration,

    /// Attempts per webhook delivery before it is given up.
    #[arg(long, env = "WAM_WEBHOOK_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_max_attempts: u32,

    /// Seconds before the first retry of a failed webhook delivery; doubles each time.
    #[arg(long, env = "WAM_WEBHOOK_BACKOFF", value_parser = seconds, default_value = "1")]
    pub webhook_backoff: Duration,

    /// The longest wait between two attempts of a webhook delivery, in seconds.
    #[arg(long, env = "WAM_WEBHOOK_BACKOFF_MAX", value_parser = seconds, default_value = "300")]
    pub webhook_backoff_max: Duration,

    /// Tenants whose webhook deliveries go out at once; each tenant's still go one by one.
    #[arg(long, env = "WAM_WEBHOOK_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_concurrency: u32,

    /// Networks that webhook and image URLs may reach besides public addresses (CIDR, comma
    /// separated), e.g. an on-premises back office on 10.0.0.0/8. Empty: public only.
    #[arg(long, env = "WAM_OUTBOUND_ALLOW", value_delimiter = ',', value_parser = crate::outbound::parse_allowed)]
    pub outbound_allow: Vec<ipnet::IpNet>,

    /// sim: pause per 1,000 contacts read, to make a fetch observable.
    #[arg(long, env = "WAM_SIM_FETCH_DELAY_MS", default_value_t = 0)]
    pub sim_fetch_delay_ms: u64,

    /// sim: the largest phone-book body `PUT /api/sim/phonebook` takes, in bytes.
    #[arg(long, env = "WAM_SIM_MAX_PHONEBOOK_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub sim_max_phonebook_bytes: u64,

    /// This node's name in a cluster of servers on one PostgreSQL database; stable across
    /// restarts. Default: the host name and the port it listens on.
    #[arg(long, env = "WAM_NODE_ID", value_parser = node_id)]
    pub node_id: Option<String>,

    /// How the other nodes reach this one (`http://host:port`). Default: from `--listen`
    /// (the host name when it listens on every address).
    #[arg(long, env = "WAM_ADVERTISE_URL", value_parser = advertise_url)]
    pub advertise_url: Option<String>,

    /// How long a node's hold on its sessions lasts without a renewal; a lost node's
    /// sessions move to the others after this. Default 15.
    #[arg(long, env = "WAM_LEASE_SECONDS", value_parser = lease_seconds)]
    pub lease_seconds: Option<Duration>,

    /// Sessions a joining node takes over per second from busier nodes. Default 5.
    #[arg(long, env = "WAM_REBALANCE_PER_SECOND", value_parser = rebalance_rate)]
    pub rebalance_per_second: Option<f64>,

    /// An incoming text that is exactly one of these words (comma-separated; case and
    /// surrounding spaces ignored) opts its writer out. Empty: none.
    #[arg(long, env = "WAM_OPT_OUT_WORDS", default_value = crate::inbox::DEFAULT_OPT_OUT_WORDS, value_parser = crate::inbox::OptOutWords::parse_flag)]
    pub opt_out_words: crate::inbox::OptOutWords,
}

/// What the application needs, independent of how it was given.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    /// `--metrics-listen`: where the keyless metrics listener binds, when given.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub database_url: String,
    /// Connections to the database at most (`--database-max-connections`).
    pub database_max_connections: u32,
    pub data_dir: PathBuf,
    pub engine: EngineKind,
    pub sim: SimConfig,
    /// A request still running after this answers 408.
    pub request_timeout: Duration,
    /// A request head must arrive within this; a kept-alive connection waits no longer.
    pub header_timeout: Duration,
    /// A connection with no bytes moving and no request being handled closes after this.
    pub idle_timeout: Duration,
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// `None`: no key is asked for, and only loopback addresses may be listened on.
    pub admin_key: Option<AdminKeyHash>,
    /// Sessions per user, requests per second per key, failed key checks per address.
    pub limits: Limits,
    pub max_concurrent_fetches: usize,
    pub pacing: crate::messaging::pacing::Pacing,
    pub webhooks: crate::events::webhook::WebhookSettings,
    /// Private networks that caller-supplied URLs may reach (`--outbound-allow`).
    pub outbound_allow: Vec<ipnet::IpNet>,
    pub cluster: ClusterArgs,
    pub opt_out_words: crate::inbox::OptOutWords,
}

/// The cluster flags as given: `given` says whether any was, since a SQLite database
/// refuses them all.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterArgs {
    pub node_id: Option<String>,
    pub advertise_url: Option<String>,
    pub lease: Duration,
    pub rebalance_per_second: f64,
    pub given: Vec<&'static str>,
}

impl Default for ClusterArgs {
    fn default() -> Self {
        Self {
            node_id: None,
            advertise_url: None,
            lease: DEFAULT_LEASE,
            rebalance_per_second: DEFAULT_REBALANCE_PER_SECOND,
            given: Vec::new(),
        }
    }
}

pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
pub const DEFAULT_REBALANCE_PER_SECOND: f64 = 5.0;

impl From<ServeArgs> for Config {
    fn from(a: ServeArgs) -> Self {
        Self {
            listen: a.listen,
            metrics_listen: a.metrics_listen,
            database_url: a.database,
            database_max_connections: a.database_max_connections,
            data_dir: a.data_dir,
            engine: a.engine,
            request_timeout: a.request_timeout.max(Duration::from_millis(10)),
            // Zero would close every connection before its first request could arrive.
            header_timeout: a.header_timeout.max(Duration::from_millis(100)),
            idle_timeout: a.idle_timeout.max(Duration::from_millis(100)),
            max_connections: a.max_connections as usize,
            // An empty WAM_API_KEY= is how templates say "unset"; it must not become a key
            // that anyone can send.
            admin_key: a
                .api_key
                .as_ref()
                .map(|k| k.expose().trim())
                .filter(|k| !k.is_empty())
                .map(AdminKeyHash::of),
            limits: Limits {
                max_sessions_per_user: Some(a.max_sessions_per_user).filter(|n| *n > 0),
                rate: (a.rate_limit > 0.0).then(|| Rate {
                    per_second: a.rate_limit,
                    burst: a
                        .rate_limit_burst
                        .unwrap_or_else(|| Rate::default_burst(a.rate_limit)),
                }),
                key_failures_per_minute: a.auth_failure_limit,
            },
            max_concurrent_fetches: a.max_concurrent_fetches as usize,
            pacing: crate::messaging::pacing::Pacing {
                interval: a.message_interval,
                jitter: a.message_jitter,
                daily_cap: a.daily_message_cap,
            },
            webhooks: crate::events::webhook::WebhookSettings {
                timeout: a.webhook_timeout.max(Duration::from_millis(100)),
                max_attempts: a.webhook_max_attempts,
                backoff_initial: a.webhook_backoff,
                backoff_max: a.webhook_backoff_max.max(a.webhook_backoff),
                concurrency: a.webhook_concurrency as usize,
            },
            outbound_allow: a.outbound_allow,
            opt_out_words: a.opt_out_words,
            cluster: ClusterArgs {
                given: [
                    ("--node-id", a.node_id.is_some()),
                    ("--advertise-url", a.advertise_url.is_some()),
                    ("--lease-seconds", a.lease_seconds.is_some()),
                    ("--rebalance-per-second", a.rebalance_per_second.is_some()),
                ]
                .into_iter()
                .filter_map(|(flag, set)| set.then_some(flag))
                .collect(),
                node_id: a.node_id,
                advertise_url: a.advertise_url,
                lease: a.lease_seconds.unwrap_or(DEFAULT_LEASE),
                rebalance_per_second: a
                    .rebalance_per_second
                    .unwrap_or(DEFAULT_REBALANCE_PER_SECOND),
            },
            sim: SimConfig {
                contacts: a.sim_contacts,
                auto_scan: a.sim_auto_scan,
                qr_interval: a.sim_qr_interval.max(Duration::from_millis(10)),
                qr_attempts: a.sim_qr_attempts,
                fetch_delay: Duration::from_millis(a.sim_fetch_delay_ms),
                max_phonebook_bytes: usize::try_from(a.sim_max_phonebook_bytes)
                    .unwrap_or(usize::MAX),
                ..SimConfig::default()
            },
        }
    }
}

impl Config {
    /// Defaults of `serve`, for tests and embedding.
    pub fn defaults() -> Self {
        match Cli::try_parse_from(["whatsapp-manager", "serve"]) {
            Ok(Cli {
                command: Command::Serve(a),
            }) => a.into(),
            Err(e) => unreachable!("default arguments must parse: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<Config, clap::Error> {
        let mut all = vec!["whatsapp-manager", "serve"];
        all.extend_from_slice(args);
        let Cli {
            command: Command::Serve(a),
        } = Cli::try_parse_from(all)?;
        Ok(a.into())
    }

    #[test]
    fn a_bad_metrics_address_is_a_usage_error() {
        for addr in ["localhost", "127.0.0.1", "1.2.3.4:99999", "nope:9100", ""] {
            let err = serve(&["--metrics-listen", addr]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{addr}");
            assert!(err.to_string().contains("--metrics-listen"), "{err}");
        }
        let c = serve(&["--metrics-listen", "0.0.0.0:9100"]).unwrap();
        assert_eq!(c.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert_eq!(serve(&[]).unwrap().metrics_listen, None);
    }

    #[test]
    fn a_database_url_of_another_kind_is_a_usage_error_never_a_file() {
        for url in ["mysql://u:hunter22@localhost/db", "localhost:5432/db", ""] {
            let err = serve(&["--database", url]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{url}");
            assert_eq!(err.exit_code(), 2, "{url}");
            let text = err.to_string();
            assert!(text.contains("sqlite://"), "{url}: {text}");
            assert!(text.contains("postgres://"), "{url}: {text}");
            assert!(
                !text.contains("hunter22"),
                "the password is repeated: {text}"
            );
        }
        for url in [
            "sqlite://data/x.db",
            "sqlite::memory:",
            "SQLite:///tmp/x.db",
            "./data:1.db",
            "/var/lib/wam/db.sqlite",
            "data/x.db",
            "postgres://u:p@localhost/db",
            "postgresql://localhost/db?sslmode=require",
            "POSTGRES://localhost/db",
        ] {
            assert_eq!(serve(&["--database", url]).unwrap().database_url, url);
        }
    }

    #[test]
    fn the_database_pool_size_defaults_to_eight_and_refuses_zero() {
        assert_eq!(serve(&[]).unwrap().database_max_connections, 8);
        let c = serve(&["--database-max-connections", "20"]).unwrap();
        assert_eq!(c.database_max_connections, 20);
        let err = serve(&["--database-max-connections", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_short_admin_key_is_a_usage_error_that_does_not_repeat_it() {
        let err = serve(&["--api-key", "tiny-key-77"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("at least 16"), "{text}");
        assert!(!text.contains("tiny-key-77"), "{text}");
        // Empty is "no key", as before; 16 characters are enough.
        assert!(serve(&["--api-key", ""]).unwrap().admin_key.is_none());
        let c = serve(&["--api-key", "0123456789abcdef"]).unwrap();
        assert_eq!(c.admin_key, Some(AdminKeyHash::of("0123456789abcdef")));
    }

    #[test]
    fn quotas_default_to_100_sessions_and_no_rate_limit() {
        let c = Config::defaults();
        assert_eq!(c.limits.max_sessions_per_user, Some(100));
        assert_eq!(c.limits.rate, None);
        assert_eq!(c.limits.key_failures_per_minute, 20);
        let c = serve(&["--max-sessions-per-user", "0", "--rate-limit", "2.5"]).unwrap();
        assert_eq!(c.limits.max_sessions_per_user, None);
        assert_eq!(
            c.limits.rate,
            Some(Rate {
                per_second: 2.5,
                burst: 5
            })
        );
        let c = serve(&["--rate-limit", "0.1", "--rate-limit-burst", "7"]).unwrap();
        assert_eq!(c.limits.rate.map(|r| r.burst), Some(7));
        let c = serve(&["--rate-limit", "0.2"]).unwrap();
        assert_eq!(c.limits.rate.map(|r| r.burst), Some(1));
        for bad in [
            &["--rate-limit", "-1"][..],
            &["--rate-limit", "NaN"],
            &["--rate-limit-burst", "0"],
            &["--max-sessions-per-user", "-1"],
            &["--auth-failure-limit", "0"],
        ] {
            assert!(serve(bad).is_err(), "{bad:?}");
        }
    }
}
