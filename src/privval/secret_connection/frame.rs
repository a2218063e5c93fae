//! Frame sealing and opening: a 4-byte little-endian length, up to 1024 data bytes and zero
//! padding make a 1028-byte plaintext, sealed with ChaCha20-Poly1305 (empty associated data)
//! to exactly 1044 bytes on the wire. Each direction has its own key and nonce counter.

use std::ops::Range;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Tag};

use super::nonce::NonceCounter;
use super::SecretConnectionError;

/// Most data bytes one frame carries.
pub const DATA_MAX_LEN: usize = 1024;
/// Bytes of the little-endian data length at the start of a frame.
const LEN_PREFIX_LEN: usize = 4;
/// Plaintext bytes of every frame, whatever its data length.
pub const PLAINTEXT_FRAME_LEN: usize = LEN_PREFIX_LEN + DATA_MAX_LEN;
/// Poly1305 tag length.
const TAG_LEN: usize = 16;
/// Bytes of every frame on the wire.
pub const SEALED_FRAME_LEN: usize = PLAINTEXT_FRAME_LEN + TAG_LEN;

/// One sealed frame, as read from or written to the wire.
pub(crate) type SealedFrame = [u8; SEALED_FRAME_LEN];

/// The sending direction: seals data chunks into frames.
pub(crate) struct FrameSealer {
    cipher: ChaCha20Poly1305,
    nonce: NonceCounter,
}

impl FrameSealer {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self::with_nonce(key, NonceCounter::new())
    }

    pub(crate) fn with_nonce(key: &[u8; 32], nonce: NonceCounter) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            nonce,
        }
    }

    /// Seals `chunk` (at most [`DATA_MAX_LEN`] bytes) into `out`.
    pub(crate) fn seal(
        &mut self,
        chunk: &[u8],
        out: &mut SealedFrame,
    ) -> Result<(), SecretConnectionError> {
        let len = chunk.len();
        let len_prefix = u32::try_from(len)
            .ok()
            .filter(|_| len <= DATA_MAX_LEN)
            .ok_or(SecretConnectionError::FrameTooLong(len))?;
        let nonce = self.nonce.advance()?;
        let (body, tag_out) = out.split_at_mut(PLAINTEXT_FRAME_LEN);
        let (prefix, data) = body.split_at_mut(LEN_PREFIX_LEN);
        prefix.copy_from_slice(&len_prefix.to_le_bytes());
        data[..len].copy_from_slice(chunk);
        data[len..].fill(0);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, &[], body)
            .map_err(|_| SecretConnectionError::Seal)?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }
}

/// The receiving direction: authenticates and decrypts frames.
pub(crate) struct FrameOpener {
    cipher: ChaCha20Poly1305,
    nonce: NonceCounter,
}

