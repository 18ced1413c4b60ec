//! Manifest streams as `kubectl apply -f` reads them: YAML documents
//! separated by `---` (comments allowed), or JSON (one object, or several
//! concatenated as `jq -c` prints them), where a document may be a `List`
//! of objects.
//!
//! Every object keeps its [`Origin`] (file, document number, line, List
//! item) so an error can point at the object that caused it. Comments are
//! not kept: output is re-emitted from the parsed values.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::value::{Key, Map, Value, ValueVisitor};

/// Where an object or an error is in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// A file name, or `<stdin>`.
    pub source: String,
    /// 1-based, counting only documents with content.
    pub document: usize,
    /// 1-based index in the document's `items` when the document is a List.
    pub item: Option<usize>,
    /// 1-based line, when known.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.source, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " (line {line}, column {column})"),
            (Some(line), None) => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

/// An input that is not a manifest stream, or an object inject cannot
/// handle; says where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: {message}")]
pub struct ManifestError {
    pub origin: Origin,
    pub message: String,
}

/// One document of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub origin: Origin,
    pub value: Value,
    /// For a List read from YAML, the line of each item.
    item_lines: Vec<u64>,
}

impl Document {
    /// A List document (`kind: List`, `kind: DeploymentList`, ...) holds
    /// its objects in `items`.
    pub fn is_list(&self) -> bool {
        self.value
            .str_at(&["kind"])
            .is_some_and(|kind| kind.ends_with("List"))
            && self.value.get_path(&["items"]).is_some()
    }

    /// Calls `f` on every object of the document, with its origin: the
    /// document itself, or each item of a List. Stops at the first error.
    pub fn try_for_each_object<E>(
        &mut self,
        mut f: impl FnMut(&Origin, &mut Value) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.is_list() {
            return f(&self.origin, &mut self.value);
        }
        let origin = self.origin.clone();
        let lines = &self.item_lines;
        let Some(items) = self
            .value
            .get_path_mut(&["items"])
            .and_then(Value::as_seq_mut)
        else {
            // `items: null` is an empty List.
            return Ok(());
        };
        for (i, item) in items.iter_mut().enumerate() {
            let item_origin = Origin {
                item: Some(i + 1),
                line: lines.get(i).copied().or(origin.line),
                column: None,
                ..origin.clone()
            };
            f(&item_origin, item)?;
        }
        Ok(())
    }
}

/// Reads a manifest stream. `source` names it in errors.
pub fn read(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match text.trim_start().chars().next() {
        Some('{') | Some('[') => read_json(source, text),
        _ => read_yaml(source, text),
    }
}

fn read_yaml(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    // Kubernetes reads YAML 1.1: `0644` is octal (a volume's defaultMode),
    // as `kubectl apply` would take it.
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    let docs: Vec<Spanned<YamlDocument>> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| {
            let location = e.location();
            let line = location.map(|l| l.line()).filter(|&l| l > 0);
            ManifestError {
                origin: Origin {
                    source: source.to_string(),
                    document: line.map_or(1, |l| document_at(text, l)),
                    item: None,
                    line,
                    column: location.map(|l| l.column()).filter(|&c| c > 0),
                },
                message: e.without_snippet().to_string(),
            }
        })?;
    let documents = docs
        .into_iter()
        .filter(|doc| doc.value.value != Value::Null)
        .enumerate()
        .map(|(i, doc)| Document {
            origin: Origin {
                source: source.to_string(),
                document: i + 1,
                item: None,
                line: Some(doc.referenced.line()).filter(|&l| l > 0),
                column: None,
            },
            value: doc.value.value,
            item_lines: doc.value.item_lines,
        })
        .collect();
    Ok(documents)
}

fn read_json(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut documents = Vec::new();
    loop {
        let start = stream.byte_offset();
        let origin = Origin {
            source: source.to_string(),
            document: documents.len() + 1,
            item: None,
            line: Some(line_of_next_token(text, start)),
            column: None,
        };
        match stream.next() {
            None => return Ok(documents),
            Some(Ok(value)) => documents.push(Document {
                origin,
                value,
                item_lines: Vec::new(),
            }),
            Some(Err(e)) => {
                return Err(ManifestError {
                    origin: Origin {
                        line: Some(e.line() as u64),
                        column: Some(e.column() as u64),
                        ..origin
                    },
                    message: format!("invalid JSON: {}", json_message(&e)),
                });
            }
        }
    }
}

/// serde_json's message without its trailing "at line L column C", which
/// the origin already says.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn line_of_next_token(text: &str, offset: usize) -> u64 {
    let rest = &text[offset..];
    let skipped = rest.len() - rest.trim_start().len();
    1 + text[..offset + skipped].matches('\n').count() as u64
}

