//! The store's own metrics in the Prometheus text format, so it can be
//! scraped and watched like any other service.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::db::Db;
use crate::forward;
use crate::ingest::Ingester;
use crate::ingest::telemetry::Proxies;
use crate::promql::Engine;
use crate::tap::TapIndex;

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

pub(super) async fn handler(State(s): State<Gauges>) -> impl IntoResponse {
    let db = s.db.clone();
    let (blocks, block_bytes, block_samples, wal_bytes, head_bytes) =
        tokio::task::spawn_blocking(move || {
            let (n, bytes, samples) = db.block_stats();
            (n, bytes, samples, db.wal_bytes(), db.head_chunk_bytes())
        })
        .await
        .unwrap_or_default();
    let d = &s.db.stats;
    let i = &s.ingester.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "conduit_store_head_series",
        "gauge",
        "Series in the in-memory head.",
        s.db.head.len() as u64,
    );
    metric(
        "conduit_store_head_chunk_bytes",
        "gauge",
        "Bytes of compressed samples and histogram windows in the head (frozen chunks are in files in the data directory).",
        head_bytes as u64,
    );
    metric(
        "conduit_store_head_chunks_in_memory_total",
        "counter",
        "Frozen head chunks kept in memory because their chunk file could not be written.",
        s.db.head.chunk_files.in_memory(),
    );
    metric(
        "conduit_store_max_active_series",
        "gauge",
        "The active-series limit.",
        s.max_active_series as u64,
    );
    metric(
        "conduit_store_samples_appended_total",
        "counter",
        "Samples stored.",
        load(&d.samples_appended),
    );
    metric(
        "conduit_store_histogram_windows_appended_total",
        "counter",
        "Histogram windows stored.",
        load(&d.windows_appended),
    );
    metric(
        "conduit_store_samples_out_of_order_total",
        "counter",
        "Samples refused for being older than their series' last one.",
        load(&d.out_of_order),
    );
    metric(
        "conduit_store_samples_duplicate_total",
        "counter",
        "Samples refused for repeating a timestamp with another value.",
        load(&d.duplicates),
    );
    metric(
        "conduit_store_samples_out_of_bounds_total",
        "counter",
        "Samples refused for being older than the head.",
        load(&d.out_of_bounds),
    );
    metric(
        "conduit_store_samples_refused_time_total",
        "counter",
        "Samples and histogram windows refused for being dated beyond --future-window or before 1970.",
        load(&d.out_of_time_range),
    );
    metric(
        "conduit_store_reports_refused_time_total",
        "counter",
        "Proxy reports refused for being dated beyond --future-window or before 1970.",
        load(&i.reports_refused_time),
    );
    metric(
        "conduit_store_reports_repeated_total",
        "counter",
        "Proxy reports sent again after a lost acknowledgement, already stored and skipped.",
        load(&i.reports_repeated),
    );
    metric(
        "conduit_store_reports_missed_total",
        "counter",
        "Proxy reports meant for this store that their proxy dropped (its buffer filled while the store was unreachable).",
        load(&i.reports_missed),
    );
    metric(
        "conduit_store_series_created_total",
        "counter",
        "Series created in the head.",
        s.db.head.created(),
    );
    metric(
        "conduit_store_series_refused_total",
        "counter",
        "New series refused by the active-series limit.",
        load(&d.series_refused),
    );
    metric(
        "conduit_store_series_removed_total",
        "counter",
        "Idle series dropped from the head.",
        load(&d.series_removed),
    );
    metric(
        "conduit_store_invalid_series_total",
        "counter",
        "Series refused for invalid labels or names.",
        load(&i.invalid_series),
    );
    metric(
        "conduit_store_reports_received_total",
        "counter",
        "Proxy telemetry reports received.",
        load(&i.reports),
    );
    metric(
        "conduit_store_report_series_rejected_total",
        "counter",
        "Series of proxy reports that were rejected.",
        load(&i.report_series_rejected),
    );
    metric(
        "conduit_store_report_series_cut_total",
        "counter",
        "Series dropped from proxy reports larger than --max-series-per-report.",
        load(&i.report_series_cut),
    );
    metric(
        "conduit_store_proxy_series_refused_total",
        "counter",
        "New series refused to proxies already writing --max-series-per-proxy series.",
        load(&i.proxy_series_refused),
    );
    metric(
        "conduit_store_proxies_forgotten_total",
        "counter",
        "Proxies dropped from a full table (--max-proxies), least recently seen first.",
        load(&s.proxies.evicted),
    );
    metric(
        "conduit_store_metadata_evicted_total",
        "counter",
        "Remote-write metric metadata entries dropped from a full table (--max-metadata).",
        load(&i.metadata_evicted),
    );
    metric(
        "conduit_store_remote_write_requests_total",
        "counter",
        "Remote-write requests received.",
        load(&i.remote_write_requests),
    );
    metric(
        "conduit_store_remote_write_rejected_total",
        "counter",
        "Remote-write requests answered with an error.",
        load(&i.remote_write_rejected),
    );
    let e = &s.engine.stats;
    metric(
        "conduit_store_query_samples_loaded_total",
        "counter",
        "Samples queries read from the head and blocks.",
        load(&d.query_samples_loaded),
    );
    metric(
        "conduit_store_queries_canceled_total",
        "counter",
        "Queries stopped because their client went away.",
        load(&e.canceled),
    );
    metric(
        "conduit_store_query_queue_timeouts_total",
        "counter",
        "Queries that waited for one of the --query-max-concurrency slots until their timeout.",
        load(&e.queue_timeouts),
    );
    metric(
        "conduit_store_blocks",
        "gauge",
        "Blocks on disk.",
        blocks as u64,
    );
    metric(
        "conduit_store_block_bytes",
        "gauge",
        "Bytes of blocks on disk.",
        block_bytes,
    );
    metric(
        "conduit_store_block_samples",
        "gauge",
        "Samples held by blocks on disk.",
        block_samples,
    );
    metric(
        "conduit_store_wal_bytes",
        "gauge",
        "Bytes of the write-ahead log.",
        wal_bytes,
    );
    metric(
        "conduit_store_blocks_cut_total",
        "counter",
        "Blocks cut from the head.",
        load(&d.blocks_cut),
    );
    metric(
        "conduit_store_compactions_total",
        "counter",
        "Block compactions.",
        load(&d.compactions),
    );
    metric(
        "conduit_store_blocks_deleted_total",
        "counter",
        "Blocks deleted by retention.",
        load(&d.blocks_deleted),
    );
    metric(
        "conduit_store_wal_truncated_bytes",
        "gauge",
        "Bytes of a torn WAL tail cut off at the last start.",
        load(&d.wal_truncated_bytes),
    );
    if let Some(tap) = &s.tap {
        let t = &tap.stats;
        metric(
            "conduit_store_tap_events_indexed_total",
            "counter",
            "Tap events indexed.",
            load(&t.indexed),
        );
        metric(
            "conduit_store_tap_events_dropped_total",
            "counter",
            "Tap events dropped because the indexing queue was full.",
            load(&t.dropped),
        );
        metric(
            "conduit_store_tap_events_deleted_total",
            "counter",
            "Tap events deleted by retention.",
            load(&t.deleted_by_retention),
        );
        metric(
            "conduit_store_tap_events_refused_time_total",
            "counter",
            "Tap events dated beyond --future-window (or before 1970), not indexed.",
            load(&t.refused_time),
        );
        metric(
            "conduit_store_tap_events",
            "gauge",
            "Tap events in the index.",
            tap.num_docs(),
        );
    }
    if let Some(rw) = &s.forward {
        metric(
            "conduit_store_remote_write_sent_samples_total",
            "counter",
            "Samples accepted by the remote-write endpoint.",
            load(&rw.sent_samples),
        );
        metric(
            "conduit_store_remote_write_failed_samples_total",
            "counter",
            "Samples the remote-write endpoint refused for good.",
            load(&rw.failed_samples),
        );
        metric(
            "conduit_store_remote_write_retries_total",
            "counter",
            "Remote-write requests retried.",
            load(&rw.retries),
        );
        metric(
            "conduit_store_remote_write_pending_bytes",
            "gauge",
            "WAL bytes not forwarded yet.",
            load(&rw.pending_bytes),
        );
        metric(
            "conduit_store_remote_write_skipped_segments_total",
            "counter",
            "WAL segments deleted before remote write sent them (lost samples).",
            load(&rw.skipped_segments),
        );
    }
    attribution(&mut out, &s.ingester.attribution);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Reports and tap events refused for speaking for another workload.
fn attribution(out: &mut String, a: &crate::ingest::attribution::Attribution) {
    let name = "conduit_store_reports_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Proxy telemetry reports refused: their sender may not report for the workload they name.\n# TYPE {name} counter"
    );
    for (refusal, n) in a.refused() {
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", refusal.reason());
    }
    let name = "conduit_store_tap_events_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Tap events dropped from reports for describing another workload's side of a request.\n# TYPE {name} counter\n{name} {}",
        a.tap_events_refused.load(Ordering::Relaxed)
    );
}
