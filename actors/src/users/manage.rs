//! Adding, importing, changing, removing and listing users.

use super::{write_user, UserStoreActor};
use crate::error::GatehouseError;
use crate::ids::random_id;
use crate::model::{Lock, PasswordHash, UserChange, UserRecord, ADMIN_ROLE};
use crate::store::EndSessions;
use actix::prelude::*;
use std::sync::Arc;
use time::OffsetDateTime;

/// Creates a user, or (with `reset_if_exists`) sets the password of the
/// existing one and ends all their sessions. Answers `(user, created)`.
#[derive(Message)]
#[rtype(result = "Result<(UserRecord, bool), GatehouseError>")]
pub struct AddUser {
    pub username: String,
    pub password: Option<PasswordHash>,
    pub admin: bool,
    pub auth: String,
    pub reset_if_exists: bool,
    pub now: OffsetDateTime,
}

impl Handler<AddUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(UserRecord, bool), GatehouseError>>;

    fn handle(&mut self, msg: AddUser, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        if let Some(existing) = self.by_name(&msg.username) {
            if !msg.reset_if_exists {
                return Box::pin(fut::ready(Err(GatehouseError::Conflict(format!(
                    "user {}",
                    existing.username
                )))));
            }
            let id = existing.id.clone();
            let mut roles = existing.roles.clone();
            if msg.admin && !existing.is_admin() {
                roles.push(ADMIN_ROLE.to_owned());
            }
            let fut = async move {
                if let Some(hash) = msg.password {
                    store
                        .update_user(&id, UserChange::Password(hash), Some(EndSessions::All))
                        .await?;
                }
                store.update_user(&id, UserChange::Roles(roles), None).await
            };
            return Box::pin(write_user(self, fut).map(|res, _, _| res.map(|(u, _)| (u, false))));
        }
        let admin = msg.admin || msg.username == "admin";
        let user = UserRecord {
            id: random_id(),
            username: msg.username,
            display_name: None,
            avatar_url: None,
            roles: if admin {
                vec![ADMIN_ROLE.to_owned()]
            } else {
                Vec::new()
            },
            auth: msg.auth,
            created_at: msg.now,
            last_login: None,
            locked: None,
            password: msg.password,
            external_id: None,
            version: 0,
        };
        let stored = user.clone();
        Box::pin(
            async move { store.insert_user(stored).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    act.put(user.clone());
                    Ok((user, true))
                }),
        )
    }
}

/// Adds users read from another system (llms.py). Existing names are skipped.
/// Answers `(imported, skipped names)`.
#[derive(Message)]
#[rtype(result = "Result<(u64, Vec<String>), GatehouseError>")]
pub struct ImportUsers {
    pub users: Vec<UserRecord>,
}

impl Handler<ImportUsers> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(u64, Vec<String>), GatehouseError>>;

    fn handle(&mut self, msg: ImportUsers, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        Box::pin(
            async move {
                let mut added = Vec::new();
                let mut skipped = Vec::new();
                for u in msg.users {
                    match store.insert_user(u.clone()).await {
                        Ok(()) => added.push(u),
                        Err(GatehouseError::Conflict(_)) => skipped.push(u.username),
                        Err(e) => return Err((e, added)),
                    }
                }
                Ok((added, skipped))
            }
            .into_actor(self)
            .map(|res, act, _| match res {
                Ok((added, skipped)) => {
                    let n = added.len() as u64;
                    added.into_iter().for_each(|u| act.put(u));
                    Ok((n, skipped))
                }
                Err((e, added)) => {
                    added.into_iter().for_each(|u| act.put(u));
                    Err(e)
                }
            }),
        )
    }
}

/// Applies a change to the named user (and ends sessions as asked).
/// Answers the new record and how many sessions the store ended.
#[derive(Message)]
#[rtype(result = "Result<(UserRecord, u64), GatehouseError>")]
pub struct ChangeUser {
    pub user: UserRef,
    pub change: UserChange,
    pub end: Option<EndSessions>,
}

#[derive(Debug, Clone)]
pub enum UserRef {
    Id(String),
    Name(String),
}

impl Handler<ChangeUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(UserRecord, u64), GatehouseError>>;

    fn handle(&mut self, msg: ChangeUser, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.ensure_loaded() {
            return Box::pin(fut::ready(Err(e)));
        }
        let id = match &msg.user {
            UserRef::Id(id) => self.users.get(id).map(|u| u.id.clone()),
            UserRef::Name(n) => self.by_name(n).map(|u| u.id.clone()),
        };
        let Some(id) = id else {
            return Box::pin(fut::ready(Err(GatehouseError::NotFound)));
        };
        let store = self.store.clone();
        write_user(self, async move {
            store.update_user(&id, msg.change, msg.end).await
        })
    }
}

/// Removes the named user with their sessions. Answers `(user, sessions ended)`.
#[derive(Message)]
#[rtype(result = "Result<(UserRecord, u64), GatehouseError>")]
pub struct RemoveUser {
    pub username: String,
}

impl Handler<RemoveUser> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<(UserRecord, u64), GatehouseError>>;

    fn handle(&mut self, msg: RemoveUser, _: &mut Context<Self>) -> Self::Result {
        let user = match self.find(&msg.username) {
            Ok(u) => u,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let store = self.store.clone();
        let id = user.id.clone();
        Box::pin(
            async move { store.delete_user(&id).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let ended = res?;
                    act.local_writes += 1;
                    act.users.remove(&user.id);
                    act.by_name.remove(&user.username.to_lowercase());
                    act.view.publish(&act.users);
                    act.tokens.retain(|_, t| t.record.user_id != user.id);
                    act.token_view.publish(&act.tokens);
                    Ok(((*user).clone(), ended))
                }),
        )
    }
}

#[derive(Message)]
#[rtype(result = "Result<Arc<UserRecord>, GatehouseError>")]
pub struct GetUser {
    pub user: UserRef,
}

impl Handler<GetUser> for UserStoreActor {
    type Result = Result<Arc<UserRecord>, GatehouseError>;

    fn handle(&mut self, msg: GetUser, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        match msg.user {
            UserRef::Id(id) => self.users.get(&id).cloned().ok_or(GatehouseError::NotFound),
            UserRef::Name(n) => self.find(&n),
        }
    }
}

/// All users, by name.
#[derive(Message)]
#[rtype(result = "Result<Vec<Arc<UserRecord>>, GatehouseError>")]
pub struct ListUsers;

impl Handler<ListUsers> for UserStoreActor {
    type Result = Result<Vec<Arc<UserRecord>>, GatehouseError>;

    fn handle(&mut self, _: ListUsers, _: &mut Context<Self>) -> Self::Result {
        self.ensure_loaded()?;
        let mut all: Vec<_> = self.users.values().cloned().collect();
        all.sort_by_key(|u| u.username.to_lowercase());
        Ok(all)
    }
}

/// A lock to apply now.
pub fn lock_now(reason: Option<String>, now: OffsetDateTime) -> Lock {
    Lock {
        reason: reason.unwrap_or_else(|| "locked by an administrator".into()),
        at: now,
    }
}
