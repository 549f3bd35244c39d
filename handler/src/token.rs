//! Per-task worker tokens.
//!
//! Each task attempt gets a fresh random token, handed to its container as a secret environment
//! variable. Only its SHA-256 is stored, so a leaked database does not let anyone report for a
//! task, and a token for task A cannot touch task B (the hash is looked up by task id).

use sha2::{Digest, Sha256};

/// A new random token: 32 bytes, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// True when `token` hashes to `stored`, compared in constant time.
pub fn verify(token: &str, stored: &str) -> bool {
    let got = hash(token);
    got.len() == stored.len()
        && got
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_against_their_own_hash() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(verify(&a, &hash(&a)));
        assert!(!verify(&b, &hash(&a)));
        assert!(!verify("", &hash(&a)));
    }
}
