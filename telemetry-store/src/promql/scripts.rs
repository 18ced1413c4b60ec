//! A runner for PromQL test scripts in the shape of Prometheus' `.test`
//! files, over an in-memory [`Select`], so a change to the engine is
//! tested in milliseconds instead of against a running Prometheus (which
//! `tests/promql_compat.rs` still does, end to end).
//!
//! The scripts are in `testdata/`, one topic a file:
//!
//! ```text
//! # Comments start with '#'.
//! load 1m                                  # samples 1m apart from time 0
//!     metric{code="200"} 0+10x5 _ 1 stale  # 0 10 20 30 40 50, a gap, 1, a stale marker
//!
//! eval instant at 5m sum(metric)           # expected: one line per sample
//!     {} 50
//!
//! eval_ordered instant at 5m sort(metric)  # the same, in this order
//! eval_fail instant at 5m foo bar          # an error (a line below: its message)
//!
//! eval range from 0 to 2m step 1m metric   # expected: each series' values
//!     metric{code="200"} 0 10 20
//!
//! clear                                    # drops everything loaded
//! ```
//!
//! Values are equal when they agree to 1e-9 relative (NaN equals NaN).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conduit_api::Labels;
use promql_parser::parser::Expr;

use super::value::{QueryValue, STALE_NAN_BITS};
use super::{Engine, EngineOptions, QueryError, Select, Stop};
use crate::model::Sample;
use crate::query_text::TextLimits;
use crate::series::Matcher;
use crate::time::parse_duration_ms;

/// Series held in memory, answering selections as the database does.
#[derive(Default)]
struct Memory {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl Select for Memory {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        for (labels, samples) in &self.series {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                continue;
            }
            let inside: Vec<Sample> = samples
                .iter()
                .copied()
                .filter(|(t, _)| (mint..=maxt).contains(t))
                .collect();
            if !inside.is_empty() {
                f(labels.clone(), inside)?;
            }
        }
        Ok(())
    }
}

/// What a command expects.
enum Expected {
    /// Values by labels: one per sample of a vector, a range vector's
    /// points in order; with `ordered`, in this order.
    Instant {
        samples: Vec<(Labels, Vec<f64>)>,
        ordered: bool,
    },
    /// Each series' values at the steps, `None` where it has none.
    Range(Vec<(Labels, Vec<Option<f64>>)>),
    /// An error, whose message contains this (when given).
    Fail(Option<String>),
    Scalar(f64),
}

struct Eval {
    line: usize,
    query: String,
    /// `(start, end, step)` in ms; an instant query has `start == end`.
    range: (i64, i64, i64),
    instant: bool,
    expected: Expected,
}

/// Runs one script; the error names its line.
fn run_script(text: &str) -> Result<usize, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut memory = Arc::new(Memory::default());
    let mut i = 0;
    let mut evals = 0;
    while i < lines.len() {
        let line = strip_comment(lines[i]);
        let at = |e: String| format!("line {}: {e}", i + 1);
        let body_end = lines[i + 1..]
            .iter()
            .position(|l| !l.starts_with([' ', '\t']) || l.trim().is_empty())
            .map_or(lines.len(), |n| i + 1 + n);
        let body: Vec<&str> = lines[i + 1..body_end]
            .iter()
            .map(|l| strip_comment(l))
            .filter(|l| !l.is_empty())
            .collect();
        if line.is_empty() {
            i += 1;
            continue;
        }
        if line == "clear" {
            memory = Arc::default();
        } else if let Some(step) = line.strip_prefix("load ") {
            let memory = Arc::get_mut(&mut memory).expect("no engine holds it");
            load(memory, step, &body).map_err(at)?;
        } else if line.starts_with("eval") {
            let eval = parse_eval(line, &body, i + 1).map_err(at)?;
            check(&memory, &eval)?;
            evals += 1;
        } else {
            return Err(at(format!("unknown command {line:?}")));
        }
        i = body_end;
    }
    Ok(evals)
}

fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(n) if !line[..n].contains('"') => line[..n].trim(),
        _ => line.trim(),
    }
}

fn load(memory: &mut Memory, step: &str, body: &[&str]) -> Result<(), String> {
    let step = duration(step.trim())?;
    for line in body {
        let (labels, rest) = split_series(line)?;
        let values = series_values(rest)?;
        let samples = memory.series.entry(labels).or_default();
        for (n, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                samples.push((n as i64 * step, v));
            }
        }
    }
    Ok(())
}

fn duration(s: &str) -> Result<i64, String> {
    parse_duration_ms(s).map_err(|e| e.to_string())
}

