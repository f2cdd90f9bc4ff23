//! The real engine end to end: our HTTP API, whatsapp-rust speaking the real protocol
//! (Noise, binary nodes, pairing crypto), and an in-process fake WhatsApp server
//! (`crates/fake-whatsapp`) injected through the application builder.
//!
//! `linking`: link, restart, logout, QR codes and pairing codes — the credentials' round trip
//! through the database runs on SQLite and on PostgreSQL (`testkit::pg`: a throwaway cluster,
//! or the one `WAM_TEST_POSTGRES` names; without one they fail, never skip). `failures`: what
//! WhatsApp or the network refuse. `send`: the engine's client below the API, sending.
//! `nodes`: two server processes on one PostgreSQL database; a linked device whose node is
//! killed comes back on the other with its keys. `inbox`: what contacts write (texts and files)
//! in the inbox, files downloaded, read receipts, opt-out words. `numbers`: number checks by
//! WhatsApp's usync, and a bulk send that skips numbers without WhatsApp. `media`: files of
//! every kind sent through our API (by URL and by upload; to a contact, a number, a group and
//! in bulk) reach WhatsApp byte for byte.
//!
//! `cargo test --test whatsapp_engine_e2e` runs exactly these.

mod failures;
mod inbox;
mod linking;
mod media;
mod nodes;
mod numbers;
mod receipts;
mod send;

/// Instantiates each listed `async fn name(backend: TestBackend)` once per backend:
/// `sqlite::name` and `postgres::name`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(testkit::db::TestBackend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(testkit::db::TestBackend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_both;
