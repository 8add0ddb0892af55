//! sled admits one process. While `serve` runs, the CLI sends its commands
//! over a Unix socket in the home (mode 0600 in a 0700 directory, so only
//! the home's owner can connect); the server runs them through the same
//! actors, so their effect holds at once. One JSON line each way, except
//! for `chat`: its answer streams as one `{"delta":"…"}` line per piece of
//! the reply, then a final `{"ok":…,"stdout":"","stderr":…}` line.

use crate::accounts::{self, Actor};
use crate::auth::Principal;
use crate::chat::{Deltas, Piece};
use crate::error::ApiError;
use crate::gateway::clients::WorkerClients;
use crate::gateway::proxy::{Call, Surface};
use crate::tokens;
use crate::AppState;
use actix_web::web;
use futures_util::StreamExt;
use gatehouse_actors::tokens::{ListTokens, RotateSigningKey};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};

/// A request line is at most this long (an llms.py import file travels in it).
const MAX_REQUEST: u64 = 32 * 1024 * 1024;

pub fn socket_path(home: &Path) -> PathBuf {
    home.join("admin.sock")
}

/// A CLI command, as it travels over the socket. `Debug` never shows a password.
#[derive(Serialize, Deserialize, Clone)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AdminRequest {
    UsersAdd {
        name: String,
        password: String,
        admin: bool,
    },
    UsersRemove {
        name: String,
    },
    UsersList,
    UsersLock {
        name: String,
        reason: Option<String>,
    },
    UsersUnlock {
        name: String,
    },
    UsersAdmin {
        name: String,
        admin: bool,
    },
    UsersImportLlms {
        contents: String,
    },
    TokensIssue {
        user: String,
        name: String,
        expires_in: Option<i64>,
        scopes: Option<Vec<String>>,
    },
    TokensList {
        user: Option<String>,
    },
    TokensRevoke {
        id: String,
    },
    TokensRotate {
        id: String,
        grace: Option<i64>,
    },
    KeysRotate,
    KeysRotateMaster,
    ProvidersList,
    ProvidersAdd {
        name: String,
        kind: String,
        base_url: String,
        local: bool,
        models: Vec<String>,
        key: Option<String>,
    },
    ProvidersRemove {
        name: String,
    },
    ProvidersTest {
        name: String,
    },
    ModelsList {
        user: Option<String>,
    },
    ModelsSetDefault {
        model: String,
    },
    LimitsSet {
        user: Option<String>,
        token: Option<String>,
        rpm: Option<u64>,
        tpm: Option<u64>,
        budget: Option<f64>,
        period: Option<String>,
    },
    LimitsClear {
        user: Option<String>,
        token: Option<String>,
    },
    LimitsShow {
        user: Option<String>,
        token: Option<String>,
    },
    /// A chat completion as the local admin, answered as it streams.
    Chat {
        model: String,
        messages: Vec<serde_json::Value>,
    },
}

impl std::fmt::Debug for AdminRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            AdminRequest::UsersAdd { .. } => "users add",
            AdminRequest::UsersRemove { .. } => "users remove",
            AdminRequest::UsersList => "users list",
            AdminRequest::UsersLock { .. } => "users lock",
            AdminRequest::UsersUnlock { .. } => "users unlock",
            AdminRequest::UsersAdmin { .. } => "users admin",
            AdminRequest::UsersImportLlms { .. } => "users import-llms",
            AdminRequest::TokensIssue { .. } => "tokens issue",
            AdminRequest::TokensList { .. } => "tokens list",
            AdminRequest::TokensRevoke { .. } => "tokens revoke",
            AdminRequest::TokensRotate { .. } => "tokens rotate",
            AdminRequest::KeysRotate => "keys rotate",
            AdminRequest::KeysRotateMaster => "keys rotate-master",
            AdminRequest::ProvidersList => "providers list",
            AdminRequest::ProvidersAdd { .. } => "providers add",
            AdminRequest::ProvidersRemove { .. } => "providers remove",
            AdminRequest::ProvidersTest { .. } => "providers test",
            AdminRequest::ModelsList { .. } => "models list",
            AdminRequest::ModelsSetDefault { .. } => "models set-default",
            AdminRequest::LimitsSet { .. } => "limits set",
            AdminRequest::LimitsClear { .. } => "limits clear",
            AdminRequest::LimitsShow { .. } => "limits show",
            AdminRequest::Chat { .. } => "chat",
        };
        f.write_str(name)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AdminResponse {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl AdminResponse {
    fn ok(stdout: String, stderr: String) -> Self {
        Self {
            ok: true,
            stdout,
            stderr,
        }
    }
    fn err(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            stdout: String::new(),
            stderr: msg.into(),
        }
    }
}

