//! `gatehouse chat` in a real pseudo-terminal (tmux: send-keys in,
//! capture-pane out) against a real `gatehouse serve` and a fake
//! OpenAI-compatible upstream, over the admin socket and over `--url`.

use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of its own (its socket in the test's directory) running one command.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            "200",
            "-y",
            "50",
            command,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and Enter.
    fn send(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "chat", "-l", text]);
        self.tmux(&["send-keys", "-t", "chat", "Enter"]);
    }

    /// The whole pane, scrollback included, each line without trailing blanks.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "chat", "-S", "-"])
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_owned()
    }

    /// Polls the pane (up to 20 s) until `done` holds; the fake upstream
    /// keeps serving meanwhile.
    async fn wait(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("waited 20 s for {what}; the terminal shows:\n{screen}");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `input`, then waits for one more line `expect` and a fresh prompt.
    async fn step(&self, input: &str, expect: &str) -> String {
        let before = lines_equal(&self.screen(), expect);
        self.send(input);
        self.wait(&format!("{expect:?} after {input:?}"), |s| {
            lines_equal(s, expect) > before && s.lines().last() == Some(">")
        })
        .await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn lines_equal(screen: &str, line: &str) -> usize {
    screen.lines().filter(|l| *l == line).count()
}

/// A home whose config names the fake as provider `oa`, `default` = `oa/m1`.
fn home_with(fake: &FakeLlm) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("gatehouse.toml"),
        format!(
            r#"
[providers.oa]
type = "openai"
base_url = "{}"
api_key = "sk-upstream"
models = ["m1", "other", "hold", "fail-500"]
local = true
first_byte_timeout = "30s"

[models]
default = "oa/m1"
"#,
            fake.url
        ),
    )
    .unwrap();
    home
}

/// `gatehouse chat ARGS` in the terminal; its exit status shows when it ends.
fn chat_command(home: &Path, args: &str) -> String {
    format!(
        "unset GATEHOUSE_LOG GATEHOUSE_TOKEN; '{}' chat --home '{}' {args}; echo \"[chat exited $?]\"; sleep 600",
        bin(),
        home.display()
    )
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

/// The same conversation in either mode: streaming, history, `/model`,
/// `/clear`, an unknown model, `/exit`.
async fn conversation(term: &Tmux, fake: &FakeLlm) {
    term.wait("the first prompt", |s| s.lines().last() == Some(">"))
        .await;
    term.step("/model", "model: default").await;
    assert_eq!(fake.calls(), 0);

    // The first piece of the reply is on the terminal while the upstream
    // still holds the rest.
    term.step("/model oa/hold", "model: oa/hold").await;
    term.send("first question");
    let screen = term
        .wait("the first chunk", |s| {
            let lines: Vec<&str> = s.lines().collect();
            lines
                .iter()
                .position(|l| *l == "> first question")
                .is_some_and(|i| lines.get(i + 1) == Some(&"echo:"))
        })
        .await;
    assert!(!screen.contains("echo: first question"), "{screen}");
    assert_eq!(fake.calls(), 1);
    let before = lines_equal(&screen, "echo: first question");
    fake.release();
    term.wait("the rest of the reply", |s| {
        lines_equal(s, "echo: first question") > before && s.lines().last() == Some(">")
    })
    .await;
    let seen = fake.last();
    assert_eq!(seen.body["model"], "hold");
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["messages"], json!([user("first question")]));

    // The second question carries the first exchange, under the default model.
    term.step("/model default", "model: default").await;
    term.step("second question", "echo: second question").await;
    let seen = fake.last();
    assert_eq!(seen.body["model"], "m1");
    assert_eq!(
        seen.body["messages"],
        json!([
            user("first question"),
            assistant("echo: first question"),
            user("second question")
        ])
    );

    // `/model NAME` switches and keeps the history.
    term.step("/model oa/other", "model: oa/other").await;
    term.step("/model", "model: oa/other").await;
    term.step("third", "echo: third").await;
    let seen = fake.last();
    assert_eq!(seen.body["model"], "other");
    assert_eq!(seen.body["messages"].as_array().unwrap().len(), 5);
    assert_eq!(seen.body["messages"][3], assistant("echo: second question"));

    // `/clear` forgets it.
    term.step("/clear", "history cleared").await;
    term.step("fresh start", "echo: fresh start").await;
    assert_eq!(fake.last().body["messages"], json!([user("fresh start")]));

    // An unknown model: its error on one line, no call, and the chat goes on
    // without the failed question in its history.
    let calls = fake.calls();
    term.step("/model nope", "model: nope").await;
    term.step(
        "lost question",
        "error: the model \"nope\" does not exist or is not offered",
    )
    .await;
    assert_eq!(fake.calls(), calls);
    // A failing upstream: the gateway's 502, said the same way.
    term.step("/model oa/fail-500", "model: oa/fail-500").await;
    term.step(
        "broken question",
        "error: upstream error: the model provider could not answer",
    )
    .await;
    assert!(fake.calls() > calls);
    term.step("/model default", "model: default").await;
    term.step("still here", "echo: still here").await;
    assert_eq!(
        fake.last().body["messages"],
        json!([
            user("fresh start"),
            assistant("echo: fresh start"),
            user("still here")
        ])
    );

    term.send("/exit");
    term.wait("the chat to end", |s| s.contains("[chat exited 0]"))
        .await;
}

