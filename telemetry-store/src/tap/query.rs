//! Tap queries: tantivy's query syntax, plus `field:prefix*` on exact
//! (untokenized) fields such as `path:/api/vote*`, which tantivy's parser
//! would otherwise read as a regex or refuse. Such terms are rewritten
//! into the equivalent anchored regex before parsing.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery,
};
use tantivy::{Index, Term};

use super::schema::Fields;

/// `field:value*` → `field:/value-escaped.*/` for unquoted values.
pub(crate) fn rewrite_prefixes(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 16);
    let mut in_quotes = false;
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        out.push_str(&rewrite_token(token));
        token.clear();
    };
    for c in q.chars() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if !in_quotes && (c.is_whitespace() || c == '(' || c == ')') {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

fn rewrite_token(token: &str) -> String {
    let (prefix_op, rest) = match token.strip_prefix(['+', '-']) {
        Some(r) => (&token[..1], r),
        None => ("", token),
    };
    let Some((field, value)) = rest.split_once(':') else {
        return token.to_string();
    };
    let valid_field =
        !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let Some(prefix) = value.strip_suffix('*') else {
        return token.to_string();
    };
    if !valid_field
        || prefix.is_empty()
        || prefix.starts_with(['"', '[', '{'])
        || prefix.contains('*')
    {
        return token.to_string();
    }
    let re = conduit_api::tap_filter::escape_regex(prefix);
    format!("{prefix_op}{field}:/{re}.*/")
}

/// Tantivy parses `a AND NOT b` as `+a +(-b)`, and a clause of only
/// exclusions matches nothing; this lifts such exclusions into their
/// parent (`+a -b`), which is what the query means.
fn lift_negations(q: Box<dyn Query>) -> Box<dyn Query> {
    let Some(b) = q.downcast_ref::<BooleanQuery>() else {
        return q;
    };
    let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (occur, sub) in b.clauses() {
        let sub = lift_negations(sub.box_clone());
        if *occur == Occur::Must
            && let Some(inner) = sub.downcast_ref::<BooleanQuery>()
            && !inner.clauses().is_empty()
            && inner.clauses().iter().all(|(o, _)| *o == Occur::MustNot)
        {
            out.extend(inner.clauses().iter().map(|(o, q)| (*o, q.box_clone())));
            continue;
        }
        out.push((*occur, sub));
    }
    Box::new(BooleanQuery::new(out))
}

/// The user's query `q` (everything when empty).
pub(crate) fn parse(index: &Index, fields: &Fields, q: &str) -> Result<Box<dyn Query>, String> {
    if q.trim().is_empty() {
        return Ok(Box::new(AllQuery));
    }
    let mut parser = QueryParser::for_index(index, fields.defaults());
    parser.set_conjunction_by_default();
    parser.allow_regexes();
    let q = rewrite_prefixes(q);
    let parsed = match parser.parse_query(&q) {
        // Only exclusions (`NOT status:200`): exclude from everything.
        Err(QueryParserError::AllButQueryForbidden) => parser.parse_query(&format!("* AND ({q})")),
        other => other,
    };
    Ok(lift_negations(parsed.map_err(|e| e.to_string())?))
}

/// `user` restricted to `start..=end` (Unix ms).
pub(crate) fn between(user: &dyn Query, fields: &Fields, start: i64, end: i64) -> Box<dyn Query> {
    let range = RangeQuery::new(
        Bound::Included(Term::from_field_i64(fields.time, start)),
        Bound::Included(Term::from_field_i64(fields.time, end)),
    );
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, user.box_clone()),
        (Occur::Must, Box::new(range)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_anchored_regexes() {
        assert_eq!(rewrite_prefixes("path:/api/vote*"), r"path:/\/api\/vote.*/");
        assert_eq!(
            rewrite_prefixes("dst_deployment:voting AND (path:/a.b* OR method:GET)"),
            r"dst_deployment:voting AND (path:/\/a\.b.*/ OR method:GET)"
        );
        assert_eq!(rewrite_prefixes("-authority:web*"), "-authority:/web.*/");
        // Left alone: phrases, ranges, regexes, bare words.
        for q in [
            r#"error:"time out"*"#,
            "status:[500 TO 599]",
            "path:/a.*/",
            "vote*",
            "latency_ms:>250",
        ] {
            assert_eq!(rewrite_prefixes(q), q);
        }
    }
}