/// Runs one command against the actors.
pub async fn execute(state: &AppState, req: AdminRequest) -> AdminResponse {
    let actor = Actor::cli();
    let result: Result<(String, String), ApiError> = match req {
        AdminRequest::UsersAdd { name, password, admin } => {
            accounts::add_user(state, &actor, &name, &password, admin, true).await.map(|(u, created)| {
                let what = if created { "added" } else { "password reset for" };
                (String::new(), format!("{what} user {} ({})\n", u.username, roles(&u.roles)))
            })
        }
        AdminRequest::UsersRemove { name } => accounts::remove_user(state, &actor, &name)
            .await
            .map(|u| (String::new(), format!("removed user {}\n", u.username))),
        AdminRequest::UsersList => accounts::list_users(state).await.map(|users| {
            let mut out = String::new();
            for u in users {
                let _ = write!(out, "{}  {}  created: {}", u.username, roles(&u.roles), crate::rfc3339(u.created_at));
                if let Some(l) = &u.locked {
                    let _ = write!(out, "  LOCKED: {}", l.reason);
                }
                out.push('\n');
            }
            (out, String::new())
        }),
        AdminRequest::UsersLock { name, reason } => accounts::lock_user(state, &actor, &name, reason)
            .await
            .map(|u| (String::new(), format!("locked user {}; their sessions have ended\n", u.username))),
        AdminRequest::UsersUnlock { name } => accounts::unlock_user(state, &actor, &name)
            .await
            .map(|u| (String::new(), format!("unlocked user {}\n", u.username))),
        AdminRequest::UsersAdmin { name, admin } => accounts::set_admin(state, &actor, &name, admin).await.map(|u| {
            let roles = if u.roles.is_empty() { "-".to_owned() } else { u.roles.join(",") };
            (String::new(), format!("user {} now has roles: {roles}\n", u.username))
        }),
        AdminRequest::UsersImportLlms { contents } => {
            accounts::import_llms(state, &actor, &contents).await.map(|(n, skipped)| {
                let mut err = format!("imported {n} users\n");
                for s in skipped {
                    let _ = writeln!(err, "skipped {s}: the username exists");
                }
                (String::new(), err)
            })
        }
        AdminRequest::TokensIssue { user, name, expires_in, scopes } => async {
            let user = tokens::user_by_name(state, &user).await?;
            let may = Principal::user_scopes(&user);
            let spec = tokens::NewToken { name, expires_in, scopes, models: None, allowed_ips: None, max_idle: None }.validate(may)?;
            let (secret, t) = tokens::issue(state, &actor, &user, spec).await?;
            Ok((format!("{secret}\n"), format!("issued token {} for {} ({}), expires {}\n", t.id, user.username, t.scopes.join(","), crate::rfc3339(t.expires_at))))
        }
        .await,
        AdminRequest::TokensList { user } => async {
            let user_id = match user {
                Some(name) => Some(tokens::user_by_name(state, &name).await?.id.clone()),
                None => None,
            };
            let list = state.handles.users().send(ListTokens { user_id }).await??;
            let now = state.handles.now();
            let mut out = String::new();
            for t in list {
                let r = &t.record;
                let who = state.handles.user_view().get(&r.user_id).map_or_else(|| r.user_id.clone(), |u| u.username.clone());
                let status = serde_json::to_value(r.status(now, t.last_used_at)).unwrap_or_default();
                let _ = writeln!(out, "{}  {}  {}  {}  {}  expires: {}", r.id, who, r.name, r.scopes.join(","), status.as_str().unwrap_or("?"), crate::rfc3339(r.expires_at));
            }
            Ok((out, String::new()))
        }
        .await,
        AdminRequest::TokensRevoke { id } => tokens::revoke(state, &actor, &id, None)
            .await
            .map(|t| (String::new(), format!("revoked token {}\n", t.id))),
        AdminRequest::TokensRotate { id, grace } => tokens::rotate(state, &actor, &id, None, grace).await.map(|(secret, t)| {
            (format!("{secret}\n"), format!("new token {} replaces {id}; the old one works until its grace ends\n", t.id))
        }),
        AdminRequest::KeysRotate => async {
            let kid = state.handles.users().send(RotateSigningKey { now: state.handles.now() }).await??;
            accounts::audit(state, &actor, "keys.rotate", Some(kid.clone()), serde_json::json!({})).await;
            Ok((String::new(), format!("new signing key {kid}; tokens signed by older keys stay valid until they expire\n")))
        }
        .await,
        AdminRequest::KeysRotateMaster
        | AdminRequest::ProvidersList
        | AdminRequest::ProvidersAdd { .. }
        | AdminRequest::ProvidersRemove { .. }
        | AdminRequest::ProvidersTest { .. }
        | AdminRequest::ModelsList { .. }
        | AdminRequest::ModelsSetDefault { .. } => providers_command(state, &actor, req).await,
        AdminRequest::LimitsSet { .. }
        | AdminRequest::LimitsClear { .. }
        | AdminRequest::LimitsShow { .. } => limits_command(state, &actor, req).await,
        AdminRequest::Chat { .. } => Err(ApiError::bad_request(
            "invalid_request",
            "chat needs a running gateway (`gatehouse serve`)",
        )),
    };
    match result {
        Ok((out, err)) => AdminResponse::ok(out, err),
        Err(e) if e.status.as_u16() == 404 && e.message == "not found" => {
            AdminResponse::err("not found: no such user or token")
        }
        Err(e) if e.status.as_u16() == 503 && e.code == "service_unavailable" => {
            AdminResponse::err("the gateway is busy or restarting a component; try again")
        }
        Err(e) => AdminResponse::err(e.message.into_owned()),
    }
}

