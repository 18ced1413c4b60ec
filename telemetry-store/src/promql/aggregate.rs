//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`,
//! `count_values`, ...) with `by`/`without`, per step, using Prometheus'
//! running formulas so results agree to the last bits that matter.

use std::collections::HashMap;
use std::sync::Arc;

use conduit_api::Labels;
use conduit_api::labels::is_valid_name;
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::quantile::quantile;
use super::selector::unparen;
use super::value::{Metric, Sample, Value, format_float};
use super::{QueryError, Steps};
use crate::series::{LabelsExt, METRIC_NAME};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

/// The grouping clause: `by (…)` keeps, `without (…)` drops.
struct Grouping {
    without: bool,
    labels: Vec<String>,
}

impl Grouping {
    fn key(&self, metric: &Labels) -> Labels {
        let names: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        if self.without {
            let mut names = names;
            names.push(METRIC_NAME);
            metric.without(&names)
        } else {
            metric.keep(&names)
        }
    }
}

struct Group {
    metric: Metric,
    value: f64,
    mean: f64,
    count: usize,
    heap: Vec<Sample>,
    values: Vec<f64>,
}

/// An aggregation with its grouping and label parameter, checked before
/// its operands are evaluated.
pub(crate) struct Aggregation {
    op: Op,
    grouping: Grouping,
    /// `count_values`' label.
    value_label: String,
}

impl Aggregation {
    pub(crate) fn new(a: &AggregateExpr) -> Result<Self, QueryError> {
        let op = match a.op.to_string().as_str() {
            "sum" => Op::Sum,
            "avg" => Op::Avg,
            "count" => Op::Count,
            "min" => Op::Min,
            "max" => Op::Max,
            "group" => Op::Group,
            "stddev" => Op::Stddev,
            "stdvar" => Op::Stdvar,
            "topk" => Op::Topk,
            "bottomk" => Op::Bottomk,
            "quantile" => Op::Quantile,
            "count_values" => Op::CountValues,
            other => {
                return Err(QueryError::BadData(format!(
                    "aggregation {other:?} is not supported"
                )));
            }
        };
        let grouping = match &a.modifier {
            None => Grouping {
                without: false,
                labels: Vec::new(),
            },
            Some(LabelModifier::Include(l)) => Grouping {
                without: false,
                labels: l.labels.clone(),
            },
            Some(LabelModifier::Exclude(l)) => Grouping {
                without: true,
                labels: l.labels.clone(),
            },
        };
        let value_label = match &a.param {
            Some(p) if op == Op::CountValues => count_values_label(p)?,
            _ => String::new(),
        };
        Ok(Self {
            op,
            grouping,
            value_label,
        })
    }

    /// Whether its parameter is a number (`topk`'s k, `quantile`'s φ),
    /// evaluated like any operand.
    pub(crate) fn takes_number(&self) -> bool {
        self.op != Op::CountValues
    }

    /// The aggregation of each step's vector; `params` holds the number
    /// parameter's value per step, when it has one.
    pub(crate) fn apply(
        &self,
        params: &[f64],
        steps: Vec<Vec<Sample>>,
        at: &Steps<'_>,
    ) -> Result<Value, QueryError> {
        let mut keys = KeyCache::default();
        let mut out = Vec::with_capacity(steps.len());
        for (i, step) in steps.into_iter().enumerate() {
            let param = params.get(i).copied().unwrap_or(0.0);
            let t = at.ts(i);
            let samples = match self.op {
                Op::CountValues => count_values(&self.grouping, &self.value_label, step, t),
                op => aggregate_step(op, &self.grouping, param, step, t, &mut keys)?,
            };
            at.budget.take(samples.len())?;
            out.push(samples);
        }
        Ok(Value::Vector(out))
    }
}

fn count_values_label(p: &Expr) -> Result<String, QueryError> {
    let label = match unparen(p) {
        Expr::StringLiteral(s) => s.val.clone(),
        other => {
            return Err(QueryError::BadData(format!(
                "expected a string parameter, got {other}"
            )));
        }
    };
    if !is_valid_name(&label) {
        return Err(QueryError::Execution(format!(
            "invalid label name {label:?}"
        )));
    }
    Ok(label)
}

/// Group keys per input label set, and one shared `Arc` per distinct key
/// so groups are found by pointer.
#[derive(Default)]
struct KeyCache {
    by_input: HashMap<usize, Metric>,
    canonical: HashMap<Labels, Metric>,
}

