//! Signing in: password sign-ins with throttling, identity-provider
//! sign-ins, and the periodic sweep of throttling records.

use super::{write_user, UserStoreActor};
use crate::error::GatehouseError;
use crate::ids::random_id;
use crate::model::{LastLogin, PasswordHash, UserChange, UserRecord, ADMIN_ROLE};
use actix::prelude::*;
use std::net::IpAddr;
use std::sync::Arc;
use time::OffsetDateTime;

/// First half of a sign-in: refuses a throttled username or address, else
/// answers the user (if any) whose password the caller verifies off-actor.
#[derive(Message)]
#[rtype(result = "Result<Option<Arc<UserRecord>>, GatehouseError>")]
pub struct BeginLogin {
    pub username: String,
    pub ip: Option<IpAddr>,
    pub now: OffsetDateTime,
}

impl Handler<BeginLogin> for UserStoreActor {
    type Result = Result<Option<Arc<UserRecord>>, GatehouseError>;

    fn handle(&mut self, msg: BeginLogin, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        let name = msg.username.to_lowercase();
        let by_user = self.by_user.retry_after(&name, msg.now);
        let by_ip = msg.ip.and_then(|ip| self.by_ip.retry_after(&ip, msg.now));
        if let Some(retry_after) = by_user.max(by_ip) {
            return Err(GatehouseError::Throttled { retry_after });
        }
        Ok(self.by_name(&name))
    }
}

/// Second half of a sign-in, once the password was checked.
#[derive(Message)]
#[rtype(result = "Result<UserRecord, GatehouseError>")]
pub struct FinishLogin {
    pub username: String,
    pub user_id: Option<String>,
    pub password_ok: bool,
    /// An Argon2id hash replacing a legacy one.
    pub upgrade: Option<PasswordHash>,
    pub ip: Option<IpAddr>,
    pub now: OffsetDateTime,
}

impl Handler<FinishLogin> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<UserRecord, GatehouseError>>;

    fn handle(&mut self, msg: FinishLogin, _: &mut Context<Self>) -> Self::Result {
        let user = msg
            .user_id
            .as_ref()
            .and_then(|id| self.users.get(id).cloned());
        let (Some(user), true) = (user, msg.password_ok) else {
            self.by_user.record(msg.username.to_lowercase(), msg.now);
            if let Some(ip) = msg.ip {
                self.by_ip.record(ip, msg.now);
            }
            return Box::pin(fut::ready(Err(GatehouseError::InvalidCredentials)));
        };
        if user.locked.is_some() {
            return Box::pin(fut::ready(Err(GatehouseError::AccountLocked)));
        }
        self.by_user.clear(&msg.username.to_lowercase());
        let store = self.store.clone();
        let change = UserChange::Login {
            at: LastLogin {
                at: msg.now,
                ip: msg.ip,
            },
            upgrade: msg.upgrade,
        };
        let id = user.id.clone();
        Box::pin(
            write_user(
                self,
                async move { store.update_user(&id, change, None).await },
            )
            .map(|res, _, _| res.map(|(u, _)| u)),
        )
    }
}

/// Forgets throttling records that have left the window and writes the
/// batched token last-use times. Answers how many throttling keys went.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<u64, GatehouseError>")]
pub struct Sweep {
    pub now: OffsetDateTime,
}

impl Handler<Sweep> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<u64, GatehouseError>>;

    fn handle(&mut self, msg: Sweep, _: &mut Context<Self>) -> Self::Result {
        let before = self.by_user.len() + self.by_ip.len();
        self.by_user.prune(msg.now);
        self.by_ip.prune(msg.now);
        let pruned = (before - self.by_user.len() - self.by_ip.len()) as u64;
        let used = self.unsaved_token_use();
        let store = self.store.clone();
        Box::pin(
            async move { store.touch_tokens(used.clone()).await.map(|_| used) }
                .into_actor(self)
                .map(move |res, act, _| {
                    for (id, at) in res? {
                        if let Some(t) = act.tokens.get(&id) {
                            let mut r = t.record.clone();
                            r.last_used_at = Some(at);
                            act.put_token(r);
                        }
                    }
                    Ok(pruned)
                }),
        )
    }
}

