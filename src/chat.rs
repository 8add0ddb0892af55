//! `gatehouse chat`: a terminal chat through a running gateway. Each reply
//! is printed as it streams; the history lasts for the session. It talks to
//! the server serving the home over the admin socket (as the local admin),
//! or to `--url` with an API token. Errors go to standard error on one line
//! and the chat goes on; the token is never printed.

use crate::admin_socket;
use crate::config::Secret;
use crate::gateway::sse::SseParser;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// What the user asked for on the command line.
pub struct Options {
    pub home: PathBuf,
    pub model: String,
    pub url: Option<String>,
    pub token: Option<Secret>,
}

/// The message when a reply stream ends without its `[DONE]`.
pub const CUT_OFF: &str = "the reply ended before it was complete";

/// The largest error body read from the gateway.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One thing a chat completion stream says.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A piece of the reply's text.
    Text(String),
    /// The stream ended with an error (its message).
    Failed(String),
    /// `data: [DONE]`.
    Done,
}

/// Reads the pieces of an OpenAI chat completion stream (`data: {…}` events).
pub struct Deltas(SseParser);

impl Default for Deltas {
    fn default() -> Self {
        Self::new()
    }
}

impl Deltas {
    pub fn new() -> Self {
        Deltas(SseParser::new(4 * 1024 * 1024))
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Piece>, String> {
        let events = self
            .0
            .feed(chunk)
            .map_err(|e| format!("the reply stream is malformed: {e}"))?;
        let mut pieces = Vec::new();
        for ev in events {
            if ev.data == "[DONE]" {
                pieces.push(Piece::Done);
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if let Some(err) = v.get("error") {
                pieces.push(Piece::Failed(error_message(err)));
            } else if let Some(text) = v
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                pieces.push(Piece::Text(text.to_owned()));
            }
        }
        Ok(pieces)
    }
}

fn error_message(err: &Value) -> String {
    err.get("message")
        .and_then(Value::as_str)
        .or_else(|| err.as_str())
        .unwrap_or("the call failed")
        .to_owned()
}

/// Where the questions go.
enum Gateway {
    Socket(PathBuf),
    Url {
        endpoint: String,
        token: Secret,
        client: awc::Client,
    },
}

/// Why a turn produced no reply.
enum TurnError {
    /// No server on the home's socket.
    NotRunning,
    Failed(String),
}

impl Gateway {
    /// Sends the conversation; hands each piece of the reply to `on_delta`.
    async fn ask(
        &self,
        model: &str,
        messages: &[Value],
        on_delta: impl FnMut(&str),
    ) -> Result<(), TurnError> {
        match self {
            Gateway::Socket(home) => {
                match admin_socket::chat(home, model, messages, on_delta).await {
                    Ok(Some(result)) => result.map_err(TurnError::Failed),
                    Ok(None) => Err(TurnError::NotRunning),
                    Err(e) => Err(TurnError::Failed(format!("admin socket: {e}"))),
                }
            }
            Gateway::Url {
                endpoint,
                token,
                client,
            } => ask_url(client, endpoint, token, model, messages, on_delta)
                .await
                .map_err(TurnError::Failed),
        }
    }
}

/// `POST {url}/v1/chat/completions` with `stream: true`.
async fn ask_url(
    client: &awc::Client,
    endpoint: &str,
    token: &Secret,
    model: &str,
    messages: &[Value],
    mut on_delta: impl FnMut(&str),
) -> Result<(), String> {
    let body = json!({"model": model, "messages": messages, "stream": true});
    let mut res = client
        .post(endpoint)
        .bearer_auth(token.expose())
        .insert_header(("accept", "text/event-stream"))
        .send_json(&body)
        .await
        .map_err(|e| format!("cannot reach the gateway at {endpoint}: {e}"))?;
    let status = res.status();
    if !status.is_success() {
        let body = res.body().limit(MAX_ERROR_BODY).await.unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Err(match v.get("error") {
            Some(err) => error_message(err),
            None => format!("the gateway answered {status}"),
        });
    }
    let mut reply = Deltas::new();
    while let Some(chunk) = res.next().await {
        let chunk = chunk.map_err(|e| format!("the reply stream broke: {e}"))?;
        for piece in reply.feed(&chunk)? {
            match piece {
                Piece::Text(t) => on_delta(&t),
                Piece::Failed(msg) => return Err(msg),
                Piece::Done => return Ok(()),
            }
        }
    }
    Err(CUT_OFF.into())
}

/// A line the user typed.
#[derive(Debug, PartialEq, Eq)]
enum Input<'a> {
    Empty,
    Say(&'a str),
    Model(Option<&'a str>),
    Clear,
    Exit,
    Unknown(&'a str),
}

fn parse(line: &str) -> Input<'_> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return Input::Empty;
    }
    let Some(cmd) = line.trim().strip_prefix('/') else {
        return Input::Say(line);
    };
    let (name, arg) = match cmd.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, Some(arg.trim()).filter(|a| !a.is_empty())),
        None => (cmd, None),
    };
    match (name, arg) {
        ("model", arg) => Input::Model(arg),
        ("clear", None) => Input::Clear,
        ("exit" | "quit", None) => Input::Exit,
        _ => Input::Unknown(line.trim()),
    }
}

