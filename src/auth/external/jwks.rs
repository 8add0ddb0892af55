//! OAuth2 JWT access tokens checked against the issuer's JWKS. Keys are
//! fetched and cached (`key_recheck_period`); an unknown `kid` refetches at
//! most once per 30 s. The algorithm must be one the key's type allows:
//! `none` and HMAC (whose "secret" would be a public key) never are.

use super::{claims, Identity, MAX_ANSWER};
use crate::config::BearerConfig;
use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

const REFETCH_AT_MOST_EVERY: Duration = Duration::seconds(30);
const LEEWAY: i64 = 30;
const MAX_KEYS: usize = 64;

struct KeySet {
    keys: HashMap<String, (DecodingKey, Vec<Algorithm>)>,
    fetched_at: OffsetDateTime,
}

impl KeySet {
    /// The usable signing keys of a JWK set (at most 64).
    fn of(set: &JwkSet, now: OffsetDateTime) -> KeySet {
        let mut keys = HashMap::new();
        for jwk in set.keys.iter().take(MAX_KEYS) {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let algs = allowed_algorithms(jwk);
            if algs.is_empty() {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            keys.insert(jwk.common.key_id.clone().unwrap_or_default(), (key, algs));
        }
        KeySet {
            keys,
            fetched_at: now,
        }
    }
}

pub struct JwksValidator {
    uri: String,
    issuer: String,
    audience: String,
    recheck: Duration,
    mapping: BTreeMap<String, String>,
    keys: ArcSwapOption<KeySet>,
    last_attempt: Mutex<Option<OffsetDateTime>>,
}

impl JwksValidator {
    pub fn new(c: &BearerConfig) -> Self {
        Self {
            uri: c.jwks_uri.clone(),
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            recheck: Duration::try_from(c.key_recheck_period).unwrap_or(Duration::HOUR),
            mapping: c.claims_mapping.clone(),
            keys: ArcSwapOption::empty(),
            last_attempt: Mutex::new(None),
        }
    }

    /// For an OpenID provider's ID tokens (and logout tokens): its JWKS, its
    /// issuer, and our client id as the audience.
    pub fn for_issuer(jwks_uri: &str, issuer: &str, audience: &str) -> Self {
        Self {
            uri: jwks_uri.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            recheck: Duration::HOUR,
            mapping: BTreeMap::new(),
            keys: ArcSwapOption::empty(),
            last_attempt: Mutex::new(None),
        }
    }

    /// Claims a refetch slot: true at most once per 30 s.
    fn may_fetch(&self, now: OffsetDateTime) -> bool {
        let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now - t < REFETCH_AT_MOST_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    async fn fetch(&self, http: &awc::Client, now: OffsetDateTime) -> Result<(), &'static str> {
        let mut res = http
            .get(&self.uri)
            .insert_header(("accept", "application/json"))
            .send()
            .await
            .map_err(|_| "jwks fetch failed")?;
        if !res.status().is_success() {
            return Err("jwks fetch: bad status");
        }
        let body = res
            .body()
            .limit(MAX_ANSWER)
            .await
            .map_err(|_| "jwks fetch: bad body")?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| "jwks: not a JWK set")?;
        self.keys.store(Some(Arc::new(KeySet::of(&set, now))));
        Ok(())
    }

    /// Installs `set` as if it had just been fetched, so that no fetch
    /// happens for the next 30 s (the fuzz targets: no network).
    #[doc(hidden)]
    pub fn preload(&self, set: &JwkSet, now: OffsetDateTime) {
        self.keys.store(Some(Arc::new(KeySet::of(set, now))));
        *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    pub async fn validate(
        &self,
        http: &awc::Client,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Identity, &'static str> {
        let c = self.verify_claims(http, token, now).await?;
        let exp = c.get("exp").and_then(Value::as_i64).unwrap_or_default();
        let subject = c
            .get("sub")
            .or_else(|| c.get("client_id"))
            .and_then(Value::as_str)
            .ok_or("no subject")?
            .to_owned();
        Ok(Identity {
            username: claims::username(&c, &subject),
            subject,
            scopes: claims::scopes_from(&c),
            attributes: claims::attributes_from(&c, &self.mapping),
            expires_at: OffsetDateTime::from_unix_timestamp(exp).ok(),
        })
    }

    /// Signature, algorithm, `iss`, `aud`, `exp` and `nbf`: the verified claims.
    pub async fn verify_claims(
        &self,
        http: &awc::Client,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Map<String, Value>, &'static str> {
        if token.len() > crate::auth::bearer::MAX_TOKEN_LEN || token.split('.').count() != 3 {
            return Err("not a JWT");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "bad header")?;
        let kid = header.kid.clone().unwrap_or_default();
        let stale = self
            .keys
            .load()
            .as_ref()
            .is_none_or(|k| now - k.fetched_at > self.recheck);
        if stale && self.may_fetch(now) {
            if let Err(e) = self.fetch(http, now).await {
                tracing::warn!(uri = %self.uri, why = e, "fetching the JWKS failed");
            }
        }
        let mut found = self.lookup(&kid);
        if found.is_none() && self.may_fetch(now) {
            // An unknown kid: the issuer may have rotated its keys.
            if let Err(e) = self.fetch(http, now).await {
                tracing::warn!(uri = %self.uri, why = e, "fetching the JWKS failed");
            }
            found = self.lookup(&kid);
        }
        let (key, algs) = found.ok_or("unknown kid")?;
        if !algs.contains(&header.alg) {
            return Err("algorithm not allowed for this key");
        }
        let mut v = Validation::new(header.alg);
        v.validate_exp = false; // checked below against the gateway's clock
        v.validate_nbf = false;
        // A configured issuer or audience must be in the token, as a string:
        // jsonwebtoken checks only the claims that are there and parse.
        let mut required = vec!["exp"];
        if self.issuer.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&[&self.issuer]);
            required.push("iss");
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&[&self.audience]);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|_| "signature or claims")?;
        let c = data.claims;
        let t = now.unix_timestamp();
        let exp = c.get("exp").and_then(Value::as_i64).ok_or("no exp")?;
        // Saturating: the numbers are the token's, any i64 at all.
        if exp.saturating_add(LEEWAY) <= t {
            return Err("expired");
        }
        if c.get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|nbf| nbf.saturating_sub(LEEWAY) > t)
        {
            return Err("not yet valid");
        }
        Ok(c)
    }

    fn lookup(&self, kid: &str) -> Option<(DecodingKey, Vec<Algorithm>)> {
        let set = self.keys.load_full()?;
        match set.keys.get(kid) {
            Some(k) => Some(k.clone()),
            // A token without a kid may use the only key there is.
            None if kid.is_empty() && set.keys.len() == 1 => set.keys.values().next().cloned(),
            None => None,
        }
    }
}

