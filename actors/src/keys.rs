//! The Ed25519 keys that sign gateway tokens: generated with `ring`, kept in
//! the store (so every instance on one database signs and verifies alike),
//! published as a [`KeyRing`] that handlers read without a message.

use crate::error::{GatehouseError, StoreError};
use crate::ids::random_id;
use crate::model::SigningKeyRecord;
use arc_swap::ArcSwap;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

pub const ISSUER: &str = "gatehouse";

/// A new key pair.
pub fn generate(now: OffsetDateTime) -> SigningKeyRecord {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key generation");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a fresh PKCS#8 document parses");
    SigningKeyRecord {
        kid: random_id()[..16].to_owned(),
        pkcs8: STANDARD.encode(pkcs8.as_ref()),
        public: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        created_at: now,
    }
}

#[derive(Default)]
pub struct KeyRing {
    active: Option<(String, EncodingKey)>,
    decoding: HashMap<String, DecodingKey>,
    jwks: Jwks,
}

/// A JSON Web Key Set (RFC 7517) of the Ed25519 keys that sign gateway tokens.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Jwks {
    /// Newest first.
    pub keys: Vec<Jwk>,
}

/// One public key that signs gateway tokens.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: &'static str,
    /// `Ed25519`.
    pub crv: &'static str,
    /// The raw public key, base64url.
    pub x: String,
    pub kid: String,
    /// `EdDSA`.
    pub alg: &'static str,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl KeyRing {
    /// From stored keys, oldest first: the newest signs.
    pub fn from_records(records: &[SigningKeyRecord]) -> Result<KeyRing, StoreError> {
        let mut ring = KeyRing::default();
        let mut keys = Vec::new();
        for r in records {
            let der = STANDARD
                .decode(&r.pkcs8)
                .map_err(|_| StoreError::Corrupt(format!("signing key {}", r.kid)))?;
            let decoding = DecodingKey::from_ed_components(&r.public)
                .map_err(|_| StoreError::Corrupt(format!("signing key {}", r.kid)))?;
            ring.decoding.insert(r.kid.clone(), decoding);
            ring.active = Some((r.kid.clone(), EncodingKey::from_ed_der(&der)));
            keys.push(Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: r.public.clone(),
                kid: r.kid.clone(),
                alg: "EdDSA",
                use_: "sig",
            });
        }
        keys.reverse(); // newest first
        ring.jwks = Jwks { keys };
        Ok(ring)
    }

    pub fn sign<C: serde::Serialize>(&self, claims: &C) -> Result<String, GatehouseError> {
        let (kid, key) = self
            .active
            .as_ref()
            .ok_or_else(|| GatehouseError::Unavailable("no signing key".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key)
            .map_err(|e| GatehouseError::Unavailable(format!("signing: {e}")))
    }

    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.decoding.get(kid)
    }

    /// `{"keys":[…]}`, newest first.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    pub fn active_kid(&self) -> Option<&str> {
        self.active.as_ref().map(|(k, _)| k.as_str())
    }
}

/// The published key ring.
#[derive(Clone, Default)]
pub struct KeyRingView(Arc<ArcSwap<KeyRing>>);

impl KeyRingView {
    pub fn load(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.0.load()
    }

    pub(crate) fn publish(&self, ring: KeyRing) {
        self.0.store(Arc::new(ring));
    }
}
