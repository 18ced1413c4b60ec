//! Binary operators: arithmetic, comparisons (filtering or `bool`) and
//! set operators between scalars and vectors, with Prometheus' vector
//! matching (`on`, `ignoring`, `group_left`, `group_right`) and its
//! errors for ambiguous matches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use conduit_api::Labels;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::QueryError;
use super::value::{Metric, NameDropper, Sample, Value, check_unique};
use crate::series::{LabelsExt, METRIC_NAME};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Self, QueryError> {
        Ok(match s {
            "+" => Self::Add,
            "-" => Self::Sub,
            "*" => Self::Mul,
            "/" => Self::Div,
            "%" => Self::Mod,
            "^" => Self::Pow,
            "atan2" => Self::Atan2,
            "==" => Self::Eq,
            "!=" => Self::Ne,
            ">" => Self::Gt,
            "<" => Self::Lt,
            ">=" => Self::Ge,
            "<=" => Self::Le,
            "and" => Self::And,
            "or" => Self::Or,
            "unless" => Self::Unless,
            other => {
                return Err(QueryError::BadData(format!(
                    "unsupported operator {other:?}"
                )));
            }
        })
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::Ne | Self::Gt | Self::Lt | Self::Ge | Self::Le
        )
    }

    /// Arithmetic drops the metric name; comparisons and `atan2` keep it.
    fn drops_name(self) -> bool {
        matches!(
            self,
            Self::Add | Self::Sub | Self::Mul | Self::Div | Self::Pow | Self::Mod
        )
    }

    /// The result and whether a comparison keeps the element.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Self::Add => (l + r, true),
            Self::Sub => (l - r, true),
            Self::Mul => (l * r, true),
            Self::Div => (l / r, true),
            Self::Mod => (l % r, true),
            Self::Pow => (l.powf(r), true),
            Self::Atan2 => (l.atan2(r), true),
            Self::Eq => (l, l == r),
            Self::Ne => (l, l != r),
            Self::Gt => (l, l > r),
            Self::Lt => (l, l < r),
            Self::Ge => (l, l >= r),
            Self::Le => (l, l <= r),
            Self::And | Self::Or | Self::Unless => (f64::NAN, false),
        }
    }
}

/// How the two sides are matched.
struct Matching {
    card: VectorMatchCardinality,
    /// `on (…)` rather than `ignoring (…)`.
    on: bool,
    labels: Vec<String>,
}

impl Matching {
    fn signature(&self, m: &Labels) -> Labels {
        let names: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        if self.on {
            m.keep(&names)
        } else {
            let mut names = names;
            names.push(METRIC_NAME);
            m.without(&names)
        }
    }

    fn include(&self) -> &[String] {
        match &self.card {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
                &l.labels
            }
            _ => &[],
        }
    }
}

/// A binary expression's operator and modifiers, checked before its
/// operands are evaluated.
pub(crate) struct Binary<'e> {
    op: Op,
    return_bool: bool,
    expr: &'e BinaryExpr,
}

impl<'e> Binary<'e> {
    pub(crate) fn new(b: &'e BinaryExpr) -> Result<Self, QueryError> {
        let op = Op::parse(&b.op.to_string())?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        if let Some(m) = &b.modifier
            && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
        {
            return Err(QueryError::BadData(
                "fill modifiers are not supported".into(),
            ));
        }
        Ok(Self {
            op,
            return_bool,
            expr: b,
        })
    }

    /// The operator applied to its evaluated operands.
    pub(crate) fn apply(self, lhs: Value, rhs: Value) -> Result<Value, QueryError> {
        apply(self.op, self.return_bool, self.expr, lhs, rhs)
    }
}