/// The number of the document `line` is in, counting documents with content
/// the way the parser does: a `---` line starts a new document, and
/// documents holding only comments or blank lines do not count.
fn document_at(text: &str, line: u64) -> usize {
    let mut document = 0;
    let mut current_has_content = false;
    for (i, l) in text.lines().enumerate() {
        let is_marker = l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
        if is_marker {
            current_has_content = false;
        }
        let content = if is_marker { &l[3..] } else { l };
        let blank = content.trim().is_empty() || content.trim_start().starts_with('#');
        let end_marker = l == "..." || l.starts_with("... ");
        let has_content = !blank && !end_marker;
        if has_content && !current_has_content {
            current_has_content = true;
            document += 1;
        }
        if i as u64 + 1 >= line {
            break;
        }
    }
    document.max(1)
}

/// How a stream is written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// YAML documents separated by `---`.
    Yaml,
    /// One JSON document: the object itself when there is one, otherwise a
    /// `List` of all of them (what `kubectl apply -f` accepts).
    Json,
}

/// Writes objects as one stream. Lists among them stay Lists in YAML and
/// are flattened into the single List of JSON output.
pub fn write(values: &[&Value], format: Format) -> String {
    match format {
        Format::Yaml => write_yaml(values),
        Format::Json => write_json(values),
    }
}

fn write_yaml(values: &[&Value]) -> String {
    let mut out = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&crate::emit::document(value));
    }
    out
}

fn write_json(values: &[&Value]) -> String {
    let document = match values {
        [one] => (*one).clone(),
        many => {
            let mut items = Vec::new();
            for value in many {
                match value.get_path(&["items"]).and_then(Value::as_seq) {
                    Some(list_items) if is_list_kind(value) => {
                        items.extend(list_items.iter().cloned())
                    }
                    _ => items.push((*value).clone()),
                }
            }
            let list: Map = [
                ("apiVersion", Value::from("v1")),
                ("kind", Value::from("List")),
                ("items", Value::Seq(items)),
            ]
            .into_iter()
            .collect();
            Value::Map(list)
        }
    };
    let mut text =
        serde_json::to_string_pretty(&document).expect("a manifest tree always serializes to JSON");
    text.push('\n');
    text
}

fn is_list_kind(value: &Value) -> bool {
    value
        .str_at(&["kind"])
        .is_some_and(|kind| kind.ends_with("List"))
}

/// A YAML document, read with the line of each List item so errors about
/// an item can name its line.
struct YamlDocument {
    value: Value,
    item_lines: Vec<u64>,
}

