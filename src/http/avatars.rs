//! Avatars: `PUT /account/api/avatar` (PNG, JPEG or WebP, checked by
//! content, at most 1 MiB) and `GET /avatars/{user_id}` for anyone, as GitHub
//! serves avatars.

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use gatehouse_actors::users::{GetAvatar, PutAvatar};

pub const MAX_AVATAR: usize = 1024 * 1024;

/// An image's bytes (PNG, JPEG or WebP).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documents a raw body
pub struct Image(Vec<u8>);

/// The image type the bytes are, whatever the client says.
pub fn sniff(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Uploads the caller's avatar: the raw image, with its `Content-Type`.
#[utoipa::path(put, path = "/account/api/avatar", tag = "account", security(("bearer" = []), ("api_key" = []), ("session_cookie" = []), ("session_token" = [])),
    request_body(description = "The image, at most 1 MiB; checked by content",
        content(
            (Image = "image/png"),
            (Image = "image/jpeg"),
            (Image = "image/webp"),
        )),
    responses(
        (status = 204, description = "Stored"),
        (status = 403, description = "`no_user`: the principal has no user record", body = ErrorBody),
        (status = 413, description = "Over 1 MiB", body = ErrorBody),
        (status = 422, description = "`invalid_image`: not a PNG, JPEG or WebP image of its declared type", body = ErrorBody),
    ))]
pub async fn put(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = principal
        .user
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("no_user", "avatars belong to users"))?;
    let body = crate::http::read_body(payload, MAX_AVATAR).await?;
    let invalid = || {
        ApiError::unprocessable(
            "invalid_image",
            "the body must be a PNG, JPEG or WebP image with its Content-Type",
        )
    };
    let kind = sniff(&body).ok_or_else(invalid)?;
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let declared = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if declared != kind && !(kind == "image/jpeg" && declared == "image/jpg") {
        return Err(invalid());
    }
    let msg = PutAvatar {
        user_id: user.id.clone(),
        content_type: kind,
        data: body.to_vec(),
    };
    state.handles.users().send(msg).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// A user's avatar, to anyone (as GitHub serves avatars).
#[utoipa::path(get, path = "/avatars/{user_id}", tag = "account",
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The image",
            content(
                (Image = "image/png"),
                (Image = "image/jpeg"),
                (Image = "image/webp"),
            )),
        (status = 404, description = "No such user, or no avatar uploaded", body = ErrorBody),
    ))]
pub async fn get(
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("no such avatar"));
    }
    match state
        .handles
        .users()
        .send(GetAvatar {
            user_id: id.into_inner(),
        })
        .await??
    {
        Some((content_type, data)) => Ok(HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ))
            .body(data)),
        None => Err(ApiError::not_found("no such avatar")),
    }
}
