//! Limits on the text of a query, checked before any parser sees it.
//!
//! Parsers and evaluators of both query languages the store speaks
//! (PromQL, and tantivy's for the tap history) recurse once per level of
//! nesting, on a thread with a fixed stack: a query of 20 000 nested
//! parentheses, or of 20 000 operators in a row, overflowed it and killed
//! the process. Counting needs no parser: the nesting of a query is at most
//! the brackets around a point plus the operators inside each of them, so
//! that bound is taken from the text in one pass, without recursion.

/// The query language whose text is checked: what quotes, comments and
/// operators look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syntax {
    PromQl,
    Tap,
}

/// How long and how deeply nested a query may be.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TextLimits {
    pub(crate) max_bytes: usize,
    pub(crate) max_depth: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TextError {
    #[error(
        "query is {bytes} bytes long, more than the {max} allowed (--query-max-length): shorten it or split it into several queries"
    )]
    TooLong { bytes: usize, max: usize },
    #[error(
        "query nests at least {depth} levels deep (brackets and operators inside one another), more than the {max} allowed (--query-max-depth): simplify it or split it into several queries"
    )]
    TooDeep { depth: usize, max: usize },
}

impl TextLimits {
    pub(crate) fn check(&self, query: &str, syntax: Syntax) -> Result<(), TextError> {
        if query.len() > self.max_bytes {
            return Err(TextError::TooLong {
                bytes: query.len(),
                max: self.max_bytes,
            });
        }
        let depth = nesting(query, syntax);
        if depth > self.max_depth {
            return Err(TextError::TooDeep {
                depth,
                max: self.max_depth,
            });
        }
        Ok(())
    }
}

/// One bracket level being scanned: its operators, and the deepest
/// bracket inside it.
#[derive(Default)]
struct Group {
    operators: usize,
    deepest_inner: usize,
}

impl Group {
    /// This group's bound: one level for the bracket itself (a
    /// parenthesis, call, selector or range), one per operator, and the
    /// deepest group inside.
    fn depth(&self) -> usize {
        1 + self.operators + self.deepest_inner
    }
}

/// An upper bound on how deeply `query` nests.
pub(crate) fn nesting(query: &str, syntax: Syntax) -> usize {
    let bytes = query.as_bytes();
    let mut open: Vec<Group> = vec![Group::default()];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            // Tap text is scanned whole: its parser reads quotes inside
            // words and regexes as characters, and skipping what a parser
            // reads would undercount.
            b'"' | b'\'' if syntax == Syntax::PromQl => i = skip_string(bytes, i, b, true),
            // An escaped character is never a bracket or an operator in
            // tap text (`path:/\/a\(b.*/` nests nothing).
            b'\\' if syntax == Syntax::Tap => i += 1,
            b'`' if syntax == Syntax::PromQl => i = skip_string(bytes, i, b, false),
            b'#' if syntax == Syntax::PromQl => {
                i = bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| i + p);
            }
            b'(' | b'[' | b'{' => open.push(Group::default()),
            b')' | b']' | b'}' => close(&mut open),
            _ if is_operator(b, syntax) => {
                // `==`, `!=`, `<=`, `=~` are one operator each; `--1` is
                // two unary minuses, two levels.
                let continues = b"=~".contains(&b) && i >= 2 && b"=!<>".contains(&bytes[i - 2]);
                if !continues {
                    top(&mut open).operators += 1;
                }
            }
            _ if is_word(b) => {
                let start = i - 1;
                while bytes.get(i).copied().is_some_and(is_word) {
                    i += 1;
                }
                if is_keyword_operator(&bytes[start..i], syntax) {
                    top(&mut open).operators += 1;
                }
            }
            _ => {}
        }
    }
    // Unclosed brackets are a parse error later; they still count here.
    while open.len() > 1 {
        close(&mut open);
    }
    open[0].operators + open[0].deepest_inner
}

fn top(open: &mut [Group]) -> &mut Group {
    open.last_mut()
        .expect("the outermost group is never closed")
}

fn close(open: &mut Vec<Group>) {
    if open.len() < 2 {
        // A stray closing bracket: the parser reports it.
        return;
    }
    let inner = open.pop().expect("two or more groups").depth();
    let parent = top(open);
    parent.deepest_inner = parent.deepest_inner.max(inner);
}

/// The index after a string that started before `i` with `quote`.
fn skip_string(bytes: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn is_operator(b: u8, syntax: Syntax) -> bool {
    match syntax {
        Syntax::PromQl => b"+-*/%^=!<>~".contains(&b),
        Syntax::Tap => b"+-!".contains(&b),
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'.' || b >= 0x80
}

fn is_keyword_operator(word: &[u8], syntax: Syntax) -> bool {
    let keywords: &[&[u8]] = match syntax {
        Syntax::PromQl => &[b"and", b"or", b"unless", b"atan2"],
        Syntax::Tap => &[b"and", b"or", b"not"],
    };
    keywords.iter().any(|k| k.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_and_operators_on_the_deepest_path() {
        let d = |q| nesting(q, Syntax::PromQl);
        assert_eq!(d("up"), 0);
        assert_eq!(d("1 + 2"), 1);
        assert_eq!(d("a + b * c - d"), 3);
        assert_eq!(d("((1))"), 2);
        assert_eq!(d("sum by (job) (rate(x{a=\"b\"}[5m]))"), 4);
        assert_eq!(d("-(-(-1))"), 5);
        assert_eq!(d("a and b or c unless d"), 3);
        assert_eq!(d("x == bool 1"), 1);
        assert_eq!(d("a != b >= c =~ d"), 3);
        assert_eq!(d("---1"), 3);
        assert_eq!(d("1 >-1"), 2);
        // Inside strings and comments nothing counts.
        assert_eq!(d(r#"{a="((((+++", b='\'(('}"#), 3);
        assert_eq!(d("1 # ((((((\n+ 2"), 1);
        assert_eq!(d("{a=`\\`}"), 2);
        // Unbalanced text still has a bound.
        assert_eq!(d("((((1"), 4);
        assert_eq!(d("1))))"), 0);
        let tap = |q| nesting(q, Syntax::Tap);
        assert_eq!(tap("status:500 AND NOT path:/a"), 2);
        assert_eq!(tap("(a OR (b AND c))"), 4);
        assert_eq!(tap(r#"path:/a'b/ AND ('x')"#), 2);
        // Escaped brackets are characters (a tap filter's path regex).
        assert_eq!(tap(r"path:/\/a\(\(\(\(.*/"), 0);
    }

    #[test]
    fn limits_refuse_long_or_deep_text_with_what_to_do() {
        let limits = TextLimits {
            max_bytes: 100,
            max_depth: 10,
        };
        assert_eq!(limits.check("sum(rate(x[5m]))", Syntax::PromQl), Ok(()));
        let deep = format!("{}1{}", "(".repeat(11), ")".repeat(11));
        let err = limits.check(&deep, Syntax::PromQl).unwrap_err();
        assert_eq!(err, TextError::TooDeep { depth: 11, max: 10 });
        assert!(err.to_string().contains("--query-max-depth"));
        let long = "1+".repeat(60) + "1";
        let err = limits.check(&long, Syntax::PromQl).unwrap_err();
        assert!(matches!(
            err,
            TextError::TooLong {
                bytes: 121,
                max: 100
            }
        ));
        assert!(err.to_string().contains("--query-max-length"));
    }
}
