//! Unit tests for loading, expansion, validation, redaction and durations.

use super::expand::expand;
use super::*;
use proptest::prelude::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads `body` as the user's `$GATEHOUSE_HOME/gatehouse.toml`.
fn load(body: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("gatehouse.toml"), body).unwrap();
    Config::load_with_env(None, home.path(), &env(vars))
}

fn err(body: &str) -> String {
    load(body, &[]).expect_err("should be refused").to_string()
}

#[test]
fn defaults_have_documented_values() {
    let c = Config::defaults();
    assert_eq!(
        (c.server.host.as_str(), c.server.port, c.server.metrics_port),
        ("127.0.0.1", 8080, 0)
    );
    assert_eq!(c.server.metrics, super::MetricsAccess::Admin);
    assert_eq!(c.server.shutdown_timeout, Duration::from_secs(30));
    assert!(load("[server]\nmetrics = \"world\"\n", &[])
        .unwrap_err()
        .to_string()
        .contains("server.metrics"));
    assert!(c.server.trusted_proxies.is_empty() && !c.server.secure_cookies);
    assert_eq!(
        (c.server.max_body_bytes, c.server.max_api_body_bytes),
        (1_048_576, 33_554_432)
    );
    assert_eq!(c.store.backend, StoreBackend::Sled);
    assert!(c.store.url.is_empty());
    assert_eq!(c.store.sweep_interval, Duration::from_secs(60));
    assert_eq!(c.store.schema, None);
    assert_eq!(c.store.pool_size, 16);
    assert_eq!(c.store.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.store.query_timeout, Duration::from_secs(5));
    assert_eq!(c.store.slow_query, Duration::from_millis(500));
    assert!(!c.auth.allow_anonymous_local);
    assert_eq!(c.auth.session_ttl, time::Duration::days(30));
    assert_eq!(c.auth.oauth_session_ttl, time::Duration::hours(24));
    assert_eq!(c.auth.oauth_state_ttl, time::Duration::minutes(10));
    assert_eq!(c.auth.max_login_failures, 5);
    assert_eq!(c.auth.login_failure_window, time::Duration::minutes(15));
    assert!(c.auth.github.is_none() && c.auth.oidc.is_empty() && c.auth.bearer.is_empty());
    assert!(!c.has_external_auth());
    assert!(c.providers.is_empty());
    assert_eq!(
        c.models,
        ModelsConfig {
            default: String::new(),
            refresh_interval: std::time::Duration::from_secs(600),
            aliases: BTreeMap::new()
        }
    );
    assert_eq!(
        c.egress,
        EgressConfig {
            allow_private: false,
            allow_hosts: vec![],
            deny_hosts: vec![]
        }
    );
    assert_eq!(c.tasks.concurrency, 4);
    assert_eq!(c.tasks.max_queued, 10_000);
}

#[test]
fn home_file_overrides_defaults() {
    let c = load("[server]\nport = 9090\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[tasks]\nconcurrency = 2\nmax_queued = 0\n", &[]).unwrap();
    assert_eq!(c.server.port, 9090);
    assert_eq!(c.server.host, "127.0.0.1");
    assert_eq!(
        c.server.trusted_proxies,
        vec![
            "10.0.0.0/8".parse::<IpNet>().unwrap(),
            "::1/128".parse().unwrap()
        ]
    );
    assert_eq!(c.tasks.concurrency, 2);
    assert_eq!(c.tasks.max_queued, 0, "no bound");
}

#[test]
fn explicit_file_is_used_and_must_exist() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("gatehouse.toml"),
        "[server]\nport = 1111\n",
    )
    .unwrap();
    let other = home.path().join("other.toml");
    std::fs::write(&other, "[server]\nport = 2222\n").unwrap();
    let c = Config::load_with_env(Some(&other), home.path(), &HashMap::new()).unwrap();
    assert_eq!(c.server.port, 2222);
    let missing = home.path().join("missing.toml");
    let e = Config::load_with_env(Some(&missing), home.path(), &HashMap::new()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.toml"), "{e}");
    // No file at all in home: defaults.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        Config::load_with_env(None, empty.path(), &HashMap::new())
            .unwrap()
            .server
            .port,
        8080
    );
}

