//! What a selector asks storage for, read from its syntax: shared by the
//! evaluator, `absent()`'s labels and the `match[]` parameters of the
//! HTTP API.

use promql_parser::parser::{Expr, VectorSelector};

use super::QueryError;
use crate::series::{METRIC_NAME, Matcher};

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

/// The expression inside any parentheses.
pub(crate) fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}
