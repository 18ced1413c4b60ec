//! The manifest tree: a JSON-shaped value whose maps keep their keys in the
//! order they were written.
//!
//! Inject must hand back every object it does not own exactly as the user
//! wrote it, and a diff of injected output against its input should show
//! only what inject added. `serde_json::Value` sorts keys (and turning on its
//! `preserve_order` feature would change key order for every crate of the
//! workspace), so manifests get their own small tree. Equality is semantic:
//! two maps are equal when they hold the same keys with equal values, in any
//! order, as Kubernetes sees them.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// One node of a manifest.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Value>),
    Map(Map),
}

/// A map that remembers insertion order. Manifests' maps are small, so a
/// vector with linear lookups is both simplest and fastest.
#[derive(Clone, Debug, Default)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value at a path of map keys, e.g. `["spec", "template"]`.
    pub fn get_path(&self, path: &[&str]) -> Option<&Value> {
        path.iter()
            .try_fold(self, |value, key| value.as_map()?.get(key))
    }

    pub fn get_path_mut(&mut self, path: &[&str]) -> Option<&mut Value> {
        path.iter()
            .try_fold(self, |value, key| value.as_map_mut()?.get_mut(key))
    }

    /// The string at a path, when there is one.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        self.get_path(path).and_then(Value::as_str)
    }

    /// A name for error messages and summaries: the JSON type of the value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

impl Map {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`, keeping its position when it exists and appending it
    /// otherwise.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Sets `key`, placing it before `before` when it is new (or at the end
    /// when `before` is absent): inject adds `metadata` ahead of `spec` so
    /// its output reads like a hand-written manifest.
    pub fn insert_before(&mut self, before: &str, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        if self.contains_key(&key) {
            self.insert(key, value);
            return;
        }
        let at = self
            .entries
            .iter()
            .position(|(k, _)| k == before)
            .unwrap_or(self.entries.len());
        self.entries.insert(at, (key, value.into()));
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The map under `key`, created (as the last entry) when missing.
    /// Returns `None` when `key` holds something other than a map or null.
    pub fn map_entry(&mut self, key: &str) -> Option<&mut Map> {
        self.map_entry_before(key, "")
    }

    /// Like [`Map::map_entry`], creating the map before `before`.
    pub fn map_entry_before(&mut self, key: &str, before: &str) -> Option<&mut Map> {
        match self.get(key) {
            None | Some(Value::Null) => self.insert_before(before, key, Map::new()),
            Some(Value::Map(_)) => {}
            Some(_) => return None,
        }
        self.get_mut(key).and_then(Value::as_map_mut)
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Map::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a String, &'a Value);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// A map literal: `map([("name", "web".into()), ("replicas", 3.into())])`.
pub fn map<K: Into<String>, const N: usize>(entries: [(K, Value); N]) -> Value {
    Value::Map(entries.into_iter().collect())
}

/// A list literal.
pub fn seq<V: Into<Value>>(items: impl IntoIterator<Item = V>) -> Value {
    Value::Seq(items.into_iter().map(Into::into).collect())
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::String(s.clone())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Number(n.into())
            }
        }
    )*};
}
from_integer!(u16, u32, u64, i32, i64, usize);

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Map(m)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Seq(v)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(m) => m.serialize(serializer),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Map {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Map(m) => Ok(m),
            other => Err(de::Error::custom(format_args!(
                "expected a map, found {}",
                other.type_name()
            ))),
        }
    }
}

/// Builds [`Value`]s from any self-describing format (YAML and JSON here).
pub(crate) struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format_args!("{n} is not a number Kubernetes accepts")))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom(
            "binary values (`!!binary`) are not supported: write base64 text instead",
        ))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(access.size_hint().unwrap_or(0));
        while let Some(item) = access.next_element()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(Key(key)) = access.next_key()? {
            let value = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            map.entries.push((key, value));
        }
        Ok(Value::Map(map))
    }
}

/// A map key. Kubernetes objects are JSON, so keys are strings; YAML keys
/// that look like numbers or booleans (`80:` in a port map) become their
/// text, as Kubernetes' own YAML-to-JSON conversion does.
pub(crate) struct Key(pub(crate) String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean map key")
            }

            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key(s.to_string()))
            }

            fn visit_string<E>(self, s: String) -> Result<Key, E> {
                Ok(Key(s))
            }

            fn visit_bool<E>(self, b: bool) -> Result<Key, E> {
                Ok(Key(b.to_string()))
            }

            fn visit_i64<E>(self, n: i64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }

            fn visit_u64<E>(self, n: u64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }

            fn visit_f64<E>(self, n: f64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }

            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key("null".to_string()))
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_insertion_order_and_compare_semantically() {
        let a: Map = [("b", 1), ("a", 2)].into_iter().collect();
        let b: Map = [("a", 2), ("b", 1)].into_iter().collect();
        assert_eq!(a.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(a, b);
        let c: Map = [("a", 2), ("b", 3)].into_iter().collect();
        assert_ne!(a, c);
    }

    #[test]
    fn insert_before_places_new_keys_and_keeps_old_positions() {
        let mut m: Map = [("apiVersion", "v1"), ("spec", "x")].into_iter().collect();
        m.insert_before("spec", "metadata", Map::new());
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["apiVersion", "metadata", "spec"]
        );
        m.insert_before("apiVersion", "spec", "y");
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["apiVersion", "metadata", "spec"]
        );
        assert_eq!(m.get("spec"), Some(&Value::from("y")));
    }

    #[test]
    fn map_entry_refuses_to_replace_a_non_map() {
        let mut m: Map = [("metadata", "oops")].into_iter().collect();
        assert!(m.map_entry("metadata").is_none());
        assert!(m.map_entry("spec").is_some());
    }

    #[test]
    fn json_round_trip_keeps_key_order() {
        let text = r#"{"z":1,"a":{"y":[true,null,"s",1.5],"b":-3}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        let err = serde_json::from_str::<Value>(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"a\""), "{err}");
    }
}