/// Signs in a user known to an identity provider: finds them by
/// `external_id` (a renamed login is still the same user), refreshes their
/// profile and last login, or creates them under a free username (never
/// taking over a password user's name). A locked user is refused.
#[derive(Message)]
#[rtype(result = "Result<UserRecord, GatehouseError>")]
pub struct UpsertExternalUser {
    pub external_id: String,
    pub login: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    /// `github`, `oidc:NAME`.
    pub auth: String,
    /// Grant the Admin role (the provider's admin list names this user).
    pub admin: bool,
    pub ip: Option<IpAddr>,
    pub now: OffsetDateTime,
}

impl UpsertExternalUser {
    /// The first username that is free: the login, then `login@auth`, then
    /// with the external id appended.
    fn username(&self, taken: impl Fn(&str) -> bool) -> String {
        let suffix: String = self
            .auth
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let id: String = self
            .external_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        [
            self.login.clone(),
            format!("{}@{suffix}", self.login),
            format!("{}@{suffix}-{id}", self.login),
        ]
        .into_iter()
        .find(|c| !taken(c))
        .unwrap_or_else(|| format!("{}@{suffix}-{}", self.login, &crate::ids::random_id()[..8]))
    }
}

impl Handler<UpsertExternalUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<UserRecord, GatehouseError>>;

    fn handle(&mut self, msg: UpsertExternalUser, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        let login = LastLogin {
            at: msg.now,
            ip: msg.ip,
        };
        let existing = self
            .users
            .values()
            .find(|u| u.external_id.as_deref() == Some(&msg.external_id))
            .cloned();
        let fut = match existing {
            Some(u) if u.locked.is_some() => {
                return Box::pin(fut::ready(Err(GatehouseError::AccountLocked)))
            }
            Some(u) => {
                let profile = UserChange::Profile {
                    display_name: msg.display_name.clone(),
                    avatar_url: msg.avatar_url.clone(),
                };
                let grant = (msg.admin && !u.is_admin()).then(|| {
                    let mut roles = u.roles.clone();
                    roles.push(ADMIN_ROLE.to_owned());
                    UserChange::Roles(roles)
                });
                let id = u.id.clone();
                Box::pin(async move {
                    store.update_user(&id, profile, None).await?;
                    if let Some(g) = grant {
                        store.update_user(&id, g, None).await?;
                    }
                    store
                        .update_user(
                            &id,
                            UserChange::Login {
                                at: login,
                                upgrade: None,
                            },
                            None,
                        )
                        .await
                }) as futures_util::future::LocalBoxFuture<'static, _>
            }
            None => {
                let username = msg.username(|name| self.by_name.contains_key(&name.to_lowercase()));
                let user = UserRecord {
                    id: random_id(),
                    username,
                    display_name: msg.display_name,
                    avatar_url: msg.avatar_url,
                    roles: if msg.admin {
                        vec![ADMIN_ROLE.to_owned()]
                    } else {
                        Vec::new()
                    },
                    auth: msg.auth,
                    created_at: msg.now,
                    last_login: None,
                    locked: None,
                    password: None,
                    external_id: Some(msg.external_id),
                    version: 0,
                };
                Box::pin(async move {
                    store.insert_user(user.clone()).await?;
                    store
                        .update_user(
                            &user.id,
                            UserChange::Login {
                                at: login,
                                upgrade: None,
                            },
                            None,
                        )
                        .await
                })
            }
        };
        Box::pin(fut.into_actor(self).map(|res, act, _| {
            let (user, _) = res?;
            act.put(user.clone());
            Ok(user)
        }))
    }
}
