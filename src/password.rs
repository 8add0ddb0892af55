//! Password hashing: Argon2id with OWASP parameters (19 MiB, 2 passes, 1
//! lane), run on a few dedicated low-priority threads so that a burst of
//! sign-ins cannot take the CPU from the rest of the gateway.

use argon2::password_hash::{PasswordHash as Phc, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use gatehouse_actors::ids::{ct_eq, random_bytes};
use gatehouse_actors::model::PasswordHash;
use std::sync::{Arc, Mutex};

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A small pool of dedicated hashing threads at a lower OS priority: a burst
/// of sign-ins uses the spare CPU without taking it from request handling.
#[derive(Clone)]
pub struct Hasher {
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// A real hash of a random password, verified for unknown users.
    dummy: Arc<PasswordHash>,
}

type Job = Box<dyn FnOnce() + Send>;

/// How far below normal priority the hashing threads run (nice +10).
const HASHER_NICENESS: i32 = 10;
/// Sign-ins waiting for a hasher beyond this are refused with 503.
const QUEUE: usize = 1024;

/// The outcome of a check: whether it matched, and the Argon2id hash that
/// should replace a legacy one.
#[derive(Debug)]
pub struct Verified {
    pub ok: bool,
    pub upgrade: Option<PasswordHash>,
}

#[derive(Debug, thiserror::Error)]
#[error("the password hashers are saturated")]
pub struct HasherBusy;

impl Hasher {
    /// `threads` hashers (default: half the cores, at least one).
    pub fn new(threads: Option<usize>) -> Self {
        let n = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() / 2))
            .max(1);
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("gatehouse-hasher-{i}"))
                .spawn(move || {
                    // Per-thread niceness (Linux); elsewhere it is a no-op.
                    unsafe {
                        libc::setpriority(libc::PRIO_PROCESS, 0, HASHER_NICENESS);
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every Hasher is gone
                        }
                    }
                })
                .expect("spawning a hashing thread");
        }
        let dummy = hash_sync(&hex::encode(random_bytes::<16>()));
        Self {
            jobs,
            dummy: Arc::new(dummy),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HasherBusy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.try_send(job).map_err(|_| HasherBusy)?;
        rx.await.map_err(|_| HasherBusy)
    }

    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: &str) -> Result<PasswordHash, HasherBusy> {
        let password = password.to_owned();
        self.run(move || hash_sync(&password)).await
    }

    /// Checks `password` against `stored`, or against the dummy hash when
    /// there is no user, so that timing does not tell the two apart.
    #[tracing::instrument(skip_all)]
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&PasswordHash>,
    ) -> Result<Verified, HasherBusy> {
        let password = password.to_owned();
        let (target, real) = match stored {
            Some(h) => (h.clone(), true),
            None => ((*self.dummy).clone(), false),
        };
        self.run(move || {
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

impl From<HasherBusy> for crate::error::ApiError {
    fn from(_: HasherBusy) -> Self {
        tracing::warn!("password hashers saturated");
        crate::error::ApiError::unavailable()
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
            Ok(parsed) => argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        },
        PasswordHash::LegacySha256 {
            salt,
            hex: expected,
        } => {
            let mut input = salt.as_bytes().to_vec();
            input.extend_from_slice(password.as_bytes());
            let digest = ring::digest::digest(&ring::digest::SHA256, &input);
            let Ok(expected) = hex::decode(expected.trim()) else {
                return false;
            };
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
        let stored = h.hash("correct horse battery").await.unwrap();
        assert!(
            matches!(&stored, PasswordHash::Argon2 { phc } if phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"))
        );
        assert!(
            h.verify("correct horse battery", Some(&stored))
                .await
                .unwrap()
                .ok
        );
        assert!(
            !h.verify("wrong horse battery", Some(&stored))
                .await
                .unwrap()
                .ok
        );
        assert!(!h.verify("anything at all", None).await.unwrap().ok);
    }

    #[actix_rt::test]
    async fn legacy_sha256_verifies_and_upgrades() {
        let salt = "s4lt";
        let digest = ring::digest::digest(&ring::digest::SHA256, b"s4ltold password!!");
        let legacy = PasswordHash::LegacySha256 {
            salt: salt.into(),
            hex: hex::encode(digest),
        };
        let h = Hasher::new(Some(1));
        let v = h.verify("old password!!", Some(&legacy)).await.unwrap();
        assert!(v.ok);
        assert!(matches!(v.upgrade, Some(PasswordHash::Argon2 { .. })));
        let v = h.verify("not the password", Some(&legacy)).await.unwrap();
        assert!(!v.ok && v.upgrade.is_none());
    }
}