#[test]
fn env_overrides_file() {
    let vars = [
        ("GATEHOUSE__SERVER__PORT", "9000"),
        ("GATEHOUSE__AUTH__SESSION_TTL", "1h"),
        ("GATEHOUSE__SERVER__SECURE_COOKIES", "true"),
        ("GATEHOUSE__EGRESS__ALLOW_HOSTS", "a.example, B.example"),
        ("GATEHOUSE__SERVER__TRUSTED_PROXIES", "10.0.0.0/8"),
        ("GATEHOUSE_HOME", "/ignored"),
    ];
    let c = load(
        "[server]\nport = 7000\n[auth]\nsession_ttl = \"2d\"\n",
        &vars,
    )
    .unwrap();
    assert_eq!(c.server.port, 9000);
    assert!(c.server.secure_cookies);
    assert_eq!(c.auth.session_ttl, time::Duration::hours(1));
    assert_eq!(c.egress.allow_hosts, vec!["a.example", "b.example"]);
    assert_eq!(c.server.trusted_proxies.len(), 1);
    let e = load("", &[("GATEHOUSE__SERVER__PORT", "nine")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("server.port: invalid value"), "{e}");
    let e = load("", &[("GATEHOUSE__SERVER__PROT", "1")])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "unknown key `server.prot`");
}

#[test]
fn expands_variables() {
    let body = "[auth.github]\nclient_id = \"${GH_ID}-x\"\nclient_secret = \"$GH_SECRET\"\nallowed_orgs = [\"$ORG\"]\n\
                [models]\ndefault = \"cost$$5 $UNSET|${UNSET}|\"\n";
    let vars = [
        ("GH_ID", "abc"),
        ("GH_SECRET", "s3cr$t"),
        ("ORG", "Acme"),
        ("GITHUB_USERS", "Alice, bob carol,,"),
    ];
    let c = load(body, &vars).unwrap();
    let gh = c.auth.github.as_ref().unwrap();
    assert_eq!(gh.client_id, "abc-x");
    assert_eq!(gh.client_secret.expose(), "s3cr$t");
    assert_eq!(gh.allowed_users, vec!["alice", "bob", "carol"]);
    assert_eq!(gh.allowed_orgs, vec!["acme"]);
    assert_eq!(c.models.default, "cost$5 ||");
    assert!(c.has_external_auth());
    assert_eq!(expand("a$", &HashMap::new()).unwrap(), "a$");
    assert!(err("[models]\ndefault = \"${OPEN\"\n").starts_with("models.default: unterminated"));
}