fn apply(
    op: Op,
    return_bool: bool,
    b: &BinaryExpr,
    lhs: Value,
    rhs: Value,
) -> Result<Value, QueryError> {
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            l.into_iter()
                .zip(r)
                .map(|(l, r)| {
                    let (v, keep) = op.apply(l, r);
                    if op.is_comparison() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Value::Vector(l), Value::Scalar(r)) => vector_scalar(op, l, &r, false, return_bool),
        (Value::Scalar(l), Value::Vector(r)) => vector_scalar(op, r, &l, true, return_bool),
        (Value::Vector(l), Value::Vector(r)) => {
            let default_card = if matches!(op, Op::And | Op::Or | Op::Unless) {
                VectorMatchCardinality::ManyToMany
            } else {
                VectorMatchCardinality::OneToOne
            };
            let (card, matching) = match &b.modifier {
                Some(m) => {
                    let card = match (&m.card, op) {
                        (VectorMatchCardinality::OneToOne, Op::And | Op::Or | Op::Unless) => {
                            VectorMatchCardinality::ManyToMany
                        }
                        (c, _) => c.clone(),
                    };
                    (card, m.matching.clone())
                }
                None => (default_card, None),
            };
            let (on, labels) = match matching {
                Some(LabelModifier::Include(l)) => (true, l.labels),
                Some(LabelModifier::Exclude(l)) => (false, l.labels),
                None => (false, Vec::new()),
            };
            let m = Matching { card, on, labels };
            vector_vector(op, l, r, &m, return_bool)
        }
        _ => Err(QueryError::BadData(
            "binary expression must contain only scalar and instant vector types".into(),
        )),
    }
}

fn vector_scalar(
    op: Op,
    vec: Vec<Vec<Sample>>,
    scalar: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<Value, QueryError> {
    let mut names = NameDropper::default();
    let mut out = Vec::with_capacity(vec.len());
    for (i, step) in vec.into_iter().enumerate() {
        let r = scalar[i];
        let mut result = Vec::with_capacity(step.len());
        for s in step {
            let (lv, rv) = if swap { (r, s.v) } else { (s.v, r) };
            let (mut value, mut keep) = op.apply(lv, rv);
            if op.is_comparison() && swap {
                value = rv;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                let metric = if op.drops_name() || return_bool {
                    names.drop(&s.metric)
                } else {
                    s.metric
                };
                result.push(Sample {
                    metric,
                    t: s.t,
                    v: value,
                });
            }
        }
        check_unique(&result)?;
        out.push(result);
    }
    Ok(Value::Vector(out))
}

/// Signatures per input label set, computed once per series.
struct Signatures<'m> {
    matching: &'m Matching,
    cache: HashMap<usize, Arc<Labels>>,
}

impl<'m> Signatures<'m> {
    fn of(&mut self, m: &Metric) -> Arc<Labels> {
        self.cache
            .entry(Arc::as_ptr(m) as usize)
            .or_insert_with(|| Arc::new(self.matching.signature(m)))
            .clone()
    }
}

fn vector_vector(
    op: Op,
    lhs: Vec<Vec<Sample>>,
    rhs: Vec<Vec<Sample>>,
    m: &Matching,
    return_bool: bool,
) -> Result<Value, QueryError> {
    let mut sigs = Signatures {
        matching: m,
        cache: HashMap::new(),
    };
    let mut results: HashMap<(usize, usize), Metric> = HashMap::new();
    let mut out = Vec::with_capacity(lhs.len());
    for (l, r) in lhs.into_iter().zip(rhs) {
        let step = match op {
            Op::And | Op::Or | Op::Unless => set_op(op, l, r, &mut sigs),
            _ => match_step(op, l, r, m, return_bool, &mut sigs, &mut results)?,
        };
        check_unique(&step)?;
        out.push(step);
    }
    Ok(Value::Vector(out))
}

fn set_op(op: Op, lhs: Vec<Sample>, rhs: Vec<Sample>, sigs: &mut Signatures<'_>) -> Vec<Sample> {
    match op {
        Op::And => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let right: HashSet<Arc<Labels>> = rhs.iter().map(|s| sigs.of(&s.metric)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&sigs.of(&s.metric)))
                .collect()
        }
        Op::Or => {
            if lhs.is_empty() || rhs.is_empty() {
                return lhs.into_iter().chain(rhs).collect();
            }
            let left: HashSet<Arc<Labels>> = lhs.iter().map(|s| sigs.of(&s.metric)).collect();
            let extra: Vec<Sample> = rhs
                .into_iter()
                .filter(|s| !left.contains(&sigs.of(&s.metric)))
                .collect();
            lhs.into_iter().chain(extra).collect()
        }
        _ => {
            if lhs.is_empty() || rhs.is_empty() {
                return lhs;
            }
            let right: HashSet<Arc<Labels>> = rhs.iter().map(|s| sigs.of(&s.metric)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&sigs.of(&s.metric)))
                .collect()
        }
    }
}

