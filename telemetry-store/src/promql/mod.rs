//! PromQL: parsed by the `promql-parser` crate, evaluated here with
//! Prometheus 2.x semantics (lookback delta, staleness markers, closed
//! range windows, extrapolated `rate`, vector matching rules, error
//! messages), so Grafana dashboards written for Prometheus give the same
//! numbers.
//!
//! Evaluation works on whole queries at once: every node produces its
//! value for all steps (see [`value`]), the way Prometheus' engine does,
//! which keeps range queries linear in steps × series.
//!
//! The engine reads series through the [`Select`] trait, not the
//! database, so the same evaluation runs over the store or over the
//! in-memory series of the `.test` scripts in `testdata/` (run by the
//! tests in `scripts.rs`). Only [`eval`] evaluates; [`binary`], [`aggregate`] and
//! [`functions`] compute from evaluated operands, so the dependencies run
//! one way: eval → operators and functions → values.

mod admission;
mod aggregate;
mod binary;
mod eval;
mod functions;
mod quantile;
#[cfg(test)]
mod scripts;
mod selector;
pub(crate) mod value;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use conduit_api::Labels;

use crate::db::{Db, DbError, Floats};
use crate::model::Sample;
use crate::query_text::{Syntax, TextLimits};
use crate::series::Matcher;
use admission::Admission;
pub(crate) use selector::{all_in as selectors_in, matchers as selector_matchers};
pub(crate) use value::{QueryValue, Series, format_float};

/// Where the engine reads series from.
pub(crate) trait Select {
    /// Hands `f` each float series matching `matchers` that has samples
    /// in `[mint, maxt]`, in label order, one series at a time (so `f`
    /// can stop a query that loads too much before it is all loaded).
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> Result<(), QueryError>,
    ) -> Result<(), QueryError>;
}

impl Select for Db {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        Db::select::<Floats, QueryError>(self, matchers, mint, maxt, f)
    }
}

/// What operators and functions know of the evaluation besides their
/// operands: the steps' times, and the query's budget.
pub(crate) struct Steps<'a> {
    pub(crate) start: i64,
    pub(crate) step: i64,
    pub(crate) count: usize,
    pub(crate) budget: &'a Budget,
}

impl Steps<'_> {
    pub(crate) fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

#[derive(Clone, Debug)]
pub(crate) struct EngineOptions {
    pub(crate) lookback_ms: i64,
    pub(crate) max_samples: usize,
    pub(crate) timeout: Duration,
    /// Step of subqueries without one (`x[5m:]`): Prometheus uses the
    /// global evaluation interval, 1m by default.
    pub(crate) default_subquery_step_ms: i64,
    /// Checked before the parser runs.
    pub(crate) text: TextLimits,
    /// Queries evaluated at once; more wait for a slot.
    pub(crate) max_concurrency: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum QueryError {
    /// The query is wrong: HTTP 400 `bad_data`.
    #[error("{0}")]
    BadData(String),
    /// The query is right but cannot be answered: HTTP 422 `execution`.
    #[error("{0}")]
    Execution(String),
    /// Out of time: HTTP 503 `timeout`.
    #[error("{0}")]
    Timeout(String),
    /// Whoever asked is gone: HTTP 499 `canceled`.
    #[error("{0}")]
    Canceled(String),
    /// Storage failed: HTTP 500 `internal`.
    #[error("{0}")]
    Internal(String),
}

/// Storage failed under a query: HTTP 500 `internal`.
impl From<DbError> for QueryError {
    fn from(e: DbError) -> Self {
        QueryError::Internal(format!("reading series: {e}"))
    }
}

/// Longest a query's points may be: Prometheus' `11,000 points` rule.
pub(crate) const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// When a query gives up: at its deadline, or once whoever asked for it
/// is gone.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    deadline: Instant,
    abandoned: Arc<AtomicBool>,
}

/// Marks its query abandoned when dropped (see [`Stop::abandon_on_drop`]).
pub(crate) struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Stop {
    pub(crate) fn after(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            abandoned: Arc::default(),
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A guard for the future that waits for the query's answer: the
    /// server drops that future when its client disconnects, and the
    /// evaluation, on a thread of its own, then stops at its next check
    /// instead of running on for nobody.
    pub(crate) fn abandon_on_drop(&self) -> AbandonOnDrop {
        AbandonOnDrop(self.abandoned.clone())
    }

    pub(crate) fn check(&self) -> Result<(), QueryError> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Err(QueryError::Canceled(
                "query was canceled: the client went away".into(),
            ));
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(
                "query timed out in expression evaluation".into(),
            ));
        }
        Ok(())
    }
}

/// Limits that every part of one query's evaluation shares.
pub(crate) struct Budget {
    samples: Cell<usize>,
    max_samples: usize,
    stop: Stop,
}

