//! PromQL functions, each with Prometheus' formula and edge cases
//! (`rate`'s extrapolation, Kahan sums, Go's NaN rules for min/max).
//!
//! A function gets its arguments already evaluated, as Prometheus'
//! `FunctionCall` does, and computes from them alone: nothing here reads
//! storage or evaluates an expression. The argument expressions come
//! along for the few functions that read syntax (`absent()`'s labels) and
//! for error messages.

use std::f64::consts::PI;
use std::sync::Arc;

use conduit_api::Labels;
use conduit_api::labels::is_valid_name;
use promql_parser::parser::Expr;
use regex::Regex;

use super::quantile::{bucket_quantile, quantile};
use super::selector::{matchers, unparen};
use super::value::{Metric, NameDropper, RangeVector, Sample, Value, check_unique, window};
use super::{QueryError, Steps};
use crate::series::{LabelsExt, METRIC_NAME};
use crate::time::{civil_from_days, days_from_civil};

/// What a function knows besides its arguments' values.
pub(crate) struct FnContext<'a> {
    pub(crate) steps: Steps<'a>,
    /// The arguments as written.
    pub(crate) exprs: &'a [&'a Expr],
}

impl FnContext<'_> {
    fn count(&self) -> usize {
        self.steps.count
    }

    fn ts(&self, i: usize) -> i64 {
        self.steps.ts(i)
    }
}

/// A call's evaluated arguments, taken in order, each checked for the
/// type the function expects.
struct Args<'a> {
    values: std::iter::Zip<std::vec::IntoIter<Value>, std::slice::Iter<'a, &'a Expr>>,
}

impl<'a> Args<'a> {
    fn new(values: Vec<Value>, ctx: &FnContext<'a>) -> Self {
        Self {
            values: values.into_iter().zip(ctx.exprs.iter()),
        }
    }

    fn next(&mut self) -> Result<(Value, &'a Expr), QueryError> {
        let (v, e) = self
            .values
            .next()
            .ok_or_else(|| QueryError::BadData("missing function argument".into()))?;
        Ok((v, *e))
    }

    fn scalar(&mut self) -> Result<Vec<f64>, QueryError> {
        match self.next()? {
            (Value::Scalar(v), _) => Ok(v),
            (_, e) => Err(QueryError::BadData(format!("expected a scalar, got {e}"))),
        }
    }

    fn vector(&mut self) -> Result<Vec<Vec<Sample>>, QueryError> {
        match self.next()? {
            (Value::Vector(v), _) => Ok(v),
            (_, e) => Err(QueryError::BadData(format!(
                "expected an instant vector, got {e}"
            ))),
        }
    }

    fn range(&mut self) -> Result<RangeVector, QueryError> {
        match self.next()? {
            (Value::Matrix(m), _) => Ok(m),
            (_, e) => Err(QueryError::BadData(format!(
                "expected a range vector, got {}",
                unparen(e)
            ))),
        }
    }

    fn string(&mut self) -> Result<String, QueryError> {
        match self.next()? {
            (Value::String(s), _) => Ok(s),
            (_, e) => Err(QueryError::BadData(format!(
                "expected a string literal, got {}",
                unparen(e)
            ))),
        }
    }

    fn is_empty(&self) -> bool {
        self.values.len() == 0
    }
}