impl KeyCache {
    fn get(&mut self, grouping: &Grouping, metric: &Metric) -> Metric {
        if let Some(k) = self.by_input.get(&(Arc::as_ptr(metric) as usize)) {
            return k.clone();
        }
        let key = grouping.key(metric);
        let k = self
            .canonical
            .entry(key.clone())
            .or_insert_with(|| Arc::new(key))
            .clone();
        self.by_input
            .insert(Arc::as_ptr(metric) as usize, k.clone());
        k
    }
}

fn aggregate_step(
    op: Op,
    grouping: &Grouping,
    param: f64,
    step: Vec<Sample>,
    t: i64,
    keys: &mut KeyCache,
) -> Result<Vec<Sample>, QueryError> {
    let mut k = 0usize;
    if matches!(op, Op::Topk | Op::Bottomk) {
        if !(param.is_finite() && param > i64::MIN as f64 && param < i64::MAX as f64) {
            return Err(QueryError::Execution(format!(
                "Scalar value {} overflows int64",
                format_float(param)
            )));
        }
        let kk = param as i64;
        if kk < 1 {
            return Ok(Vec::new());
        }
        k = kk as usize;
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for s in step {
        let key = keys.get(grouping, &s.metric);
        let gi = *index
            .entry(Arc::as_ptr(&key) as usize)
            .or_insert(usize::MAX);
        if gi == usize::MAX {
            let mut g = Group {
                metric: key.clone(),
                value: s.v,
                mean: s.v,
                count: 1,
                heap: Vec::new(),
                values: Vec::new(),
            };
            match op {
                Op::Stddev | Op::Stdvar => g.value = 0.0,
                Op::Group => g.value = 1.0,
                Op::Topk | Op::Bottomk => g.heap.push(s),
                Op::Quantile => g.values.push(s.v),
                _ => {}
            }
            index.insert(Arc::as_ptr(&key) as usize, groups.len());
            groups.push(g);
            continue;
        }
        let g = &mut groups[gi];
        match op {
            Op::Sum => g.value += s.v,
            Op::Avg => {
                g.count += 1;
                if g.mean.is_infinite() {
                    if s.v.is_infinite() && (g.mean > 0.0) == (s.v > 0.0) {
                        continue;
                    }
                    if !s.v.is_infinite() && !s.v.is_nan() {
                        continue;
                    }
                }
                let n = g.count as f64;
                g.mean += s.v / n - g.mean / n;
            }
            Op::Max => {
                if g.value < s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            Op::Min => {
                if g.value > s.v || g.value.is_nan() {
                    g.value = s.v;
                }
            }
            Op::Count => g.count += 1,
            Op::Group | Op::CountValues => {}
            Op::Stddev | Op::Stdvar => {
                g.count += 1;
                let delta = s.v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (s.v - g.mean);
            }
            Op::Topk => heap_offer(&mut g.heap, k, s, |a, b| a < b),
            Op::Bottomk => heap_offer(&mut g.heap, k, s, |a, b| a > b),
            Op::Quantile => g.values.push(s.v),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for mut g in groups {
        let v = match op {
            Op::Avg => g.mean,
            Op::Count => g.count as f64,
            Op::Stdvar => g.value / g.count as f64,
            Op::Stddev => (g.value / g.count as f64).sqrt(),
            Op::Quantile => quantile(param, &mut g.values),
            Op::Topk | Op::Bottomk => {
                let desc = op == Op::Topk;
                g.heap.sort_by(|a, b| {
                    let ord = a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal);
                    if desc { ord.reverse() } else { ord }
                });
                out.extend(g.heap.into_iter().map(|s| Sample { t, ..s }));
                continue;
            }
            _ => g.value,
        };
        out.push(Sample {
            metric: g.metric,
            t,
            v,
        });
    }
    Ok(out)
}

/// Offers a sample to a k-sized heap ordered by `less` (the root is the
/// first to go), exactly as Prometheus drives Go's `container/heap` in
/// `topk`/`bottomk`, so ties keep the same series.
fn heap_offer(heap: &mut Vec<Sample>, k: usize, s: Sample, less: fn(f64, f64) -> bool) {
    let better = heap.len() < k || less(heap[0].v, s.v) || heap[0].v.is_nan();
    if !better {
        return;
    }
    if heap.len() == k {
        if k == 1 {
            heap[0] = s;
            return;
        }
        let n = heap.len() - 1;
        heap.swap(0, n);
        heap_down(heap, 0, n, less);
        heap.pop();
    }
    heap.push(s);
    let last = heap.len() - 1;
    heap_up(heap, last, less);
}

fn heap_less(heap: &[Sample], i: usize, j: usize, less: fn(f64, f64) -> bool) -> bool {
    heap[i].v.is_nan() || less(heap[i].v, heap[j].v)
}

fn heap_up(heap: &mut [Sample], mut j: usize, less: fn(f64, f64) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !heap_less(heap, j, i, less) {
            break;
        }
        heap.swap(i, j);
        j = i;
    }
}

fn heap_down(heap: &mut [Sample], mut i: usize, n: usize, less: fn(f64, f64) -> bool) {
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && heap_less(heap, j1 + 1, j1, less) {
            j = j1 + 1;
        }
        if !heap_less(heap, j, i, less) {
            break;
        }
        heap.swap(i, j);
        i = j;
    }
}

fn count_values(grouping: &Grouping, value_label: &str, step: Vec<Sample>, t: i64) -> Vec<Sample> {
    let mut groups: Vec<(Labels, f64)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in step {
        let with_value = s.metric.with(value_label, &format_float(s.v));
        let key = if grouping.without {
            grouping.key(&with_value)
        } else {
            let mut names: Vec<&str> = grouping.labels.iter().map(String::as_str).collect();
            names.push(value_label);
            with_value.keep(&names)
        };
        match index.get(&key) {
            Some(&i) => groups[i].1 += 1.0,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, 1.0));
            }
        }
    }
    groups
        .into_iter()
        .map(|(labels, v)| Sample {
            metric: Arc::new(labels),
            t,
            v,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::promql::{Budget, EngineOptions, Stop};
    use promql_parser::parser::parse;

    fn sample(pairs: &[(&str, &str)], v: f64) -> Sample {
        Sample {
            metric: Arc::new(Labels::try_from_pairs(pairs.iter().copied()).unwrap()),
            t: 0,
            v,
        }
    }

    fn options(max_samples: usize) -> EngineOptions {
        EngineOptions {
            lookback_ms: 300_000,
            max_samples,
            timeout: Duration::from_secs(5),
            default_subquery_step_ms: 60_000,
            text: crate::query_text::TextLimits {
                max_bytes: 1000,
                max_depth: 10,
            },
            max_concurrency: 1,
        }
    }

    /// `query`'s aggregation over one step of `samples`, with `params`.
    fn aggregate(
        query: &str,
        params: &[f64],
        samples: Vec<Sample>,
        max_samples: usize,
    ) -> Result<Vec<(String, f64)>, QueryError> {
        let Ok(Expr::Aggregate(a)) = parse(query) else {
            panic!("{query} is not an aggregation")
        };
        let budget = Budget::new(&options(max_samples), &Stop::after(Duration::from_secs(5)));
        let at = Steps {
            start: 0,
            step: 1,
            count: 1,
            budget: &budget,
        };
        let Value::Vector(out) = Aggregation::new(&a)?.apply(params, vec![samples], &at)? else {
            panic!("a vector")
        };
        Ok(out[0].iter().map(|s| (s.metric.to_string(), s.v)).collect())
    }

    fn pods() -> Vec<Sample> {
        vec![
            sample(&[("__name__", "up"), ("pod", "a"), ("ns", "x")], 1.0),
            sample(&[("__name__", "up"), ("pod", "b"), ("ns", "x")], 2.0),
            sample(&[("__name__", "up"), ("pod", "c"), ("ns", "y")], 6.0),
        ]
    }

    #[test]
    fn sum_by_groups_and_drops_other_labels() {
        let mut got = aggregate("sum by (ns) (up)", &[], pods(), 100).unwrap();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                (r#"{ns="x"}"#.to_string(), 3.0),
                (r#"{ns="y"}"#.to_string(), 6.0)
            ]
        );
    }

    #[test]
    fn topk_keeps_the_series_and_takes_k_from_its_parameter() {
        let got = aggregate("topk(1, up)", &[1.0], pods(), 100).unwrap();
        assert_eq!(
            got,
            [(r#"{__name__="up", ns="y", pod="c"}"#.to_string(), 6.0)]
        );
    }

    #[test]
    fn count_values_checks_its_label_before_any_operand_is_evaluated() {
        let Ok(Expr::Aggregate(a)) = parse(r#"count_values("no such", up)"#) else {
            panic!()
        };
        assert!(matches!(
            Aggregation::new(&a),
            Err(QueryError::Execution(_))
        ));
    }

    #[test]
    fn results_count_against_the_sample_budget() {
        let err = aggregate("sum by (pod) (up)", &[], pods(), 2).unwrap_err();
        assert!(matches!(err, QueryError::Execution(_)), "{err}");
    }
}
