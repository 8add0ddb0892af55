//! User avatars.

use super::{write_user, UserStoreActor};
use crate::error::GatehouseError;
use crate::model::{UserChange, UserRecord};
use actix::prelude::*;

/// Stores a user's avatar and points their `avatar_url` at it.
#[derive(Message)]
#[rtype(result = "Result<UserRecord, GatehouseError>")]
pub struct PutAvatar {
    pub user_id: String,
    pub content_type: &'static str,
    pub data: Vec<u8>,
}

impl Handler<PutAvatar> for UserStoreActor {
    type Result = ResponseActFuture<Self, Result<UserRecord, GatehouseError>>;

    fn handle(&mut self, msg: PutAvatar, _: &mut Context<Self>) -> Self::Result {
        let Some(user) = self.users.get(&msg.user_id).cloned() else {
            return Box::pin(fut::ready(Err(GatehouseError::NotFound)));
        };
        let store = self.store.clone();
        let profile = UserChange::Profile {
            display_name: user.display_name.clone(),
            avatar_url: Some(format!("/avatars/{}", user.id)),
        };
        write_user(self, async move {
            store
                .put_avatar(&msg.user_id, msg.content_type, msg.data)
                .await?;
            store.update_user(&msg.user_id, profile, None).await
        })
        .map(|res, _, _| res.map(|(u, _)| u))
        .boxed_local()
    }
}

/// A user's avatar: `(content type, bytes)`.
#[derive(Message)]
#[rtype(result = "Result<Option<(String, Vec<u8>)>, GatehouseError>")]
pub struct GetAvatar {
    pub user_id: String,
}

impl Handler<GetAvatar> for UserStoreActor {
    type Result = ResponseFuture<Result<Option<(String, Vec<u8>)>, GatehouseError>>;

    fn handle(&mut self, msg: GetAvatar, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { Ok(store.get_avatar(&msg.user_id).await?) })
    }
}
