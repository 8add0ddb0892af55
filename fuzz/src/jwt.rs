//! Gateway tokens (`gh_` + an EdDSA JWS) and external JWTs checked against
//! a JWKS, with fixed test keys.
//!
//! An input is one of:
//! * a token, as a client would send it (`gh_eyJ…` or `eyJ…`): checked as is;
//! * `HEADER \0 CLAIMS [\0 EXP NBF IAT WORDS…]`: the JSON texts of a header
//!   and claims, signed with the test key, so that the fuzzer reaches the
//!   claim checks behind the signature. The optional tail overrides the
//!   numeric claims, one byte each (see [`number`]): one of the boundary
//!   values of [`EDGES`] (a one-byte change reaches each), or the next
//!   8-byte little-endian word of `WORDS` as an `i64`, `u64` or `f64`;
//! * external JWT only: a JWK set (`{"keys": …}`), installed in place of the
//!   fixed one, then a fixed token checked against it.
//!
//! A token that is accepted must carry our signature over exactly its bytes.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use gatehouse::auth::bearer::{is_gateway_token, verify, MAX_TOKEN_LEN};
use gatehouse::config::Config;
use gatehouse::fuzzing::JwksValidator;
use gatehouse_actors::keys::KeyRing;
use gatehouse_actors::model::SigningKeyRecord;
use gatehouse_actors::tokens::TOKEN_PREFIX;
use jsonwebtoken::jwk::JwkSet;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Number, Value};
use std::sync::OnceLock;

/// The kid of the gateway's test signing key.
pub const GATEWAY_KID: &str = "fuzzkid1";
/// The kid of the external issuer's Ed25519 key in the fixed JWK set.
pub const ISSUER_KID: &str = "fuzz-ed";
pub const ISSUER: &str = "https://issuer.example";

const SEED: [u8; 32] = [0x42; 32];

fn pair() -> &'static Ed25519KeyPair {
    static PAIR: OnceLock<Ed25519KeyPair> = OnceLock::new();
    PAIR.get_or_init(|| Ed25519KeyPair::from_seed_unchecked(&SEED).expect("a 32-byte seed"))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `b64(header).b64(claims).b64(signature)` with the test key.
pub fn sign(header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = pair().sign(input.as_bytes());
    format!("{input}.{}", b64(sig.as_ref()))
}

/// Whether `jwt` carries the test key's signature over its first two parts.
fn ours(jwt: &str) -> bool {
    let mut parts = jwt.rsplitn(2, '.');
    let (Some(sig), Some(input)) = (parts.next(), parts.next()) else {
        return false;
    };
    sig == b64(pair().sign(input.as_bytes()).as_ref())
}

/// The gateway's key ring, holding the test key as its only key.
fn key_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        // PKCS#8 v1 of an Ed25519 seed: the fixed prefix, then the seed.
        let mut pkcs8 =
            b"\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20".to_vec();
        pkcs8.extend_from_slice(&SEED);
        let record = SigningKeyRecord {
            kid: GATEWAY_KID.to_owned(),
            pkcs8: STANDARD.encode(&pkcs8),
            public: b64(pair().public_key().as_ref()),
            created_at: crate::now(),
        };
        KeyRing::from_records(&[record]).expect("the test key loads")
    })
}

