//! A variant's options (size, colour): option name to value, sorted by name.
//!
//! Products are cached by the hundred thousand, and carts and orders copy a
//! line's options on every pricing. A `BTreeMap<String, String>` allocates a
//! 640-byte node however few pairs it holds (most variants have one or two),
//! which was the largest part of a cached product; this is one shared slice,
//! and a clone is a reference count. On the wire and in the database it is a
//! JSON object, exactly as the map was.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Name and value.
type Pair = (Box<str>, Box<str>);

/// `None` when empty: most SKUs of a simple product have no options, and an
/// empty `Arc<[_]>` would still allocate its counts.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Options(Option<Arc<[Pair]>>);

impl Options {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.pairs().iter().map(|(_, v)| &**v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let pairs = self.pairs();
        pairs.binary_search_by(|(k, _)| (**k).cmp(name)).ok().map(|i| &*pairs[i].1)
    }

    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }

    /// Heap bytes this value holds (for caches bounded by memory).
    pub fn heap_size(&self) -> usize {
        match &self.0 {
            None => 0,
            Some(p) => 16 + p.len() * 32 + p.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
        }
    }

    fn pairs(&self) -> &[Pair] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl From<BTreeMap<String, String>> for Options {
    fn from(map: BTreeMap<String, String>) -> Self {
        if map.is_empty() {
            return Options(None);
        }
        Options(Some(map.into_iter().map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str())).collect()))
    }
}

/// From pairs in any order; a name given twice keeps its last value, as
/// inserting into a map would.
impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Options {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect::<BTreeMap<String, String>>().into()
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Options {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Options {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(d).map(Options::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_same_object_a_map_gives() {
        let map: BTreeMap<String, String> =
            [("size", "M"), ("color", "Sage")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let o = Options::from(map.clone());
        assert_eq!(serde_json::to_string(&o).unwrap(), serde_json::to_string(&map).unwrap());
        let back: Options = serde_json::from_str(r#"{"size":"M","color":"Sage"}"#).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.get("color"), Some("Sage"));
        assert_eq!(back.get("fit"), None);
        assert_eq!(back.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["color", "size"]);
        assert_eq!(serde_json::to_string(&Options::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<Options>(r#"["size"]"#).is_err());
    }

    #[test]
    fn a_repeated_name_keeps_its_last_value() {
        let o: Options = [("size", "S"), ("size", "M")].into_iter().collect();
        assert_eq!(o.len(), 1);
        assert_eq!(o.get("size"), Some("M"));
    }
}
