//! The command line (API.md "CLI"). `main.rs` only parses and calls [`run`].

use crate::admin_socket::{self, AdminRequest, AdminResponse};
use crate::config::{Config, Secret};
use crate::{home, Gatehouse};
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "An authenticating gateway for LLM APIs"
)]
pub struct Cli {
    /// Data directory (default: $GATEHOUSE_HOME or ~/.gatehouse)
    #[arg(long, global = true, env = "GATEHOUSE_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Configuration file (default: HOME/gatehouse.toml when it exists)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway
    Serve(ServeArgs),
    /// Manage users
    #[command(subcommand)]
    Users(UsersCommand),
    /// Check the configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage API tokens
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Manage token-signing keys and the master key
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage model providers added at run time
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// List models, set the default model
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Rate limits and budgets per user or token
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Apply the embedded schema migrations to the PostgreSQL store (serve does too)
    Migrate,
    /// Chat in the terminal through the running gateway, streaming
    Chat(ChatArgs),
}

#[derive(Debug, Args)]
pub struct LimitsWho {
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Set a user's or token's own limits (what is not given keeps the default; 0: none)
    Set {
        #[command(flatten)]
        who: LimitsWho,
        /// Requests per minute
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute
        #[arg(long)]
        tpm: Option<u64>,
        /// Spend per budget period (priced by [prices])
        #[arg(long)]
        budget: Option<f64>,
        /// The budget period (1d, 30d, …)
        #[arg(long)]
        period: Option<String>,
    },
    /// Back to the defaults
    Clear {
        #[command(flatten)]
        who: LimitsWho,
    },
    /// Limits and current use: of one user or token, or the defaults and every override
    Show {
        #[command(flatten)]
        who: LimitsWho,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// List providers (from the config file and added at run time) with their profiles' health
    List,
    /// Add (or change) a provider; --key-stdin stores its key, sealed, as the profile `default`
    Add {
        name: String,
        /// openai (any OpenAI-compatible API) or anthropic
        #[arg(long = "type", value_name = "T")]
        kind: String,
        #[arg(long, value_name = "U")]
        base_url: String,
        /// Allow a loopback base URL (a model server on this machine)
        #[arg(long)]
        local: bool,
        /// Comma-separated model ids (default: discover with GET /models)
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Read the provider's API key from standard input (one line)
        #[arg(long)]
        key_stdin: bool,
    },
    /// Remove a provider added at run time, with its profiles
    Remove { name: String },
    /// Ask the provider for its models with its credential; prints latency and models
    Test { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the model names clients may call (as a user sees them with --user)
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Make the model name `default` resolve to MODEL ("" restores the config file's)
    SetDefault { model: String },
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The model to start with (`default` is `[models] default`)
    #[arg(long, default_value = "default")]
    pub model: String,
    /// A gateway's base URL (default: the gateway running on the home, over its admin socket)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// An API token for --url
    #[arg(long, env = "GATEHOUSE_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<Secret>,
}

fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token; prints it once on standard output
    Issue {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// Seconds or a duration (90s, 24h, 30d); default 30d
        #[arg(long)]
        expires_in: Option<String>,
        /// Comma-separated scopes (default read,write)
        #[arg(long)]
        scope: Option<String>,
    },
    /// List tokens: ID, user, name, scopes, status, expiry
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token
    Revoke { id: String },
    /// Replace a token; the old one works for the grace period (default 1h)
    Rotate {
        id: String,
        #[arg(long)]
        grace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new token-signing key; tokens signed by older keys stay valid until they expire
    Rotate,
    /// Re-encrypt stored provider keys under a new master key
    RotateMaster,
}

/// Seconds, or a duration such as `90s`, `24h`, `30d`.
fn seconds(s: &str) -> Result<i64, String> {
    crate::config::parse_duration(s)
        .map(|d| d.as_secs() as i64)
        .map_err(|e| format!("bad duration {s:?}: {e}"))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (re-adding an existing user resets the password)
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (one line)
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user, ending their sessions
    Remove { name: String },
    /// List users
    List,
    /// Lock a user, ending their sessions at once
    Lock {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unlock a user
    Unlock { name: String },
    /// Grant the Admin role (any user, e.g. one from GitHub), or take it away
    Admin {
        name: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Import an llms.py users.json
    ImportLlms { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate and print the effective configuration, secrets redacted
    Check,
}

pub fn run(cli: Cli) -> ExitCode {
    let home = cli.home.clone().unwrap_or_else(home::default_home);
    match cli.command {
        Command::Serve(args) => serve(&home, cli.config.as_deref(), args),
        Command::Config(ConfigCommand::Check) => match Config::load(cli.config.as_deref(), &home) {
            Ok(c) => {
                print!("{}", c.redacted_toml());
                eprintln!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("configuration error: {e}")),
        },
        Command::Users(cmd) => match users_request(cmd) {
            Ok(req) => admin(&home, cli.config.as_deref(), req),
            Err(msg) => fail(&msg),
        },
        Command::Tokens(cmd) => match tokens_request(cmd) {
            Ok(req) => admin(&home, cli.config.as_deref(), req),
            Err(msg) => fail(&msg),
        },
        Command::Keys(KeysCommand::Rotate) => {
            admin(&home, cli.config.as_deref(), AdminRequest::KeysRotate)
        }
        Command::Keys(KeysCommand::RotateMaster) => {
            admin(&home, cli.config.as_deref(), AdminRequest::KeysRotateMaster)
        }
        Command::Providers(cmd) => match providers_request(cmd) {
            Ok(req) => admin(&home, cli.config.as_deref(), req),
            Err(msg) => fail(&msg),
        },
        Command::Migrate => migrate(&home, cli.config.as_deref()),
        Command::Limits(cmd) => {
            let req = match cmd {
                LimitsCommand::Set {
                    who,
                    rpm,
                    tpm,
                    budget,
                    period,
                } => AdminRequest::LimitsSet {
                    user: who.user,
                    token: who.token,
                    rpm,
                    tpm,
                    budget,
                    period,
                },
                LimitsCommand::Clear { who } => AdminRequest::LimitsClear {
                    user: who.user,
                    token: who.token,
                },
                LimitsCommand::Show { who } => AdminRequest::LimitsShow {
                    user: who.user,
                    token: who.token,
                },
            };
            admin(&home, cli.config.as_deref(), req)
        }
        Command::Models(cmd) => {
            let req = match cmd {
                ModelsCommand::List { user } => AdminRequest::ModelsList { user },
                ModelsCommand::SetDefault { model } => AdminRequest::ModelsSetDefault { model },
            };
            admin(&home, cli.config.as_deref(), req)
        }
        Command::Chat(args) => crate::chat::run(crate::chat::Options {
            home,
            model: args.model,
            url: args.url,
            token: args.token,
        }),
    }
}

fn migrate(home: &std::path::Path, config: Option<&std::path::Path>) -> ExitCode {
    let config = match Config::load(config, home) {
        Ok(c) => c,
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    if config.store.backend != crate::config::StoreBackend::Postgres {
        eprintln!("the sled store needs no migrations (store.backend = \"sled\")");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("starting a runtime: {e}")),
    };
    rt.block_on(async {
        let store =
            gatehouse_actors::store::PgStore::open(config.store.url.expose(), &config.pg_options())
                .await;
        match store {
            Ok(store) => match store.applied_migrations().await {
                Ok(v) => {
                    let last = v.last().copied().unwrap_or(0);
                    println!("schema at version {last} ({} migrations applied)", v.len());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("reading the schema version: {e}")),
            },
            Err(e) => fail(&format!("PostgreSQL (store.url): {e}")),
        }
    })
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn serve(home: &std::path::Path, config: Option<&std::path::Path>, args: ServeArgs) -> ExitCode {
    let mut config = match Config::load(config, home) {
        Ok(c) => c,
        Err(e) => return fail(&format!("configuration error: {e}")),
    };
    if let Some(h) = args.host {
        config.server.host = h;
    }
    if let Some(p) = args.port {
        config.server.port = p;
    }
    let system = actix_rt::System::new();
    match system.block_on(crate::server::serve(config, home)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn users_request(cmd: UsersCommand) -> Result<AdminRequest, String> {
    Ok(match cmd {
        UsersCommand::Add {
            name,
            admin,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            AdminRequest::UsersAdd {
                name,
                password,
                admin,
            }
        }
        UsersCommand::Remove { name } => AdminRequest::UsersRemove { name },
        UsersCommand::List => AdminRequest::UsersList,
        UsersCommand::Lock { name, reason } => AdminRequest::UsersLock { name, reason },
        UsersCommand::Unlock { name } => AdminRequest::UsersUnlock { name },
        UsersCommand::Admin { name, revoke } => AdminRequest::UsersAdmin {
            name,
            admin: !revoke,
        },
        UsersCommand::ImportLlms { file } => {
            let contents =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            AdminRequest::UsersImportLlms { contents }
        }
    })
}

fn tokens_request(cmd: TokensCommand) -> Result<AdminRequest, String> {
    Ok(match cmd {
        TokensCommand::Issue {
            user,
            name,
            expires_in,
            scope,
        } => AdminRequest::TokensIssue {
            user,
            name,
            expires_in: expires_in.as_deref().map(seconds).transpose()?,
            scopes: scope.map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_owned())
                    .filter(|x| !x.is_empty())
                    .collect()
            }),
        },
        TokensCommand::List { user } => AdminRequest::TokensList { user },
        TokensCommand::Revoke { id } => AdminRequest::TokensRevoke { id },
        TokensCommand::Rotate { id, grace } => AdminRequest::TokensRotate {
            id,
            grace: grace.as_deref().map(seconds).transpose()?,
        },
    })
}

fn providers_request(cmd: ProvidersCommand) -> Result<AdminRequest, String> {
    Ok(match cmd {
        ProvidersCommand::List => AdminRequest::ProvidersList,
        ProvidersCommand::Add {
            name,
            kind,
            base_url,
            local,
            models,
            key_stdin,
        } => {
            let key = if key_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| format!("reading the key: {e}"))?;
                let key = line.trim().to_owned();
                if key.is_empty() {
                    return Err("no key on standard input".into());
                }
                Some(key)
            } else {
                None
            };
            AdminRequest::ProvidersAdd {
                name,
                kind,
                base_url,
                local,
                models: models
                    .into_iter()
                    .filter(|m| !m.trim().is_empty())
                    .collect(),
                key,
            }
        }
        ProvidersCommand::Remove { name } => AdminRequest::ProvidersRemove { name },
        ProvidersCommand::Test { name } => AdminRequest::ProvidersTest { name },
    })
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading standard input: {e}"))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        if pw.is_empty() {
            return Err("no password on standard input".into());
        }
        return Ok(pw);
    }
    if !std::io::stdin().is_terminal() {
        return Err("standard input is not a terminal: pass --password-stdin".into());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password("Password (again): ").map_err(|e| e.to_string())?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

/// Runs a user command on the server serving `home`, or on the store itself
/// when no server runs.
fn admin(home: &std::path::Path, config: Option<&std::path::Path>, req: AdminRequest) -> ExitCode {
    let system = actix_rt::System::new();
    let resp = system.block_on(async {
        match admin_socket::call(home, &req).await {
            Ok(Some(resp)) => resp,
            Ok(None) => offline(home, config, req).await,
            Err(e) => AdminResponse {
                ok: false,
                stderr: format!("admin socket: {e}"),
                ..Default::default()
            },
        }
    });
    print!("{}", resp.stdout);
    let _ = std::io::stdout().flush();
    if resp.ok {
        eprint!("{}", resp.stderr);
        ExitCode::SUCCESS
    } else {
        fail(resp.stderr.trim_end())
    }
}

async fn offline(
    home: &std::path::Path,
    config: Option<&std::path::Path>,
    req: AdminRequest,
) -> AdminResponse {
    let err = |m: String| AdminResponse {
        ok: false,
        stderr: m,
        ..Default::default()
    };
    let config = match Config::load(config, home) {
        Ok(c) => c,
        Err(e) => return err(format!("configuration error: {e}")),
    };
    match Gatehouse::builder(config).home(home).build().await {
        Ok(gh) => admin_socket::execute(&gh.data(), req).await,
        Err(e) => err(e.to_string()),
    }
}
