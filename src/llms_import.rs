//! Reads an llms.py `users.json`. Its `password_hash` is
//! `salt:hex(sha256(salt + password))`; such hashes are kept as legacy hashes,
//! verified once and replaced by Argon2id at the next successful sign-in.
//!
//! Accepted shapes: `{"users": [...]}`, `[...]`, or `{"NAME": {...}, ...}`.
//! Per user: `username` (or the map key), `password_hash`, `roles` (list) or
//! `role`, `locked` (bool, string reason or object), `lock_reason`,
//! `created`/`created_at` (RFC 3339, `YYYY-MM-DD HH:MM:SS`, or epoch seconds).

use gatehouse_actors::ids::random_id;
use gatehouse_actors::model::{Lock, PasswordHash, UserRecord, ADMIN_ROLE};
use serde_json::{Map, Value};
use time::OffsetDateTime;

const MAX_USERS: usize = 100_000;

pub fn parse(text: &str, now: OffsetDateTime) -> Result<Vec<UserRecord>, String> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| format!("not valid JSON: line {} column {}", e.line(), e.column()))?;
    let entries: Entries = match doc {
        Value::Object(mut o) if o.get("users").is_some_and(Value::is_array) => {
            list(o.remove("users").unwrap_or_default())?
        }
        Value::Array(_) => list(doc)?,
        Value::Object(o) => o
            .into_iter()
            .map(|(k, v)| match v {
                Value::Object(m) => Ok((Some(k), m)),
                _ => Err(format!("user {k:?}: expected an object")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("expected a list of users or an object".into()),
    };
    if entries.len() > MAX_USERS {
        return Err(format!("more than {MAX_USERS} users"));
    }
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, m))| {
            let user = one(key, &m, now).map_err(|e| format!("user #{}: {e}", i + 1))?;
            if !seen.insert(user.username.to_lowercase()) {
                return Err(format!(
                    "user #{}: duplicate username {:?}",
                    i + 1,
                    user.username
                ));
            }
            Ok(user)
        })
        .collect()
}

/// Users as (the key they were listed under, their fields).
type Entries = Vec<(Option<String>, Map<String, Value>)>;

fn list(v: Value) -> Result<Entries, String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(m) => Ok((None, m)),
                _ => Err(format!("user #{}: expected an object", i + 1)),
            })
            .collect(),
        _ => Err("expected a list of users".into()),
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| m.get(*k).and_then(Value::as_str))
}

fn one(
    key: Option<String>,
    m: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<UserRecord, String> {
    let username = str_field(m, &["username", "name", "user"])
        .map(str::to_owned)
        .or(key)
        .ok_or("no username")?;
    crate::accounts::check_username(&username)
        .map_err(|e| format!("{username:?}: {}", e.message))?;
    let password = match str_field(m, &["password_hash", "passwordHash"]) {
        Some(h) => {
            let (salt, hex) = h.split_once(':').ok_or("password_hash is not salt:hex")?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("password_hash is not salt:hex(sha256)".into());
            }
            Some(PasswordHash::LegacySha256 {
                salt: salt.to_owned(),
                hex: hex.to_ascii_lowercase(),
            })
        }
        None => None,
    };
    let mut roles: Vec<String> = match m.get("roles") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s
            .split([',', ' '])
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => str_field(m, &["role"])
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default(),
    };
    // llms.py spells the role "Admin"; accept any case, keep ours.
    for r in roles.iter_mut() {
        if r.eq_ignore_ascii_case(ADMIN_ROLE) {
            *r = ADMIN_ROLE.to_owned();
        }
    }
    roles.sort();
    roles.dedup();
    if username == "admin" && !roles.iter().any(|r| r == ADMIN_ROLE) {
        roles.push(ADMIN_ROLE.to_owned());
    }
    let reason = str_field(m, &["lock_reason", "locked_reason"]).map(str::to_owned);
    let locked = match m.get("locked") {
        Some(Value::Bool(true)) => Some(reason.unwrap_or_else(|| "locked in llms.py".into())),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Object(o)) => Some(
            o.get("reason")
                .and_then(Value::as_str)
                .unwrap_or("locked in llms.py")
                .to_owned(),
        ),
        _ => None,
    };
    let created_at = m
        .get("created")
        .or_else(|| m.get("created_at"))
        .and_then(parse_time)
        .unwrap_or(now);
    Ok(UserRecord {
        id: random_id(),
        username,
        display_name: str_field(m, &["display_name", "displayName"]).map(str::to_owned),
        avatar_url: None,
        roles,
        auth: "credentials".into(),
        created_at,
        last_login: None,
        locked: locked.map(|reason| Lock { reason, at: now }),
        password,
        external_id: None,
        version: 0,
    })
}

fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    match v {
        Value::Number(n) => OffsetDateTime::from_unix_timestamp(n.as_f64()? as i64).ok(),
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
            let fmt = time::macros::format_description!(
                "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second]"
            );
            let base = s.split('.').next()?;
            time::PrimitiveDateTime::parse(base, &fmt)
                .ok()
                .map(|p| p.assume_utc())
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_shapes() {
        let now = OffsetDateTime::now_utc();
        let h = format!("abc:{}", "0f".repeat(32));
        let list = format!(
            r#"[{{"username":"ann","password_hash":"{h}","roles":["Admin"],"created":"2024-05-01 10:00:00"}}]"#
        );
        let u = parse(&list, now).unwrap();
        assert_eq!(u[0].roles, vec!["Admin"]);
        assert_eq!(u[0].created_at.year(), 2024);
        let map =
            format!(r#"{{"bob":{{"password_hash":"{h}","locked":true,"lock_reason":"left"}}}}"#);
        let u = parse(&map, now).unwrap();
        assert_eq!(u[0].username, "bob");
        assert_eq!(u[0].locked.as_ref().unwrap().reason, "left");
        let wrapped = format!(r#"{{"users":[{{"username":"cy","password_hash":"{h}"}}]}}"#);
        assert_eq!(parse(&wrapped, now).unwrap()[0].username, "cy");
    }

    #[test]
    fn refuses_bad_input() {
        let now = OffsetDateTime::now_utc();
        assert!(parse("nope", now).is_err());
        assert!(parse(r#"[{"username":"a","password_hash":"nocolon"}]"#, now).is_err());
        assert!(parse(r#"[{"username":"../x"}]"#, now).is_err());
        assert!(parse(r#"[{"username":"a"},{"username":"A"}]"#, now).is_err());
        assert!(parse("42", now).is_err());
    }
}
