//! Writing manifest trees as YAML that Kubernetes reads back exactly.
//!
//! Kubernetes parses YAML 1.1, where `yes`, `on`, `0755`, `1_000` and
//! `2024-01-01` are not strings, and a plain scalar loses its trailing
//! spaces. So a string is written plain only when it is unambiguously a
//! string under both YAML 1.1 and 1.2; anything that looks like a number,
//! boolean, null, date or indicator is double-quoted. Multi-line strings
//! (config files in ConfigMaps) are written as `|` blocks so they stay
//! readable. The layout is kubectl's: two-space indents, list items at the
//! indentation of their key.

use crate::value::{Map, Value};

/// One YAML document (without `---`), ending with a newline.
pub(crate) fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Map(m) if !m.is_empty() => map(&mut out, m, 0),
        Value::Seq(s) if !s.is_empty() => seq(&mut out, s, 0),
        scalar => {
            inline(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

fn map(out: &mut String, m: &Map, indent: usize) {
    for (i, (key, value)) in m.iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        key_string(out, key);
        out.push(':');
        value_after_key(out, value, indent);
    }
}

/// A value after `key:` at `indent`: nested collections go on the next
/// lines (lists at the key's own indentation, as kubectl prints them).
fn value_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            map(out, m, indent + 2);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            pad(out, indent);
            seq(out, s, indent);
        }
        scalar => {
            out.push(' ');
            inline(out, scalar, indent + 2);
            out.push('\n');
        }
    }
}