/// One step of an arithmetic or comparison operator between vectors.
fn match_step(
    op: Op,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &Matching,
    return_bool: bool,
    sigs: &mut Signatures<'_>,
    results: &mut HashMap<(usize, usize), Metric>,
) -> Result<Vec<Sample>, QueryError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    // The right side is always the "one" side below.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<Arc<Labels>, Sample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = sigs.of(&s.metric);
        if let Some(dup) = one_by_sig.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                s.metric, dup.metric
            )));
        }
        one_by_sig.insert(sig, s);
    }
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<Arc<Labels>, HashSet<Metric>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = sigs.of(&ls.metric);
        let Some(rs) = one_by_sig.get(&sig) else {
            continue;
        };
        let (vl, vr) = if one_to_many {
            (rs.v, ls.v)
        } else {
            (ls.v, rs.v)
        };
        let (mut value, keep) = op.apply(vl, vr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut metric = results
            .entry((
                Arc::as_ptr(&ls.metric) as usize,
                Arc::as_ptr(&rs.metric) as usize,
            ))
            .or_insert_with(|| Arc::new(result_metric(&ls.metric, &rs.metric, op, m)))
            .clone();
        if return_bool {
            metric = Arc::new(metric.without_metric_name());
        }
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            seen.insert(metric.clone());
        } else if !seen.insert(metric.clone()) {
            return Err(QueryError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample {
            metric,
            t: ls.t,
            v: value,
        });
    }
    Ok(out)
}

/// The output labels: from the "many" side, minus the name for
/// arithmetic, narrowed to the matching labels for one-to-one, plus the
/// `group_x` labels taken from the "one" side.
fn result_metric(many: &Labels, one: &Labels, op: Op, m: &Matching) -> Labels {
    let mut out = if op.drops_name() {
        many.without_metric_name()
    } else {
        many.clone()
    };
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        let names: Vec<&str> = m.labels.iter().map(String::as_str).collect();
        out = if m.on {
            out.keep(&names)
        } else {
            out.without(&names)
        };
    }
    for name in m.include() {
        out = out.with(name, one.get(name).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser::{Expr, parse};

    fn sample(pairs: &[(&str, &str)], v: f64) -> Sample {
        Sample {
            metric: Arc::new(Labels::try_from_pairs(pairs.iter().copied()).unwrap()),
            t: 0,
            v,
        }
    }

    /// The operator of `query`, applied to operands given as values.
    fn apply(query: &str, lhs: Value, rhs: Value) -> Result<Value, QueryError> {
        let Ok(Expr::Binary(b)) = parse(query) else {
            panic!("{query} is not a binary expression")
        };
        Binary::new(&b)?.apply(lhs, rhs)
    }

    /// Operands come evaluated: no storage, no evaluator.
    #[test]
    fn group_left_divides_each_by_its_group() {
        let lhs = vec![vec![
            sample(&[("__name__", "req"), ("pod", "a"), ("ns", "x")], 1.0),
            sample(&[("__name__", "req"), ("pod", "b"), ("ns", "x")], 3.0),
        ]];
        let rhs = vec![vec![sample(&[("ns", "x")], 4.0)]];
        let query = "req / on (ns) group_left total";
        let Value::Vector(out) = apply(query, Value::Vector(lhs), Value::Vector(rhs)).unwrap()
        else {
            panic!("a vector")
        };
        let got: Vec<(String, f64)> = out[0].iter().map(|s| (s.metric.to_string(), s.v)).collect();
        assert_eq!(
            got,
            [
                (r#"{ns="x", pod="a"}"#.to_string(), 0.25),
                (r#"{ns="x", pod="b"}"#.to_string(), 0.75)
            ]
        );
    }

    #[test]
    fn many_to_many_is_refused() {
        let side = || {
            Value::Vector(vec![vec![
                sample(&[("pod", "a"), ("ns", "x")], 1.0),
                sample(&[("pod", "b"), ("ns", "x")], 2.0),
            ]])
        };
        let Err(err) = apply("l + on (ns) r", side(), side()) else {
            panic!("refused")
        };
        assert!(err.to_string().contains("many-to-many"), "{err}");
    }

    #[test]
    fn scalar_comparisons_answer_zero_or_one() {
        let out = apply(
            "1 < bool 2",
            Value::Scalar(vec![1.0, 3.0]),
            Value::Scalar(vec![2.0, 2.0]),
        );
        let Ok(Value::Scalar(v)) = out else {
            panic!("a scalar")
        };
        assert_eq!(v, [1.0, 0.0]);
    }
}
