//! The evaluator: walks the expression tree and produces each node's
//! value for every step, reading storage only at selectors.
//!
//! It is the only part of the engine that evaluates: operators,
//! aggregations and functions get their operands already evaluated and
//! compute from those alone, so each can be tested without storage, and
//! none of them calls back into the evaluator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use conduit_api::Labels;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, MatrixSelector, Offset, SubqueryExpr,
    VectorSelector,
};

use super::aggregate::Aggregation;
use super::binary::Binary;
use super::functions::{self, FnContext};
use super::selector::{matchers, unparen};
use super::value::{
    Metric, NameDropper, QueryValue, RangeVector, Sample, Series, Value, check_unique, is_stale,
};
use super::{Budget, EngineOptions, QueryError, Select, Steps};

/// Steps one subquery may evaluate: each step costs memory even when
/// empty, and a year at one second would be 31 million of them.
const MAX_SUBQUERY_STEPS: i64 = 1_000_000;

pub(crate) struct Evaluator<'a> {
    pub(crate) source: &'a dyn Select,
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

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        source: &'a dyn Select,
        opts: &'a EngineOptions,
        budget: &'a Budget,
        start: i64,
        end: i64,
        step: i64,
    ) -> Self {
        Self {
            source,
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

    /// The steps, for what computes from evaluated operands.
    fn at_steps(&self) -> Steps<'a> {
        Steps {
            start: self.start,
            step: self.step,
            count: self.steps(),
            budget: self.budget,
        }
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
            Value::Matrix(m) => QueryValue::Matrix(m.at_step(0)),
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
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Call(c) => self.call(c),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.vector_selector(vs, false)?)),
            Expr::MatrixSelector(ms) => {
                if self.start != self.end {
                    return Err(QueryError::BadData(
                        "cannot do range evaluation of matrix selector".into(),
                    ));
                }
                Ok(Value::Matrix(self.matrix_selector(ms)?))
            }
            Expr::Subquery(sq) => {
                if self.start != self.end {
                    return Err(QueryError::BadData(
                        "cannot do range evaluation of a subquery".into(),
                    ));
                }
                Ok(Value::Matrix(self.subquery(sq)?))
            }
            Expr::Extension(_) => Err(QueryError::BadData("unsupported expression".into())),
        }
    }

    /// Evaluates an expression the parser typed as a scalar.
    fn eval_scalar(&mut self, expr: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(QueryError::BadData(format!(
                "expected a scalar, got {expr}"
            ))),
        }
    }

    fn eval_vector(&mut self, expr: &Expr) -> Result<Vec<Vec<Sample>>, QueryError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            _ => Err(QueryError::BadData(format!(
                "expected an instant vector, got {expr}"
            ))),
        }
    }

    /// The operator is checked before its operands are evaluated.
    fn binary(&mut self, b: &BinaryExpr) -> Result<Value, QueryError> {
        let binary = Binary::new(b)?;
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        binary.apply(lhs, rhs)
    }

    /// The aggregation and its label parameter are checked before its
    /// operands are evaluated.
    fn aggregate(&mut self, a: &AggregateExpr) -> Result<Value, QueryError> {
        let aggregation = Aggregation::new(a)?;
        let params = match &a.param {
            Some(p) if aggregation.takes_number() => self.eval_scalar(p)?,
            _ => Vec::new(),
        };
        let steps = self.eval_vector(&a.expr)?;
        aggregation.apply(&params, steps, &self.at_steps())
    }

    /// Evaluates the arguments in order, then calls the function with
    /// them, as Prometheus' `FunctionCall` does.
    fn call(&mut self, call: &Call) -> Result<Value, QueryError> {
        let name = call.func.name;
        let exprs: Vec<&Expr> = call.args.args.iter().map(|a| a.as_ref()).collect();
        let mut args = Vec::with_capacity(exprs.len());
        for e in &exprs {
            args.push(self.argument(name, e)?);
        }
        let ctx = FnContext {
            steps: self.at_steps(),
            exprs: &exprs,
        };
        functions::call(name, args, &ctx)
    }

    /// A function argument as the function reads it: a range vector with
    /// its window at every step; under `timestamp()`, a selector's samples
    /// with their own times.
    fn argument(&mut self, func: &str, e: &Expr) -> Result<Value, QueryError> {
        match unparen(e) {
            Expr::VectorSelector(vs) if func == "timestamp" => {
                Ok(Value::Vector(self.vector_selector(vs, true)?))
            }
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.matrix_selector(ms)?)),
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq)?)),
            _ => self.eval(e),
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
    fn vector_selector(
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
        self.source
            .select(&matchers, mint, maxt, &mut |labels, samples| {
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

    fn matrix_selector(&mut self, ms: &MatrixSelector) -> Result<RangeVector, QueryError> {
        let (at, offset) = self.at_and_offset(&ms.vs.at, &ms.vs.offset);
        let range = ms.range.as_millis() as i64;
        let refs = self.ref_times(at, offset);
        let mint = refs.iter().min().copied().unwrap_or(0) - range;
        let maxt = refs.iter().max().copied().unwrap_or(0);
        let matchers = matchers(&ms.vs)?;
        let budget = self.budget;
        let mut series = Vec::new();
        self.source
            .select(&matchers, mint, maxt, &mut |labels, samples| {
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
        Ok(RangeVector {
            series,
            windows: refs.iter().map(|&r| (r - range, r)).collect(),
            range_ms: range,
        })
    }

    /// A subquery: the inner expression evaluated at its own aligned steps
    /// over the span all outer windows need.
    fn subquery(&mut self, sq: &SubqueryExpr) -> Result<RangeVector, QueryError> {
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
            return Ok(RangeVector {
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
        Ok(RangeVector {
            series,
            windows,
            range_ms: range,
        })
    }
}