#[actix_web::test]
async fn chat_over_the_admin_socket_streams_keeps_history_and_switches_models() {
    let fake = FakeLlm::openai(&["m1", "other", "hold", "fail-500"]);
    let home = home_with(&fake);
    let server = Server::start(home.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let term = Tmux::start(dir.path(), &chat_command(home.path(), ""));
    conversation(&term, &fake).await;
    // The calls ran as the local admin, through the gateway's own routing.
    assert_eq!(
        fake.last().header("authorization"),
        Some("Bearer sk-upstream")
    );
    assert!(
        server.log().contains("admin socket command"),
        "{}",
        server.log()
    );
}

#[actix_web::test]
async fn chat_over_url_with_a_token_streams_keeps_history_and_switches_models() {
    let fake = FakeLlm::openai(&["m1", "other", "hold", "fail-500"]);
    let home = home_with(&fake);
    cli_ok(
        home.path(),
        &["users", "add", "alice", "--password-stdin"],
        Some(PW),
    );
    let server = Server::start(home.path(), &[]);
    let token = cli_ok(
        home.path(),
        &["tokens", "issue", "--user", "alice", "--name", "chat"],
        None,
    )
    .trim()
    .to_owned();
    assert!(token.starts_with("gh_"), "{token}");
    // The chat may not use the admin socket: another home, with no server.
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let term = Tmux::start(
        dir.path(),
        &chat_command(
            elsewhere.path(),
            &format!("--url '{}/' --token '{token}'", server.url),
        ),
    );
    conversation(&term, &fake).await;
    assert!(!term.screen().contains(&token));
    assert_eq!(
        fake.last().header("authorization"),
        Some("Bearer sk-upstream")
    );
}

#[actix_web::test]
async fn chat_with_a_refused_token_says_why_and_goes_on() {
    let fake = FakeLlm::openai(&["m1"]);
    let home = home_with(&fake);
    cli_ok(
        home.path(),
        &["users", "add", "alice", "--password-stdin"],
        Some(PW),
    );
    let server = Server::start(home.path(), &[]);
    let token = cli_ok(
        home.path(),
        &["tokens", "issue", "--user", "alice", "--name", "chat"],
        None,
    )
    .trim()
    .to_owned();
    let id = cli_ok(home.path(), &["tokens", "list"], None)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    cli_ok(home.path(), &["tokens", "revoke", &id], None);
    let dir = tempfile::tempdir().unwrap();
    let term = Tmux::start(
        dir.path(),
        &chat_command(home.path(), &format!("--url '{}'", server.url)).replace(
            "unset GATEHOUSE_LOG GATEHOUSE_TOKEN;",
            &format!("unset GATEHOUSE_LOG; export GATEHOUSE_TOKEN='{token}';"),
        ),
    );
    term.wait("the first prompt", |s| s.lines().last() == Some(">"))
        .await;
    // What the gateway says to this token, as the chat must show it.
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(&token)
        .json(&json!({"model": "default", "messages": [user("hi")], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let message = res.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let screen = term.step("hello", &format!("error: {message}")).await;
    term.step("/model", "model: default").await;
    assert_eq!(fake.calls(), 0);
    // Ctrl-D (the end of input) leaves too.
    term.tmux(&["send-keys", "-t", "chat", "C-d"]);
    let screen2 = term
        .wait("the chat to end", |s| s.contains("[chat exited 0]"))
        .await;
    assert!(
        !screen.contains(&token) && !screen2.contains(&token),
        "{screen2}"
    );
}

#[test]
fn chat_without_a_running_gateway_says_so_and_exits_1() {
    let home = tempfile::tempdir().unwrap();
    let out = cli(home.path(), &["chat"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "no gateway is running on {}; start `gatehouse serve` or pass --url",
            home.path().display()
        )
    );
    assert!(out.stdout.is_empty());
}