impl FrameOpener {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self::with_nonce(key, NonceCounter::new())
    }

    pub(crate) fn with_nonce(key: &[u8; 32], nonce: NonceCounter) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
            nonce,
        }
    }

    /// Opens `frame` in place and returns where its data lies within `frame`.
    ///
    /// Any error leaves this direction unusable: the nonce has been consumed, so the peer's
    /// and our counters no longer agree.
    pub(crate) fn open(
        &mut self,
        frame: &mut SealedFrame,
    ) -> Result<Range<usize>, SecretConnectionError> {
        let nonce = self.nonce.advance()?;
        let (body, tag) = frame.split_at_mut(PLAINTEXT_FRAME_LEN);
        let tag = Tag::from_slice(tag);
        self.cipher
            .decrypt_in_place_detached(&nonce, &[], body, tag)
            .map_err(|_| SecretConnectionError::TagMismatch)?;
        let mut prefix = [0u8; LEN_PREFIX_LEN];
        prefix.copy_from_slice(&body[..LEN_PREFIX_LEN]);
        let declared = u32::from_le_bytes(prefix);
        // Padding is not checked: Go does not check it either, and the tag already covers it.
        match usize::try_from(declared) {
            Ok(len) if len <= DATA_MAX_LEN => Ok(LEN_PREFIX_LEN..LEN_PREFIX_LEN + len),
            Ok(len) => Err(SecretConnectionError::FrameTooLong(len)),
            Err(_) => Err(SecretConnectionError::FrameTooLong(usize::MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chacha20poly1305::aead::Aead;
    use chacha20poly1305::Nonce;

    use super::*;
    use crate::privval::secret_connection::nonce::nonce_bytes;

    const KEY: [u8; 32] = [7; 32];

    fn sealed(data: &[u8]) -> SealedFrame {
        let mut frame = [0u8; SEALED_FRAME_LEN];
        FrameSealer::new(&KEY).seal(data, &mut frame).unwrap();
        frame
    }

    /// Seals an arbitrary 1028-byte plaintext, bypassing the sealer's own length check.
    fn sealed_raw(plaintext: &[u8; PLAINTEXT_FRAME_LEN]) -> SealedFrame {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&KEY));
        let nonce = Nonce::from(nonce_bytes(0));
        let ct = cipher.encrypt(&nonce, plaintext.as_slice()).unwrap();
        ct.try_into().unwrap()
    }

    #[test]
    fn sealed_layout_matches_rfc8439_over_padded_plaintext() {
        let frame = sealed(b"abc");
        let mut plaintext = [0u8; PLAINTEXT_FRAME_LEN];
        plaintext[..4].copy_from_slice(&3u32.to_le_bytes());
        plaintext[4..7].copy_from_slice(b"abc");
        assert_eq!(frame, sealed_raw(&plaintext));
    }

    #[test]
    fn round_trips_every_boundary_length() {
        for len in [0, 1, 1023, 1024] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut sealer = FrameSealer::new(&KEY);
            let mut opener = FrameOpener::new(&KEY);
            // Two frames in a row: the second must use the next nonce on both sides.
            for _ in 0..2 {
                let mut frame = [0u8; SEALED_FRAME_LEN];
                sealer.seal(&data, &mut frame).unwrap();
                let range = opener.open(&mut frame).unwrap();
                assert_eq!(&frame[range], data.as_slice());
            }
        }
    }

    #[test]
    fn sealer_refuses_more_than_1024_bytes() {
        let mut frame = [0u8; SEALED_FRAME_LEN];
        let err = FrameSealer::new(&KEY)
            .seal(&[0u8; 1025], &mut frame)
            .unwrap_err();
        assert!(matches!(err, SecretConnectionError::FrameTooLong(1025)));
    }

    #[test]
    fn opener_refuses_declared_length_1025() {
        let mut plaintext = [0u8; PLAINTEXT_FRAME_LEN];
        plaintext[..4].copy_from_slice(&1025u32.to_le_bytes());
        let mut frame = sealed_raw(&plaintext);
        let err = FrameOpener::new(&KEY).open(&mut frame).unwrap_err();
        assert!(matches!(err, SecretConnectionError::FrameTooLong(1025)));
    }

    #[test]
    fn opener_accepts_declared_length_1024() {
        let mut plaintext = [0xAAu8; PLAINTEXT_FRAME_LEN];
        plaintext[..4].copy_from_slice(&1024u32.to_le_bytes());
        let mut frame = sealed_raw(&plaintext);
        let range = FrameOpener::new(&KEY).open(&mut frame).unwrap();
        assert_eq!(range, 4..1028);
    }

    #[test]
    fn opener_refuses_any_flipped_byte() {
        // Tag bytes, a length byte, a data byte and a padding byte.
        for pos in [SEALED_FRAME_LEN - 1, PLAINTEXT_FRAME_LEN, 0, 5, 1000] {
            let mut frame = sealed(b"payload");
            frame[pos] ^= 0x01;
            let err = FrameOpener::new(&KEY).open(&mut frame).unwrap_err();
            assert!(matches!(err, SecretConnectionError::TagMismatch), "{pos}");
        }
    }

    #[test]
    fn opener_refuses_wrong_key_and_wrong_nonce() {
        let mut frame = sealed(b"payload");
        assert!(matches!(
            FrameOpener::new(&[8; 32]).open(&mut frame.clone()),
            Err(SecretConnectionError::TagMismatch)
        ));
        // A replayed frame is opened with the next counter value, so it fails.
        let mut opener = FrameOpener::new(&KEY);
        opener.open(&mut frame.clone()).unwrap();
        assert!(matches!(
            opener.open(&mut frame),
            Err(SecretConnectionError::TagMismatch)
        ));
    }

    #[test]
    fn exhausted_counter_refuses_to_seal_or_open() {
        let mut frame = [0u8; SEALED_FRAME_LEN];
        let mut sealer = FrameSealer::with_nonce(&KEY, NonceCounter::starting_at(u64::MAX));
        sealer.seal(b"last", &mut frame).unwrap();
        assert!(matches!(
            sealer.seal(b"one more", &mut frame),
            Err(SecretConnectionError::NonceExhausted)
        ));
        let mut opener = FrameOpener::with_nonce(&KEY, NonceCounter::starting_at(u64::MAX));
        assert_eq!(opener.open(&mut frame.clone()).unwrap(), 4..8);
        assert!(matches!(
            opener.open(&mut frame),
            Err(SecretConnectionError::NonceExhausted)
        ));
    }
}