/// Calls function `name` with its evaluated arguments.
pub(crate) fn call(
    name: &str,
    values: Vec<Value>,
    ctx: &FnContext<'_>,
) -> Result<Value, QueryError> {
    let mut args = Args::new(values, ctx);
    if let Some(f) = range_function(name) {
        return range_call(name, f, args, ctx);
    }
    match name {
        "time" => Ok(Value::Scalar(
            (0..ctx.count())
                .map(|i| ctx.ts(i) as f64 / 1000.0)
                .collect(),
        )),
        "pi" => Ok(Value::Scalar(vec![PI; ctx.count()])),
        "vector" => {
            let v = args.scalar()?;
            let empty: Metric = Arc::new(Labels::new());
            Ok(Value::Vector(
                v.into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        vec![Sample {
                            metric: empty.clone(),
                            t: ctx.ts(i),
                            v,
                        }]
                    })
                    .collect(),
            ))
        }
        "scalar" => {
            let steps = args.vector()?;
            Ok(Value::Scalar(
                steps
                    .into_iter()
                    .map(|s| if s.len() == 1 { s[0].v } else { f64::NAN })
                    .collect(),
            ))
        }
        "timestamp" => timestamp(args.vector()?, ctx),
        "absent" => absent(args.vector()?, ctx),
        "label_replace" => label_replace(args),
        "label_join" => label_join(args),
        "histogram_quantile" => histogram_quantile(args, ctx),
        "sort" | "sort_desc" => {
            let mut steps = args.vector()?;
            for step in &mut steps {
                sort_by_value(step, name == "sort_desc");
            }
            Ok(Value::Vector(steps))
        }
        "round" => {
            let v = args.vector()?;
            let to_nearest = match args.is_empty() {
                false => args.scalar()?,
                true => vec![1.0; ctx.count()],
            };
            map_vector(v, |v, i| {
                let inv = 1.0 / to_nearest[i];
                Some((v * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let (v, min, max) = (args.vector()?, args.scalar()?, args.scalar()?);
            map_vector(v, |v, i| {
                (max[i] >= min[i]).then(|| go_max(min[i], go_min(max[i], v)))
            })
        }
        "clamp_min" => {
            let (v, min) = (args.vector()?, args.scalar()?);
            map_vector(v, |v, i| Some(go_max(min[i], v)))
        }
        "clamp_max" => {
            let (v, max) = (args.vector()?, args.scalar()?);
            map_vector(v, |v, i| Some(go_min(max[i], v)))
        }
        // Only native histograms have these; float series give nothing.
        "histogram_count" | "histogram_sum" | "histogram_fraction" => {
            Ok(Value::Vector(vec![Vec::new(); ctx.count()]))
        }
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month"
        | "month" | "year" => date_function(name, args, ctx),
        _ => match simple_function(name) {
            Some(f) => map_vector(args.vector()?, |v, _| Some(f(v))),
            None => Err(QueryError::BadData(format!(
                "function {name:?} is not supported"
            ))),
        },
    }
}

/// Applies `f(value, step)` to every sample, dropping the metric name;
/// `None` drops the sample.
fn map_vector(
    steps: Vec<Vec<Sample>>,
    f: impl Fn(f64, usize) -> Option<f64>,
) -> Result<Value, QueryError> {
    let mut names = NameDropper::default();
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let mapped: Vec<Sample> = step
            .into_iter()
            .filter_map(|s| {
                f(s.v, i).map(|v| Sample {
                    metric: names.drop(&s.metric),
                    t: s.t,
                    v,
                })
            })
            .collect();
        check_unique(&mapped)?;
        out.push(mapped);
    }
    Ok(Value::Vector(out))
}

fn simple_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * PI / 180.0,
        "deg" => |v| v * 180.0 / PI,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Go's `math.Max`: NaN wins, +Inf wins over NaN.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        return f64::INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b { a } else { b }
}

/// Go's `math.Min`: NaN wins, -Inf wins over NaN.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b { a } else { b }
}

/// What a range function sees at one step.
struct RangeCall<'p> {
    points: &'p [(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_ms: i64,
    ts: i64,
    args: &'p [f64],
}

type RangeFn = fn(&RangeCall<'_>) -> Result<Option<f64>, QueryError>;

fn range_function(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |c| Ok(extrapolated_rate(c, true, true)),
        "increase" => |c| Ok(extrapolated_rate(c, true, false)),
        "delta" => |c| Ok(extrapolated_rate(c, false, false)),
        "irate" => |c| Ok(instant_value(c.points, true)),
        "idelta" => |c| Ok(instant_value(c.points, false)),
        "deriv" => {
            |c| Ok((c.points.len() >= 2).then(|| linear_regression(c.points, c.points[0].0).0))
        }
        "predict_linear" => |c| {
            Ok((c.points.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(c.points, c.ts);
                slope * c.args[0] + intercept
            }))
        },
        "resets" => |c| {
            let n = c.points.windows(2).filter(|w| w[1].1 < w[0].1).count();
            Ok(Some(n as f64))
        },
        "changes" => |c| {
            let n = c
                .points
                .windows(2)
                .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                .count();
            Ok(Some(n as f64))
        },
        "avg_over_time" => |c| Ok(Some(avg(c.points))),
        "sum_over_time" => |c| Ok(Some(kahan_sum(c.points.iter().map(|p| p.1)))),
        "count_over_time" => |c| Ok(Some(c.points.len() as f64)),
        "last_over_time" => |c| Ok(c.points.last().map(|p| p.1)),
        "present_over_time" | "absent_over_time" => |_| Ok(Some(1.0)),
        "max_over_time" => |c| {
            let mut max = c.points[0].1;
            for p in c.points {
                if p.1 > max || max.is_nan() {
                    max = p.1;
                }
            }
            Ok(Some(max))
        },
        "min_over_time" => |c| {
            let mut min = c.points[0].1;
            for p in c.points {
                if p.1 < min || min.is_nan() {
                    min = p.1;
                }
            }
            Ok(Some(min))
        },
        "stddev_over_time" => |c| Ok(Some(variance(c.points).sqrt())),
        "stdvar_over_time" => |c| Ok(Some(variance(c.points))),
        "quantile_over_time" => |c| {
            let mut values: Vec<f64> = c.points.iter().map(|p| p.1).collect();
            Ok(Some(quantile(c.args[0], &mut values)))
        },
        "holt_winters" | "double_exponential_smoothing" => holt_winters,
        _ => return None,
    })
}

