//! The per-direction AEAD nonce: four zero bytes followed by a 64-bit little-endian frame
//! counter that starts at zero and never wraps.

use chacha20poly1305::Nonce;

use super::SecretConnectionError;

/// Counts the frames sealed (or opened) in one direction of a connection.
#[derive(Debug)]
pub(crate) struct NonceCounter {
    /// The counter for the next frame; `None` once `u64::MAX` has been used, because reusing
    /// a nonce under the same key would break ChaCha20-Poly1305 entirely.
    next: Option<u64>,
}

impl NonceCounter {
    pub(crate) const fn new() -> Self {
        Self { next: Some(0) }
    }

    #[cfg(test)]
    pub(crate) const fn starting_at(counter: u64) -> Self {
        Self {
            next: Some(counter),
        }
    }

    /// Returns the nonce for the next frame and advances the counter.
    pub(crate) fn advance(&mut self) -> Result<Nonce, SecretConnectionError> {
        let counter = self.next.ok_or(SecretConnectionError::NonceExhausted)?;
        self.next = counter.checked_add(1);
        Ok(nonce_bytes(counter).into())
    }
}

/// The 12-byte nonce for frame number `counter`.
pub(crate) fn nonce_bytes(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_four_zero_bytes_then_le_counter() {
        assert_eq!(nonce_bytes(0), [0; 12]);
        assert_eq!(nonce_bytes(1), [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            nonce_bytes(0x0102_0304_0506_0708),
            [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn counts_up_from_zero() {
        let mut n = NonceCounter::new();
        for i in 0..3u64 {
            assert_eq!(n.advance().unwrap().as_slice(), &nonce_bytes(i));
        }
    }

    #[test]
    fn refuses_to_wrap() {
        let mut n = NonceCounter::starting_at(u64::MAX - 1);
        assert_eq!(n.advance().unwrap().as_slice(), &nonce_bytes(u64::MAX - 1));
        assert_eq!(n.advance().unwrap().as_slice(), &nonce_bytes(u64::MAX));
        assert!(matches!(
            n.advance(),
            Err(SecretConnectionError::NonceExhausted)
        ));
        // Stays exhausted: there is no way back to a fresh counter under the same key.
        assert!(matches!(
            n.advance(),
            Err(SecretConnectionError::NonceExhausted)
        ));
    }
}
