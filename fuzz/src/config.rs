//! Configuration loading: a `gatehouse.toml` through the real loader
//! (defaults, the file, `GATEHOUSE__…` overrides, `$VAR` expansion,
//! validation).
//!
//! An input is the file's text, optionally followed by `\0` and
//! `NAME=value` lines: the environment.

use gatehouse::config::Config;
use std::collections::HashMap;

pub fn config_toml(data: &[u8]) {
    let (file, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(file) = std::str::from_utf8(file) else {
        return; // the loader reads the file as UTF-8 and says so
    };
    let env: HashMap<String, String> = crate::text(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Ok(config) = Config::from_toml_with_env(file, &env) else {
        return;
    };
    // What `config check`, the admin API and the start-up read of it.
    let _ = config.redacted_toml();
    let _ = config.redacted_json();
    let _ = config.egress_policy();
    let _ = config.pg_options();
    let _ = config.has_external_auth();
    let _ = gatehouse::edge::Edge::new(&config.server);
    let _ = gatehouse::auth::oidc::OidcProviders::new(&config.auth.oidc);
}
