//! The disk under the home directory fills up (a small tmpfs, filled to the
//! last byte): writes fail with a clear error, the gateway stays up and
//! `/ready` says why, reads go on working; once space is freed and the
//! gateway restarted, every acknowledged write is there, the refused one is
//! not, and writes work again. (Mounting needs root, as CI has.)

use crate::helpers::*;
use crate::upstream::FakeLlm;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros to `path` until the disk refuses more.
fn fill(path: &Path) -> PathBuf {
    let filler = path.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
    filler
}

async fn issue(url: &str, admin: &str, name: &str) -> (u16, Value) {
    let res = client()
        .post(format!("{url}/api/tokens"))
        .bearer_auth(admin)
        .json(&json!({"name": name, "expires_in": 3600}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn status(url: &str, path: &str, token: &str) -> (u16, Value) {
    let res = client()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn a_full_disk_gives_a_clear_error_and_loses_nothing_acknowledged() {
    let disk = Tmpfs::mount("8m");
    // The home is the mount itself; the server's log and the config file
    // live elsewhere, on a disk with room.
    let home = disk.path().to_owned();
    let elsewhere = tempfile::tempdir().unwrap();
    let fake = FakeLlm::openai(&["m1"]);
    let config = elsewhere.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nauth_rate_per_minute = 0\n\
             [providers.oa]\nbase_url = \"{}\"\napi_key = \"k\"\nmodels = [\"m1\"]\nlocal = true\n",
            fake.url
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    cli_ok(
        &home,
        &["users", "add", "admin", "--password-stdin"],
        Some(PW),
    );
    let admin = cli_ok(
        &home,
        &[
            "tokens",
            "issue",
            "--user",
            "admin",
            "--name",
            "admin",
            "--scope",
            "read,write,admin",
        ],
        None,
    )
    .trim()
    .to_owned();
    let server = Server::start(&home, &args);
    let url = server.url.clone();
    let filler = fill(disk.path());

    // Writes go on into the space the store already holds, then fail.
    let mut acked = Vec::new();
    let refused = loop {
        let name = format!("t{}", acked.len());
        let (code, body) = issue(&url, &admin, &name).await;
        match code {
            201 => acked.push((name, body["token"].as_str().unwrap().to_owned())),
            503 => break (name, body),
            other => panic!("token {name}: {other} {body}"),
        }
        assert!(acked.len() < 20_000, "the disk never filled up");
    };
    let (refused_name, body) = refused;
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("full") && message.contains("nothing was saved"),
        "{message}"
    );
    assert!(!body.to_string().contains("gh_"), "{body}");

    // The process stays up and says what is wrong; reads still work.
    assert_eq!(status(&url, "/health", "").await.0, 200);
    let (code, ready) = status(&url, "/ready", "").await;
    assert_eq!(code, 503);
    assert!(
        ready["reasons"]["store"]
            .as_str()
            .is_some_and(|r| r.contains("no space left")),
        "{ready}"
    );
    let (code, _) = status(&url, "/v1/models", &acked[0].1).await;
    assert_eq!(code, 200);
    let (code, listed) = status(&url, "/api/tokens", &admin).await;
    assert_eq!(code, 200);
    assert!(!listed.to_string().contains(&format!("\"{refused_name}\"")));
    // The CLI says it too, not "try again".
    let out = cli(
        &home,
        &["tokens", "issue", "--user", "admin", "--name", "cli"],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data directory is full"), "{err}");

    // Space is freed; after a restart everything acknowledged is there.
    std::fs::remove_file(filler).unwrap();
    server.stop();
    let server = Server::start(&home, &args);
    let url = server.url.clone();
    for (name, token) in &acked {
        let (code, _) = status(&url, "/v1/models", token).await;
        assert_eq!(code, 200, "acknowledged token {name} lost");
    }
    let (_, listed) = status(&url, "/api/tokens", &admin).await;
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), acked.len() + 1, "{names:?}");
    assert!(!names.contains(&refused_name.as_str()));
    assert!(!names.contains(&"cli"));
    let (code, _) = status(&url, "/ready", "").await;
    assert_eq!(code, 200);
    assert_eq!(issue(&url, &admin, "after").await.0, 201);
}
