//! Claims to scopes and attributes.

use crate::auth::principal::Scope;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// `read`/`write`/`admin` named by `scope` (space-separated) or `scp`/`scopes` (list or string).
pub fn scopes_from(claims: &Map<String, Value>) -> Vec<Scope> {
    let mut out = BTreeSet::new();
    for key in ["scope", "scp", "scopes"] {
        match claims.get(key) {
            Some(Value::String(s)) => out.extend(s.split([' ', ',']).filter_map(Scope::parse)),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).filter_map(Scope::parse))
            }
            _ => {}
        }
    }
    out.into_iter().collect()
}

/// Each `claim = "attribute"` of the mapping, with string or list values.
pub fn attributes_from(
    claims: &Map<String, Value>,
    mapping: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (claim, attribute) in mapping {
        let values: Vec<String> = match claims.get(claim) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::Number(n)) => vec![n.to_string()],
            Some(Value::Bool(b)) => vec![b.to_string()],
            _ => continue,
        };
        let slot = out.entry(attribute.clone()).or_default();
        for v in values.into_iter().take(256) {
            if v.len() <= 256 && !slot.contains(&v) {
                slot.push(v);
            }
        }
    }
    out
}

/// A display name for the principal.
pub fn username(claims: &Map<String, Value>, subject: &str) -> String {
    ["preferred_username", "username", "email", "client_id"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str))
        .unwrap_or(subject)
        .chars()
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_scopes_and_attributes() {
        let c =
            json!({"scope": "openid read admin", "groups": ["ml", "eng"], "team": "ml", "n": 3})
                .as_object()
                .unwrap()
                .clone();
        assert_eq!(scopes_from(&c), vec![Scope::Read, Scope::Admin]);
        let m: BTreeMap<String, String> =
            [("groups", "roles"), ("team", "teams"), ("missing", "x")]
                .into_iter()
                .map(|(a, b)| (a.into(), b.into()))
                .collect();
        let attrs = attributes_from(&c, &m);
        assert_eq!(attrs["roles"], vec!["ml", "eng"]);
        assert_eq!(attrs["teams"], vec!["ml"]);
        assert!(!attrs.contains_key("x"));
    }
}
