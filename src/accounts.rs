//! Account operations shared by the HTTP surfaces and the CLI (whether it
//! talks to a running server over the admin socket or opens the store
//! itself). Each one orders its messages so that a credential change holds
//! in the store first, then in the sessions' memory, then is audited.

use crate::error::ApiError;
use crate::password::check_strength;
use crate::AppState;
use gatehouse_actors::model::{Lock, PasswordHash, UserChange, UserRecord, ADMIN_ROLE};
use gatehouse_actors::session::ForgetUserSessions;
use gatehouse_actors::store::EndSessions;
use gatehouse_actors::users::{
    AddUser, ChangeUser, ImportUsers, ListUsers, RecordAudit, RemoveUser, UserRecordRef, UserRef,
};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// Who performs an operation, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<String>,
    pub name: String,
    pub ip: Option<IpAddr>,
}

impl Actor {
    pub fn cli() -> Self {
        Actor {
            id: None,
            name: "cli".into(),
            ip: None,
        }
    }
}

/// Usernames: 1 to 64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_username",
            "a username is 1 to 64 letters, digits, '.', '_', '-' or '@'",
        ))
    }
}

pub async fn audit(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: Option<String>,
    details: serde_json::Value,
) {
    let who = actor.id.as_deref().map(|id| UserRecordRef {
        id,
        name: &actor.name,
    });
    let mut msg = RecordAudit::new(
        state.handles.now(),
        who.as_ref(),
        action,
        target,
        actor.ip,
        details,
    );
    if who.is_none() {
        msg.0.actor_name = actor.name.clone();
    }
    match state.handles.users().send(msg).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, action, "audit event not recorded"),
        Err(e) => tracing::warn!(error = %e, action, "audit event not recorded"),
    }
}

/// Drops from the sessions' memory what the store already ended.
async fn forget_sessions(state: &AppState, user_id: &str, end: EndSessions) {
    let msg = ForgetUserSessions {
        user_id: user_id.to_owned(),
        end,
    };
    if let Err(e) = state.handles.sessions().send(msg).await {
        // The actor is being replaced; the new one reloads from the store,
        // where these sessions are already gone.
        tracing::warn!(error = %e, "session actor unavailable while ending sessions");
    }
}

/// Adds a user, or resets the password (ending all sessions) of an existing
/// one when `reset_if_exists`. Answers `(user, created)`.
pub async fn add_user(
    state: &AppState,
    actor: &Actor,
    username: &str,
    password: &str,
    admin: bool,
    reset_if_exists: bool,
) -> Result<(UserRecord, bool), ApiError> {
    check_username(username)?;
    check_strength(password).map_err(|m| ApiError::unprocessable("weak_password", m))?;
    let hash = state.hasher.hash(password).await?;
    let msg = AddUser {
        username: username.to_owned(),
        password: Some(hash),
        admin,
        auth: "credentials".into(),
        reset_if_exists,
        now: state.handles.now(),
    };
    let (user, created) = state
        .handles
        .users()
        .send(msg)
        .await?
        .map_err(|e| match e {
            gatehouse_actors::GatehouseError::Conflict(_) => {
                ApiError::conflict("username_taken", "that username is taken")
            }
            other => other.into(),
        })?;
    if created {
        audit(
            state,
            actor,
            "user.create",
            Some(user.username.clone()),
            json!({"roles": user.roles}),
        )
        .await;
    } else {
        forget_sessions(state, &user.id, EndSessions::All).await;
        audit(
            state,
            actor,
            "user.password",
            Some(user.username.clone()),
            json!({"by": "reset"}),
        )
        .await;
    }
    Ok((user, created))
}

pub async fn remove_user(
    state: &AppState,
    actor: &Actor,
    username: &str,
) -> Result<UserRecord, ApiError> {
    let (user, ended) = state
        .handles
        .users()
        .send(RemoveUser {
            username: username.to_owned(),
        })
        .await??;
    forget_sessions(state, &user.id, EndSessions::All).await;
    audit(
        state,
        actor,
        "user.delete",
        Some(user.username.clone()),
        json!({"sessions_ended": ended}),
    )
    .await;
    Ok(user)
}

