//! The shared harness under the name the test modules import it by, with every `spawn_app*`
//! shadowed by its PostgreSQL twin: the same module files then test the PostgreSQL store.

pub use testkit::api::*;
use testkit::db::TestBackend;
use whatsapp_manager::Config;

const BACKEND: TestBackend = TestBackend::Postgres;

pub async fn spawn_app() -> TestApp {
    spawn_app_on(BACKEND).await
}

pub async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_on(BACKEND, tune).await
}

pub async fn spawn_app_with_admin_key() -> TestApp {
    spawn_app_with_admin_key_on(BACKEND).await
}

pub async fn spawn_app_with_admin_key_and(tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_admin_key_and_on(BACKEND, tune).await
}
