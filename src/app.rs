//! Building and running the whole service; `main` and the tests share this.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::clock::{SharedClock, SystemClock};
use crate::cluster::{Cluster, LeaseLoop, NodeIdentity};
use crate::config::{Config, EngineKind};
use crate::engine::Engine;
use crate::engine::sim::{SimNetwork, SimNode};
use crate::engine::whatsapp::{WhatsAppEngine, WhatsAppOptions};
use crate::events::nodes::Follower;
use crate::events::{EventBus, webhook};
use crate::http::serve::{ConnectionLimits, serve};
use crate::http::{AppState, router};
use crate::messaging::{Outbox, image};
use crate::outbound::OutboundPolicy;
use crate::session::SessionManager;
use crate::store::traits::{JoinOutcome, NodeJoin};
use crate::store::{DatabaseOptions, Db};

const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

pub struct ApplicationBuilder {
    config: Config,
    clock: SharedClock,
    whatsapp: WhatsAppOptions,
}

impl ApplicationBuilder {
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Options of the real engine: where its connections go (a fake WhatsApp server in
    /// tests), a fixed WhatsApp Web version, the connect timeout.
    pub fn whatsapp(mut self, options: WhatsAppOptions) -> Self {
        self.whatsapp = options;
        self
    }

    pub async fn build(self) -> anyhow::Result<Application> {
        Application::assemble(self).await
    }
}

pub struct Application {
    listener: TcpListener,
    /// `--metrics-listen`: serves only the metrics, without a key.
    metrics_listener: Option<TcpListener>,
    connections: ConnectionLimits,
    state: AppState,
    /// Stops the webhook dispatcher.
    background: CancellationToken,
    dispatcher: tokio::task::JoinHandle<()>,
    /// On a cluster: this node's leases, handed over when it stops.
    leases: Option<LeaseLoop>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::builder(config).build().await
    }

    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        Self::builder(config).clock(clock).build().await
    }

    /// For embedding and tests: the clock and the real engine's connection can be swapped,
    /// which no command-line flag allows.
    pub fn builder(config: Config) -> ApplicationBuilder {
        ApplicationBuilder {
            config,
            clock: Arc::new(SystemClock),
            whatsapp: WhatsAppOptions::default(),
        }
    }

    async fn assemble(b: ApplicationBuilder) -> anyhow::Result<Self> {
        let ApplicationBuilder {
            config,
            clock,
            whatsapp,
        } = b;
        check_listen_address(&config).await?;
        check_cluster_flags(&config)?;
        let store: Db = crate::store::open(
            &config.database_url,
            &DatabaseOptions {
                max_connections: config.database_max_connections,
                ..DatabaseOptions::default()
            },
        )
        .await?;
        // Bound first: a node's default id and address carry the port it really got.
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
            ),
            None => None,
        };
        let identity = NodeIdentity::resolve(&config.cluster, listener.local_addr()?);
        let cluster = join_cluster(&store, &identity, &config).await?;
        let mut keys =
            ApiKeys::new(config.admin_key, store.clone(), clock.clone()).with_limits(config.limits);
        if let Some(c) = &cluster {
            keys = keys.with_signals(c.signals().clone());
        }
        let (engine, sim): (Arc<dyn Engine>, Option<SimNetwork>) = match config.engine {
            EngineKind::Sim => {
                let node = SimNode {
                    id: identity.node_id.clone(),
                    signals: store.signals(),
                };
                let net =
                    SimNetwork::on_node(config.sim.clone(), store.clone(), clock.clone(), node);
                net.import_files(&config.data_dir)
                    .await
                    .context("moving the simulated engine's files into the database")?;
                net.start_node()
                    .await
                    .context("closing the simulated connections an earlier process left")?;
                (Arc::new(net.clone()), Some(net))
            }
            EngineKind::Whatsapp => (
                Arc::new(
                    WhatsAppEngine::new(
                        &config.data_dir,
                        whatsapp,
                        store.clone(),
                        store.clone(),
                        clock.clone(),
                    )
                    .await?,
                ),
                None,
            ),
        };
        // Before any session starts, so every status change is told.
        let events = EventBus::new(store.clone(), clock.clone());
        let follower = match &cluster {
            Some(c) => Follower::listen(&events, c.node_id(), c.signals().clone()).await?,
            None => None,
        };
        let manager = SessionManager::new(
            engine.clone(),
            store.clone(),
            clock.clone(),
            config.max_concurrent_fetches,
        )
        .with_events(events.clone())
        .with_opt_out_words(config.opt_out_words.clone());
        let (manager, leases) = match &cluster {
            // On a cluster the sessions this node runs are the leases it takes.
            Some(c) => {
                let manager = manager.with_cluster(c.clone());
                let leases = LeaseLoop::start(
                    c.clone(),
                    manager.clone(),
                    config.cluster.rebalance_per_second,
                )
                .await
                .context("taking this node's share of the sessions")?;
                (manager, Some(leases))
            }
            None => {
                let restored = manager.restore().await.context("restoring sessions")?;
                if restored > 0 {
                    tracing::info!("🔄 Restoring {restored} linked sessions");
                }
                (manager, None)
            }
        };
        let outbound = OutboundPolicy::new(config.outbound_allow.clone());
        let outbox = Outbox::new(
            store.clone(),
            store.clone(),
            manager.clone(),
            events.clone(),
            clock.clone(),
            config.pacing,
            image::Images::new(&outbound),
        );
        if let Some(c) = &cluster {
            outbox.join_nodes(c.signals().clone());
        }
        let pending = outbox.start().await.context("restarting the outbox")?;
        if pending > 0 {
            tracing::info!("🔄 Resuming queued messages of {pending} numbers");
        }
        let background = CancellationToken::new();
        if let Some(f) = follower {
            tokio::spawn(f.run(keys.clone(), outbox.clone(), background.clone()));
        }
        let dispatcher = tokio::spawn(webhook::run_dispatcher(
            events.clone(),
            config.webhooks.clone(),
            outbound.clone(),
            background.clone(),
        ));
        Ok(Self {
            listener,
            metrics_listener,
            connections: ConnectionLimits {
                header_timeout: config.header_timeout,
                idle_timeout: config.idle_timeout,
                max_connections: config.max_connections,
            },
            state: AppState {
                manager,
                store,
                clock,
                sim,
                engine: engine.name(),
                started: Instant::now(),
                request_timeout: config.request_timeout,
                keys,
                outbox,
                events,
                outbound,
                identity,
                cluster,
            },
            background,
            dispatcher,
            leases,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Where `--metrics-listen` bound (its port 0 resolved), when given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The sessions this server runs, for embedding and tests that look inside a node.
    pub fn sessions(&self) -> SessionManager {
        self.state.manager.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests and
    /// every session actor finish, and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            metrics_listener,
            connections,
            state,
            background,
            dispatcher,
            leases,
        } = self;
        let manager = state.manager.clone();
        let outbox = state.outbox.clone();
        let store = state.store.clone();
        tracing::info!(
            "✅ WhatsApp Manager listening on http://{} (engine: {})",
            listener.local_addr()?,
            state.engine
        );
        // Stops with the API: cancelled below once the API's listener is done.
        let metrics_stop = CancellationToken::new();
        let metrics_server = metrics_listener.map(|l| {
            if let Ok(addr) = l.local_addr() {
                tracing::info!("✅ Metrics without a key on http://{addr}/metrics");
            }
            let router = crate::http::scrape::open_router(state.clone());
            tokio::spawn(serve(
                l,
                router,
                connections,
                metrics_stop.clone().cancelled_owned(),
            ))
        });
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = serve(listener, router(state), connections, async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });
        // A node of a cluster hands its sessions over as soon as the stop comes, while its
        // last requests drain: they are offline until another node runs them. (The sender
        // dropped unsent is a stop too: the server ended first.)
        let (left_tx, left_rx) = tokio::sync::oneshot::channel::<()>();
        let handover = leases.map(|leases| {
            let (manager, outbox) = (manager.clone(), outbox.clone());
            tokio::spawn(async move {
                let _ = left_rx.await;
                tracing::info!("ℹ️ Shutting down: handing sessions over to the other nodes");
                outbox.shutdown().await;
                leases.leave(&manager).await;
            })
        });
        // Requests still running when the stop comes get a short drain, not the full request
        // timeout: the whole stop must fit in the 10 s before a SIGKILL.
        let drain_over = async move {
            if stopping_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
            let _ = left_tx.send(());
            tokio::time::sleep(HTTP_DRAIN).await;
        };
        tokio::select! {
            () = server => {}
            // Dropping `server` closes the connections still open (an event stream, a
            // handler past its drain).
            () = drain_over => {
                tracing::warn!("⚠️ Requests still running after {HTTP_DRAIN:?} were cut short");
            }
        }
        metrics_stop.cancel();
        if let Some(m) = metrics_server {
            // Its connections get the same short drain as the API's.
            let _ = tokio::time::timeout(HTTP_DRAIN, m).await;
        }
        tracing::info!("ℹ️ Shutting down: stopping sessions");
        // The outbox first: a send cut short now goes again, under the same id, after the
        // next start; a session stopped under a running send would only make it fail.
        outbox.shutdown().await;
        background.cancel();
        let _ = dispatcher.await;
        if let Some(handover) = handover {
            let _ = handover.await;
        }
        manager.shutdown().await;
        store.close().await;
        tracing::info!("✅ Shutdown complete");
        Ok(())
    }
}