/// `eval[_ordered|_fail] instant at <t> <query>` or
/// `eval[_fail] range from <t> to <t> step <d> <query>`.
fn parse_eval(line: &str, body: &[&str], at_line: usize) -> Result<Eval, String> {
    let (command, rest) = line.split_once(' ').ok_or("eval needs a query")?;
    let words: Vec<&str> = rest.splitn(7, ' ').collect();
    let (range, instant, query) = match words.as_slice() {
        ["instant", "at", t, query @ ..] => {
            let t = duration(t)?;
            ((t, t, 1), true, query.join(" "))
        }
        ["range", "from", start, "to", end, "step", rest] => {
            let (step, query) = rest.split_once(' ').ok_or("range eval needs a query")?;
            (
                (duration(start)?, duration(end)?, duration(step)?),
                false,
                query.to_string(),
            )
        }
        _ => return Err(format!("cannot read {line:?}")),
    };
    let expected = match command {
        "eval_fail" => Expected::Fail(body.first().map(|m| m.to_string())),
        "eval" | "eval_ordered" if !instant => Expected::Range(
            body.iter()
                .map(|l| {
                    let (labels, rest) = split_series(l)?;
                    Ok((labels, series_values(rest)?))
                })
                .collect::<Result<_, String>>()?,
        ),
        "eval" | "eval_ordered" => match body {
            [only] if is_number(only) => Expected::Scalar(number(only)?),
            _ => Expected::Instant {
                samples: body
                    .iter()
                    .map(|l| {
                        let (labels, rest) = split_series(l)?;
                        let values = rest.split_whitespace().map(number);
                        Ok((labels, values.collect::<Result<_, String>>()?))
                    })
                    .collect::<Result<_, String>>()?,
                ordered: command == "eval_ordered",
            },
        },
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Eval {
        line: at_line,
        query,
        range,
        instant,
        expected,
    })
}

/// Runs `eval` over `memory` and compares.
fn check(memory: &Arc<Memory>, eval: &Eval) -> Result<(), String> {
    let engine = Engine::new(memory.clone(), options());
    let stop = Stop::after(Duration::from_secs(10));
    let (start, end, step) = eval.range;
    let result = if eval.instant {
        engine.instant(&eval.query, start, &stop)
    } else {
        engine.range(&eval.query, (start, end, step), &stop)
    };
    let at = |e: String| format!("line {}: {}: {e}", eval.line, eval.query);
    compare(&eval.expected, result, eval.range).map_err(at)
}

fn options() -> EngineOptions {
    EngineOptions {
        lookback_ms: 300_000,
        max_samples: 1_000_000,
        timeout: Duration::from_secs(10),
        default_subquery_step_ms: 60_000,
        text: TextLimits {
            max_bytes: 4096,
            max_depth: 100,
        },
        max_concurrency: 1,
    }
}

fn compare(
    expected: &Expected,
    result: Result<QueryValue, QueryError>,
    (start, _, step): (i64, i64, i64),
) -> Result<(), String> {
    let value = match (expected, result) {
        (Expected::Fail(None), Err(_)) => return Ok(()),
        (Expected::Fail(Some(m)), Err(e)) if e.to_string().contains(m.as_str()) => return Ok(()),
        (_, Err(e)) => return Err(format!("failed: {e}")),
        (Expected::Fail(_), Ok(v)) => return Err(format!("expected an error, got {v:?}")),
        (_, Ok(v)) => v,
    };
    match (expected, value) {
        (Expected::Scalar(want), QueryValue::Scalar(_, got)) => same_value(*want, got),
        (Expected::Instant { samples, ordered }, QueryValue::Vector(got)) => {
            let got = got.into_iter().map(|(m, _, v)| ((*m).clone(), vec![v]));
            same_samples(samples, got.collect(), *ordered)
        }
        (Expected::Instant { samples, ordered }, QueryValue::Matrix(got)) => {
            let got = got.into_iter().map(|s| {
                let values = s.points.iter().map(|p| p.1).collect();
                ((*s.metric).clone(), values)
            });
            same_samples(samples, got.collect(), *ordered)
        }
        (Expected::Range(series), QueryValue::Matrix(got)) => {
            let got = got
                .into_iter()
                .map(|s| {
                    let mut values = Vec::new();
                    for (t, v) in s.points {
                        let i = ((t - start) / step) as usize;
                        values.resize(i, None);
                        values.push(Some(v));
                    }
                    ((*s.metric).clone(), values)
                })
                .collect();
            same_series(series, got)
        }
        (_, got) => Err(format!("unexpected result {got:?}")),
    }
}

