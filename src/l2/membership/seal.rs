//! Sealing membership datagrams with the speakers' shared secret: ChaCha20-Poly1305 under a
//! SHA-256 of the secret, a fresh random nonce in front of each.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngExt;
use sha2::{Digest, Sha256};

/// The cipher of the shared key; None: no secret, datagrams go plain.
pub struct Sealer(Option<ChaCha20Poly1305>);

impl Sealer {
    pub fn new(secret: Option<&[u8]>) -> Sealer {
        Sealer(secret.map(|s| ChaCha20Poly1305::new(&Sha256::digest(s))))
    }

    pub fn seal(&self, data: &[u8]) -> Option<Vec<u8>> {
        let Some(cipher) = &self.0 else { return Some(data.to_vec()) };
        let nonce: [u8; 12] = rand::rng().random();
        let mut out = nonce.to_vec();
        out.extend(cipher.encrypt(Nonce::from_slice(&nonce), data).ok()?);
        Some(out)
    }

    pub fn open(&self, data: &[u8]) -> Option<Vec<u8>> {
        let Some(cipher) = &self.0 else { return Some(data.to_vec()) };
        let (nonce, sealed) = data.split_at_checked(12)?;
        cipher.decrypt(Nonce::from_slice(nonce), sealed).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_only_with_the_same_secret() {
        let a = Sealer::new(Some(b"shared"));
        let b = Sealer::new(Some(b"other"));
        let plain = Sealer::new(None);
        let sealed = a.seal(b"hello").unwrap();
        assert_ne!(&sealed[12..], b"hello");
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open(b"short"), None);
        let mut tampered = sealed.clone();
        tampered[14] ^= 1;
        assert_eq!(a.open(&tampered), None);
        assert_eq!(plain.open(b"hello").as_deref(), Some(&b"hello"[..]));
        // Two seals of one message differ (fresh nonces).
        assert_ne!(a.seal(b"hello"), a.seal(b"hello"));
    }
}
