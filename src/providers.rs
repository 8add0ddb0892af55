//! Provider management shared by the admin API and the CLI: validation,
//! the `ProviderActor` messages, and the audit trail. Nothing here ever
//! answers with a key.

use crate::accounts::{self, Actor};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;
use gatehouse_actors::gateway::actor::{
    DeleteProfile, DeleteProvider, Describe, ListUpstream, ProviderInfo, PutAlias, PutProfile,
    PutProvider, RotateMaster, SetDefaultModel,
};
use gatehouse_actors::gateway::profiles::{
    header_allowed, header_value_allowed, ProfileState, StoredProvider, StoredTimeouts,
};
use gatehouse_actors::gateway::Timeouts;
use gatehouse_actors::secrets::MasterKey;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// A provider or profile name: it appears in model names and URLs.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_value",
            format!("a {what} name is 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"),
        ))
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_value", msg.into())
}

fn now_ms(state: &AppState) -> i64 {
    (state.handles.now().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A provider as the API shows it (never a key).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Provider)]
pub struct ProviderView {
    pub name: String,
    /// `openai` or `anthropic`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub base_url: String,
    /// Listed models, or the ones discovered.
    pub models: Vec<String>,
    pub local: bool,
    /// `config` (from the file; read-only here) or `api`.
    pub source: &'static str,
    /// Whether clients can call it now (egress allowed, a usable credential).
    pub offered: bool,
    pub timeouts: StoredTimeouts,
    pub profiles: Vec<ProfileView>,
}

/// A credential profile of a provider (never its key).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Profile)]
pub struct ProfileView {
    pub name: String,
    pub state: ProfileState,
    /// Until when a `cooling` profile rests.
    #[schema(required = true, format = DateTime)]
    pub until: Option<String>,
    pub order: i64,
    /// `config`, `api` or `env`.
    pub source: &'static str,
}

/// A profile just put, with its provider's name.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SavedProfile {
    pub provider: String,
    #[serde(flatten)]
    pub profile: ProfileView,
}

/// A model alias: the targets it tries, primary first.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AliasView {
    pub alias: String,
    pub targets: Vec<String>,
}

pub fn view(p: &ProviderInfo) -> ProviderView {
    let profiles = p
        .profiles
        .iter()
        .map(|q| {
            let until = q.until_ms.and_then(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            });
            ProfileView {
                name: q.name.clone(),
                state: q.state,
                until: until.map(crate::rfc3339),
                order: q.order,
                source: q.source,
            }
        })
        .collect();
    ProviderView {
        name: p.name.clone(),
        kind: p.kind.as_str(),
        base_url: p.base_url.clone(),
        models: p.models.clone(),
        local: p.local,
        source: p.source,
        offered: p.offered,
        timeouts: p.timeouts,
        profiles,
    }
}

pub async fn list(state: &AppState) -> Result<Vec<ProviderInfo>, ApiError> {
    Ok(state
        .handles
        .providers()
        .send(Describe {
            now_ms: now_ms(state),
        })
        .await?)
}

