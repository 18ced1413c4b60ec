//! The evaluator: walks the expression tree and produces each node's
//! value for every step, reading storage only at selectors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use conduit_api::Labels;
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::value::{Metric, QueryValue, Sample, Series, Value, is_stale};
use super::{Budget, EngineOptions, QueryError, aggregate, binary, functions};
use crate::db::{Db, Floats};
use crate::series::{LabelsExt, METRIC_NAME, Matcher};

/// Steps one subquery may evaluate: each step costs memory even when
/// empty, and a year at one second would be 31 million of them.
const MAX_SUBQUERY_STEPS: i64 = 1_000_000;

pub(crate) struct Evaluator<'a> {
    pub(crate) db: &'a Db,
    pub(crate) opts: &'a EngineOptions,
    pub(crate) budget: &'a Budget,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) step: i64,
    /// The top-level query's start and end, what `@ start()` and
    /// `@ end()` mean at any depth.
    query_start: i64,
    query_end: i64,
}

/// A range vector over all steps: the series' points and, per step, the
/// closed window `[mint, maxt]` a range function sees.
pub(crate) struct RangeInput {
    pub(crate) series: Vec<Series>,
    pub(crate) windows: Vec<(i64, i64)>,
    pub(crate) range_ms: i64,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        db: &'a Db,
        opts: &'a EngineOptions,
        budget: &'a Budget,
        start: i64,
        end: i64,
        step: i64,
    ) -> Self {
        Self {
            db,
            opts,
            budget,
            start,
            end,
            step,
            query_start: start,
            query_end: end,
        }
    }

    fn sub(&self, start: i64, end: i64, step: i64) -> Evaluator<'a> {
        Evaluator {
            start,
            end,
            step,
            ..*self
        }
    }

    pub(crate) fn steps(&self) -> usize {
        ((self.end - self.start) / self.step) as usize + 1
    }

    pub(crate) fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// Evaluates at a single time, shaped for `/api/v1/query`.
    pub(crate) fn instant(&mut self, expr: &Expr) -> Result<QueryValue, QueryError> {
        let t = self.start;
        Ok(match self.eval(expr)? {
            Value::Scalar(v) => QueryValue::Scalar(t, v[0]),
            Value::String(s) => QueryValue::String(t, s),
            Value::Vector(mut steps) => {
                let v = steps.pop().unwrap_or_default();
                QueryValue::Vector(v.into_iter().map(|s| (s.metric, t, s.v)).collect())
            }
            Value::Matrix(m) => QueryValue::Matrix(m),
        })
    }

    /// Evaluates over all steps, shaped for `/api/v1/query_range`: series
    /// sorted by labels.
    pub(crate) fn range(&mut self, expr: &Expr) -> Result<QueryValue, QueryError> {
        let value = self.eval(expr)?;
        let series = match value {
            Value::Scalar(v) => vec![Series {
                metric: Arc::new(Labels::new()),
                points: v
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (self.ts(i), v))
                    .collect(),
            }],
            Value::Vector(steps) => self.to_series(steps),
            Value::Matrix(_) | Value::String(_) => {
                return Err(QueryError::BadData(
                    "range queries need a scalar or instant vector".into(),
                ));
            }
        };
        Ok(QueryValue::Matrix(series))
    }

    /// Regroups per-step vectors into series sorted by labels.
    pub(crate) fn to_series(&self, steps: Vec<Vec<Sample>>) -> Vec<Series> {
        let mut by_metric: BTreeMap<Metric, Vec<(i64, f64)>> = BTreeMap::new();
        for (i, samples) in steps.into_iter().enumerate() {
            let t = self.ts(i);
            for s in samples {
                by_metric.entry(s.metric).or_default().push((t, s.v));
            }
        }
        by_metric
            .into_iter()
            .map(|(metric, points)| Series { metric, points })
            .collect()
    }

    pub(crate) fn eval(&mut self, expr: &Expr) -> Result<Value, QueryError> {
        self.budget.check_time()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => self.unary(&u.expr),
            Expr::Binary(b) => binary::eval(self, b),
            Expr::Aggregate(a) => aggregate::eval(self, a),
            Expr::Call(c) => functions::eval(self, c),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.vector_selector(vs, false)?)),
            Expr::MatrixSelector(ms) => {
                if self.start != self.end {
                    return Err(QueryError::BadData(
                        "cannot do range evaluation of matrix selector".into(),
                    ));
                }
                let input = self.matrix_selector(ms)?;
                Ok(Value::Matrix(window_series(&input, 0)))
            }
            Expr::Subquery(sq) => {
                if self.start != self.end {
                    return Err(QueryError::BadData(
                        "cannot do range evaluation of a subquery".into(),
                    ));
                }
                let input = self.subquery(sq)?;
                Ok(Value::Matrix(window_series(&input, 0)))
            }
            Expr::Extension(_) => Err(QueryError::BadData("unsupported expression".into())),
        }
    }

    /// Evaluates an expression the parser typed as a scalar.
    pub(crate) fn eval_scalar(&mut self, expr: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(QueryError::BadData(format!(
                "expected a scalar, got {expr}"
            ))),
        }
    }

    pub(crate) fn eval_vector(&mut self, expr: &Expr) -> Result<Vec<Vec<Sample>>, QueryError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            _ => Err(QueryError::BadData(format!(
                "expected an instant vector, got {expr}"
            ))),
        }
    }

    fn unary(&mut self, inner: &Expr) -> Result<Value, QueryError> {
        match self.eval(inner)? {
            Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|v| -v).collect())),
            Value::Vector(steps) => {
                let mut names = NameDropper::default();
                let out: Vec<Vec<Sample>> = steps
                    .into_iter()
                    .map(|samples| {
                        samples
                            .into_iter()
                            .map(|s| Sample {
                                metric: names.drop(&s.metric),
                                t: s.t,
                                v: -s.v,
                            })
                            .collect()
                    })
                    .collect();
                for step in &out {
                    check_unique(step)?;
                }
                Ok(Value::Vector(out))
            }
            _ => Err(QueryError::BadData(
                "unary expression only allowed on expressions of type scalar or instant vector"
                    .into(),
            )),
        }
    }

    fn at_and_offset(
        &self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
    ) -> (Option<i64>, i64) {
        let at = at.as_ref().map(|a| match a {
            AtModifier::Start => self.query_start,
            AtModifier::End => self.query_end,
            AtModifier::At(t) => match t.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            },
        });
        let offset = match offset {
            Some(Offset::Pos(d)) => d.as_millis() as i64,
            Some(Offset::Neg(d)) => -(d.as_millis() as i64),
            None => 0,
        };
        (at, offset)
    }

    /// The time each step reads at: `@` pins it, `offset` shifts it.
    fn ref_times(&self, at: Option<i64>, offset: i64) -> Vec<i64> {
        (0..self.steps())
            .map(|i| at.unwrap_or_else(|| self.ts(i)) - offset)
            .collect()
    }

    /// Instant vector: per step, each series' latest sample within the
    /// lookback delta, unless that sample is a staleness marker. With
    /// `keep_time` a sample carries its own timestamp (for `timestamp()`).
    pub(crate) fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        keep_time: bool,
    ) -> Result<Vec<Vec<Sample>>, QueryError> {
        let (at, offset) = self.at_and_offset(&vs.at, &vs.offset);
        let refs = self.ref_times(at, offset);
        let lookback = self.opts.lookback_ms;
        let mint = refs.iter().min().copied().unwrap_or(0) - lookback;
        let maxt = refs.iter().max().copied().unwrap_or(0);
        let mut out: Vec<Vec<Sample>> = vec![Vec::new(); refs.len()];
        let matchers = matchers(vs)?;
        let budget = self.budget;
        let ts = |i: usize| self.ts(i);
        self.db
            .select::<Floats, _>(&matchers, mint, maxt, |labels, samples| {
                budget.check_time()?;
                let metric = Arc::new(labels);
                let mut next = 0;
                let mut taken = 0;
                for (i, &r) in refs.iter().enumerate() {
                    // `refs` only grows, so the cursor only moves forward.
                    while next < samples.len() && samples[next].0 <= r {
                        next += 1;
                    }
                    let Some(&(t, v)) = next.checked_sub(1).and_then(|k| samples.get(k)) else {
                        continue;
                    };
                    if t < r - lookback || is_stale(v) {
                        continue;
                    }
                    let t = if keep_time { t } else { ts(i) };
                    out[i].push(Sample {
                        metric: metric.clone(),
                        t,
                        v,
                    });
                    taken += 1;
                }
                budget.take(taken)
            })?;
        self.budget.check_time()?;
        Ok(out)
    }

    pub(crate) fn matrix_selector(
        &mut self,
        ms: &MatrixSelector,
    ) -> Result<RangeInput, QueryError> {
        let (at, offset) = self.at_and_offset(&ms.vs.at, &ms.vs.offset);
        let range = ms.range.as_millis() as i64;
        let refs = self.ref_times(at, offset);
        let mint = refs.iter().min().copied().unwrap_or(0) - range;
        let maxt = refs.iter().max().copied().unwrap_or(0);
        let matchers = matchers(&ms.vs)?;
        let budget = self.budget;
        let mut series = Vec::new();
        self.db
            .select::<Floats, _>(&matchers, mint, maxt, |labels, samples| {
                // Range vectors hold every sample of their windows in memory:
                // each series counts as it is loaded, not once all are.
                budget.take(samples.len())?;
                budget.check_time()?;
                series.push(Series {
                    metric: Arc::new(labels),
                    points: samples.into_iter().filter(|(_, v)| !is_stale(*v)).collect(),
                });
                Ok::<_, QueryError>(())
            })?;
        Ok(RangeInput {
            series,
            windows: refs.iter().map(|&r| (r - range, r)).collect(),
            range_ms: range,
        })
    }

    /// A subquery: the inner expression evaluated at its own aligned steps
    /// over the span all outer windows need.
    pub(crate) fn subquery(&mut self, sq: &SubqueryExpr) -> Result<RangeInput, QueryError> {
        let (at, offset) = self.at_and_offset(&sq.at, &sq.offset);
        let range = sq.range.as_millis() as i64;
        let step = sq
            .step
            .map(|s| s.as_millis() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(self.opts.default_subquery_step_ms);
        let refs = self.ref_times(at, offset);
        let span_start = refs.iter().min().copied().unwrap_or(0) - range;
        let span_end = refs.iter().max().copied().unwrap_or(0);
        let mut inner_start = step * span_start.div_euclid(step);
        if inner_start < span_start {
            inner_start += step;
        }
        let windows = refs.iter().map(|&r| (r - range, r)).collect();
        if inner_start > span_end {
            return Ok(RangeInput {
                series: Vec::new(),
                windows,
                range_ms: range,
            });
        }
        let inner_steps = (span_end - inner_start) / step + 1;
        if inner_steps > MAX_SUBQUERY_STEPS {
            return Err(QueryError::Execution(format!(
                "subquery would evaluate {inner_steps} steps (at most {MAX_SUBQUERY_STEPS}); use a larger subquery step or a shorter range"
            )));
        }
        let mut inner = self.sub(inner_start, span_end, step);
        let series = match inner.eval(&sq.expr)? {
            Value::Vector(steps) => inner.to_series(steps),
            Value::Scalar(v) => vec![Series {
                metric: Arc::new(Labels::new()),
                points: v
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (inner.ts(i), v))
                    .collect(),
            }],
            _ => {
                return Err(QueryError::BadData(
                    "subquery is only allowed on instant vectors".into(),
                ));
            }
        };
        Ok(RangeInput {
            series,
            windows,
            range_ms: range,
        })
    }

    /// The range input of a function argument: a matrix selector or a
    /// subquery, possibly in parentheses.
    pub(crate) fn range_input(&mut self, e: &Expr) -> Result<RangeInput, QueryError> {
        match e {
            Expr::Paren(p) => self.range_input(&p.expr),
            Expr::MatrixSelector(ms) => self.matrix_selector(ms),
            Expr::Subquery(sq) => self.subquery(sq),
            other => Err(QueryError::BadData(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }
}

/// Each series' points inside step `i`'s window (instant queries of a
/// range vector).
fn window_series(input: &RangeInput, i: usize) -> Vec<Series> {
    let (mint, maxt) = input.windows[i];
    input
        .series
        .iter()
        .filter_map(|s| {
            let points = window(&s.points, mint, maxt);
            (!points.is_empty()).then(|| Series {
                metric: s.metric.clone(),
                points: points.to_vec(),
            })
        })
        .collect()
}

/// The points with `mint <= t <= maxt` (Prometheus 2.x windows are closed).
pub(crate) fn window(points: &[(i64, f64)], mint: i64, maxt: i64) -> &[(i64, f64)] {
    let from = points.partition_point(|p| p.0 < mint);
    let to = points.partition_point(|p| p.0 <= maxt);
    &points[from..to.max(from)]
}

/// The selector's matchers, its metric name included.
pub(crate) fn matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::BadData(
            "`or` inside label matchers is not supported".into(),
        ));
    }
    let mut out: Vec<Matcher> = vs
        .matchers
        .matchers
        .iter()
        .map(Matcher::from_promql)
        .collect();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name));
    }
    Ok(out)
}

/// Caches "the same labels without `__name__`" per input label set, the
/// way Prometheus' `DropMetricName` cache does.
#[derive(Default)]
pub(crate) struct NameDropper {
    cache: HashMap<usize, Metric>,
}

impl NameDropper {
    pub(crate) fn drop(&mut self, m: &Metric) -> Metric {
        if m.get(METRIC_NAME).is_none() {
            return m.clone();
        }
        self.cache
            .entry(Arc::as_ptr(m) as usize)
            .or_insert_with(|| Arc::new(m.without_metric_name()))
            .clone()
    }
}

/// Prometheus refuses a result vector in which two samples have the same
/// labels (e.g. `rate()` over series that only differed by name).
pub(crate) fn check_unique(step: &[Sample]) -> Result<(), QueryError> {
    if step.len() < 2 {
        return Ok(());
    }
    let mut seen: HashSet<&Labels> = HashSet::with_capacity(step.len());
    for s in step {
        if !seen.insert(&s.metric) {
            return Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}
