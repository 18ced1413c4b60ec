//! The opened parts of the store, held here once, and what each handler
//! gets of them: every HTTP route group and the gRPC service declare the
//! state they use next to their handlers, and only this module builds
//! them. A handler that cannot reach the write path or the configuration
//! cannot depend on them by accident, and its tests need only what it
//! reads.

use std::sync::Arc;

use super::grpc::QueryService;
use super::http::{Gauges, Reads, Routes, TapReads, Tokens, Writes};
use crate::config::Config;
use crate::db::Db;
use crate::forward;
use crate::ingest::Ingester;
use crate::ingest::telemetry::Proxies;
use crate::promql::Engine;
use crate::tap::TapIndex;

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

impl Shared {
    fn reads(&self) -> Reads {
        Reads {
            db: self.db.clone(),
            engine: self.engine.clone(),
            timeout: self.config.query_timeout,
            exemplars: self.ingester.exemplars.clone(),
        }
    }

    fn writes(&self) -> Writes {
        Writes {
            ingester: self.ingester.clone(),
            fsync: self.config.wal_fsync,
        }
    }

    fn tap_reads(&self) -> TapReads {
        TapReads {
            tap: self.tap.clone(),
            engine: self.engine.clone(),
            timeout: self.config.query_timeout,
        }
    }

    fn gauges(&self) -> Gauges {
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

    pub(crate) fn routes(&self) -> Routes {
        Routes {
            reads: self.reads(),
            writes: self.writes(),
            tap: self.tap_reads(),
            gauges: self.gauges(),
            ingester: self.ingester.clone(),
            tokens: self.tokens.clone(),
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
