//! Gateway tokens (`gh_` + an EdDSA JWS) and external JWTs checked against
//! a JWKS, with fixed test keys.
//!
//! An input is one of:
//! * a token, as a client would send it (`gh_eyJ…` or `eyJ…`): checked as is;
//! * `HEADER \0 CLAIMS [\0 FLAGS EXP NBF IAT]`: the JSON texts of a header
//!   and claims, signed with the test key, so that the fuzzer reaches the
//!   claim checks behind the signature. The optional tail overrides the
//!   numeric claims: `FLAGS` has two bits per claim (0 as given, 1 `i64`,
//!   2 `u64`, 3 `f64`) for 8 little-endian bytes each;
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
use serde_json::{Map, Number, Value};
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

/// A signed token from `HEADER \0 CLAIMS [\0 FLAGS EXP NBF IAT]`, or `None`
/// when the input is a plain token.
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
    let flags = tail[0];
    let mut words = tail[1..].chunks_exact(8).map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        w
    });
    for (i, name) in ["exp", "nbf", "iat"].into_iter().enumerate() {
        let Some(w) = words.next() else { break };
        set_number(&mut obj, name, (flags >> (2 * i)) & 3, w);
    }
    let claims = serde_json::to_vec(&obj).expect("a JSON object serializes");
    Some(sign(header, &claims))
}

fn set_number(obj: &mut Map<String, Value>, name: &str, how: u8, w: [u8; 8]) {
    let n = match how {
        1 => Number::from(i64::from_le_bytes(w)),
        2 => Number::from(u64::from_le_bytes(w)),
        3 => match Number::from_f64(f64::from_le_bytes(w)) {
            Some(n) => n,
            None => return,
        },
        _ => return,
    };
    obj.insert(name.to_owned(), Value::Number(n));
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
        }
        accepted
    })
}
