//! A model API request body kept as its top-level members, each value as
//! the raw JSON text the client sent. The proxy reads the few fields it
//! needs (`model`, `stream`, `stream_options`, `max_tokens`), replaces
//! `model` (and, for a stream, `stream_options`) and writes every other
//! member through as it came — without building, and then writing back, a
//! tree of the whole conversation. Translation between APIs, which rewrites
//! everything, asks for the tree.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

/// A JSON object: its members in the order sent, a repeated key keeping
/// its last value (as a parsed `Value` would).
#[derive(Debug, Clone, Default)]
pub struct ApiBody {
    members: Vec<(String, Box<RawValue>)>,
}

/// Why a body is not an `ApiBody`.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not valid JSON.
    Json,
    /// Valid JSON, but not an object.
    NotObject,
}

impl ApiBody {
    /// The body, refused when it is not valid JSON or not an object.
    pub fn parse(bytes: &[u8]) -> Result<Self, BodyError> {
        match serde_json::from_slice::<Self>(bytes) {
            Ok(body) => Ok(body),
            Err(e) if e.is_data() => Err(BodyError::NotObject),
            Err(_) => Err(BodyError::Json),
        }
    }

    /// The body of a JSON object value (other values make an empty body).
    pub fn from_value(v: Value) -> Self {
        let Value::Object(map) = v else {
            return Self::default();
        };
        let members = map
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::value::to_raw_value(&v).ok()?)))
            .collect();
        ApiBody { members }
    }

    /// The raw JSON of member `key`.
    pub fn raw(&self, key: &str) -> Option<&RawValue> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    /// Member `key` parsed as `T` (`None` when absent or of another type).
    pub fn get<'a, T: Deserialize<'a>>(&'a self, key: &str) -> Option<T> {
        serde_json::from_str(self.raw(key)?.get()).ok()
    }

    /// `"stream": true`.
    pub fn streams(&self) -> bool {
        self.get::<bool>("stream") == Some(true)
    }

    /// `"stream_options": {"include_usage": true}`.
    pub fn wants_usage(&self) -> bool {
        self.get::<Value>("stream_options")
            .is_some_and(|o| o.get("include_usage") == Some(&Value::Bool(true)))
    }

    /// Sets member `key` (in place, or last when new).
    pub fn set<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        let Ok(raw) = serde_json::value::to_raw_value(value) else {
            return;
        };
        match self.members.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = raw,
            None => self.members.push((key.to_owned(), raw)),
        }
    }

    /// The whole body as a JSON value (for translation); `Err` when a
    /// member is nested deeper than a `Value` may be (128 levels).
    pub fn to_value(&self) -> Result<Value, BodyError> {
        let mut map = Map::new();
        for (k, v) in &self.members {
            let v = serde_json::from_str(v.get()).map_err(|_| BodyError::Json)?;
            map.insert(k.clone(), v);
        }
        Ok(Value::Object(map))
    }

    /// The length of `to_vec()`, about (escapes in keys not counted).
    pub fn len(&self) -> usize {
        let members: usize = self
            .members
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        members + 1
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The body as JSON text: each member as it came.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + 1);
        out.push(b'{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // A key is a string: writing it cannot fail.
            let _ = serde_json::to_writer(&mut out, k);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
        out
    }
}

impl<'de> Deserialize<'de> for ApiBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = ApiBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ApiBody, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    match members.iter_mut().find(|(m, _)| *m == k) {
                        Some((_, old)) => *old = v,
                        None => members.push((k, v)),
                    }
                }
                Ok(ApiBody { members })
            }
        }
        d.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_pass_through_as_sent() {
        let text = r#"{ "model" : "a/b", "messages":[{"role":"user","content":"h\u00e9 \"x\""}],
            "temperature": 1.50, "n": 1e2, "stream":true,"x":{"y":[null, {}]} }"#;
        let mut body = ApiBody::parse(text.as_bytes()).unwrap();
        assert_eq!(body.get::<String>("model").as_deref(), Some("a/b"));
        assert!(body.streams() && !body.wants_usage());
        assert_eq!(body.get::<u64>("n"), None, "1e2 is not an integer");
        body.set("model", &"m\"1");
        body.set("stream_options", &json!({"include_usage": true}));
        let out = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            out,
            r#"{"model":"m\"1","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"temperature":1.50,"n":1e2,"stream":true,"x":{"y":[null, {}]},"stream_options":{"include_usage":true}}"#
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, body.to_value().unwrap());
        assert_eq!(body.len(), out.len());
        assert!(body.wants_usage());
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_like_a_value() {
        let text = r#"{"model":"a","stream":true,"model":"b","stream":false}"#;
        let body = ApiBody::parse(text.as_bytes()).unwrap();
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(body.to_value().unwrap(), v);
        assert_eq!(body.get::<String>("model").as_deref(), Some("b"));
        assert!(!body.streams());
        assert_eq!(body.to_vec(), br#"{"model":"b","stream":false}"#);
    }

    #[test]
    fn bad_bodies_are_refused() {
        for bad in [
            "",
            "{",
            "{\"a\":}",
            "{\"a\":1,}",
            "{'a':1}",
            "{\"a\":1} x",
            "nul",
        ] {
            assert_eq!(
                ApiBody::parse(bad.as_bytes()).unwrap_err(),
                BodyError::Json,
                "{bad}"
            );
        }
        for other in ["[]", "1", "\"x\"", "null", "true"] {
            assert_eq!(
                ApiBody::parse(other.as_bytes()).unwrap_err(),
                BodyError::NotObject,
                "{other}"
            );
        }
        assert_eq!(ApiBody::parse(b" {} ").unwrap().to_vec(), b"{}");
        // Deeper than a `Value` may be: passed through, but not translated.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let body = ApiBody::parse(deep.as_bytes()).unwrap();
        assert_eq!(body.to_vec(), deep.as_bytes());
        assert_eq!(body.to_value().unwrap_err(), BodyError::Json);
        // A number out of a `Value`'s range: well-formed JSON, passed
        // through as sent, but not translated.
        let huge = br#"{"model":"m","x":1e400}"#;
        let body = ApiBody::parse(huge).unwrap();
        assert_eq!(body.to_vec(), huge);
        assert_eq!(body.to_value().unwrap_err(), BodyError::Json);
        // (found by the fuzzer) A repeated key replaces the member a tree
        // would refuse: what is left is a tree.
        let replaced = br#"{"a":1,"x":1e400,"x":2}"#;
        assert!(serde_json::from_slice::<Value>(replaced).is_err());
        let body = ApiBody::parse(replaced).unwrap();
        assert_eq!(body.to_vec(), br#"{"a":1,"x":2}"#);
        assert_eq!(body.to_value().unwrap(), json!({"a": 1, "x": 2}));
    }

    #[test]
    fn from_value_round_trips() {
        let v =
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true});
        let body = ApiBody::from_value(v.clone());
        assert_eq!(body.to_value().unwrap(), v);
        let back: Value = serde_json::from_slice(&body.to_vec()).unwrap();
        assert_eq!(back, v);
        assert!(ApiBody::from_value(json!([1])).to_vec() == b"{}");
    }
}