/// The provider and model commands: `(stdout, stderr)`.
async fn providers_command(
    state: &AppState,
    actor: &Actor,
    req: AdminRequest,
) -> Result<(String, String), ApiError> {
    use crate::providers as svc;
    match req {
        AdminRequest::ProvidersList => {
            let mut out = String::new();
            for p in svc::list(state).await? {
                let profiles: Vec<String> = p
                    .profiles
                    .iter()
                    .map(|q| {
                        format!(
                            "{}({})",
                            q.name,
                            serde_json::to_value(q.state)
                                .unwrap_or_default()
                                .as_str()
                                .unwrap_or("?")
                        )
                    })
                    .collect();
                let _ = write!(
                    out,
                    "{}  {}  {}  source: {}  models: {}  profiles: {}",
                    p.name,
                    p.kind.as_str(),
                    p.base_url,
                    p.source,
                    p.models.len(),
                    if profiles.is_empty() {
                        "-".to_owned()
                    } else {
                        profiles.join(", ")
                    }
                );
                if !p.offered {
                    out.push_str("  NOT OFFERED");
                }
                out.push('\n');
            }
            Ok((out, String::new()))
        }
        AdminRequest::ProvidersAdd {
            name,
            kind,
            base_url,
            local,
            models,
            key,
        } => {
            let body = svc::ProviderPut {
                kind,
                base_url,
                models,
                local,
                timeouts: None,
            };
            let (_, created) = svc::put_provider(state, actor, &name, body).await?;
            let mut err = format!(
                "{} provider {name}\n",
                if created { "added" } else { "updated" }
            );
            if let Some(key) = key {
                let profile = svc::ProfilePut {
                    api_key: Some(key),
                    ..Default::default()
                };
                svc::put_profile(state, actor, &name, "default", profile).await?;
                err.push_str("its key is stored, sealed, in the profile `default`\n");
            }
            Ok((String::new(), err))
        }
        AdminRequest::ProvidersRemove { name } => {
            svc::delete_provider(state, actor, &name).await?;
            Ok((String::new(), format!("removed provider {name}\n")))
        }
        AdminRequest::ProvidersTest { name } => {
            let (ms, models) = svc::test(state, &name).await?;
            Ok((
                format!("ok  {ms} ms  models: {}\n", models.join(", ")),
                String::new(),
            ))
        }
        AdminRequest::ModelsList { user } => {
            let principal = match user {
                Some(name) => Principal::as_user(tokens::user_by_name(state, &name).await?),
                None => Principal::local_admin(),
            };
            let mut out = String::new();
            for m in svc::models_for(state, &principal) {
                out.push_str(&m);
                out.push('\n');
            }
            Ok((out, String::new()))
        }
        AdminRequest::ModelsSetDefault { model } => {
            svc::set_default(state, actor, &model).await?;
            let msg = if model.is_empty() {
                "the model `default` now resolves as the config file says\n".to_owned()
            } else {
                format!("the model `default` now resolves to {model}\n")
            };
            Ok((String::new(), msg))
        }
        AdminRequest::KeysRotateMaster => {
            let (n, shown) = svc::rotate_master(state, actor).await?;
            let mut err = format!("re-sealed {n} stored provider key(s) under a new master key\n");
            let out = match shown {
                Some(text) => {
                    err.push_str("the master key came from GATEHOUSE_MASTER_KEY: set it to the new key (printed on standard output) before the next start\n");
                    format!("{text}\n")
                }
                None => String::new(),
            };
            Ok((out, err))
        }
        _ => Err(ApiError::internal()),
    }
}