pub async fn get(state: &AppState, name: &str) -> Result<ProviderInfo, ApiError> {
    list(state)
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no provider named {name:?}")))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderPut {
    /// `openai` (any OpenAI-compatible API) or `anthropic`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(openai|anthropic)$")]
    pub kind: String,
    /// `http://` or `https://`, with a host; no credentials, query or fragment.
    #[schema(pattern = "^https?://[^/?#@\\s]+[^?#@\\s]*$", max_length = 2048)]
    pub base_url: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub timeouts: Option<TimeoutsPut>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsPut {
    pub connect_ms: Option<u64>,
    pub first_byte_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

fn base_url(url: &str) -> Result<String, ApiError> {
    let bad = || {
        invalid("base_url must be an http:// or https:// URL with a host, without credentials, query or fragment")
    };
    let uri: actix_web::http::Uri = url.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    let clean = !url.contains('@') && uri.query().is_none() && !url.contains('#');
    if !scheme_ok || !host_ok || !clean || url.len() > 2048 || url.chars().any(char::is_whitespace)
    {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn models(list: Vec<String>) -> Result<Vec<String>, ApiError> {
    if list.len() > 1000 {
        return Err(invalid("at most 1000 models"));
    }
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        if m.is_empty() || m.len() > 256 || m.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                "a model id is 1 to 256 characters, without spaces or control characters",
            ));
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

fn timeouts(t: Option<TimeoutsPut>) -> Result<StoredTimeouts, ApiError> {
    let d: StoredTimeouts = Timeouts::default().into();
    let t = t.unwrap_or_default();
    let pick = |v: Option<u64>, default: u64, what: &str| match v {
        None => Ok(default),
        Some(ms) if (1..=3_600_000).contains(&ms) => Ok(ms),
        Some(_) => Err(invalid(format!("timeouts.{what} must be 1 to 3600000 ms"))),
    };
    Ok(StoredTimeouts {
        connect_ms: pick(t.connect_ms, d.connect_ms, "connect_ms")?,
        first_byte_ms: pick(t.first_byte_ms, d.first_byte_ms, "first_byte_ms")?,
        total_ms: pick(t.total_ms, d.total_ms, "total_ms")?,
    })
}

/// Adds or changes a run-time provider; `true` when new.
pub async fn put_provider(
    state: &AppState,
    actor: &Actor,
    name: &str,
    body: ProviderPut,
) -> Result<(ProviderInfo, bool), ApiError> {
    check_name("provider", name)?;
    let kind = match body.kind.as_str() {
        "openai" | "anthropic" => body.kind.clone(),
        other => {
            return Err(invalid(format!(
                "unknown type {:?} (expected openai or anthropic)",
                other.chars().take(32).collect::<String>()
            )))
        }
    };
    let provider = StoredProvider {
        kind,
        base_url: base_url(&body.base_url)?,
        models: models(body.models)?,
        local: body.local,
        timeouts: timeouts(body.timeouts)?,
    };
    let details =
        json!({"type": provider.kind, "base_url": provider.base_url, "local": provider.local});
    let created = state
        .handles
        .providers()
        .send(PutProvider {
            name: name.to_owned(),
            provider,
        })
        .await??;
    let mut details = details;
    details["created"] = created.into();
    accounts::audit(state, actor, "provider.put", Some(name.to_owned()), details).await;
    Ok((get(state, name).await?, created))
}

pub async fn delete_provider(state: &AppState, actor: &Actor, name: &str) -> Result<(), ApiError> {
    let existed = state
        .handles
        .providers()
        .send(DeleteProvider {
            name: name.to_owned(),
        })
        .await??;
    if !existed {
        return Err(ApiError::not_found(format!(
            "no run-time provider named {name:?}"
        )));
    }
    accounts::audit(
        state,
        actor,
        "provider.delete",
        Some(name.to_owned()),
        json!({}),
    )
    .await;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfilePut {
    /// 1 to 4096 characters without spaces; never shown again.
    #[schema(pattern = "^\\S{1,4096}$")]
    pub api_key: Option<String>,
    /// Lower first.
    #[schema(minimum = -1000000, maximum = 1000000)]
    pub order: Option<i64>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// Adds or changes a profile; answers its listing and whether it is new.
pub async fn put_profile(
    state: &AppState,
    actor: &Actor,
    provider: &str,
    name: &str,
    body: ProfilePut,
) -> Result<(SavedProfile, bool), ApiError> {
    check_name("profile", name)?;
    if let Some(k) = &body.api_key {
        if k.is_empty() || k.len() > 4096 || k.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(invalid(
                "api_key must be 1 to 4096 characters without spaces or control characters",
            ));
        }
    }
    if let Some(o) = body.order {
        if !(-1_000_000..=1_000_000).contains(&o) {
            return Err(invalid("order must be between -1000000 and 1000000"));
        }
    }
    let headers = match body.headers {
        None => None,
        Some(h) => {
            if h.len() > 16 {
                return Err(invalid("at most 16 headers"));
            }
            for (k, v) in &h {
                if !header_allowed(k) {
                    return Err(invalid(format!(
                        "the header {:?} may not be set by a profile",
                        k.chars().take(64).collect::<String>()
                    )));
                }
                if !header_value_allowed(v) {
                    return Err(invalid(format!(
                        "the value of {k:?} must be printable ASCII, at most 1024 bytes"
                    )));
                }
            }
            Some(h.into_iter().collect::<Vec<_>>())
        }
    };
    let created = state
        .handles
        .providers()
        .send(PutProfile {
            provider: provider.to_owned(),
            name: name.to_owned(),
            api_key: body.api_key,
            order: body.order,
            headers,
        })
        .await?
        .map_err(|e| match e {
            gatehouse_actors::GatehouseError::NotFound => {
                ApiError::not_found(format!("no provider named {provider:?}"))
            }
            other => other.into(),
        })?;
    accounts::audit(
        state,
        actor,
        "profile.put",
        Some(format!("{provider}/{name}")),
        json!({"provider": provider, "profile": name, "created": created}),
    )
    .await;
    let info = get(state, provider).await?;
    // Listed unless another request removed it meanwhile.
    let profile = view(&info)
        .profiles
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no profile named {name:?}")))?;
    let saved = SavedProfile {
        provider: provider.to_owned(),
        profile,
    };
    Ok((saved, created))
}

pub async fn delete_profile(
    state: &AppState,
    actor: &Actor,
    provider: &str,
    name: &str,
) -> Result<(), ApiError> {
    let existed = state
        .handles
        .providers()
        .send(DeleteProfile {
            provider: provider.to_owned(),
            name: name.to_owned(),
        })
        .await??;
    if !existed {
        return Err(ApiError::not_found(format!(
            "no stored profile {name:?} of the provider {provider:?}"
        )));
    }
    accounts::audit(
        state,
        actor,
        "profile.delete",
        Some(format!("{provider}/{name}")),
        json!({"provider": provider, "profile": name}),
    )
    .await;
    Ok(())
}

/// The model ids a provider lists upstream now.
pub async fn upstream_models(state: &AppState, name: &str) -> Result<Vec<String>, ApiError> {
    state
        .handles
        .providers()
        .send(ListUpstream {
            name: name.to_owned(),
        })
        .await?
        .map_err(|e| match e {
            gatehouse_actors::GatehouseError::NotFound => {
                ApiError::not_found(format!("no provider named {name:?}"))
            }
            gatehouse_actors::GatehouseError::Unavailable(why) => {
                tracing::warn!(provider = name, reason = %why, "listing upstream models failed");
                ApiError::upstream()
            }
            other => other.into(),
        })
}

/// `providers test`: lists the provider's models upstream (a request with
/// its credential), timing it.
pub async fn test(state: &AppState, name: &str) -> Result<(u128, Vec<String>), ApiError> {
    get(state, name).await?;
    let t = Instant::now();
    let models = upstream_models(state, name).await?;
    Ok((t.elapsed().as_millis(), models))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasPut {
    /// 1 to 16 `provider/model` names, primary first.
    #[schema(min_items = 1, max_items = 16)]
    pub targets: Vec<String>,
}

pub async fn put_alias(
    state: &AppState,
    actor: &Actor,
    alias: &str,
    body: AliasPut,
) -> Result<(AliasView, bool), ApiError> {
    if alias.is_empty()
        || alias.len() > 128
        || alias == "default"
        || alias.contains('/')
        || alias.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid("an alias is 1 to 128 characters without '/', spaces or control characters, and not `default`"));
    }
    if body.targets.is_empty() || body.targets.len() > 16 {
        return Err(invalid(
            "targets lists 1 to 16 PROVIDER/MODEL names, primary first",
        ));
    }
    let created = state
        .handles
        .providers()
        .send(PutAlias {
            name: alias.to_owned(),
            targets: body.targets.clone(),
        })
        .await??;
    accounts::audit(
        state,
        actor,
        "alias.put",
        Some(alias.to_owned()),
        json!({"targets": body.targets}),
    )
    .await;
    let view = AliasView {
        alias: alias.to_owned(),
        targets: body.targets,
    };
    Ok((view, created))
}

/// Sets what `default` resolves to (empty: back to the config file's).
pub async fn set_default(state: &AppState, actor: &Actor, model: &str) -> Result<(), ApiError> {
    state
        .handles
        .providers()
        .send(SetDefaultModel {
            model: model.to_owned(),
        })
        .await?
        .map_err(|e| match e {
            gatehouse_actors::GatehouseError::NotFound => ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("the model {model:?} does not exist or is not offered"),
            ),
            other => other.into(),
        })?;
    accounts::audit(
        state,
        actor,
        "alias.put",
        Some("default".into()),
        json!({"targets": [model]}),
    )
    .await;
    Ok(())
}

/// The model names `principal` may call now.
pub fn models_for(state: &AppState, principal: &Principal) -> Vec<String> {
    state
        .handles
        .catalog()
        .load()
        .model_ids()
        .into_iter()
        .filter(|(id, _)| state.config.access.may_call(principal, id))
        .map(|(id, _)| id)
        .collect()
}

/// A new master key: every stored profile re-sealed under it in one write.
/// Answers how many were, and the key's text when it must be given to the
/// next start by hand (it came from `GATEHOUSE_MASTER_KEY`).
pub async fn rotate_master(
    state: &AppState,
    actor: &Actor,
) -> Result<(usize, Option<String>), ApiError> {
    let Some(source) = state.master_source.clone() else {
        return Err(ApiError::conflict(
            "no_master_key",
            "this gateway has no master key to rotate",
        ));
    };
    let (key, text) = MasterKey::generate();
    crate::master::begin_rotation(&source, &text).map_err(|e| {
        tracing::error!(error = %e, "master key rotation failed");
        ApiError::internal()
    })?;
    let n = match state
        .handles
        .providers()
        .send(RotateMaster(Arc::new(key)))
        .await
    {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            crate::master::abandon_rotation(&source);
            return Err(e.into());
        }
        Err(e) => {
            crate::master::abandon_rotation(&source);
            return Err(e.into());
        }
    };
    crate::master::finish_rotation(&source).map_err(|e| {
        tracing::error!(error = %e, "master key rotation: the new key file was not moved into place");
        ApiError::internal()
    })?;
    accounts::audit(
        state,
        actor,
        "keys.rotate",
        Some("master".into()),
        json!({"resealed": n}),
    )
    .await;
    let show = matches!(
        source,
        crate::master::Source::Env | crate::master::Source::Given
    )
    .then_some(text);
    Ok((n, show))
}