#[test]
fn github_needs_a_secret() {
    let e = load("", &[("GITHUB_CLIENT_ID", "id")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("auth.github.client_secret:"), "{e}");
}

#[test]
fn unknown_keys_are_named() {
    assert_eq!(err("[server]\nprot = 1\n"), "unknown key `server.prot`");
    assert_eq!(err("[nope]\nx = 1\n"), "unknown key `nope`");
    assert_eq!(
        err("[auth.github]\nclient_idd = \"x\"\n"),
        "unknown key `auth.github.client_idd`"
    );
    assert_eq!(
        err("[providers.x]\nbase_url = \"http://a\"\nfoo = 1\n"),
        "unknown key `providers.x.foo`"
    );
    assert_eq!(
        err("[[auth.bearer]]\ntype = \"jwks\"\njwks_uri = \"https://a/jwks\"\n[[auth.bearer]]\ntype = \"github\"\nbar = 2\n"),
        "unknown key `auth.bearer[1].bar`"
    );
    assert_eq!(err("[access]\nx = 1\n"), "unknown key `access.x`");
}

#[test]
fn bad_values_are_named() {
    assert_eq!(
        err("[auth]\nsession_ttl = \"3x\"\n"),
        "auth.session_ttl: bad duration \"3x\": unknown unit (use ms, s, m, h or d)"
    );
    assert!(err("[store]\nsweep_interval = \"0s\"\n").starts_with("store.sweep_interval:"));
    assert_eq!(
        err("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n"),
        "server.trusted_proxies[1]: bad CIDR \"10.0.0.0/99\""
    );
    assert!(err("[server]\nport = 0\n").starts_with("server.port:"));
    assert!(err("[server]\nport = 70000\n").starts_with("server.port: invalid value 70000"));
    assert!(err("[server]\nmax_body_bytes = 10\n").starts_with("server.max_body_bytes:"));
    assert!(err("[server]\nsecure_cookies = \"yes\"\n").starts_with("server.secure_cookies:"));
    assert!(err("[store]\nbackend = \"mysql\"\n").starts_with("store.backend:"));
    assert!(err("[store]\nbackend = \"postgres\"\n").starts_with("store.url:"));
    assert!(err("[store]\nschema = \"Bad-Name\"\n").starts_with("store.schema:"));
    assert!(err("[store]\nschema = \"a\\\"; DROP\"\n").starts_with("store.schema:"));
    assert!(err("[store]\npool_size = 0\n").starts_with("store.pool_size:"));
    assert!(err("[store]\nconnect_timeout = \"0s\"\n").starts_with("store.connect_timeout:"));
    assert!(err("[store]\nquery_timeout = \"0s\"\n").starts_with("store.query_timeout:"));
    assert!(err("[store]\nslow_query = \"soon\"\n").starts_with("store.slow_query:"));
    assert!(err("[auth]\nmax_login_failures = 0\n").starts_with("auth.max_login_failures:"));
    assert!(err("[tasks]\nconcurrency = 0\n").starts_with("tasks.concurrency:"));
    assert!(err("[providers.x]\nbase_url = \"ftp://a\"\n").starts_with("providers.x.base_url:"));
    assert!(
        err("[providers.x]\ntype = \"cohere\"\nbase_url = \"http://a\"\n")
            .starts_with("providers.x.type:")
    );
    assert!(err("[providers.\"a/b\"]\nbase_url = \"http://a\"\n").starts_with("providers.a/b:"));
    assert!(err("[models.aliases]\nfast = []\n").starts_with("models.aliases.fast:"));
    assert_eq!(
        err("[[auth.bearer]]\njwks_uri = \"https://a\"\n"),
        "auth.bearer[0].type: missing"
    );
    assert!(err("[[auth.bearer]]\ntype = \"jwks\"\n").starts_with("auth.bearer[0].jwks_uri:"));
    assert!(err("[[auth.bearer]]\ntype = \"introspection\"\n").starts_with("auth.bearer[0].url:"));
    assert!(err("[[auth.bearer]]\ntype = \"custom\"\n").starts_with("auth.bearer[0].endpoint:"));
    let e = err("[[auth.bearer]]\ntype = \"github\"\ndefault_scopes = [\"read\", \"root\"]\n");
    assert!(e.starts_with("auth.bearer[0].default_scopes[1]:"), "{e}");
    assert!(err("[auth.oidc.corp]\nclient_id = \"x\"\n").starts_with("auth.oidc.corp.issuer:"));
    assert!(err("[server\n").contains("not valid TOML"));
}

#[test]
fn optional_tables_get_defaults() {
    let body = "[auth.oidc.corp]\nissuer = \"https://id.example.com\"\nclient_id = \"gh\"\nclient_secret = \"x\"\n\
                [[auth.bearer]]\ntype = \"jwks\"\njwks_uri = \"https://id.example.com/jwks\"\nclaims_mapping = { groups = \"roles\" }\n\
                [providers.openai]\nbase_url = \"https://api.openai.com/v1/\"\nmodels = [\"gpt-4o-mini\"]\n\
                [models.aliases]\nfast = [\"openai/gpt-4o-mini\", \"groq/llama\"]\n";
    let c = load(body, &[]).unwrap();
    let o = &c.auth.oidc["corp"];
    assert_eq!(o.scopes, vec!["openid", "email", "profile"]);
    assert_eq!(
        (o.groups_claim.as_str(), o.redirect_uri.as_str()),
        ("groups", "")
    );
    let b = &c.auth.bearer[0];
    assert_eq!(b.kind, BearerKind::Jwks);
    assert_eq!(
        (b.key_recheck_period, b.cache_ttl),
        (Duration::from_secs(3600), Duration::from_secs(60))
    );
    assert_eq!(b.default_scopes, vec!["read", "write"]);
    assert_eq!(b.claims_mapping["groups"], "roles");
    let p = &c.providers["openai"];
    assert_eq!(
        (p.kind, p.base_url.as_str(), p.local),
        (ProviderKind::OpenAi, "https://api.openai.com/v1", false)
    );
    assert_eq!(c.models.aliases["fast"].len(), 2);
    assert!(c.has_external_auth());
}

#[test]
fn redacted_output_hides_secrets() {
    let body = "[auth.github]\nclient_id = \"cid\"\nclient_secret = \"gh-SECRET-1\"\n\
                [providers.x]\nbase_url = \"https://a.example\"\napi_key = \"$KEY\"\n\
                [store]\nbackend = \"postgres\"\nurl = \"postgres://u:pw-SECRET-3@db/gh\"\n";
    let c = load(body, &[("KEY", "sk-SECRET-2")]).unwrap();
    assert_eq!(c.providers["x"].api_key.expose(), "sk-SECRET-2");
    let text = c.redacted_toml();
    let json = c.redacted_json().to_string();
    let debug = format!("{c:?}");
    for out in [&text, &json, &debug] {
        assert!(out.contains("***"), "{out}");
        assert!(!out.contains("SECRET"), "{out}");
    }
    assert!(
        text.contains("token_url = \"https://github.com/login/oauth/access_token\""),
        "{text}"
    );
    assert!(text.contains("type = \"openai\""), "{text}");
    let back: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(back["providers"]["x"]["api_key"].as_str(), Some("***"));
    assert_eq!(c.redacted_json()["auth"]["github"]["client_secret"], "***");
    assert_eq!(serde_json::to_string(&Secret::new("x")).unwrap(), "\"***\"");
    assert_eq!(format!("{:?}", Secret::new("x")), "***");
}

#[test]
fn durations() {
    let cases = [
        ("500ms", 0, 500),
        ("90s", 90, 0),
        ("15m", 900, 0),
        ("24h", 86_400, 0),
        ("30d", 2_592_000, 0),
        ("42", 42, 0),
    ];
    for (s, secs, ms) in cases {
        assert_eq!(
            parse_duration(s),
            Ok(Duration::from_secs(secs) + Duration::from_millis(ms)),
            "{s}"
        );
    }
    for s in [
        "",
        " ",
        "-5s",
        "3x",
        "h",
        "1.5h",
        "99999999999999999999s",
        "999999999999999999d",
    ] {
        assert!(parse_duration(s).is_err(), "{s:?}");
    }
    assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::ZERO), "0s");
}