async fn limits_subject(
    state: &AppState,
    user: Option<String>,
    token: Option<String>,
) -> Result<Option<String>, ApiError> {
    match (user, token) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_request",
            "give --user or --token, not both",
        )),
        (Some(u), None) => crate::limits::user_subject(state, &u).await.map(Some),
        (None, Some(t)) => crate::limits::token_subject(state, &t).await.map(Some),
        (None, None) => Ok(None),
    }
}

/// One line per subject: its limits (0: none) and what it used in the current windows.
fn limits_line(v: &crate::limits::LimitsView) -> String {
    let c = &v.current;
    format!(
        "{}  rpm: {}/{}  tpm: {}/{}  spend: {:.4}/{:.4} per {}s\n",
        v.subject,
        c.rpm.used as u64,
        c.rpm.limit,
        c.tpm.used as u64,
        c.tpm.limit,
        c.spend.used,
        c.spend.limit.as_f64().unwrap_or(0.0),
        v.limits.budget_period,
    )
}

async fn limits_command(
    state: &AppState,
    actor: &Actor,
    req: AdminRequest,
) -> Result<(String, String), ApiError> {
    use crate::limits as svc;
    match req {
        AdminRequest::LimitsSet {
            user,
            token,
            rpm,
            tpm,
            budget,
            period,
        } => {
            let subject = limits_subject(state, user, token).await?.ok_or_else(|| {
                ApiError::bad_request("invalid_request", "give --user NAME or --token ID")
            })?;
            let put = svc::LimitsPut {
                rpm,
                tpm,
                budget,
                budget_period: period.map(serde_json::Value::String),
            };
            svc::set(state, actor, &subject, Some(put.validate()?)).await?;
            Ok((
                limits_line(&svc::view(state, &subject).await?),
                String::new(),
            ))
        }
        AdminRequest::LimitsClear { user, token } => {
            let subject = limits_subject(state, user, token).await?.ok_or_else(|| {
                ApiError::bad_request("invalid_request", "give --user NAME or --token ID")
            })?;
            svc::set(state, actor, &subject, None).await?;
            Ok((
                String::new(),
                format!("{subject} now has the default limits\n"),
            ))
        }
        AdminRequest::LimitsShow { user, token } => match limits_subject(state, user, token).await?
        {
            Some(subject) => Ok((
                limits_line(&svc::view(state, &subject).await?),
                String::new(),
            )),
            None => {
                let all = svc::list(state).await?;
                let mut out = String::new();
                for (who, l) in [
                    ("defaults for users", &all.defaults.user),
                    ("defaults for tokens", &all.defaults.token),
                ] {
                    let _ = writeln!(
                        out,
                        "{who}  rpm: {}  tpm: {}  budget: {} per {}s",
                        l.rpm,
                        l.tpm,
                        serde_json::json!(l.budget),
                        l.budget_period
                    );
                }
                for v in &all.data {
                    out.push_str(&limits_line(v));
                }
                Ok((out, String::new()))
            }
        },
        _ => Err(ApiError::internal()),
    }
}

fn roles(roles: &[String]) -> String {
    if roles.is_empty() {
        "-".to_owned()
    } else {
        roles.join(",")
    }
}