fn seq(out: &mut String, items: &[Value], indent: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        out.push_str("- ");
        match item {
            Value::Map(m) if !m.is_empty() => map(out, m, indent + 2),
            Value::Seq(s) if !s.is_empty() => seq(out, s, indent + 2),
            scalar => {
                inline(out, scalar, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar or an empty collection, on the current line. `indent` is where
/// the lines of a block string go.
fn inline(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => string(out, s, indent),
        Value::Seq(_) => out.push_str("[]"),
        Value::Map(_) => out.push_str("{}"),
    }
}

fn string(out: &mut String, s: &str, indent: usize) {
    if is_plain(s) {
        out.push_str(s);
    } else if is_block(s) {
        block(out, s, indent);
    } else {
        quoted(out, s);
    }
}

/// Keys are never blocks.
fn key_string(out: &mut String, key: &str) {
    if is_plain(key) {
        out.push_str(key);
    } else {
        quoted(out, key);
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A literal block: `|` keeps one final newline, `|-` none, `|+` all.
fn block(out: &mut String, s: &str, indent: usize) {
    let body = s.trim_end_matches('\n');
    out.push_str(match s.len() - body.len() {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    let lines: Vec<&str> = s.split('\n').collect();
    let content = if s.ends_with('\n') {
        &lines[..lines.len() - 1]
    } else {
        &lines[..]
    };
    for line in content {
        out.push('\n');
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
    }
}

/// Multi-line text that a literal block carries exactly: no characters
/// that need escapes, no first line starting with a space (that would need
/// an indentation indicator), and no line of only spaces (a block reads it
/// as empty).
fn is_block(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && s.chars().all(|c| c == '\n' || c == '\t' || is_printable(c))
        && s.split('\n')
            .all(|l| l.is_empty() || !l.trim_start_matches(' ').is_empty())
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_printable(c) => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", u32::from(c))),
        }
    }
    out.push('"');
}

/// YAML 1.1's printable set, minus the byte-order mark.
fn is_printable(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && c != '\u{FEFF}'
}

/// Whether `s` reads back as the same string when written without quotes,
/// under YAML 1.1 and 1.2 alike.
fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // `-` starts a plain scalar when a non-space follows (`--flag`); alone
    // or before a space it starts a list item.
    let dash_flag = first == '-' && s.len() > 1 && !s[1..].starts_with(' ');
    let starts_well =
        first.is_alphanumeric() || matches!(first, '/' | '_' | '.' | '$' | '(') || dash_flag;
    starts_well
        && s.chars().all(|c| c != '\t' && is_printable(c))
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['{', '}', '[', ']', '"', '\'', '`'])
        && !looks_like_number(s)
        && !is_reserved_word(s)
}

/// Numbers, dates and times under YAML 1.1 or 1.2: `1_000`, `0x1F`, `.5`,
/// `1e3`, `12:30` (base 60), `2024-01-01T00:00:00Z`. Erring towards
/// quoting: anything made only of digits and number/date punctuation.
fn looks_like_number(s: &str) -> bool {
    let numeric_start = s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '.' | '+' | '-'));
    let numeric_chars = s.chars().all(|c| {
        c.is_ascii_hexdigit()
            || matches!(
                c,
                '_' | '.' | ':' | '+' | '-' | 'x' | 'X' | 'o' | 'O' | 'T' | 't' | 'Z' | 'z' | ' '
            )
    });
    let special_float = matches!(
        s.trim_start_matches(['+', '-'])
            .to_ascii_lowercase()
            .as_str(),
        ".inf" | ".nan"
    );
    (numeric_start && numeric_chars) || special_float
}

fn is_reserved_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "=" | "<<"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream;
    use crate::value::{map, seq};

    fn round_trip(value: &Value) {
        let text = document(value);
        let back = stream::read("t", &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .remove(0)
            .value;
        assert_eq!(&back, value, "{text}");
    }

    #[test]
    fn strings_kubernetes_would_misread_are_quoted_and_read_back() {
        let tricky = [
            "",
            " lead",
            "trail ",
            "trail\t",
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "true",
            "Null",
            "~",
            "=",
            "<<",
            "0755",
            "0x1F",
            "0o17",
            "0b101",
            "1_000",
            "12:30",
            "1e3",
            ".5",
            "+1",
            "-1",
            "-",
            "- x",
            "1.5e+3",
            ".inf",
            "-.Inf",
            ".NaN",
            "2026-11-20",
            "2026-11-20T09:12:44Z",
            "2026-11-20 09:12:44",
            "0.1.0",
            "8000-8100",
            "a: b",
            "a:",
            "x #y",
            "#x",
            "@x",
            "`x",
            "*x",
            "&x",
            "!x",
            "%x",
            "{x",
            "[x",
            "|",
            ">",
            "'",
            "\"",
            "?",
            "...",
            "---",
            "a\u{7f}b",
            "\u{feff}bom",
            "tab\tin",
            "cr\r\nlf",
            "\u{2028}",
            "é",
            "日本",
            "emoji 🎉",
            "back\\slash",
        ];
        for s in tricky {
            round_trip(&map([("k", s.into())]));
            round_trip(&map([(s, "v".into())]));
        }
    }

    #[test]
    fn everyday_strings_stay_plain() {
        for s in [
            "web",
            "100m",
            "128Mi",
            "25%",
            "10Gi",
            "ghcr.io/x/y:1.2",
            "4190,4191",
            "/healthz",
            "RuntimeDefault",
            "app.kubernetes.io/name",
            "$(DATABASE_URL)",
            "3h",
        ] {
            assert!(is_plain(s), "{s}");
        }
    }

    #[test]
    fn multi_line_strings_are_blocks_that_read_back() {
        for s in [
            "a\nb\n",
            "a\nb",
            "a\nb\n\n\n",
            "a\n\nb\n",
            "  indented\nfirst\n",
            "a\n   \nb\n",
            "tabs\tkept\nx\n",
            "\nleading newline\n",
            "trailing spaces  \nkept\n",
        ] {
            round_trip(&map([("data", map([("file", s.into())]))]));
            round_trip(&map([("list", seq([s]))]));
        }
        let text = document(&map([("f", "a\nb\n".into())]));
        assert_eq!(text, "f: |\n  a\n  b\n");
    }

    #[test]
    fn layout_is_kubectls() {
        let value = map([
            ("apiVersion", "v1".into()),
            (
                "metadata",
                map([("name", "x".into()), ("labels", Map::new().into())]),
            ),
            (
                "spec",
                map([
                    (
                        "ports",
                        seq([map([("port", 80.into()), ("name", "http".into())])]),
                    ),
                    ("args", seq(["a", "b"])),
                    ("nested", seq([seq(["x", "y"]), Value::Seq(vec![])])),
                    ("empty", Value::Seq(vec![])),
                    ("none", Value::Null),
                    (
                        "ratio",
                        Value::Number(serde_json::Number::from_f64(0.5).unwrap()),
                    ),
                ]),
            ),
        ]);
        let text = document(&value);
        assert_eq!(
            text,
            "apiVersion: v1\nmetadata:\n  name: x\n  labels: {}\nspec:\n  ports:\n  - port: 80\n    name: http\n  args:\n  - a\n  - b\n  nested:\n  - - x\n    - \"y\"\n  - []\n  empty: []\n  none: null\n  ratio: 0.5\n"
        );
        round_trip(&value);
    }
}