/// On PostgreSQL every server is a node of the cluster on that database (alone, it is a
/// cluster of one). A node id another live node holds is refused, naming that node; the same
/// id at the same address is this node's own earlier process, gone without a goodbye (the
/// address was free to bind), so it is taken over at once.
async fn join_cluster(
    store: &Db,
    me: &NodeIdentity,
    config: &Config,
) -> anyhow::Result<Option<Cluster>> {
    let (Some(leases), Some(signals)) = (store.cluster(), store.signals()) else {
        return Ok(None);
    };
    let incarnation = crate::cluster::new_incarnation();
    let lease_ms = i64::try_from(config.cluster.lease.as_millis()).unwrap_or(i64::MAX);
    let mut join = NodeJoin {
        node_id: &me.node_id,
        advertise_url: &me.advertise_url,
        incarnation: &incarnation,
        lease_ms,
        force: false,
    };
    if let JoinOutcome::Held { advertise_url } = leases.join(&join).await? {
        if advertise_url != me.advertise_url {
            anyhow::bail!(
                "node id {:?} is held by a live node at {advertise_url}: give this node another \
                 --node-id, or stop that one first",
                me.node_id
            );
        }
        join.force = true;
        leases.join(&join).await?;
    }
    tracing::info!(
        "✅ Node {} joined the cluster (reached at {})",
        me.node_id,
        me.advertise_url
    );
    Ok(Some(Cluster::new(
        me.clone(),
        incarnation,
        leases,
        signals,
        config.cluster.lease,
    )))
}

