//! Users, and the row locks that order every compound operation: the user
//! before what hangs on it.

use super::error::{into_store, is_unique_violation, Fail};
use super::sessions::delete_sessions_of;
use super::sql::{execute, json, query, query_opt, record, records};
use super::{EndSessions, PgStore};
use crate::error::{GatehouseError, StoreError};
use crate::model::{UserChange, UserRecord};
use deadpool_postgres::Transaction;

pub(super) async fn load_users(store: &PgStore) -> Result<Vec<UserRecord>, StoreError> {
    store
        .one("load_users", &(), |c, _| {
            Box::pin(async move {
                let rows =
                    query(c, "SELECT record FROM users ORDER BY id COLLATE \"C\"", &[]).await?;
                records(&rows)
            })
        })
        .await
        .map_err(into_store)
}

pub(super) async fn insert_user(store: &PgStore, user: UserRecord) -> Result<(), GatehouseError> {
    let args = (json(&user)?, user);
    store
        .one("insert_user", &args, |c, (rec, user)| {
            Box::pin(async move {
                let sql = "INSERT INTO users (id, username_lower, record) VALUES ($1, $2, $3)";
                match execute(c, sql, &[&user.id, &user.username.to_lowercase(), rec]).await {
                    Err(Fail::Db(e)) if is_unique_violation(&e) => {
                        Err(GatehouseError::Conflict(format!("user {}", user.username)).into())
                    }
                    other => other.map(drop),
                }
            })
        })
        .await
}

pub(super) async fn update_user(
    store: &PgStore,
    user_id: &str,
    change: UserChange,
    end: Option<EndSessions>,
) -> Result<(UserRecord, u64), GatehouseError> {
    let args = (user_id, change, end);
    store
        .tx("update_user", &args, |t, (id, change, end)| {
            Box::pin(async move {
                let mut user = locked_user(t, id, Lock::Update).await?;
                change.clone().apply(&mut user);
                execute(
                    t,
                    "UPDATE users SET username_lower = $2, record = $3 WHERE id = $1",
                    &[id, &user.username.to_lowercase(), &json(&user)?],
                )
                .await?;
                let ended = match end {
                    Some(end) => delete_sessions_of(t, id, *end).await?,
                    None => 0,
                };
                Ok((user, ended))
            })
        })
        .await
}

pub(super) async fn delete_user(store: &PgStore, user_id: &str) -> Result<u64, GatehouseError> {
    store
        .tx("delete_user", user_id, |t, id| {
            Box::pin(async move {
                if query_opt(t, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&id])
                    .await?
                    .is_none()
                {
                    return Err(GatehouseError::NotFound.into());
                }
                let ended = delete_sessions_of(t, id, EndSessions::All).await?;
                // API tokens go with the user (ON DELETE CASCADE).
                execute(t, "DELETE FROM users WHERE id = $1", &[&id]).await?;
                Ok(ended)
            })
        })
        .await
}

/// The user, read under `lock` (`FOR SHARE` or `FOR UPDATE`); `NotFound` when gone.
async fn locked_user(t: &Transaction<'_>, id: &str, lock: Lock) -> Result<UserRecord, Fail> {
    let sql = match lock {
        Lock::Share => "SELECT record FROM users WHERE id = $1 FOR SHARE",
        Lock::Update => "SELECT record FROM users WHERE id = $1 FOR UPDATE",
    };
    match query_opt(t, sql, &[&id]).await? {
        Some(row) => record(&row, 0),
        None => Err(GatehouseError::NotFound.into()),
    }
}

/// As the sled backend's `check_user_active`: `NotFound` or `AccountLocked`.
/// Holds the user `FOR SHARE` until the transaction ends.
pub(super) async fn check_user_active(t: &Transaction<'_>, id: &str) -> Result<(), Fail> {
    if locked_user(t, id, Lock::Share).await?.locked.is_some() {
        return Err(GatehouseError::AccountLocked.into());
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Lock {
    Share,
    Update,
}
