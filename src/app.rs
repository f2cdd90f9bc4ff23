//! Building and running the whole service; `main` and the tests share this.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, EngineKind};
use crate::engine::Engine;
use crate::engine::sim::SimNetwork;
use crate::http::{AppState, router};
use crate::session::SessionManager;
use crate::store::{SqliteStore, Store};

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let (engine, sim): (Arc<dyn Engine>, Option<SimNetwork>) = match config.engine {
            EngineKind::Sim => {
                let net =
                    SimNetwork::new(config.sim.clone(), config.data_dir.clone(), clock.clone())?;
                (Arc::new(net.clone()), Some(net))
            }
            EngineKind::Whatsapp => bail!(
                "the whatsapp engine is not available in this build yet; start the server with \
                 --engine sim"
            ),
        };
        let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&config.database_url).await?);
        let manager = SessionManager::new(engine.clone(), store.clone(), clock.clone());
        let restored = manager.restore().await.context("restoring sessions")?;
        if restored > 0 {
            tracing::info!("🔄 Restoring {restored} linked sessions");
        }
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            listener,
            state: AppState {
                manager,
                store,
                clock,
                sim,
                engine: engine.name(),
                started: Instant::now(),
                request_timeout: config.request_timeout,
            },
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests and
    /// every session actor finish, and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self { listener, state } = self;
        let manager = state.manager.clone();
        let store = state.store.clone();
        tracing::info!(
            "✅ WhatsApp Manager listening on http://{} (engine: {})",
            listener.local_addr()?,
            state.engine
        );
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        tracing::info!("ℹ️ Shutting down: stopping sessions");
        manager.shutdown().await;
        store.close().await;
        tracing::info!("✅ Shutdown complete");
        Ok(())
    }
}