impl Budget {
    fn new(opts: &EngineOptions, stop: &Stop) -> Self {
        let mut stop = stop.clone();
        stop.deadline = stop.deadline.min(Instant::now() + opts.timeout);
        Self {
            samples: Cell::new(0),
            max_samples: opts.max_samples,
            stop,
        }
    }

    /// Accounts for `n` more samples held in memory.
    pub(crate) fn take(&self, n: usize) -> Result<(), QueryError> {
        let total = self.samples.get().saturating_add(n);
        if total > self.max_samples {
            return Err(QueryError::Execution(
                "query processing would load too many samples into memory in query execution"
                    .into(),
            ));
        }
        self.samples.set(total);
        Ok(())
    }

    pub(crate) fn check_time(&self) -> Result<(), QueryError> {
        self.stop.check()
    }
}

pub(crate) struct Engine {
    source: Arc<dyn Select + Send + Sync>,
    opts: EngineOptions,
    admission: Admission,
    pub(crate) stats: EngineStats,
}

/// Counters exposed on `/metrics`.
#[derive(Default)]
pub(crate) struct EngineStats {
    /// Queries stopped because their client went away.
    pub(crate) canceled: AtomicU64,
    /// Queries that waited for a slot until their deadline.
    pub(crate) queue_timeouts: AtomicU64,
}

impl Engine {
    pub(crate) fn new(source: Arc<dyn Select + Send + Sync>, opts: EngineOptions) -> Self {
        Self {
            source,
            admission: Admission::new(opts.max_concurrency),
            opts,
            stats: EngineStats::default(),
        }
    }

    pub(crate) fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Runs `work` (a query, or any read that costs like one) on the
    /// blocking pool once one of the query slots is free, waiting for one
    /// at most until `timeout`. The work gets a [`Stop`] that fires at
    /// that deadline or when the future returned here is dropped (its
    /// client went away); the slot stays taken until the work returns.
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        timeout: Duration,
        work: impl FnOnce(&Stop) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let stop = Stop::after(timeout.min(self.opts.timeout));
        let _abandon = stop.abandon_on_drop();
        let slot = self
            .admission
            .admit(stop.deadline())
            .await
            .inspect_err(|_| {
                self.stats.queue_timeouts.fetch_add(1, Ordering::Relaxed);
            })?;
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let result = stop.check().and_then(|()| work(&stop));
            if let Err(QueryError::Canceled(_)) = result {
                engine.stats.canceled.fetch_add(1, Ordering::Relaxed);
            }
            result
        })
        .await
        .map_err(|e| QueryError::Internal(format!("query task failed: {e}")))?
    }

    /// Checks the query's text against the limits, then parses it.
    pub(crate) fn parse(&self, query: &str) -> Result<Expr, QueryError> {
        self.opts
            .text
            .check(query, Syntax::PromQl)
            .map_err(|e| QueryError::BadData(e.to_string()))?;
        parse(query)
    }

    /// Evaluates `query` at `t_ms` (`/api/v1/query`).
    pub(crate) fn instant(
        &self,
        query: &str,
        t_ms: i64,
        stop: &Stop,
    ) -> Result<QueryValue, QueryError> {
        let expr = self.parse(query)?;
        let budget = Budget::new(&self.opts, stop);
        let mut ev = eval::Evaluator::new(self.source.as_ref(), &self.opts, &budget, t_ms, t_ms, 1);
        ev.instant(&expr)
    }

    /// Evaluates `query` at every step of `[start, end]`
    /// (`/api/v1/query_range`).
    pub(crate) fn range(
        &self,
        query: &str,
        (start, end, step): (i64, i64, i64),
        stop: &Stop,
    ) -> Result<QueryValue, QueryError> {
        check_range(start, end, step)?;
        let expr = self.parse(query)?;
        let vt = expr.value_type();
        if !matches!(vt, ValueType::Scalar | ValueType::Vector) {
            let name = match vt {
                ValueType::Matrix => "range vector",
                _ => "string",
            };
            return Err(QueryError::BadData(format!(
                "invalid expression type {name:?} for range query, must be Scalar or instant Vector"
            )));
        }
        let budget = Budget::new(&self.opts, stop);
        let mut ev =
            eval::Evaluator::new(self.source.as_ref(), &self.opts, &budget, start, end, step);
        ev.range(&expr)
    }
}

