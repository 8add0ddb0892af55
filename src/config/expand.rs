//! Tree walks over the merged settings: `$VAR`/`${VAR}` expansion before
//! validation, and redaction of secrets for `config check` and the admin API.

use std::collections::HashMap;

use serde_json::Value;

use super::{bad, ConfigError, REDACTED};

/// Replaces `$VAR` and `${VAR}` in every string (unset: empty); `$$` is a literal `$`.
pub(super) fn expand(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let name = &braced[..end];
            if name.is_empty() || !name.chars().all(is_name) {
                return Err(format!("bad variable name {name:?} in {s:?}"));
            }
            out.push_str(env.get(name).map_or("", String::as_str));
            rest = &braced[end + 1..];
        } else if after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
            out.push_str(env.get(&after[..end]).map_or("", String::as_str));
            rest = &after[end..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

pub(super) fn expand_value(
    v: &mut Value,
    path: &mut String,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let len = path.len();
    match v {
        Value::String(s) => *s = expand(s, env).map_err(|e| bad(path.clone(), e))?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                expand_value(item, path, env)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                expand_value(item, path, env)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret")
        || key.contains("password")
        || key == "api_key"
        || key.ends_with("_key")
        || (key.contains("token") && !key.ends_with("_url") && !key.ends_with("_uri"))
}

/// Replaces every non-empty secret string with `***` (and `store.url`, which holds credentials).
pub(super) fn redact(v: &mut Value, path: &str) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|item| redact(item, path)),
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let secret = is_secret_key(k) || child == "store.url";
                match item {
                    Value::String(s) if secret && !s.is_empty() => *s = REDACTED.into(),
                    Value::Number(_) | Value::Bool(_) if secret => {
                        *item = Value::String(REDACTED.into())
                    }
                    _ => redact(item, &child),
                }
            }
        }
        _ => {}
    }
}
