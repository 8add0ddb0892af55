//! Provider keys at rest: AES-256-GCM (`ring`) under a master key that never
//! enters the store, with a fresh random nonce per value. A sealed value is
//! `v1.<base64url(nonce ‖ ciphertext ‖ tag)>`; the associated data binds it
//! to where it belongs (a profile's `provider/name`), so a value copied to
//! another row does not open.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

const PREFIX: &str = "v1.";

/// The master key. `Debug` never shows it.
pub struct MasterKey {
    key: LessSafeKey,
    /// The first bytes of SHA-256 of the key, to tell keys apart in messages.
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the master key must be 32 bytes, as 64 hex digits or standard base64")]
    BadMasterKey,
    #[error("a stored secret is not in the sealed format")]
    Malformed,
    #[error("a stored secret does not open with this master key")]
    WrongKey,
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256 takes 32-byte keys"),
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        MasterKey {
            key,
            id: hex::encode(&digest.as_ref()[..4]),
        }
    }

    /// A new random key, and its text form (64 hex digits).
    pub fn generate() -> (Self, String) {
        let bytes = crate::ids::random_bytes::<32>();
        (Self::from_bytes(&bytes), hex::encode(bytes))
    }

    /// Parses 64 hex digits or standard base64 of 32 bytes (surrounding
    /// whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SecretError::BadMasterKey)?
        } else {
            STANDARD
                .decode(text)
                .map_err(|_| SecretError::BadMasterKey)?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A short fingerprint (not secret) naming this key in messages.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plain` for the place `context` names.
    pub fn seal(&self, plain: &[u8], context: &str) -> String {
        let nonce_bytes = crate::ids::random_bytes::<NONCE_LEN>();
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals any length a request can carry");
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypts a value [`MasterKey::seal`] made for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SecretError::Malformed)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SecretError::Malformed);
        }
        let nonce: [u8; NONCE_LEN] = bytes[..NONCE_LEN].try_into().expect("length checked");
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SecretError::WrongKey)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let (key, text) = MasterKey::generate();
        let sealed = key.seal(b"sk-very-secret", "openai/main");
        assert!(!sealed.contains("sk-very-secret"));
        assert_eq!(key.open(&sealed, "openai/main").unwrap(), b"sk-very-secret");
        assert_eq!(
            key.open(&sealed, "openai/other"),
            Err(SecretError::WrongKey),
            "a value moved to another row does not open"
        );
        let (other, _) = MasterKey::generate();
        assert_eq!(
            other.open(&sealed, "openai/main"),
            Err(SecretError::WrongKey)
        );
        assert_eq!(MasterKey::parse(&text).unwrap().id(), key.id());
        assert_ne!(
            key.seal(b"x", "c"),
            key.seal(b"x", "c"),
            "a fresh nonce per value"
        );
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_nothing_else() {
        let bytes = [7u8; 32];
        let hex_key = MasterKey::parse(&hex::encode(bytes)).unwrap();
        let b64_key = MasterKey::parse(&STANDARD.encode(bytes)).unwrap();
        assert_eq!(hex_key.id(), b64_key.id());
        assert_eq!(
            MasterKey::parse("short").unwrap_err(),
            SecretError::BadMasterKey
        );
        assert_eq!(
            MasterKey::parse(&STANDARD.encode([1u8; 31])).unwrap_err(),
            SecretError::BadMasterKey
        );
        assert!(!format!("{hex_key:?}").contains(&hex::encode(bytes)));
    }

    #[test]
    fn tampered_or_malformed_values_are_refused() {
        let (key, _) = MasterKey::generate();
        let sealed = key.seal(b"secret", "p/q");
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(key.open(&tampered, "p/q"), Err(SecretError::WrongKey));
        assert_eq!(key.open("secret", "p/q"), Err(SecretError::Malformed));
        assert_eq!(key.open("v1.AAAA", "p/q"), Err(SecretError::Malformed));
    }
}
