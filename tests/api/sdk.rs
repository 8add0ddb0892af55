//! The official OpenAI and Anthropic Python SDKs as clients of the model
//! API (tests/sdk/sdk_check.py), pointed at Gatehouse with a gateway token.

use crate::gateway::gateway;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[actix_rt::test]
async fn the_official_sdks_work_through_the_gateway() {
    let gw = gateway("").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/sdk_check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .env("GATEHOUSE_URL", &gw.app.url)
        .env("GATEHOUSE_TOKEN", &gw.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (install the openai and anthropic packages)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(line) => {
                if line == "FIRST" {
                    // The SDK has the first chunk while the upstream still holds the rest.
                    gw.oa.release();
                }
                lines.push(line);
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                actix_rt::time::sleep(Duration::from_millis(20)).await
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        }
    }
    let out = child.wait_with_output().unwrap();
    let all = lines.join("\n");
    assert!(
        out.status.success() && lines.last().map(String::as_str) == Some("ALL OK"),
        "{all}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.iter().any(|l| l == "FIRST"));
}
