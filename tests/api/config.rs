use crate::helpers::*;

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("gatehouse.toml");
    std::fs::write(
        &file,
        "[auth.github]\nclient_id = \"abc\"\nclient_secret = \"$GH_TEST_SECRET\"\n[server]\nport = 9191\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["config", "check"])
        .env("GATEHOUSE_HOME", home.path())
        .env("GH_TEST_SECRET", "s3cr3t-value-xyz")
        .env("GATEHOUSE__SERVER__PORT", "9292")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("s3cr3t-value-xyz"), "{text}");
    assert!(text.contains("***"));
    assert!(text.contains("9292"), "env overrides the file: {text}");
    assert!(text.contains("abc"));
}

#[test]
fn unknown_keys_and_bad_values_stop_the_start_naming_the_key() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("bad.toml");
    std::fs::write(&file, "[server]\nprot = 1\n").unwrap();
    let out = cli(
        home.path(),
        &["serve", "--config", file.to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.prot"));
    std::fs::write(&file, "[auth]\nsession_ttl = \"forever\"\n").unwrap();
    let out = cli(
        home.path(),
        &["config", "check", "--config", file.to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.session_ttl"));
    let out = std::process::Command::new(bin())
        .args(["config", "check"])
        .env("GATEHOUSE_HOME", home.path())
        .env("GATEHOUSE__SERVER__PORT", "not-a-port")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.port"));
}
