//! Validators that ask another service: RFC 7662 introspection, GitHub's
//! `/user`, and a custom endpoint (the llama-stack shape).

use super::{claims, Identity, RequestInfo, MAX_ANSWER};
use crate::config::BearerConfig;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use time::OffsetDateTime;

async fn json_answer(
    res: Result<
        awc::ClientResponse<
            impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
                + Unpin,
        >,
        awc::error::SendRequestError,
    >,
) -> Result<(u16, Value), &'static str> {
    let mut res = res.map_err(|_| "validator unreachable")?;
    let status = res.status().as_u16();
    let body = res
        .body()
        .limit(MAX_ANSWER)
        .await
        .map_err(|_| "validator answer unreadable")?;
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, value))
}

pub struct Introspection {
    url: String,
    client_id: String,
    client_secret: String,
    in_body: bool,
    audience: String,
    mapping: BTreeMap<String, String>,
}

impl Introspection {
    pub fn new(c: &BearerConfig) -> Self {
        Self {
            url: c.url.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.expose().to_owned(),
            in_body: c.send_secret_in_body,
            audience: c.audience.clone(),
            mapping: c.claims_mapping.clone(),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn validate(
        &self,
        http: &awc::Client,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Identity, &'static str> {
        let enc = |s: &str| urlencoding::encode(s).into_owned();
        let mut form = format!("token={}&token_type_hint=access_token", enc(token));
        let mut req = http
            .post(&self.url)
            .insert_header(("accept", "application/json"));
        if self.in_body {
            form.push_str(&format!(
                "&client_id={}&client_secret={}",
                enc(&self.client_id),
                enc(&self.client_secret)
            ));
        } else if !self.client_id.is_empty() {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&self.client_id),
                enc(&self.client_secret)
            ));
            req = req.insert_header(("authorization", format!("Basic {basic}")));
        }
        let (status, v) = json_answer(
            req.content_type("application/x-www-form-urlencoded")
                .send_body(form)
                .await,
        )
        .await?;
        if status != 200 {
            return Err("introspection endpoint refused the call");
        }
        let c = v
            .as_object()
            .ok_or("introspection answer is not an object")?;
        if c.get("active") != Some(&Value::Bool(true)) {
            return Err("inactive token");
        }
        let exp = c
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok());
        if exp.is_some_and(|e| e <= now) {
            return Err("expired");
        }
        if !self.audience.is_empty() {
            let aud_ok = match c.get("aud") {
                Some(Value::String(a)) => a == &self.audience,
                Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(&self.audience)),
                _ => true, // an introspection answer need not carry `aud`
            };
            if !aud_ok {
                return Err("wrong audience");
            }
        }
        let subject = c
            .get("sub")
            .or_else(|| c.get("client_id"))
            .and_then(Value::as_str)
            .ok_or("no subject")?
            .to_owned();
        Ok(Identity {
            username: claims::username(c, &subject),
            subject,
            scopes: claims::scopes_from(c),
            attributes: claims::attributes_from(c, &self.mapping),
            expires_at: exp,
        })
    }
}

pub struct Github {
    api: String,
    mapping: BTreeMap<String, String>,
}

impl Github {
    pub fn new(c: &BearerConfig) -> Self {
        Self {
            api: c.api_base_url.trim_end_matches('/').to_owned(),
            mapping: c.claims_mapping.clone(),
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn validate(
        &self,
        http: &awc::Client,
        token: &str,
    ) -> Result<Identity, &'static str> {
        let get = |path: &str| {
            http.get(format!("{}{path}", self.api))
                .insert_header(("authorization", format!("Bearer {token}")))
                .insert_header(("accept", "application/vnd.github+json"))
                .send()
        };
        let (status, user) = json_answer(get("/user").await).await?;
        if status != 200 {
            return Err("GitHub refused the token");
        }
        let mut c: Map<String, Value> = user
            .as_object()
            .cloned()
            .ok_or("GitHub answer is not an object")?;
        let login = c
            .get("login")
            .and_then(Value::as_str)
            .ok_or("no login")?
            .to_owned();
        let id = c.get("id").map(|v| v.to_string()).ok_or("no id")?;
        if self.mapping.contains_key("orgs") {
            let (status, orgs) = json_answer(get("/user/orgs").await).await?;
            if status != 200 {
                return Err("GitHub refused the orgs lookup");
            }
            let names: Vec<Value> = orgs
                .as_array()
                .map(|a| a.iter().filter_map(|o| o.get("login").cloned()).collect())
                .unwrap_or_default();
            c.insert("orgs".into(), Value::Array(names));
        }
        Ok(Identity {
            subject: id,
            username: login,
            scopes: Vec::new(),
            attributes: claims::attributes_from(&c, &self.mapping),
            expires_at: None,
        })
    }
}

pub struct Custom {
    endpoint: String,
}

impl Custom {
    pub fn new(c: &BearerConfig) -> Self {
        Self {
            endpoint: c.endpoint.clone(),
        }
    }

    /// POST `{api_key, request: {path, headers, params}}`; a 200
    /// `{principal, attributes, message}` accepts the token.
    #[tracing::instrument(skip_all)]
    pub async fn validate(
        &self,
        http: &awc::Client,
        token: &str,
        request: &RequestInfo,
    ) -> Result<Identity, &'static str> {
        let body = json!({
            "api_key": token,
            "request": {"path": request.path, "headers": request.headers, "params": request.params},
        });
        let (status, v) = json_answer(http.post(&self.endpoint).send_json(&body).await).await?;
        if status != 200 {
            return Err("custom validator refused the token");
        }
        let principal = v
            .get("principal")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or("no principal")?;
        let mut attributes = BTreeMap::new();
        if let Some(a) = v.get("attributes").and_then(Value::as_object) {
            for (k, vals) in a.iter().take(64) {
                let list: Vec<String> = match vals {
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .take(256)
                        .collect(),
                    Value::String(s) => vec![s.clone()],
                    _ => continue,
                };
                attributes.insert(k.clone(), list);
            }
        }
        let scopes = attributes
            .get("scopes")
            .map(|s| {
                s.iter()
                    .filter_map(|x| crate::auth::Scope::parse(x))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Identity {
            subject: principal.to_owned(),
            username: principal.chars().take(128).collect(),
            scopes,
            attributes,
            expires_at: None,
        })
    }
}
