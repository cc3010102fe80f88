//! [`CompactMap`]: a JSON object that costs one pointer while it is empty.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object (`Map<String, Value>`) stored as a null pointer while it is
/// empty. Most steps of a large workflow have no parameters and most results
/// no metadata, and an inline `Map` is 72 bytes: a step is 64 bytes smaller
/// with this, and so is a result.
///
/// It reads and writes as a map through `Deref`/`DerefMut` (writing
/// allocates the map on first use), iterates like one, and serializes and
/// deserializes exactly as one (`{}` when empty).
///
/// ```
/// use orch_model::CompactMap;
/// use serde_json::json;
///
/// let mut m = CompactMap::default();
/// assert!(m.is_empty());
/// m.insert("n".into(), json!(1));
/// assert_eq!(m.get("n"), Some(&json!(1)));
/// assert_eq!(serde_json::to_value(&m).unwrap(), json!({"n": 1}));
/// ```
#[derive(Debug, Clone, Default)]
pub struct CompactMap(Option<Box<Map<String, Value>>>);

impl CompactMap {
    /// The entries as an owned map.
    pub fn into_map(self) -> Map<String, Value> {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

impl From<Map<String, Value>> for CompactMap {
    fn from(m: Map<String, Value>) -> Self {
        Self((!m.is_empty()).then(|| Box::new(m)))
    }
}

impl From<CompactMap> for Map<String, Value> {
    fn from(m: CompactMap) -> Self {
        m.into_map()
    }
}

impl FromIterator<(String, Value)> for CompactMap {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Map::from_iter(iter).into()
    }
}

impl std::ops::Deref for CompactMap {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl std::ops::DerefMut for CompactMap {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        self.0.get_or_insert_with(Box::default)
    }
}

impl<'a> IntoIterator for &'a CompactMap {
    type Item = (&'a String, &'a Value);
    type IntoIter = serde_json::map::Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        (**self).iter()
    }
}

impl PartialEq for CompactMap {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Serialize for CompactMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for CompactMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Map::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_writes_and_round_trips_as_a_map() {
        let mut m = CompactMap::default();
        assert!(m.is_empty() && m.0.is_none());
        assert_eq!(m, CompactMap::from(Map::new()));
        m.insert("b".into(), json!(2));
        m.insert("a".into(), json!(1));
        assert_ne!(m, CompactMap::default());
        // Insertion order is kept, as in a map.
        let keys: Vec<&String> = (&m).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a"]);
        let text = serde_json::to_string(&m).expect("ser");
        assert_eq!(text, r#"{"b":2,"a":1}"#);
        let back: CompactMap = serde_json::from_str(&text).expect("de");
        assert_eq!(back, m);
        assert_eq!(Map::from(back).len(), 2);
        let empty: CompactMap = serde_json::from_str("{}").expect("de");
        assert!(empty.0.is_none(), "an empty map allocates nothing");
        assert_eq!(serde_json::to_string(&empty).expect("ser"), "{}");
        assert!(serde_json::from_str::<CompactMap>("[1]").is_err());
        let collected: CompactMap = [("k".to_owned(), json!(true))].into_iter().collect();
        assert_eq!(collected.get("k"), Some(&json!(true)));
    }
}