/// The external issuer's JWK set: the test key, and an EC and an RSA key
/// whose private halves nobody has.
pub fn jwks() -> Value {
    serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": ISSUER_KID, "alg": "EdDSA", "use": "sig",
         "x": b64(pair().public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "fuzz-ec", "use": "sig",
         "x": "hYGof1OMwKTQc2jMUK8MKeDFeLfIZc1nuEvMnu6FQCo",
         "y": "RUSzLnKmjCFiGStT--cWQyTPTnQKnAreE7Xm3JBw5-w"},
        {"kty": "RSA", "kid": "fuzz-rsa", "use": "sig", "e": "AQAB",
         "n": "v8p8OZ0440DtOxz3kXNErCe13TrUlIUbS2GCWMVTon4VdRzzp9GuWzAYZ7Mln7LP3MHfPENQJUEoq2XN_bXh1KsEwgF896YiwbOmIl-37udY0hJudDpLEwehg3yUMABBJssb-zzLZmW1v4_TP3bKfhu_qEOYcRgwyPBDUUrCVFu5Xg-ABHkBh_q9JBdDe_PeIVl0MWwyBR_pK2BlJ_4AOjyu5RczyiA5boo422Y6q81XsRrbqXahddaXcVSDUaODYT_axVBCEpPO4XiKEpTY7IxQcrpAXop7WdtKAS0wjRslzGPKmoNd82sAu6irdQcK53OBWa2c8IO3FeDGTUY3QQ"},
        {"kty": "EC", "crv": "P-256", "kid": "fuzz-enc", "use": "enc",
         "x": "hYGof1OMwKTQc2jMUK8MKeDFeLfIZc1nuEvMnu6FQCo",
         "y": "RUSzLnKmjCFiGStT--cWQyTPTnQKnAreE7Xm3JBw5-w"}
    ]})
}

/// `[[auth.bearer]]` as a deployment would write it, through the real loader.
const BEARER_TOML: &str = r#"
[[auth.bearer]]
type = "jwks"
issuer = "https://issuer.example"
audience = "gatehouse"
jwks_uri = "https://issuer.example/.well-known/jwks.json"
claims_mapping = { groups = "roles", team = "teams", level = "level", admin = "admin" }
"#;

fn validator() -> JwksValidator {
    let config = Config::from_toml_with_env(BEARER_TOML, &Default::default())
        .expect("the bearer config is valid");
    JwksValidator::new(&config.auth.bearer[0])
}

/// Numeric claim values at the edges: of `i64`, of `u64`, of the 30 s
/// leeway around [`crate::NOW`], of what `time` can represent.
pub const EDGES: [i64; 16] = [
    i64::MAX,
    i64::MAX - 1,
    i64::MAX - 29,
    i64::MAX - 30,
    i64::MIN,
    i64::MIN + 1,
    i64::MIN + 30,
    -1,
    0,
    crate::NOW,
    crate::NOW - 30,
    crate::NOW + 31,
    4_102_444_800,   // 2100-01-01
    253_402_300_799, // 9999-12-31T23:59:59Z
    253_402_300_800,
    -377_705_116_800, // before what `time` represents
];

/// A signed token from `HEADER \0 CLAIMS [\0 EXP NBF IAT WORDS…]`, or
/// `None` when the input is a plain token.
fn signed(data: &[u8]) -> Option<String> {
    let mut parts = data.splitn(3, |&b| b == 0);
    let header = parts.next()?;
    let claims = parts.next()?;
    let Some(tail) = parts.next().filter(|t| !t.is_empty()) else {
        return Some(sign(header, claims));
    };
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(claims) else {
        return Some(sign(header, claims));
    };
    let (selectors, words) = tail.split_at(tail.len().min(3));
    let mut words = words.chunks_exact(8).map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        w
    });
    for (&how, name) in selectors.iter().zip(["exp", "nbf", "iat"]) {
        if let Some(n) = number(how, &mut words) {
            obj.insert(name.to_owned(), Value::Number(n));
        }
    }
    let claims = serde_json::to_vec(&obj).expect("a JSON object serializes");
    Some(sign(header, &claims))
}

/// A claim's value by its selector byte: 0 leaves the claim as it is;
/// 1 to 16 pick from [`EDGES`]; `0x80..=0xbf` take the next word as an
/// `i64`, `0xc0..=0xdf` as a `u64`, `0xe0..=0xff` as an `f64`.
fn number(how: u8, words: &mut impl Iterator<Item = [u8; 8]>) -> Option<Number> {
    match how {
        1..=16 => Some(Number::from(EDGES[usize::from(how - 1)])),
        0x80..=0xbf => words.next().map(|w| Number::from(i64::from_le_bytes(w))),
        0xc0..=0xdf => words.next().map(|w| Number::from(u64::from_le_bytes(w))),
        0xe0..=0xff => words
            .next()
            .and_then(|w| Number::from_f64(f64::from_le_bytes(w))),
        _ => None,
    }
}