proptest! {
    #[test]
    fn format_parses_back(secs in any::<u64>()) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn sub_second_parses_back(ms in 0u64..1_000_000_000_000) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn garbage_never_panics(s in "\\PC*", t in "[0-9]{0,25}[a-z ]{0,3}") {
        let _ = parse_duration(&s);
        let _ = parse_duration(&t);
        let _ = expand(&s, &HashMap::new());
    }
}

#[test]
fn access_rules_are_parsed_and_bad_ones_refused() {
    let c = load(
        "[[access.rules]]\nmatch = { attributes = { teams = [\"ml\"] }, methods = [\"jwks\"] }\nmodels = [\"openai/*\"]\n\n[[access.rules]]\neffect = \"deny\"\nmatch = { users = [\"bob\"] }\nscopes = [\"write\"]\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.access.rules.len(), 2);
    assert_eq!(c.access.rules[1].effect, crate::access::Effect::Deny);
    assert!(
        err("[[access.rules]]\nmodels = [\"x\"]\neffect = \"maybe\"\n")
            .starts_with("access.rules[0].effect:")
    );
    assert!(err("[[access.rules]]\nmatch = { roles = [\"a\"] }\n").starts_with("access.rules[0]:"));
    assert!(
        err("[[access.rules]]\nscopes = [\"root\"]\n").starts_with("access.rules[0].scopes[0]:")
    );
    assert!(
        err("[[access.rules]]\nscopes = [\"read\"]\nmatch = { methods = [\"magic\"] }\n")
            .starts_with("access.rules[0].match.methods[0]:")
    );
    assert!(
        err("[[access.rules]]\nscopes = [\"read\"]\nmatch = { team = [\"x\"] }\n")
            .contains("access.rules[0].match.team")
    );
    assert!(err("[[access.rules]]\nscopes = [\"read\"]\nwho = 1\n").contains("access.rules[0].who"));
}

#[test]
fn tasks_settings_are_checked_and_the_agent_backend_passes_the_egress_policy() {
    let c = load(
        "[tasks]\napproval = \"admin\"\nlease = \"10s\"\n[tasks.agent]\nbase_url = \"http://127.0.0.1:9000/\"\nlocal = true\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.tasks.approval, gatehouse_actors::tasks::Approver::Admin);
    assert_eq!(c.tasks.lease, std::time::Duration::from_secs(10));
    let agent = c.tasks.agent.unwrap();
    assert_eq!(
        (agent.base_url.as_str(), agent.local),
        ("http://127.0.0.1:9000", true)
    );
    assert!(Config::defaults().tasks.agent.is_none());
    assert!(err("[tasks]\napproval = \"nobody\"\n").starts_with("tasks.approval:"));
    assert!(err("[tasks]\nlease = \"0s\"\n").starts_with("tasks.lease:"));
    let e = err("[tasks.agent]\nbase_url = \"http://169.254.169.254/\"\nlocal = true\n");
    assert!(e.starts_with("tasks.agent.base_url:"), "{e}");
    let e = err("[tasks.agent]\nbase_url = \"http://127.0.0.1:9000\"\n");
    assert!(
        e.starts_with("tasks.agent.base_url:"),
        "loopback needs local: {e}"
    );
}

#[test]
fn abuse_protection_settings_have_defaults_and_are_checked() {
    let c = Config::defaults();
    assert_eq!(c.server.auth_rate_per_minute, 60);
    assert_eq!(c.server.max_header_bytes, 16 * 1024);
    assert_eq!(c.server.client_header_timeout, Duration::from_secs(10));
    assert_eq!(c.server.client_body_timeout, Duration::from_secs(30));
    assert_eq!(c.server.max_streams_per_principal, 16);
    // 0: per address as per username.
    assert_eq!(c.auth.max_login_failures_per_ip, c.auth.max_login_failures);
    let c = load("[auth]\nmax_login_failures_per_ip = 20\n", &[]).unwrap();
    assert_eq!(c.auth.max_login_failures_per_ip, 20);
    let e = err("[server]\nmax_header_bytes = 200000\n");
    assert!(
        e.starts_with("server.max_header_bytes: must be from 1024 to 131072"),
        "{e}"
    );
    assert!(
        err("[server]\nclient_body_timeout = \"0s\"\n").starts_with("server.client_body_timeout:")
    );
    assert!(err("[server]\nclient_header_timeout = \"soon\"\n")
        .starts_with("server.client_header_timeout:"));
}