/// One SQLite file cannot be shared by several servers, so the flags that make a node of a
/// cluster are refused with it rather than quietly ignored.
fn check_cluster_flags(config: &Config) -> anyhow::Result<()> {
    let given = &config.cluster.given;
    if given.is_empty() || crate::store::is_postgres_url(&config.database_url) {
        return Ok(());
    }
    anyhow::bail!(
        "{} need a PostgreSQL database (--database postgres://…): several nodes share one \
         PostgreSQL database, and a SQLite file cannot be shared, so with SQLite the server \
         runs as a single node",
        given.join(", ")
    )
}

/// Without an admin key anyone who reaches the port may read every tenant's QR codes and
/// contacts, so such a server may only be reached from this machine.
async fn check_listen_address(config: &Config) -> anyhow::Result<()> {
    if config.admin_key.is_some() {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&config.listen)
        .await
        .with_context(|| format!("cannot resolve the listen address {}", config.listen))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "refusing to listen on {} without an admin API key: anyone reaching it could read \
             every tenant's QR codes and contacts. Set --api-key (or WAM_API_KEY), or listen on \
             a loopback address such as 127.0.0.1:5000",
            config.listen
        );
    }
    tracing::warn!(
        "⚠️ No admin API key is set (--api-key / WAM_API_KEY): the API is open to anyone on \
         this machine, so it listens on {} only",
        config.listen
    );
    Ok(())
}