pub async fn lock_user(
    state: &AppState,
    actor: &Actor,
    username: &str,
    reason: Option<String>,
) -> Result<UserRecord, ApiError> {
    let reason = reason
        .filter(|r| !r.trim().is_empty())
        .map(|r| r.chars().take(500).collect());
    let lock = gatehouse_actors::users::lock_now(reason, state.handles.now());
    let user = change(
        state,
        username,
        UserChange::Lock(Some(lock)),
        Some(EndSessions::All),
    )
    .await?;
    audit(
        state,
        actor,
        "user.lock",
        Some(user.username.clone()),
        json!({"reason": user.locked.as_ref().map(|l: &Lock| l.reason.clone())}),
    )
    .await;
    Ok(user)
}

pub async fn unlock_user(
    state: &AppState,
    actor: &Actor,
    username: &str,
) -> Result<UserRecord, ApiError> {
    let user = change(state, username, UserChange::Lock(None), None).await?;
    audit(
        state,
        actor,
        "user.unlock",
        Some(user.username.clone()),
        json!({}),
    )
    .await;
    Ok(user)
}

/// Sets a password on the user's own request (keeping `keep`) or an admin's
/// (ending every session).
pub async fn set_password(
    state: &AppState,
    actor: &Actor,
    user: UserRef,
    password: &str,
    keep: Option<gatehouse_actors::TokenHash>,
) -> Result<UserRecord, ApiError> {
    check_strength(password).map_err(|m| ApiError::unprocessable("weak_password", m))?;
    let hash: PasswordHash = state.hasher.hash(password).await?;
    let end = keep.map_or(EndSessions::All, EndSessions::AllBut);
    let msg = ChangeUser {
        user,
        change: UserChange::Password(hash),
        end: Some(end),
    };
    let (user, ended) = state.handles.users().send(msg).await??;
    forget_sessions(state, &user.id, end).await;
    audit(
        state,
        actor,
        "user.password",
        Some(user.username.clone()),
        json!({"sessions_ended": ended}),
    )
    .await;
    Ok(user)
}

async fn change(
    state: &AppState,
    username: &str,
    change: UserChange,
    end: Option<EndSessions>,
) -> Result<UserRecord, ApiError> {
    let msg = ChangeUser {
        user: UserRef::Name(username.to_owned()),
        change,
        end,
    };
    let (user, _) = state.handles.users().send(msg).await??;
    if let Some(end) = end {
        forget_sessions(state, &user.id, end).await;
    }
    Ok(user)
}

pub async fn list_users(state: &AppState) -> Result<Vec<Arc<UserRecord>>, ApiError> {
    Ok(state.handles.users().send(ListUsers).await??)
}

/// Imports llms.py users; answers `(imported, skipped names)`.
pub async fn import_llms(
    state: &AppState,
    actor: &Actor,
    json_text: &str,
) -> Result<(u64, Vec<String>), ApiError> {
    let users = crate::llms_import::parse(json_text, state.handles.now())
        .map_err(|e| ApiError::unprocessable("invalid_import", e))?;
    let (n, skipped) = state.handles.users().send(ImportUsers { users }).await??;
    audit(
        state,
        actor,
        "user.create",
        None,
        json!({"imported": n, "from": "llms.py", "skipped": skipped.len()}),
    )
    .await;
    Ok((n, skipped))
}

/// Grants or takes away the Admin role (any kind of user: password, GitHub,
/// OIDC). It holds on the user's next request. The last admin keeps it.
pub async fn set_admin(
    state: &AppState,
    actor: &Actor,
    username: &str,
    admin: bool,
) -> Result<UserRecord, ApiError> {
    let users = list_users(state).await?;
    let user = users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(username))
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let mut roles: Vec<String> = user
        .roles
        .iter()
        .filter(|r| *r != ADMIN_ROLE)
        .cloned()
        .collect();
    if admin {
        roles.push(ADMIN_ROLE.to_owned());
    } else if user.is_admin()
        && users
            .iter()
            .filter(|u| u.is_admin() && u.locked.is_none())
            .count()
            <= 1
    {
        return Err(ApiError::conflict(
            "last_admin",
            "this is the only admin; make another admin first",
        ));
    }
    let before = user.roles.clone();
    let user = change(state, username, UserChange::Roles(roles), None).await?;
    audit(
        state,
        actor,
        "user.roles",
        Some(user.username.clone()),
        json!({"before": before, "after": user.roles}),
    )
    .await;
    Ok(user)
}