/// What `[[auth.bearer]]` asks of a token holds for every accepted one:
/// our issuer, our audience, an `exp` not past and an `nbf` not ahead
/// (with the 30 s leeway), as numbers.
fn assert_claims_checked(token: &str) {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .expect("an accepted token's claims are JSON");
    assert_eq!(claims["iss"], ISSUER, "the issuer: {claims}");
    let aud = &claims["aud"];
    assert!(
        aud == "gatehouse"
            || aud
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "gatehouse")),
        "the audience: {claims}"
    );
    let exp = claims["exp"].as_i64().expect("exp is an integer");
    assert!(exp.saturating_add(30) > crate::NOW, "not expired: {claims}");
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
        assert!(
            nbf.saturating_sub(30) <= crate::NOW,
            "valid already: {claims}"
        );
    }
}

/// Gateway token parsing and verification (`auth::bearer::verify`, as
/// `GatewayTokens::check` calls it).
pub fn gateway_token(data: &[u8]) {
    gateway_accepts(data);
}

/// Whether the gateway token of `data` is valid now.
pub fn gateway_accepts(data: &[u8]) -> bool {
    let token = match signed(data) {
        Some(jwt) => format!("{TOKEN_PREFIX}{jwt}"),
        None => crate::text(data).into_owned(),
    };
    if token.len() > MAX_TOKEN_LEN || !is_gateway_token(&token) {
        return false;
    }
    let Some(jwt) = token.strip_prefix(TOKEN_PREFIX) else {
        return false;
    };
    match verify(jwt, key_ring()) {
        Ok(claims) => {
            assert!(
                ours(jwt),
                "a token without our signature was accepted: {jwt}"
            );
            claims.exp > crate::NOW
        }
        Err(_) => false,
    }
}

thread_local! {
    /// The runtime the validator's future runs on, its HTTP client (never
    /// used: the keys are preloaded), and the validator with the fixed keys.
    static EXTERNAL: (actix_rt::Runtime, awc::Client, JwksValidator) = {
        let rt = actix_rt::Runtime::new().expect("a runtime");
        let client = rt.block_on(async { awc::Client::default() });
        let v = validator();
        let set: JwkSet = serde_json::from_value(jwks()).expect("the fixed JWK set parses");
        v.preload(&set, crate::now());
        (rt, client, v)
    };
}

/// External JWT validation against a JWKS (`JwksValidator::validate`: the
/// signature, `alg`, `iss`, `aud`, `exp`, `nbf`, then the claims mapping).
pub fn external_jwt(data: &[u8]) {
    external_accepts(data);
}

/// Whether the external JWT of `data` is valid now (a JWK set: false).
pub fn external_accepts(data: &[u8]) -> bool {
    EXTERNAL.with(|(rt, client, fixed)| {
        if data.first() == Some(&b'{') {
            if let Ok(set) = serde_json::from_slice::<JwkSet>(data) {
                // A JWK set from the issuer, then tokens checked against it.
                let v = validator();
                v.preload(&set, crate::now());
                for kid in [Some(ISSUER_KID), None] {
                    let mut header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
                    if let Some(kid) = kid {
                        header["kid"] = kid.into();
                    }
                    let claims = serde_json::json!({"iss": ISSUER, "aud": "gatehouse",
                        "sub": "robot", "exp": crate::NOW + 600});
                    let token = sign(header.to_string().as_bytes(), claims.to_string().as_bytes());
                    let _ = rt.block_on(v.validate(client, &token, crate::now()));
                }
                return false;
            }
        }
        let token = match signed(data) {
            Some(jwt) => jwt,
            None => crate::text(data).into_owned(),
        };
        let accepted = rt
            .block_on(fixed.validate(client, &token, crate::now()))
            .is_ok();
        if accepted {
            assert!(
                ours(&token),
                "a token without our signature was accepted: {token}"
            );
            assert_claims_checked(&token);
        }
        accepted
    })
}
