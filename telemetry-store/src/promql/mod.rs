//! PromQL: parsed by the `promql-parser` crate, evaluated here with
//! Prometheus 2.x semantics (lookback delta, staleness markers, closed
//! range windows, extrapolated `rate`, vector matching rules, error
//! messages), so Grafana dashboards written for Prometheus give the same
//! numbers.
//!
//! Evaluation works on whole queries at once: every node produces its
//! value for all steps (see [`value`]), the way Prometheus' engine does,
//! which keeps range queries linear in steps × series.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod quantile;
pub(crate) mod value;

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use crate::db::Db;
pub(crate) use eval::matchers as selector_matchers;
pub(crate) use value::{QueryValue, Series, format_float};

#[derive(Clone, Debug)]
pub(crate) struct EngineOptions {
    pub(crate) lookback_ms: i64,
    pub(crate) max_samples: usize,
    pub(crate) timeout: Duration,
    /// Step of subqueries without one (`x[5m:]`): Prometheus uses the
    /// global evaluation interval, 1m by default.
    pub(crate) default_subquery_step_ms: i64,
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
    /// Storage failed: HTTP 500 `internal`.
    #[error("{0}")]
    Internal(String),
}

/// Storage failed under a query: HTTP 500 `internal`.
impl From<crate::db::DbError> for QueryError {
    fn from(e: crate::db::DbError) -> Self {
        QueryError::Internal(format!("reading series: {e}"))
    }
}

/// Longest a query's points may be: Prometheus' `11,000 points` rule.
pub(crate) const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Limits that every part of one query's evaluation shares.
pub(crate) struct Budget {
    samples: Cell<usize>,
    max_samples: usize,
    deadline: Instant,
}

impl Budget {
    fn new(opts: &EngineOptions, timeout: Duration) -> Self {
        Self {
            samples: Cell::new(0),
            max_samples: opts.max_samples,
            deadline: Instant::now() + timeout.min(opts.timeout),
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
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(
                "query timed out in expression evaluation".into(),
            ));
        }
        Ok(())
    }
}

pub(crate) struct Engine {
    db: Arc<Db>,
    opts: EngineOptions,
}

impl Engine {
    pub(crate) fn new(db: Arc<Db>, opts: EngineOptions) -> Self {
        Self { db, opts }
    }

    pub(crate) fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `t_ms` (`/api/v1/query`).
    pub(crate) fn instant(&self, query: &str, t_ms: i64) -> Result<QueryValue, QueryError> {
        self.instant_with_timeout(query, t_ms, self.opts.timeout)
    }

    pub(crate) fn instant_with_timeout(
        &self,
        query: &str,
        t_ms: i64,
        timeout: Duration,
    ) -> Result<QueryValue, QueryError> {
        let expr = parse(query)?;
        let budget = Budget::new(&self.opts, timeout);
        let mut ev = eval::Evaluator::new(&self.db, &self.opts, &budget, t_ms, t_ms, 1);
        ev.instant(&expr)
    }

    /// Evaluates `query` at every step of `[start, end]`
    /// (`/api/v1/query_range`).
    pub(crate) fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryValue, QueryError> {
        self.range_with_timeout(query, start, end, step, self.opts.timeout)
    }

    pub(crate) fn range_with_timeout(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        timeout: Duration,
    ) -> Result<QueryValue, QueryError> {
        check_range(start, end, step)?;
        let expr = parse(query)?;
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
        let budget = Budget::new(&self.opts, timeout);
        let mut ev = eval::Evaluator::new(&self.db, &self.opts, &budget, start, end, step);
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
/// none.
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

    #[test]
    fn range_checks_match_prometheus() {
        assert!(check_range(10, 5, 1).is_err());
        assert!(check_range(0, 10, 0).is_err());
        assert!(check_range(0, 11_001_000, 1000).is_err());
        assert!(check_range(0, 11_000_000, 1000).is_ok());
    }
}
