//! The composition root: opens the database, wires ingest, queries, the
//! tap history and remote write out together, and serves HTTP ([`http`])
//! and gRPC ([`grpc`]) until told to stop. Used by the binary and embedded
//! by `conduit demo` and tests.
//!
//! Only this module sees every part at once; each handler is given the
//! parts it uses ([`state`]), so the store's other modules never import
//! the server.

mod grpc;
mod http;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conduit_api::IdentityName;
use conduit_api::proto::destination::v1::workloads_client::WorkloadsClient;
use conduit_api::proto::store::v1::query_server::QueryServer;
use conduit_api::proto::telemetry::v1::telemetry_server::TelemetryServer;
use conduit_identity::grpc::{Allow, answer_only};
use conduit_identity::tls::{Alpn, ClientAuth, client_config, server_config};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::db::{Db, DbOptions};
use crate::ingest::Ingester;
use crate::ingest::telemetry::{Proxies, TelemetryService};
use crate::promql::{Engine, EngineOptions};
use crate::tap::{TapIndex, TapOptions};
use state::Shared;

/// An opened store, not serving yet.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// let store = conduit_telemetry_store::Store::open(conduit_telemetry_store::Config::for_data_dir("/tmp/store"))?;
/// let running = store.start().await?;
/// println!("PromQL on http://{}", running.http_addr());
/// running.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// A store serving on its listeners.
pub struct Running {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    store: Store,
}