/// A range function's arguments: the range vector, and the scalars
/// before and after it (`quantile_over_time`'s φ comes first).
fn range_call(
    name: &str,
    f: RangeFn,
    mut args: Args<'_>,
    ctx: &FnContext<'_>,
) -> Result<Value, QueryError> {
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    if name == "quantile_over_time" {
        scalars.push(args.scalar()?);
    }
    let input = args.range()?;
    while !args.is_empty() {
        scalars.push(args.scalar()?);
    }
    let steps = ctx.count();
    if name == "absent_over_time" {
        return Ok(absent_over_time(&input, ctx));
    }
    let mut out: Vec<Vec<Sample>> = vec![Vec::new(); steps];
    let mut step_args = vec![0.0; scalars.len()];
    for series in &input.series {
        let metric = if name == "last_over_time" {
            series.metric.clone()
        } else {
            Arc::new(series.metric.without_metric_name())
        };
        let mut produced = 0;
        // One series' windows can be billions of points (a subquery of a
        // subquery): the deadline is checked every so many of them.
        let mut unchecked = 0usize;
        for (i, &(mint, maxt)) in input.windows.iter().enumerate() {
            let points = window(&series.points, mint, maxt);
            unchecked += points.len() + 1;
            if unchecked > 1 << 16 {
                unchecked = 0;
                ctx.steps.budget.check_time()?;
            }
            if points.is_empty() {
                continue;
            }
            for (a, s) in step_args.iter_mut().zip(&scalars) {
                *a = s[i];
            }
            let call = RangeCall {
                points,
                range_start: mint,
                range_end: maxt,
                range_ms: input.range_ms,
                ts: ctx.ts(i),
                args: &step_args,
            };
            if let Some(v) = f(&call)? {
                out[i].push(Sample {
                    metric: metric.clone(),
                    t: ctx.ts(i),
                    v,
                });
                produced += 1;
            }
        }
        ctx.steps.budget.take(produced)?;
        ctx.steps.budget.check_time()?;
    }
    for step in &out {
        check_unique(step)?;
    }
    Ok(Value::Vector(out))
}

