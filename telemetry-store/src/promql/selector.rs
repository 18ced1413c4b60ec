//! What a selector asks storage for, read from its syntax: shared by the
//! evaluator, `absent()`'s labels and the `match[]` parameters of the
//! HTTP API.

use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};

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

/// The matchers of every selector in an expression, as Prometheus'
/// `ExtractSelectors` finds them (what `/api/v1/query_exemplars` looks up).
pub(crate) fn all_in(expr: &Expr) -> Result<Vec<Vec<Matcher>>, QueryError> {
    struct Collect(Vec<Vec<Matcher>>);
    impl ExprVisitor for Collect {
        type Error = QueryError;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, QueryError> {
            match e {
                Expr::VectorSelector(vs) => self.0.push(matchers(vs)?),
                Expr::MatrixSelector(ms) => self.0.push(matchers(&ms.vs)?),
                _ => {}
            }
            Ok(true)
        }
    }
    let mut c = Collect(Vec::new());
    walk_expr(&mut c, expr)?;
    Ok(c.0)
}

/// The expression inside any parentheses.
pub(crate) fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}