impl Store {
    /// Opens (or creates) the data directory and replays the WAL.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let retention_bytes = if config.retention_size == 0 {
            u64::MAX
        } else {
            config.retention_size
        };
        let db = Db::open(DbOptions {
            dir: config.data_dir.clone(),
            block_range_ms: (config.block_duration.as_millis() as i64).max(1000),
            retention_ms: config.retention_time.as_millis() as i64,
            retention_bytes,
            fsync: config.wal_fsync,
            max_series: config.max_active_series,
            raw_retention_ms: config.raw_retention.as_millis() as i64,
            wal_keep_max_bytes: config.remote_write_max_lag,
            max_future_ms: config.future_window.as_millis() as i64,
        })
        .with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
        let db = Arc::new(db);
        let engine = Arc::new(Engine::new(
            db.clone(),
            EngineOptions {
                lookback_ms: config.lookback_delta.as_millis() as i64,
                max_samples: config.query_max_samples,
                timeout: config.query_timeout,
                default_subquery_step_ms: 60_000,
                text: config.text_limits(),
                max_concurrency: config.query_max_concurrency,
            },
        ));
        let tap = if config.tap_retention_time.is_zero() {
            None
        } else {
            Some(TapIndex::open(TapOptions {
                dir: config.data_dir.join("tap"),
                queue: config.tap_queue,
                retention_ms: config.tap_retention_time.as_millis() as i64,
                max_bytes: if config.tap_retention_size == 0 {
                    u64::MAX
                } else {
                    config.tap_retention_size
                },
                max_results: config.tap_max_results,
                max_followers: config.tap_max_followers,
                follow_rate: config.tap_follow_rate,
                max_future_ms: config.future_window.as_millis() as i64,
                text: config.text_limits(),
            })?)
        };
        if let Some(url) = &config.remote_write_url {
            crate::forward::Filter::parse(
                &config.remote_write_match,
                &config.remote_write_drop_label,
                &config.remote_write_external_label,
            )
            .map_err(anyhow::Error::msg)?;
            url.parse::<::http::Uri>()
                .with_context(|| format!("--remote-write-url {url:?}"))?;
        }
        let forward = config.remote_write_url.as_ref().map(|_| Arc::default());
        let tokens = Arc::new(http::Tokens::read(&config)?);
        Ok(Self {
            shared: Arc::new(Shared {
                ingester: Arc::new(Ingester::new(
                    db.clone(),
                    tap.clone(),
                    config.ingest_limits(),
                )),
                proxies: Arc::new(Proxies::new(config.max_proxies)),
                config,
                db,
                engine,
                tap,
                forward,
                tokens,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Binds the configured addresses (port 0 picks a free port) and
    /// serves until [`Running::shutdown`].
    pub async fn start(&self) -> anyhow::Result<Running> {
        let c = &self.shared.config;
        let http = TcpListener::bind(c.http_listen)
            .await
            .with_context(|| format!("cannot listen on {} (--http-listen)", c.http_listen))?;
        let grpc = TcpListener::bind(c.grpc_listen)
            .await
            .with_context(|| format!("cannot listen on {} (--grpc-listen)", c.grpc_listen))?;
        self.start_on(http, grpc)
    }

    /// Serves on listeners the caller bound.
    pub fn start_on(&self, http: TcpListener, grpc: TcpListener) -> anyhow::Result<Running> {
        let http_addr = http.local_addr()?;
        let grpc_addr = grpc.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let shared = self.shared.clone();

        let router = http::router(&shared.config, shared.routes());
        tasks.spawn(conduit_listen::http::serve(
            http,
            router,
            shared.config.http_limits(),
            stopped.clone(),
        ));

        let c = &shared.config;
        let telemetry = TelemetryServer::new(TelemetryService {
            ingester: shared.ingester.clone(),
            proxies: shared.proxies.clone(),
            idle_timeout: c.grpc_report_idle_timeout,
        })
        .max_decoding_message_size(bytes(c.grpc_max_report_size));
        let query = QueryServer::new(shared.query_service())
            .max_decoding_message_size(bytes(c.grpc_max_query_size))
            .max_encoding_message_size(bytes(c.grpc_max_response_size));
        let grpc_limits = c.grpc_limits();
        let mut rx = stopped.clone();
        let stopping = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        match self.grpc_tls()? {
            Some((config, controller)) => {
                // Reports from any mesh identity; queries from the
                // controller only.
                let query = tonic::service::interceptor::InterceptedService::new(
                    query,
                    answer_only(controller, "query"),
                );
                let incoming = conduit_listen::grpc::capped(
                    conduit_identity::grpc::incoming(
                        grpc,
                        config,
                        Allow::AnyIdentity,
                        "store-grpc",
                    ),
                    grpc_limits.max_connections,
                );
                tasks.spawn(async move {
                    conduit_listen::grpc::server(&grpc_limits)
                        .add_service(telemetry)
                        .add_service(query)
                        .serve_with_incoming_shutdown(incoming, stopping)
                        .await
                        .context("gRPC server failed")
                });
            }
            None => {
                tasks.spawn(async move {
                    conduit_listen::grpc::server(&grpc_limits)
                        .add_service(telemetry)
                        .add_service(query)
                        .serve_with_incoming_shutdown(
                            conduit_listen::grpc::capped(
                                // Multi-segment replies must not wait out delayed ACKs.
                                tonic::transport::server::TcpIncoming::from(grpc)
                                    .with_nodelay(Some(true)),
                                grpc_limits.max_connections,
                            ),
                            stopping,
                        )
                        .await
                        .context("gRPC server failed")
                });
            }
        }

        tasks.spawn(maintenance(shared.clone(), stopped.clone()));
        if let (Some(url), Some(stats)) = (&shared.config.remote_write_url, &shared.forward) {
            let c = &shared.config;
            let opts = crate::forward::Options {
                url: url.clone(),
                filter: crate::forward::Filter::parse(
                    &c.remote_write_match,
                    &c.remote_write_drop_label,
                    &c.remote_write_external_label,
                )
                .map_err(anyhow::Error::msg)?,
                batch_samples: c.remote_write_batch.max(1),
                shards: c.remote_write_shards.into(),
            };
            let (db, dir, stats) = (shared.db.clone(), c.data_dir.clone(), stats.clone());
            tasks.spawn(crate::forward::run(db, dir, opts, stats, stopped.clone()));
        }
        if shared.config.wal_fsync == crate::wal::FsyncPolicy::Interval {
            tasks.spawn(fsync_loop(shared.clone(), stopped));
        }
        tracing::info!(%http_addr, %grpc_addr, "telemetry store serving");
        Ok(Running {
            http_addr,
            grpc_addr,
            stop,
            tasks,
            store: self.clone(),
        })
    }

    /// With `--identity-addr`: starts certifying the store and following
    /// the controller's workload table (what reports are held to), and
    /// returns the gRPC server's mTLS settings and the controller's
    /// identity.
    fn grpc_tls(&self) -> anyhow::Result<Option<(Arc<rustls::ServerConfig>, IdentityName)>> {
        let c = &self.shared.config;
        let Some(url) = &c.identity_addr else {
            tracing::warn!("no --identity-addr: the gRPC API is plaintext and answers anyone");
            return Ok(None);
        };
        let anchors = c
            .identity_trust_anchors
            .as_ref()
            .context("--identity-addr needs --identity-trust-anchors")?;
        let token = c
            .identity_token_file
            .clone()
            .context("--identity-addr needs --identity-token-file")?;
        let controller = IdentityName::controller(&c.namespace, &c.trust_domain);
        let anchors = conduit_identity::TrustAnchors::read(anchors)?;
        let creds = conduit_identity::certify::start(
            IdentityName::store(&c.namespace, &c.trust_domain),
            url,
            &anchors,
            token,
            controller.clone(),
        )
        .map_err(anyhow::Error::msg)?;
        let workloads = conduit_identity::grpc::channel(
            &conduit_identity::grpc::authority(url).map_err(anyhow::Error::msg)?,
            &controller,
            client_config(&anchors, Some(creds.clone()), Alpn::H2)?,
            Some(creds.clone()),
        )
        .map_err(anyhow::Error::msg)?;
        tokio::spawn(crate::ingest::attribution::follow(
            WorkloadsClient::new(workloads),
            self.shared.ingester.attribution.clone(),
        ));
        let config = server_config(&anchors, creds, ClientAuth::Required, &[Alpn::H2])?;
        Ok(Some((config, controller)))
    }

    /// Serves until `shutdown` resolves, then stops cleanly.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut running = self.start().await?;
        tokio::select! {
            () = shutdown => {}
            Some(r) = running.tasks.join_next() => {
                r.context("server task panicked")??;
            }
        }
        running.shutdown().await
    }

    /// Runs block cutting, compaction and retention now (normally a
    /// background task does, every `--maintenance-interval`).
    pub async fn maintain(&self) -> anyhow::Result<()> {
        let db = self.shared.db.clone();
        tokio::task::spawn_blocking(move || db.maintain(crate::time::now_ms())).await??;
        Ok(())
    }
}

impl Running {
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops serving, flushes the WAL and waits for every task.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(r) = self.tasks.join_next().await {
            r.context("server task panicked")??;
        }
        if let Some(tap) = &self.store.shared.tap {
            let tap = tap.clone();
            tokio::task::spawn_blocking(move || tap.stop()).await?;
        }
        self.store
            .shared
            .db
            .sync_wal()
            .context("cannot flush the WAL")?;
        Ok(())
    }
}

/// A size flag as a message limit.
fn bytes(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

async fn maintenance(
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let every = shared
        .config
        .maintenance_interval
        .max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        let forget_before =
            crate::time::now_ms().saturating_sub(shared.config.peer_state_ttl.as_millis() as i64);
        shared.proxies.forget_before(forget_before);
        shared.ingester.forget_before(forget_before);
        let db = shared.db.clone();
        match tokio::task::spawn_blocking(move || db.maintain(crate::time::now_ms())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed; will retry"),
            Err(e) => tracing::error!(error = %e, "maintenance task panicked; will retry"),
        }
    }
}

async fn fsync_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
    let every = shared
        .config
        .wal_fsync_interval
        .max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        let db = shared.db.clone();
        // The WAL logs a failure (and its repair) once; this retries.
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || db.sync_wal()).await {
            tracing::debug!(error = %e, "cannot fsync the WAL");
        }
    }
}
