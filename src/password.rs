//! Password hashing: Argon2id with OWASP parameters (19 MiB, 2 passes, 1
//! lane), run on the blocking pool and bounded so that a burst of sign-ins
//! cannot take every core from the rest of the gateway.

use argon2::password_hash::{PasswordHash as Phc, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use gatehouse_actors::ids::{ct_eq, random_bytes};
use gatehouse_actors::model::PasswordHash;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified for unknown users.
    dummy: Arc<PasswordHash>,
}

/// The outcome of a check: whether it matched, and the Argon2id hash that
/// should replace a legacy one.
#[derive(Debug)]
pub struct Verified {
    pub ok: bool,
    pub upgrade: Option<PasswordHash>,
}

impl Hasher {
    /// `concurrency` hashes at most at once (default: half the cores, at least one).
    pub fn new(concurrency: Option<usize>) -> Self {
        let n = concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        });
        let dummy = hash_sync(&hex::encode(random_bytes::<16>()));
        Self { permits: Arc::new(Semaphore::new(n.max(1))), dummy: Arc::new(dummy) }
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let _permit = self.permits.acquire().await.expect("hasher semaphore is never closed");
        tokio::task::spawn_blocking(f).await.expect("password hashing panicked")
    }

    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: &str) -> PasswordHash {
        let password = password.to_owned();
        self.blocking(move || hash_sync(&password)).await
    }

    /// Checks `password` against `stored`, or against the dummy hash when
    /// there is no user, so that timing does not tell the two apart.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, password: &str, stored: Option<&PasswordHash>) -> Verified {
        let password = password.to_owned();
        let (target, real) = match stored {
            Some(h) => (h.clone(), true),
            None => ((*self.dummy).clone(), false),
        };
        self.blocking(move || {
            let ok = verify_sync(&password, &target) && real;
            let upgrade = match target {
                PasswordHash::LegacySha256 { .. } if ok => Some(hash_sync(&password)),
                _ => None,
            };
            Verified { ok, upgrade }
        })
        .await
    }
}

fn hash_sync(password: &str) -> PasswordHash {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16-byte salt encodes");
    let phc = argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 hashing with valid parameters")
        .to_string();
    PasswordHash::Argon2 { phc }
}

fn verify_sync(password: &str, stored: &PasswordHash) -> bool {
    match stored {
        PasswordHash::Argon2 { phc } => match Phc::new(phc) {
            Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(_) => false,
        },
        PasswordHash::LegacySha256 { salt, hex: expected } => {
            let mut input = salt.as_bytes().to_vec();
            input.extend_from_slice(password.as_bytes());
            let digest = ring::digest::digest(&ring::digest::SHA256, &input);
            let Ok(expected) = hex::decode(expected.trim()) else { return false };
            ct_eq(digest.as_ref(), &expected)
        }
    }
}

/// The password rule everywhere: 12 to 1024 characters.
pub fn check_strength(password: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        Err("password must be at least 12 characters")
    } else if password.len() > MAX_PASSWORD_LEN {
        Err("password must be at most 1024 bytes")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn argon2_roundtrip_and_dummy() {
        let h = Hasher::new(Some(1));
        let stored = h.hash("correct horse battery").await;
        assert!(matches!(&stored, PasswordHash::Argon2 { phc } if phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")));
        assert!(h.verify("correct horse battery", Some(&stored)).await.ok);
        assert!(!h.verify("wrong horse battery", Some(&stored)).await.ok);
        assert!(!h.verify("anything at all", None).await.ok);
    }

    #[actix_rt::test]
    async fn legacy_sha256_verifies_and_upgrades() {
        let salt = "s4lt";
        let digest = ring::digest::digest(&ring::digest::SHA256, b"s4ltold password!!");
        let legacy = PasswordHash::LegacySha256 { salt: salt.into(), hex: hex::encode(digest) };
        let h = Hasher::new(Some(1));
        let v = h.verify("old password!!", Some(&legacy)).await;
        assert!(v.ok);
        assert!(matches!(v.upgrade, Some(PasswordHash::Argon2 { .. })));
        let v = h.verify("not the password", Some(&legacy)).await;
        assert!(!v.ok && v.upgrade.is_none());
    }
}