impl<'de> Deserialize<'de> for YamlDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl DocumentVisitor {
    fn plain(value: Value) -> YamlDocument {
        YamlDocument {
            value,
            item_lines: Vec::new(),
        }
    }
}

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = YamlDocument;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<YamlDocument, E> {
        ValueVisitor.visit_bool(b).map(Self::plain)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<YamlDocument, E> {
        ValueVisitor.visit_i64(n).map(Self::plain)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<YamlDocument, E> {
        ValueVisitor.visit_u64(n).map(Self::plain)
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<YamlDocument, E> {
        ValueVisitor.visit_f64(n).map(Self::plain)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<YamlDocument, E> {
        ValueVisitor.visit_str(s).map(Self::plain)
    }

    fn visit_unit<E>(self) -> Result<YamlDocument, E> {
        Ok(Self::plain(Value::Null))
    }

    fn visit_none<E>(self) -> Result<YamlDocument, E> {
        Ok(Self::plain(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, access: A) -> Result<YamlDocument, A::Error> {
        ValueVisitor.visit_seq(access).map(Self::plain)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<YamlDocument, A::Error> {
        let mut map = Map::new();
        let mut item_lines = Vec::new();
        while let Some(Key(key)) = access.next_key()? {
            let value = if key == "items" {
                let items: Items = access.next_value()?;
                item_lines = items.lines;
                items.value
            } else {
                access.next_value()?
            };
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            map.insert(key, value);
        }
        Ok(YamlDocument {
            value: Value::Map(map),
            item_lines,
        })
    }
}

/// A List's `items`, with the line each item starts on.
struct Items {
    value: Value,
    lines: Vec<u64>,
}

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;

        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = Items;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of Kubernetes objects")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Items, A::Error> {
                let mut values = Vec::new();
                let mut lines = Vec::new();
                while let Some(item) = access.next_element::<Spanned<Value>>()? {
                    lines.push(item.referenced.line());
                    values.push(item.value);
                }
                Ok(Items {
                    value: Value::Seq(values),
                    lines,
                })
            }

            fn visit_unit<E>(self) -> Result<Items, E> {
                Ok(Items {
                    value: Value::Null,
                    lines: Vec::new(),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Items, A::Error> {
                Ok(Items {
                    value: ValueVisitor.visit_map(access)?,
                    lines: Vec::new(),
                })
            }

            fn visit_str<E>(self, s: &str) -> Result<Items, E> {
                Ok(Items {
                    value: Value::from(s),
                    lines: Vec::new(),
                })
            }
        }

        deserializer.deserialize_any(ItemsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(docs: &[Document]) -> Vec<String> {
        docs.iter()
            .map(|d| {
                d.value
                    .str_at(&["metadata", "name"])
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn yaml_documents_get_numbers_and_lines() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\n# only a comment\n---\n\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n";
        let docs = read("x.yaml", text).unwrap();
        assert_eq!(names(&docs), ["a", "b"]);
        assert_eq!(docs[0].origin.document, 1);
        assert_eq!(docs[0].origin.line, Some(3));
        assert_eq!(docs[1].origin.document, 2);
        assert_eq!(docs[1].origin.line, Some(11));
    }

    #[test]
    fn list_items_have_their_own_lines() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Service\n  metadata: {name: a}\n- kind: Service\n  metadata:\n    name: b\n";
        let mut docs = read("l.yaml", text).unwrap();
        let mut seen = Vec::new();
        docs[0]
            .try_for_each_object(|origin, _| {
                seen.push(origin.to_string());
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                "l.yaml: document 1, item 1 (line 4)",
                "l.yaml: document 1, item 2 (line 6)"
            ]
        );
    }

    #[test]
    fn yaml_syntax_errors_name_document_and_line() {
        let text = "kind: A\n---\nkind: B\nmetadata:\n  name: [unclosed\n";
        let err = read("bad.yaml", text).unwrap_err();
        assert_eq!(err.origin.document, 2, "{err}");
        assert_eq!(err.origin.line, Some(5), "{err}");
        assert!(
            err.to_string().starts_with("bad.yaml: document 2 (line 5"),
            "{err}"
        );
    }

    #[test]
    fn yaml_1_1_octal_and_quoted_strings_read_as_kubernetes_does() {
        let docs = read("o.yaml", "a: 0644\nb: \"0644\"\nc: 'yes'\n").unwrap();
        assert_eq!(docs[0].value.get_path(&["a"]), Some(&Value::from(420u32)));
        assert_eq!(docs[0].value.str_at(&["b"]), Some("0644"));
        assert_eq!(docs[0].value.str_at(&["c"]), Some("yes"));
    }

    #[test]
    fn concatenated_json_objects_are_documents() {
        let text = "{\"kind\":\"Service\",\"metadata\":{\"name\":\"a\"}}\n\n  {\"kind\":\"Service\",\n\"metadata\":{\"name\":\"b\"}}\n";
        let docs = read("-", text).unwrap();
        assert_eq!(names(&docs), ["a", "b"]);
        assert_eq!(docs[1].origin.line, Some(3));
    }

    #[test]
    fn json_errors_name_document_and_line() {
        let text = "{\"kind\":\"A\"}\n{\"kind\":\n \"B\",,}\n";
        let err = read("in.json", text).unwrap_err();
        assert_eq!(err.origin.document, 2);
        assert_eq!(err.origin.line, Some(3));
        assert!(err.message.starts_with("invalid JSON"), "{err}");
    }

    #[test]
    fn yaml_output_round_trips_strings_kubernetes_would_misread() {
        let text = "a: \"true\"\nb: \"yes\"\nc: \"0755\"\nd: \"1e3\"\ne: \"~\"\nf: \"\"\ng: |\n  line one\n  line two\nh: \"null\"\n";
        let docs = read("q.yaml", text).unwrap();
        let out = write(&[&docs[0].value], Format::Yaml);
        let again = read("out.yaml", &out).unwrap();
        assert_eq!(again[0].value, docs[0].value, "{out}");
    }

    #[test]
    fn long_strings_stay_on_one_line() {
        let long = "x ".repeat(100);
        let mut m = Map::new();
        m.insert("note", long.trim_end());
        let out = write(&[&Value::Map(m)], Format::Yaml);
        assert_eq!(out.lines().count(), 1, "{out}");
    }

    #[test]
    fn json_output_of_many_documents_is_one_list() {
        let docs = read(
            "x",
            "kind: A\n---\nkind: List\nitems: [{kind: B}, {kind: C}]\n",
        )
        .unwrap();
        let values: Vec<&Value> = docs.iter().map(|d| &d.value).collect();
        let out: serde_json::Value = serde_json::from_str(&write(&values, Format::Json)).unwrap();
        assert_eq!(out["kind"], "List");
        let kinds: Vec<&str> = out["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["A", "B", "C"]);
    }
}