/// Prometheus' range-query sanity checks, with its messages.
pub(crate) fn check_range(start: i64, end: i64, step: i64) -> Result<(), QueryError> {
    if end < start {
        return Err(QueryError::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    if step <= 0 {
        return Err(QueryError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(QueryError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .into(),
        ));
    }
    Ok(())
}

/// Parses with `promql-parser`, adding a position when its message has
/// none. Query text from clients goes through [`Engine::parse`], which
/// checks its length and nesting first.
pub(crate) fn parse(query: &str) -> Result<Expr, QueryError> {
    register_functions();
    parser::parse(query).map_err(|msg| {
        let at = position(query, &msg);
        QueryError::BadData(match at {
            Some((line, col, near)) => format!("{line}:{col}: parse error: {msg} near {near:?}"),
            None => format!("parse error: {msg}"),
        })
    })
}

/// Prometheus 2.x's `holt_winters` (Prometheus 3 renamed it
/// `double_exponential_smoothing`, which is all the parser knows).
fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::function::{Function, register_extra_functions};
        let f = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        register_extra_functions(vec![f]).expect("holt_winters is not a built-in of promql-parser");
    });
}

/// The parser reports grammar errors without a position; the first
/// character after the longest prefix that parses is where the query goes
/// wrong (exact for a stray token, close to it otherwise).
fn position(query: &str, msg: &str) -> Option<(usize, usize, String)> {
    if msg != "invalid promql query" || query.len() > 4096 {
        return None;
    }
    let mut good = 0;
    for (i, _) in query.char_indices().skip(1) {
        if parser::parse(&query[..i]).is_ok() {
            good = i;
        }
    }
    let offset = query[good..]
        .find(|c: char| !c.is_whitespace())
        .map_or(good, |o| good + o);
    let line = query[..offset].matches('\n').count() + 1;
    let col = offset - query[..offset].rfind('\n').map_or(0, |n| n + 1) + 1;
    let near: String = query[offset..].chars().take(20).collect();
    Some((line, col, near))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_carry_a_position() {
        let QueryError::BadData(msg) = parse("foo bar").unwrap_err() else {
            panic!()
        };
        assert_eq!(msg, r#"1:5: parse error: invalid promql query near "bar""#);
        let QueryError::BadData(msg) = parse("sum(rate(x[5m])").unwrap_err() else {
            panic!()
        };
        assert!(msg.contains("unclosed left parenthesis"), "{msg}");
    }

    /// Every shape of nesting, as deep as the default limit lets it be,
    /// parses, evaluates and is dropped on a thread with the 2 MiB stack of
    /// tokio's blocking pool, in a debug build (the least frugal with
    /// stack). Measured there, nested calls overflow from about 400
    /// levels, binary chains from about 600: the default keeps a margin of
    /// three.
    #[test]
    fn queries_at_the_default_depth_limit_fit_the_stack() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::Config::for_data_dir(dir.path());
        let depth = config.query_max_depth;
        let db = Db::open(crate::db::DbOptions::for_tests(dir.path())).unwrap();
        let engine = Arc::new(Engine::new(
            Arc::new(db),
            EngineOptions {
                lookback_ms: 300_000,
                max_samples: 1_000_000,
                timeout: Duration::from_secs(2),
                default_subquery_step_ms: 60_000,
                text: config.text_limits(),
                max_concurrency: 1,
            },
        ));
        let nest = |open: &str, inner: &str, close: &str, n: usize| {
            format!("{}{inner}{}", open.repeat(n), close.repeat(n))
        };
        let shapes = [
            nest("(", "1", ")", depth),
            nest("", "1", "+1", depth),
            nest("-", "1", "", depth),
            nest("abs(", "up", ")", depth),
            nest("sum(", "up", ")", depth),
            nest("-(", "up", ")", depth / 2),
            nest("", "up", " and up", depth),
            nest("max_over_time((", "up", ")[1m:1m])", depth / 2),
        ];
        for q in shapes {
            let nesting = crate::query_text::nesting(&q, Syntax::PromQl);
            assert!(nesting <= depth, "{nesting} > {depth}: {q}");
            let engine = engine.clone();
            let outcome = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || engine.instant(&q, 1_000_000, &Stop::after(Duration::from_secs(2))))
                .unwrap()
                .join()
                .expect("no stack overflow");
            assert!(
                matches!(outcome, Ok(_) | Err(QueryError::Timeout(_))),
                "{outcome:?}"
            );
        }
        let deeper = nest("(", "1", ")", depth + 1);
        assert!(matches!(
            engine.instant(&deeper, 0, &Stop::after(Duration::from_secs(1))),
            Err(QueryError::BadData(m)) if m.contains("--query-max-depth")
        ));
    }

    #[test]
    fn range_checks_match_prometheus() {
        assert!(check_range(10, 5, 1).is_err());
        assert!(check_range(0, 10, 0).is_err());
        assert!(check_range(0, 11_001_000, 1000).is_err());
        assert!(check_range(0, 11_000_000, 1000).is_ok());
    }
}