/// Text for the terminal: no control characters but newlines and tabs (a
/// reply or an error must not drive the terminal).
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect()
}

/// An error message on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn not_running(home: &std::path::Path) -> String {
    format!(
        "no gateway is running on {}; start `gatehouse serve` or pass --url",
        home.display()
    )
}

fn url_client() -> awc::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(std::sync::Arc::new(tls)))
        // A reply streams for as long as the model writes; the gateway bounds it.
        .disable_timeout()
        .finish()
}

/// Runs the chat until `/exit` or the end of input.
pub fn run(opts: Options) -> ExitCode {
    let system = actix_rt::System::new();
    let gateway = match (opts.url, opts.token) {
        (Some(url), Some(token)) => Gateway::Url {
            endpoint: format!("{}/v1/chat/completions", url.trim_end_matches('/')),
            token,
            client: system.block_on(async { url_client() }),
        },
        (Some(_), None) => {
            eprintln!("error: --url needs --token (or GATEHOUSE_TOKEN)");
            return ExitCode::FAILURE;
        }
        (None, _) => match system.block_on(admin_socket::is_serving(&opts.home)) {
            Ok(true) => Gateway::Socket(opts.home.clone()),
            Ok(false) => {
                eprintln!("{}", not_running(&opts.home));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: admin socket: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut model = opts.model;
    let mut history: Vec<Value> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!("model {model}; /model NAME switches, /clear forgets the history, /exit leaves");
    let mut line = String::new();
    loop {
        print!("> ");
        let _ = out.flush();
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => {
                println!();
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("error: reading standard input: {e}");
                return ExitCode::FAILURE;
            }
        }
        match parse(&line) {
            Input::Empty => {}
            Input::Exit => return ExitCode::SUCCESS,
            Input::Model(None) => println!("model: {model}"),
            Input::Model(Some(name)) => {
                model = name.to_owned();
                println!("model: {model}");
            }
            Input::Clear => {
                history.clear();
                println!("history cleared");
            }
            Input::Unknown(cmd) => {
                eprintln!(
                    "unknown command {}: /model [NAME], /clear, /exit",
                    one_line(cmd)
                );
            }
            Input::Say(text) => {
                history.push(json!({"role": "user", "content": text}));
                let mut reply = String::new();
                let asked = system.block_on(gateway.ask(&model, &history, |delta| {
                    reply.push_str(delta);
                    print!("{}", printable(delta));
                    let _ = out.flush();
                }));
                if !reply.is_empty() || asked.is_ok() {
                    println!();
                }
                match asked {
                    Ok(()) => history.push(json!({"role": "assistant", "content": reply})),
                    Err(e) => {
                        // The question goes with its failed answer.
                        history.pop();
                        match e {
                            TurnError::NotRunning => eprintln!("{}", not_running(&opts.home)),
                            TurnError::Failed(msg) => eprintln!("error: {}", one_line(&msg)),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse("hello there\n"), Input::Say("hello there"));
        assert_eq!(parse("  \n"), Input::Empty);
        assert_eq!(parse("/model\n"), Input::Model(None));
        assert_eq!(parse("/model  other \n"), Input::Model(Some("other")));
        assert_eq!(parse("/clear\r\n"), Input::Clear);
        assert_eq!(parse("/exit"), Input::Exit);
        assert_eq!(parse("/clear all"), Input::Unknown("/clear all"));
        assert_eq!(parse("/nope"), Input::Unknown("/nope"));
    }

    #[test]
    fn deltas_across_chunks() {
        let mut d = Deltas::new();
        let a = d
            .feed(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"he\"}}]}\n\ndata: {\"choi")
            .unwrap();
        assert_eq!(a, vec![Piece::Text("he".into())]);
        let b = d
            .feed(b"ces\":[{\"delta\":{\"content\":\"llo\"}}]}\n\ndata: {\"choices\":[],\"usage\":{}}\n\ndata: [DONE]\n\n")
            .unwrap();
        assert_eq!(b, vec![Piece::Text("llo".into()), Piece::Done]);
        let c = d
            .feed(b"data: {\"error\":{\"message\":\"upstream error\"}}\n\n")
            .unwrap();
        assert_eq!(c, vec![Piece::Failed("upstream error".into())]);
    }

    #[test]
    fn terminal_text_is_tame() {
        assert_eq!(printable("a\x1b[2Jb\nc\t"), "a[2Jb\nc\t");
        assert_eq!(one_line("bad\nthing\r"), "bad thing");
    }
}