/// `rate`, `increase` and `delta`: the change over the window,
/// extrapolated to the window's edges unless the series starts or ends
/// well inside it (Prometheus' `extrapolatedRate`).
fn extrapolated_rate(c: &RangeCall<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let p = c.points;
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for &(_, v) in &p[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut duration_to_start = (first.0 - c.range_start) as f64 / 1000.0;
    let duration_to_end = (c.range_end - last.0) as f64 / 1000.0;
    let sampled_interval = (last.0 - first.0) as f64 / 1000.0;
    let average_between = sampled_interval / (p.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let duration_to_zero = sampled_interval * (first.1 / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_between / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_between / 2.0
    };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= c.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(p: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut v = if is_rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Neumaier's compensated summation step, as Prometheus' `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn kahan_sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

fn avg(points: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in points {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn variance(points: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in points {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Least-squares slope and the intercept at `intercept_time`.
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let init_y = points[0].1;
    let mut const_y = true;
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut cxy, mut sum_x2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sum_x, cx) = kahan_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_inc(v, sum_y, cy);
        (sum_xy, cxy) = kahan_inc(x * v, sum_xy, cxy);
        (sum_x2, cx2) = kahan_inc(x * x, sum_x2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn holt_winters(c: &RangeCall<'_>) -> Result<Option<f64>, QueryError> {
    let (sf, tf) = (c.args[0], c.args[1]);
    if sf <= 0.0 || sf >= 1.0 {
        return Err(QueryError::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(QueryError::Execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    let p = c.points;
    if p.len() < 2 {
        return Ok(None);
    }
    let trend = |i: usize, s0: f64, s1: f64, b: f64| {
        if i == 0 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        }
    };
    let (mut s0, mut s1, mut b) = (0.0, p[0].1, p[1].1 - p[0].1);
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        b = trend(i - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Ok(Some(s1))
}

fn absent_over_time(input: &RangeVector, ctx: &FnContext<'_>) -> Value {
    let labels = absent_labels(ctx.exprs[0]);
    let out = input
        .windows
        .iter()
        .enumerate()
        .map(|(i, &(mint, maxt))| {
            let present = input
                .series
                .iter()
                .any(|s| !window(&s.points, mint, maxt).is_empty());
            if present {
                Vec::new()
            } else {
                vec![Sample {
                    metric: labels.clone(),
                    t: ctx.ts(i),
                    v: 1.0,
                }]
            }
        })
        .collect();
    Value::Vector(out)
}

/// The labels `absent()` reports: the selector's `=` matchers (a label
/// matched twice is dropped, as in Prometheus).
fn absent_labels(arg: &Expr) -> Metric {
    let vs = match unparen(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Arc::new(Labels::new()),
    };
    let Ok(ms) = matchers(vs) else {
        return Arc::new(Labels::new());
    };
    let mut out = Labels::new();
    let mut seen = std::collections::HashSet::new();
    for m in ms.iter().filter(|m| m.name != METRIC_NAME) {
        if m.is_equal() && seen.insert(m.name.clone()) {
            out.insert(m.name.clone(), m.value.clone());
        } else {
            out = out.without(&[&m.name]);
        }
    }
    Arc::new(out)
}

fn absent(steps: Vec<Vec<Sample>>, ctx: &FnContext<'_>) -> Result<Value, QueryError> {
    let labels = absent_labels(ctx.exprs[0]);
    Ok(Value::Vector(
        steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                if s.is_empty() {
                    vec![Sample {
                        metric: labels.clone(),
                        t: ctx.ts(i),
                        v: 1.0,
                    }]
                } else {
                    Vec::new()
                }
            })
            .collect(),
    ))
}

/// The time of each sample: a selector's samples come with their own
/// times (see the evaluator), anything else with the step's.
fn timestamp(steps: Vec<Vec<Sample>>, ctx: &FnContext<'_>) -> Result<Value, QueryError> {
    let mut names = NameDropper::default();
    let out: Vec<Vec<Sample>> = steps
        .into_iter()
        .enumerate()
        .map(|(i, step)| {
            step.into_iter()
                .map(|s| Sample {
                    metric: names.drop(&s.metric),
                    t: ctx.ts(i),
                    v: s.t as f64 / 1000.0,
                })
                .collect()
        })
        .collect();
    for step in &out {
        check_unique(step)?;
    }
    Ok(Value::Vector(out))
}

/// Applies a label rewrite to every sample, computing it once per input
/// label set.
fn relabel(steps: Vec<Vec<Sample>>, f: impl Fn(&Labels) -> Labels) -> Result<Value, QueryError> {
    let mut cache: std::collections::HashMap<usize, Metric> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let mapped: Vec<Sample> = step
            .into_iter()
            .map(|s| Sample {
                metric: cache
                    .entry(Arc::as_ptr(&s.metric) as usize)
                    .or_insert_with(|| Arc::new(f(&s.metric)))
                    .clone(),
                t: s.t,
                v: s.v,
            })
            .collect();
        check_unique(&mapped)?;
        out.push(mapped);
    }
    Ok(Value::Vector(out))
}

fn label_replace(mut args: Args<'_>) -> Result<Value, QueryError> {
    let steps = args.vector()?;
    let (dst, repl, src, re) = (
        args.string()?,
        args.string()?,
        args.string()?,
        args.string()?,
    );
    let regex = Regex::new(&format!("^(?:{re})$")).map_err(|_| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {re}"
        ))
    })?;
    if !is_valid_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    relabel(steps, move |labels| {
        let value = labels.get(&src).unwrap_or_default();
        let Some(caps) = regex.captures(value) else {
            return labels.clone();
        };
        let mut res = String::new();
        caps.expand(&repl, &mut res);
        labels.with(&dst, &res)
    })
}

fn label_join(mut args: Args<'_>) -> Result<Value, QueryError> {
    let steps = args.vector()?;
    let dst = args.string()?;
    let sep = args.string()?;
    let mut srcs = Vec::new();
    while !args.is_empty() {
        let src = args.string()?;
        if !is_valid_name(&src) {
            return Err(QueryError::Execution(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        srcs.push(src);
    }
    if !is_valid_name(&dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    relabel(steps, move |labels| {
        let joined: Vec<&str> = srcs
            .iter()
            .map(|s| labels.get(s).unwrap_or_default())
            .collect();
        labels.with(&dst, &joined.join(&sep))
    })
}

fn histogram_quantile(mut args: Args<'_>, ctx: &FnContext<'_>) -> Result<Value, QueryError> {
    let q = args.scalar()?;
    let steps = args.vector()?;
    let mut signatures: std::collections::HashMap<usize, (Labels, Metric)> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let mut groups: Vec<(Metric, Vec<(f64, f64)>)> = Vec::new();
        let mut by_sig: std::collections::HashMap<Labels, usize> = std::collections::HashMap::new();
        for s in step {
            let Some(le) = s.metric.get("le").and_then(parse_go_float) else {
                continue;
            };
            let (sig, metric) = signatures
                .entry(Arc::as_ptr(&s.metric) as usize)
                .or_insert_with(|| {
                    (
                        s.metric.without(&["le"]),
                        Arc::new(s.metric.without(&["le", METRIC_NAME])),
                    )
                })
                .clone();
            let g = *by_sig.entry(sig).or_insert_with(|| {
                groups.push((metric, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push((le, s.v));
        }
        let samples: Vec<Sample> = groups
            .into_iter()
            .map(|(metric, mut buckets)| Sample {
                metric,
                t: ctx.ts(i),
                v: bucket_quantile(q[i], &mut buckets),
            })
            .collect();
        check_unique(&samples)?;
        out.push(samples);
    }
    Ok(Value::Vector(out))
}

/// Go's `strconv.ParseFloat` on a bucket bound: also `+Inf`, `Inf`.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `sort`/`sort_desc`: by value, NaN last either way.
fn sort_by_value(v: &mut [Sample], desc: bool) {
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if desc => b.v.partial_cmp(&a.v).expect("no NaN"),
        _ => a.v.partial_cmp(&b.v).expect("no NaN"),
    });
}

fn date_function(name: &str, mut args: Args<'_>, ctx: &FnContext<'_>) -> Result<Value, QueryError> {
    let f = |secs: i64| -> f64 {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        match name {
            "minute" => ((sod % 3600) / 60) as f64,
            "hour" => (sod / 3600) as f64,
            "day_of_week" => (days + 4).rem_euclid(7) as f64,
            "day_of_month" => d as f64,
            "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
            "days_in_month" => {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as f64
            }
            "month" => m as f64,
            _ => y as f64,
        }
    };
    if !args.is_empty() {
        return map_vector(args.vector()?, |v, _| Some(f(v as i64)));
    }
    let empty: Metric = Arc::new(Labels::new());
    Ok(Value::Vector(
        (0..ctx.count())
            .map(|i| {
                vec![Sample {
                    metric: empty.clone(),
                    t: ctx.ts(i),
                    v: f(ctx.ts(i).div_euclid(1000)),
                }]
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(points: &[(i64, f64)], start: i64, end: i64) -> RangeCall<'_> {
        RangeCall {
            points,
            range_start: start,
            range_end: end,
            range_ms: end - start,
            ts: end,
            args: &[],
        }
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // A counter growing 1/s, sampled every 10 s, window 60 s.
        let points: Vec<(i64, f64)> = (1..=6)
            .map(|i| (i * 10_000 - 5_000, (i * 10) as f64))
            .collect();
        let c = call(&points, 0, 60_000);
        // 50 increase over 50 s, extrapolated by 5 s at each end (both
        // under 1.1 × the 10 s spacing); zero point caps the start at 5 s.
        let increase = extrapolated_rate(&c, true, false).unwrap();
        assert!((increase - 60.0).abs() < 1e-9, "{increase}");
        assert!((extrapolated_rate(&c, true, true).unwrap() - 1.0).abs() < 1e-12);
        // A reset adds the value before it.
        let reset = [(0, 10.0), (10_000, 20.0), (20_000, 5.0)];
        assert_eq!(
            extrapolated_rate(&call(&reset, 0, 20_000), true, false),
            Some(15.0)
        );
        assert_eq!(
            extrapolated_rate(&call(&reset[..1], 0, 20_000), true, false),
            None
        );
    }

    #[test]
    fn go_min_max_semantics() {
        assert!(go_max(1.0, f64::NAN).is_nan());
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert_eq!(go_min(2.0, 1.0), 1.0);
    }

    #[test]
    fn deriv_of_a_constant_is_zero() {
        let p = [(0, 5.0), (1000, 5.0), (2000, 5.0)];
        assert_eq!(linear_regression(&p, 0), (0.0, 5.0));
        let p = [(0, 0.0), (1000, 2.0), (2000, 4.0)];
        assert!((linear_regression(&p, 0).0 - 2.0).abs() < 1e-12);
    }
}
