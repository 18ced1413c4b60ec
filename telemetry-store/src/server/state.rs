//! What each handler gets: the opened parts of the store are held here
//! once, and every HTTP route and the gRPC service receive only the ones
//! they use. A handler that cannot reach the write path or the
//! configuration cannot depend on them by accident, and its tests need
//! only what it reads.

use std::sync::Arc;
use std::time::Duration;

use super::grpc::QueryService;
use super::http::Tokens;
use crate::config::Config;
use crate::db::Db;
use crate::forward;
use crate::ingest::Ingester;
use crate::ingest::telemetry::Proxies;
use crate::promql::Engine;
use crate::tap::TapIndex;
use crate::wal::FsyncPolicy;

/// Every part of an opened store, for the composition root only.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) db: Arc<Db>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) proxies: Arc<Proxies>,
    pub(crate) tap: Option<Arc<TapIndex>>,
    pub(crate) forward: Option<Arc<forward::Stats>>,
    /// What remote writers and tap readers must present.
    pub(crate) tokens: Arc<Tokens>,
}

/// PromQL, series and label reads.
#[derive(Clone)]
pub(crate) struct Reads {
    pub(crate) db: Arc<Db>,
    pub(crate) engine: Arc<Engine>,
    /// `--query-timeout`.
    pub(crate) timeout: Duration,
}

/// Remote write in.
#[derive(Clone)]
pub(crate) struct Writes {
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) fsync: FsyncPolicy,
}

/// The tap history. Searches take query slots like PromQL queries: they
/// cost alike.
#[derive(Clone)]
pub(crate) struct TapReads {
    pub(crate) tap: Option<Arc<TapIndex>>,
    pub(crate) engine: Arc<Engine>,
    /// `--query-timeout`.
    pub(crate) timeout: Duration,
}

/// What the store's own `/metrics` report.
#[derive(Clone)]
pub(crate) struct Gauges {
    pub(crate) db: Arc<Db>,
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) proxies: Arc<Proxies>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) tap: Option<Arc<TapIndex>>,
    pub(crate) forward: Option<Arc<forward::Stats>>,
    pub(crate) max_active_series: usize,
}

impl Shared {
    pub(crate) fn reads(&self) -> Reads {
        Reads {
            db: self.db.clone(),
            engine: self.engine.clone(),
            timeout: self.config.query_timeout,
        }
    }

    pub(crate) fn writes(&self) -> Writes {
        Writes {
            ingester: self.ingester.clone(),
            fsync: self.config.wal_fsync,
        }
    }

    pub(crate) fn tap_reads(&self) -> TapReads {
        TapReads {
            tap: self.tap.clone(),
            engine: self.engine.clone(),
            timeout: self.config.query_timeout,
        }
    }

    pub(crate) fn gauges(&self) -> Gauges {
        Gauges {
            db: self.db.clone(),
            ingester: self.ingester.clone(),
            proxies: self.proxies.clone(),
            engine: self.engine.clone(),
            tap: self.tap.clone(),
            forward: self.forward.clone(),
            max_active_series: self.config.max_active_series,
        }
    }

    pub(crate) fn query_service(&self) -> QueryService {
        QueryService {
            db: self.db.clone(),
            engine: self.engine.clone(),
            ingester: self.ingester.clone(),
            proxies: self.proxies.clone(),
            tap: self.tap.clone(),
            timeout: self.config.query_timeout,
        }
    }
}