/// Binds the socket and serves it on the current arbiter until the system stops.
pub fn serve(data: web::Data<AppState>, home: &Path) -> io::Result<()> {
    let path = socket_path(home);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another gatehouse is serving this home",
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    actix_rt::spawn(async move {
        // Upstream clients for `chat`, shared by the connections on this thread.
        let clients = Rc::new(WorkerClients::default());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let (data, clients) = (data.clone(), clients.clone());
                    actix_rt::spawn(async move {
                        if let Err(e) = handle(stream, &data, &clients).await {
                            tracing::warn!(error = %e, "admin socket connection failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok(())
}

async fn handle(stream: UnixStream, state: &AppState, clients: &WorkerClients) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    if line.is_empty() {
        // A client checking that the server runs (`chat` at start).
        return Ok(());
    }
    let resp = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(AdminRequest::Chat { model, messages }) => {
            tracing::info!(command = "chat", model = %model.escape_debug(), "admin socket command");
            let end = match stream_chat(state, clients, &model, messages, &mut write).await? {
                Ok(()) => AdminResponse::ok(String::new(), String::new()),
                Err(msg) => AdminResponse::err(msg),
            };
            write_line(&mut write, &ChatLine::End(end)).await?;
            return write.shutdown().await;
        }
        Ok(req) => {
            tracing::info!(command = ?req, "admin socket command");
            execute(state, req).await
        }
        Err(_) => AdminResponse::err("malformed admin request"),
    };
    write_line(&mut write, &resp).await?;
    write.shutdown().await
}

async fn write_line(write: &mut OwnedWriteHalf, value: &impl Serialize) -> io::Result<()> {
    let mut out = serde_json::to_vec(value).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// One line of a `chat` answer: a piece of the reply, or the end.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatLine {
    Delta { delta: String },
    End(AdminResponse),
}

/// Runs a streaming chat completion as the local admin (the socket is its
/// owner's alone) through the same routing as `POST /v1/chat/completions`,
/// and writes each piece of the reply as it arrives. The inner `Err` is the
/// message for the user; the outer one, a broken socket.
async fn stream_chat(
    state: &AppState,
    clients: &WorkerClients,
    model: &str,
    messages: Vec<serde_json::Value>,
    write: &mut OwnedWriteHalf,
) -> io::Result<Result<(), String>> {
    let principal = Principal::local_admin();
    let targets = match crate::gateway::targets_for(state, &principal, model) {
        Ok(targets) => targets,
        Err(e) => return Ok(Err(e.message.into_owned())),
    };
    let call = Call {
        state,
        clients,
        principal: &principal,
        surface: Surface::Chat,
        body: crate::gateway::body::ApiBody::from_value(
            serde_json::json!({"model": model, "messages": messages, "stream": true}),
        ),
        t0: Instant::now(),
        anthropic_headers: Vec::new(),
    };
    let mut body = match call.run(targets, model).await {
        Ok(res) => res.into_body(),
        Err(e) => return Ok(Err(e.message.into_owned())),
    };
    let mut stream = std::pin::pin!(futures_util::stream::poll_fn(move |cx| {
        actix_web::body::MessageBody::poll_next(std::pin::Pin::new(&mut body), cx)
    }));
    let mut reply = Deltas::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return Ok(Err("the model stream broke".into()));
        };
        let pieces = match reply.feed(&chunk) {
            Ok(pieces) => pieces,
            Err(msg) => return Ok(Err(msg)),
        };
        for piece in pieces {
            match piece {
                Piece::Text(delta) => write_line(write, &ChatLine::Delta { delta }).await?,
                Piece::Failed(msg) => return Ok(Err(msg)),
                Piece::Done => return Ok(Ok(())),
            }
        }
    }
    Ok(Err(crate::chat::CUT_OFF.into()))
}

/// Sends a command to the server serving `home`. `Ok(None)` when none is.
pub async fn call(home: &Path, req: &AdminRequest) -> io::Result<Option<AdminResponse>> {
    let Some(stream) = connect(home).await? else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    serde_json::from_str(&answer)
        .map(Some)
        .map_err(|_| io::Error::other("malformed answer from the server"))
}

/// A connection to the server serving `home`; `None` when none is.
async fn connect(home: &Path) -> io::Result<Option<UnixStream>> {
    match UnixStream::connect(socket_path(home)).await {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether a server answers on `home`'s socket.
pub async fn is_serving(home: &Path) -> io::Result<bool> {
    Ok(connect(home).await?.is_some())
}

/// Sends a `chat` request to the server serving `home` and hands each piece
/// of the reply to `on_delta` as it arrives. `Ok(None)` when no server runs;
/// `Ok(Some(Err(message)))` when the call failed.
pub async fn chat(
    home: &Path,
    model: &str,
    messages: &[serde_json::Value],
    mut on_delta: impl FnMut(&str),
) -> io::Result<Option<Result<(), String>>> {
    let Some(stream) = connect(home).await? else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let req = AdminRequest::Chat {
        model: model.to_owned(),
        messages: messages.to_vec(),
    };
    write_line(&mut write, &req).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<ChatLine>(&line) {
            Ok(ChatLine::Delta { delta }) => on_delta(&delta),
            Ok(ChatLine::End(end)) if end.ok => return Ok(Some(Ok(()))),
            Ok(ChatLine::End(end)) => return Ok(Some(Err(end.stderr))),
            Err(_) => return Err(io::Error::other("malformed answer from the server")),
        }
    }
    Err(io::Error::other(
        "the server closed the connection mid-reply",
    ))
}