fn same_samples(
    want: &[(Labels, Vec<f64>)],
    mut got: Vec<(Labels, Vec<f64>)>,
    ordered: bool,
) -> Result<(), String> {
    let mut want = want.to_vec();
    if !ordered {
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let same_values =
        |w: &[f64], g: &[f64]| w.len() == g.len() && w.iter().zip(g).all(|(w, g)| same(*w, *g));
    if want.len() != got.len()
        || want
            .iter()
            .zip(&got)
            .any(|(w, g)| w.0 != g.0 || !same_values(&w.1, &g.1))
    {
        return Err(format!("expected {}\ngot      {}", show(&want), show(&got)));
    }
    Ok(())
}

fn same_series(
    want: &[(Labels, Vec<Option<f64>>)],
    got: Vec<(Labels, Vec<Option<f64>>)>,
) -> Result<(), String> {
    let trim = |v: &[Option<f64>]| {
        let end = v.iter().rposition(Option::is_some).map_or(0, |n| n + 1);
        v[..end].to_vec()
    };
    let want: BTreeMap<&Labels, Vec<Option<f64>>> =
        want.iter().map(|(l, v)| (l, trim(v))).collect();
    let got: BTreeMap<&Labels, Vec<Option<f64>>> = got.iter().map(|(l, v)| (l, trim(v))).collect();
    let equal = want.len() == got.len()
        && want.iter().zip(&got).all(|((wl, wv), (gl, gv))| {
            wl == gl
                && wv.len() == gv.len()
                && wv.iter().zip(gv).all(|(w, g)| match (w, g) {
                    (Some(w), Some(g)) => same(*w, *g),
                    (None, None) => true,
                    _ => false,
                })
        });
    if !equal {
        return Err(format!("expected {want:?}\ngot      {got:?}"));
    }
    Ok(())
}

fn same_value(want: f64, got: f64) -> Result<(), String> {
    if !same(want, got) {
        return Err(format!("expected {want}, got {got}"));
    }
    Ok(())
}

fn same(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn show(samples: &[(Labels, Vec<f64>)]) -> String {
    let lines: Vec<String> = samples.iter().map(|(l, v)| format!("{l} {v:?}")).collect();
    format!("[{}]", lines.join(", "))
}

/// A series descriptor (`name{a="b"}`, `{a="b"}`, `name`) and what
/// follows it.
fn split_series(line: &str) -> Result<(Labels, &str), String> {
    let end = match line.find('{') {
        Some(_) => line.find('}').ok_or("unclosed '{'")? + 1,
        None => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    let (descriptor, rest) = line.split_at(end);
    Ok((labels_of(descriptor)?, rest))
}

/// Reads a descriptor with the PromQL parser: its equality matchers are
/// the labels.
fn labels_of(descriptor: &str) -> Result<Labels, String> {
    if descriptor == "{}" {
        return Ok(Labels::new());
    }
    let Ok(Expr::VectorSelector(vs)) = promql_parser::parser::parse(descriptor) else {
        return Err(format!("cannot read the series {descriptor:?}"));
    };
    let mut labels = Labels::new();
    if let Some(name) = &vs.name {
        labels.insert(crate::series::METRIC_NAME, name.clone());
    }
    for m in &vs.matchers.matchers {
        labels.insert(m.name.clone(), m.value.clone());
    }
    Ok(labels)
}

/// Values in Prometheus' series notation: numbers, `_` (no sample),
/// `stale`, `a+bxn` / `a-bxn` (n steps from a), `axn` and `_xn` (n + 1
/// times the same).
fn series_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let Some((head, times)) = word.split_once('x') else {
            out.push(single(word)?);
            continue;
        };
        let times: usize = times
            .parse()
            .map_err(|_| format!("bad count in {word:?}"))?;
        let (first, delta) = match head.rfind(['+', '-']).filter(|&n| n > 0) {
            Some(n) => (&head[..n], number(&head[n..])?),
            None => (head, 0.0),
        };
        let first = single(first)?;
        for k in 0..=times {
            out.push(first.map(|v| v + delta * k as f64));
        }
    }
    Ok(out)
}

fn single(word: &str) -> Result<Option<f64>, String> {
    match word {
        "_" => Ok(None),
        "stale" => Ok(Some(f64::from_bits(STALE_NAN_BITS))),
        w => number(w).map(Some),
    }
}

fn is_number(s: &str) -> bool {
    number(s).is_ok()
}

fn number(s: &str) -> Result<f64, String> {
    match s.trim_start_matches('+') {
        "Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other => other.parse().map_err(|_| format!("not a number: {s:?}")),
    }
}

#[test]
fn scripts_in_testdata_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/promql/testdata");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scripts in {}", dir.display());
    let mut failures = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).expect("script");
        match run_script(&text) {
            Ok(0) => failures.push(format!("{}: no eval", path.display())),
            Ok(_) => {}
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn series_notation_expands_like_prometheus() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let v = series_values("0+10x2 _ 5 1x1 _x1 7-2x1 stale").unwrap();
    let shown: Vec<Option<u64>> = v.iter().map(|v| v.map(f64::to_bits)).collect();
    let want: Vec<Option<f64>> = vec![
        Some(0.0),
        Some(10.0),
        Some(20.0),
        None,
        Some(5.0),
        Some(1.0),
        Some(1.0),
        None,
        None,
        Some(7.0),
        Some(5.0),
        Some(stale),
    ];
    let want: Vec<Option<u64>> = want.iter().map(|v| v.map(f64::to_bits)).collect();
    assert_eq!(shown, want);
}

#[test]
fn a_wrong_expectation_fails_with_its_line() {
    let script = "load 1m\n    m 1 2\n\neval instant at 1m m\n    m 3\n";
    let err = run_script(script).unwrap_err();
    assert!(err.starts_with("line 4: m:"), "{err}");
}