/// The algorithms a key's type allows (narrowed by its `alg`, if any).
fn allowed_algorithms(jwk: &jsonwebtoken::jwk::Jwk) -> Vec<Algorithm> {
    use Algorithm::*;
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![EdDSA],
            _ => vec![],
        },
        AlgorithmParameters::OctetKey(_) => vec![],
    };
    match &jwk.common.key_algorithm {
        Some(declared) => by_type
            .into_iter()
            .filter(|a| format!("{a:?}") == format!("{declared:?}"))
            .collect(),
        None => by_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::json;

    const ISSUER: &str = "https://id.example";
    const NOW: i64 = 1_750_000_000;

    /// A validator holding one Ed25519 key, and tokens signed with it.
    struct Issuer {
        pair: Ed25519KeyPair,
        validator: JwksValidator,
        http: awc::Client,
    }

    impl Issuer {
        fn new() -> Issuer {
            let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
            let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            let set: JwkSet = serde_json::from_value(json!({"keys": [
                {"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": x}
            ]}))
            .unwrap();
            // No fetch: the keys are there and the refetch slot is taken.
            let validator = JwksValidator::for_issuer("http://127.0.0.1:9/jwks", ISSUER, "api");
            validator.preload(&set, Self::now());
            Issuer {
                pair,
                validator,
                http: awc::Client::default(),
            }
        }

        fn now() -> OffsetDateTime {
            OffsetDateTime::from_unix_timestamp(NOW).unwrap()
        }

        async fn check(&self, claims: Value) -> Result<Map<String, Value>, &'static str> {
            let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
            let input = format!(
                "{}.{}",
                b64(json!({"alg": "EdDSA", "kid": "k1"})),
                b64(claims)
            );
            let sig = URL_SAFE_NO_PAD.encode(self.pair.sign(input.as_bytes()).as_ref());
            let token = format!("{input}.{sig}");
            self.validator
                .verify_claims(&self.http, &token, Self::now())
                .await
        }
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": ISSUER, "aud": "api", "sub": "robot", "exp": NOW + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    /// Found by the `external_jwt` fuzz target: `exp + 30` and `nbf - 30`
    /// overflowed (a panic in debug builds, a wrong verdict in release).
    #[actix_web::test]
    async fn extreme_exp_and_nbf_are_judged_without_overflow() {
        let issuer = Issuer::new();
        for exp in [i64::MAX, i64::MAX - 29, i64::MAX - 30] {
            let c = issuer.check(claims(json!({"exp": exp}))).await;
            assert!(c.is_ok(), "exp {exp}: {c:?}");
        }
        for nbf in [i64::MIN, i64::MIN + 29, NOW + 30] {
            let c = issuer.check(claims(json!({"nbf": nbf}))).await;
            assert!(c.is_ok(), "nbf {nbf}: {c:?}");
        }
        for nbf in [i64::MAX, i64::MAX - 29, NOW + 31] {
            let c = issuer.check(claims(json!({"nbf": nbf}))).await;
            assert_eq!(c, Err("not yet valid"), "nbf {nbf}");
        }
        for exp in [
            json!(NOW - 30),
            json!(i64::MIN),
            json!(-1),
            json!(u64::MAX),
            json!(1.5e300),
            json!("soon"),
        ] {
            let c = issuer.check(claims(json!({ "exp": exp }))).await;
            assert!(c.is_err(), "exp {exp}: {c:?}");
        }
    }

    /// Found by the `external_jwt` fuzz target: a token without `iss` or
    /// `aud` (or with one that is not a string) passed the configured checks.
    #[actix_web::test]
    async fn a_configured_issuer_and_audience_must_be_in_the_token() {
        let issuer = Issuer::new();
        assert!(issuer.check(claims(json!({}))).await.is_ok());
        assert!(issuer
            .check(claims(json!({"aud": ["other", "api"]})))
            .await
            .is_ok());
        for (key, bad) in [
            ("iss", Value::Null),
            ("iss", json!(7)),
            ("iss", json!("https://evil.example")),
            ("aud", Value::Null),
            ("aud", json!(7)),
            ("aud", json!({"api": true})),
            ("aud", json!("other")),
        ] {
            let mut c = claims(json!({}));
            if bad.is_null() {
                c.as_object_mut().unwrap().remove(key);
            } else {
                c[key] = bad.clone();
            }
            let got = issuer.check(c).await;
            assert_eq!(got, Err("signature or claims"), "{key}: {bad}");
        }
    }
}
