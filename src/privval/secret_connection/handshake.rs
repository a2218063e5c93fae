//! The pure parts of the SecretConnection handshake: the two handshake messages (ephemeral
//! key, AuthSigMessage) and their strict parsing, low-order point rejection, the merlin
//! challenge and the HKDF key schedule. No I/O here.

use ed25519_dalek::{Signature, VerifyingKey};
use hkdf::Hkdf;
use merlin::Transcript;
use sha2::Sha256;
use x25519_dalek::{EphemeralSecret, PublicKey as X25519Public};
use zeroize::Zeroizing;

use super::SecretConnectionError;

/// Length of the ephemeral key message on the wire, including its length byte.
pub(crate) const EPH_MSG_LEN: usize = 35;
/// Varint length 34, then `BytesValue.value` (field 1, length-delimited) of 32 bytes.
const EPH_MSG_PREFIX: [u8; 3] = [0x22, 0x0a, 0x20];

/// Length of an Ed25519 AuthSigMessage on the wire, including its length byte.
pub(crate) const AUTH_SIG_MSG_LEN: usize = 103;
/// Varint length 102; `pub_key` (field 1) of 34 bytes holding `PublicKey.ed25519` (field 1)
/// of 32 bytes.
const AUTH_SIG_KEY_PREFIX: [u8; 5] = [0x66, 0x0a, 0x22, 0x0a, 0x20];
/// `sig` (field 2) of 64 bytes.
const AUTH_SIG_SIG_PREFIX: [u8; 2] = [0x12, 0x40];

const TRANSCRIPT_LABEL: &[u8] = b"TENDERMINT_SECRET_CONNECTION_TRANSCRIPT_HASH";
const LOWER_KEY_LABEL: &[u8] = b"EPHEMERAL_LOWER_PUBLIC_KEY";
const UPPER_KEY_LABEL: &[u8] = b"EPHEMERAL_UPPER_PUBLIC_KEY";
const DH_SECRET_LABEL: &[u8] = b"DH_SECRET";
const CHALLENGE_LABEL: &[u8] = b"SECRET_CONNECTION_MAC";
const HKDF_INFO: &[u8] = b"TENDERMINT_SECRET_CONNECTION_KEY_AND_CHALLENGE_GEN";

/// Curve25519 u-coordinates of small order, and non-canonical encodings of them
/// (cr.yp.to/ecdh.html): 0, 1, the two points of order 8, p-1, p and p+1.
pub(crate) const LOW_ORDER_POINTS: [[u8; 32]; 7] = [
    [0; 32],
    [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ],
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// What both sides derive from the ephemeral exchange.
pub(crate) struct SessionSecrets {
    pub(crate) send_key: Zeroizing<[u8; 32]>,
    pub(crate) recv_key: Zeroizing<[u8; 32]>,
    /// Signed by each side with its identity key to authenticate the exchange.
    pub(crate) challenge: [u8; 32],
}

/// The ephemeral key message: `BytesValue{value = key}`, length-delimited.
pub(crate) fn encode_ephemeral(key: &[u8; 32]) -> [u8; EPH_MSG_LEN] {
    let mut msg = [0u8; EPH_MSG_LEN];
    msg[..EPH_MSG_PREFIX.len()].copy_from_slice(&EPH_MSG_PREFIX);
    msg[EPH_MSG_PREFIX.len()..].copy_from_slice(key);
    msg
}

/// Whether `len_byte`, the first byte of the peer's first message, can start a valid
/// ephemeral key message; checked before reading more so garbage fails fast.
pub(crate) fn ephemeral_len_byte_ok(len_byte: u8) -> bool {
    len_byte == EPH_MSG_PREFIX[0]
}

/// Parses the peer's ephemeral key message (all 35 bytes, length byte included).
pub(crate) fn parse_ephemeral(msg: &[u8]) -> Result<[u8; 32], SecretConnectionError> {
    let key =
        msg.strip_prefix(&EPH_MSG_PREFIX)
            .ok_or(SecretConnectionError::MalformedHandshake(
                "ephemeral key message is not a 32-byte BytesValue",
            ))?;
    key.try_into()
        .map_err(|_| SecretConnectionError::MalformedHandshake("ephemeral key is not 32 bytes"))
}

/// Whether `key` is one of the known small-order encodings.
pub(crate) fn is_low_order(key: &[u8; 32]) -> bool {
    LOW_ORDER_POINTS.contains(key)
}

/// Runs the Diffie-Hellman exchange against the peer's ephemeral key and derives the
/// session keys and challenge, refusing keys that would let the peer fix the shared secret.
pub(crate) fn agree(
    local_secret: EphemeralSecret,
    local_eph: &[u8; 32],
    remote_eph: &[u8; 32],
) -> Result<SessionSecrets, SecretConnectionError> {
    if is_low_order(remote_eph) {
        return Err(SecretConnectionError::LowOrderKey);
    }
    if remote_eph == local_eph {
        // Only a peer reflecting our own message can send this; no honest peer ever will.
        return Err(SecretConnectionError::MalformedHandshake(
            "peer sent our own ephemeral key back",
        ));
    }
    let dh = local_secret.diffie_hellman(&X25519Public::from(*remote_eph));
    derive_session(local_eph, remote_eph, dh.as_bytes())
}

/// Derives the session keys and challenge from both ephemeral keys and the shared secret.
pub(crate) fn derive_session(
    local_eph: &[u8; 32],
    remote_eph: &[u8; 32],
    dh: &[u8; 32],
) -> Result<SessionSecrets, SecretConnectionError> {
    // Any small-order (or twist) point not in the list still yields zero here.
    if dh.iter().all(|&b| b == 0) {
        return Err(SecretConnectionError::LowOrderKey);
    }
    let (lo, hi) = if local_eph <= remote_eph {
        (local_eph, remote_eph)
    } else {
        (remote_eph, local_eph)
    };
    let local_is_least = local_eph == lo;

    let mut transcript = Transcript::new(TRANSCRIPT_LABEL);
    transcript.append_message(LOWER_KEY_LABEL, lo);
    transcript.append_message(UPPER_KEY_LABEL, hi);
    transcript.append_message(DH_SECRET_LABEL, dh);
    let mut challenge = [0u8; 32];
    transcript.challenge_bytes(CHALLENGE_LABEL, &mut challenge);

    let mut okm = Zeroizing::new([0u8; 96]);
    Hkdf::<Sha256>::new(None, dh)
        .expand(HKDF_INFO, okm.as_mut_slice())
        .map_err(|_| SecretConnectionError::MalformedHandshake("HKDF output length"))?;
    let mut first = Zeroizing::new([0u8; 32]);
    let mut second = Zeroizing::new([0u8; 32]);
    first.copy_from_slice(&okm[..32]);
    second.copy_from_slice(&okm[32..64]);
    // okm[64..96] is the pre-v0.33 challenge, superseded by the merlin one.
    let (recv_key, send_key) = if local_is_least {
        (first, second)
    } else {
        (second, first)
    };
    Ok(SessionSecrets {
        send_key,
        recv_key,
        challenge,
    })
}

/// Our AuthSigMessage: Ed25519 identity key and signature of the challenge, length-delimited.
pub(crate) fn encode_auth_sig(key: &VerifyingKey, sig: &Signature) -> [u8; AUTH_SIG_MSG_LEN] {
    let mut msg = [0u8; AUTH_SIG_MSG_LEN];
    let (key_part, sig_part) = msg.split_at_mut(AUTH_SIG_KEY_PREFIX.len() + 32);
    key_part[..AUTH_SIG_KEY_PREFIX.len()].copy_from_slice(&AUTH_SIG_KEY_PREFIX);
    key_part[AUTH_SIG_KEY_PREFIX.len()..].copy_from_slice(key.as_bytes());
    sig_part[..AUTH_SIG_SIG_PREFIX.len()].copy_from_slice(&AUTH_SIG_SIG_PREFIX);
    sig_part[AUTH_SIG_SIG_PREFIX.len()..].copy_from_slice(&sig.to_bytes());
    msg
}

/// Parses the peer's AuthSigMessage (length byte included). Only the exact Ed25519 layout is
/// accepted; another key type in `pub_key` is reported as such.
pub(crate) fn parse_auth_sig(
    msg: &[u8],
) -> Result<(VerifyingKey, Signature), SecretConnectionError> {
    let Some(rest) = msg.strip_prefix(&AUTH_SIG_KEY_PREFIX) else {
        return Err(classify_bad_auth_sig(msg));
    };
    let (key, rest) =
        rest.split_at_checked(32)
            .ok_or(SecretConnectionError::MalformedHandshake(
                "AuthSigMessage truncated in pub_key",
            ))?;
    let sig = rest.strip_prefix(&AUTH_SIG_SIG_PREFIX).ok_or(
        SecretConnectionError::MalformedHandshake("AuthSigMessage sig is not 64 bytes"),
    )?;
    let sig: &[u8; 64] = sig.try_into().map_err(|_| {
        SecretConnectionError::MalformedHandshake("AuthSigMessage has the wrong length")
    })?;
    let key: &[u8; 32] = key.try_into().map_err(|_| {
        SecretConnectionError::MalformedHandshake("AuthSigMessage pub_key is not 32 bytes")
    })?;
    let key = VerifyingKey::from_bytes(key).map_err(|_| {
        SecretConnectionError::MalformedHandshake("peer identity key is not an Ed25519 point")
    })?;
    Ok((key, Signature::from_bytes(sig)))
}

/// Tells "a well-formed message with a non-Ed25519 key" from plain garbage.
fn classify_bad_auth_sig(msg: &[u8]) -> SecretConnectionError {
    // [len, 0x0a (pub_key), pub_key len, PublicKey.sum tag, ...]: a length-delimited oneof
    // member other than field 1 is secp256k1, bls12_381 or a later key type.
    match msg {
        [_, 0x0a, _, tag, ..] if tag & 0x07 == 2 && *tag != 0x0a => {
            SecretConnectionError::UnsupportedKeyType
        }
        _ => SecretConnectionError::MalformedHandshake("AuthSigMessage is not Ed25519 layout"),
    }
}

/// Checks the peer's signature over the challenge we computed ourselves.
pub(crate) fn verify_peer(
    key: &VerifyingKey,
    sig: &Signature,
    challenge: &[u8; 32],
) -> Result<(), SecretConnectionError> {
    key.verify_strict(challenge, sig)
        .map_err(|_| SecretConnectionError::BadSignature)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use rand_core::OsRng;
    use x25519_dalek::StaticSecret;

    use super::*;

    fn pair() -> (StaticSecret, [u8; 32]) {
        let secret = StaticSecret::random_from_rng(OsRng);
        let public = X25519Public::from(&secret).to_bytes();
        (secret, public)
    }

    #[test]
    fn ephemeral_message_round_trips_and_is_35_bytes() {
        let key = [0x5a; 32];
        let msg = encode_ephemeral(&key);
        assert_eq!(msg.len(), 35);
        assert_eq!(&msg[..3], &[0x22, 0x0a, 0x20]);
        assert!(ephemeral_len_byte_ok(msg[0]));
        assert_eq!(parse_ephemeral(&msg).unwrap(), key);
    }

    #[test]
    fn ephemeral_message_parsing_is_strict() {
        let good = encode_ephemeral(&[1; 32]);
        assert!(!ephemeral_len_byte_ok(0x21));
        assert!(!ephemeral_len_byte_ok(b'G'));
        for pos in 0..3 {
            let mut bad = good;
            bad[pos] ^= 0x01;
            assert!(matches!(
                parse_ephemeral(&bad),
                Err(SecretConnectionError::MalformedHandshake(_))
            ));
        }
        assert!(parse_ephemeral(&good[..34]).is_err());
        let mut long = good.to_vec();
        long.push(0);
        assert!(parse_ephemeral(&long).is_err());
    }

    #[test]
    fn each_low_order_point_is_refused() {
        assert_eq!(LOW_ORDER_POINTS.len(), 7);
        for point in LOW_ORDER_POINTS {
            let secret = EphemeralSecret::random_from_rng(OsRng);
            let local = X25519Public::from(&secret).to_bytes();
            assert!(is_low_order(&point));
            assert!(matches!(
                agree(secret, &local, &point),
                Err(SecretConnectionError::LowOrderKey)
            ));
        }
    }

    #[test]
    fn low_order_list_really_forces_a_zero_secret() {
        // Guards the constant table against typos: every entry must zero the DH output.
        let (secret, _) = pair();
        for point in LOW_ORDER_POINTS {
            let dh = secret.diffie_hellman(&X25519Public::from(point));
            assert_eq!(dh.as_bytes(), &[0u8; 32], "{}", hex::encode(point));
        }
    }

    #[test]
    fn zero_shared_secret_is_refused_for_unlisted_points() {
        // The order-8 point with its (ignored) top bit set: not in the list, still zero DH.
        let mut point = LOW_ORDER_POINTS[2];
        point[31] |= 0x80;
        assert!(!is_low_order(&point));
        let secret = EphemeralSecret::random_from_rng(OsRng);
        let local = X25519Public::from(&secret).to_bytes();
        assert!(matches!(
            agree(secret, &local, &point),
            Err(SecretConnectionError::LowOrderKey)
        ));
        assert!(matches!(
            derive_session(&[1; 32], &[2; 32], &[0; 32]),
            Err(SecretConnectionError::LowOrderKey)
        ));
    }

    #[test]
    fn reflected_ephemeral_key_is_refused() {
        let secret = EphemeralSecret::random_from_rng(OsRng);
        let local = X25519Public::from(&secret).to_bytes();
        assert!(matches!(
            agree(secret, &local, &local),
            Err(SecretConnectionError::MalformedHandshake(_))
        ));
    }

    #[test]
    fn both_sides_derive_mirrored_keys_and_the_same_challenge() {
        let (a_secret, a_pub) = pair();
        let (b_secret, b_pub) = pair();
        let a_dh = a_secret.diffie_hellman(&X25519Public::from(b_pub));
        let b_dh = b_secret.diffie_hellman(&X25519Public::from(a_pub));
        let a = derive_session(&a_pub, &b_pub, a_dh.as_bytes()).unwrap();
        let b = derive_session(&b_pub, &a_pub, b_dh.as_bytes()).unwrap();
        assert_eq!(*a.send_key, *b.recv_key);
        assert_eq!(*a.recv_key, *b.send_key);
        assert_ne!(*a.send_key, *a.recv_key);
        assert_eq!(a.challenge, b.challenge);
    }

    #[test]
    fn key_assignment_follows_sort_order() {
        // HKDF-SHA256(salt = none, ikm = 0x11 * 32, info) computed independently (Python hmac).
        let okm_0_32 = "04e52d919e3c8be0ac5d541342d6765d91db151661d389b983f28339f4f9d2c8";
        let okm_32_64 = "eb18512901897224e7245f45ffdf178b5a9858e896420a09447d37922c389df9";
        let dh = [0x11; 32];
        let (lo, hi) = ([0x01; 32], [0x02; 32]);
        let least = derive_session(&lo, &hi, &dh).unwrap();
        assert_eq!(hex::encode(*least.recv_key), okm_0_32);
        assert_eq!(hex::encode(*least.send_key), okm_32_64);
        let greatest = derive_session(&hi, &lo, &dh).unwrap();
        assert_eq!(hex::encode(*greatest.recv_key), okm_32_64);
        assert_eq!(hex::encode(*greatest.send_key), okm_0_32);
        // The challenge depends on the sorted pair, not on who computes it ...
        assert_eq!(least.challenge, greatest.challenge);
        // ... but on every input.
        let other = derive_session(&lo, &[0x03; 32], &dh).unwrap();
        assert_ne!(other.challenge, least.challenge);
        let other = derive_session(&lo, &hi, &[0x12; 32]).unwrap();
        assert_ne!(other.challenge, least.challenge);
    }

    fn signed(challenge: &[u8; 32]) -> (SigningKey, [u8; AUTH_SIG_MSG_LEN]) {
        let identity = SigningKey::generate(&mut OsRng);
        let msg = encode_auth_sig(&identity.verifying_key(), &identity.sign(challenge));
        (identity, msg)
    }

    #[test]
    fn auth_sig_message_layout_round_trips_and_verifies() {
        let challenge = [9; 32];
        let (identity, msg) = signed(&challenge);
        assert_eq!(msg.len(), 103);
        assert_eq!(&msg[..5], &[0x66, 0x0a, 0x22, 0x0a, 0x20]);
        assert_eq!(&msg[5..37], identity.verifying_key().as_bytes());
        assert_eq!(&msg[37..39], &[0x12, 0x40]);
        let (key, sig) = parse_auth_sig(&msg).unwrap();
        assert_eq!(key, identity.verifying_key());
        verify_peer(&key, &sig, &challenge).unwrap();
    }

    #[test]
    fn signature_over_another_challenge_is_refused() {
        let (_, msg) = signed(&[9; 32]);
        let (key, sig) = parse_auth_sig(&msg).unwrap();
        assert!(matches!(
            verify_peer(&key, &sig, &[8; 32]),
            Err(SecretConnectionError::BadSignature)
        ));
        let mut tampered = msg;
        tampered[AUTH_SIG_MSG_LEN - 1] ^= 0x01;
        let (key, sig) = parse_auth_sig(&tampered).unwrap();
        assert!(matches!(
            verify_peer(&key, &sig, &[9; 32]),
            Err(SecretConnectionError::BadSignature)
        ));
    }

    #[test]
    fn auth_sig_parsing_is_strict() {
        let (_, good) = signed(&[9; 32]);
        for pos in [0, 1, 2, 3, 4, 37, 38] {
            let mut bad = good;
            bad[pos] ^= 0x40;
            assert!(parse_auth_sig(&bad).is_err(), "byte {pos}");
        }
        assert!(parse_auth_sig(&good[..102]).is_err());
        let mut long = good.to_vec();
        long.push(0);
        assert!(parse_auth_sig(&long).is_err());
        assert!(parse_auth_sig(&[]).is_err());
    }

    #[test]
    fn secp256k1_identity_is_unsupported() {
        // pub_key = PublicKey{secp256k1 (field 2) = 33 bytes}, sig = 64 bytes.
        let mut msg = vec![0x67, 0x0a, 0x23, 0x12, 0x21];
        msg.extend_from_slice(&[0x02; 33]);
        msg.extend_from_slice(&[0x12, 0x40]);
        msg.extend_from_slice(&[0; 64]);
        assert!(matches!(
            parse_auth_sig(&msg),
            Err(SecretConnectionError::UnsupportedKeyType)
        ));
    }

    #[test]
    fn identity_key_off_the_curve_is_refused() {
        let (_, mut msg) = signed(&[9; 32]);
        // y = 2 does not decompress to an Edwards point.
        msg[5..37].copy_from_slice(&{
            let mut y = [0u8; 32];
            y[0] = 2;
            y
        });
        assert!(matches!(
            parse_auth_sig(&msg),
            Err(SecretConnectionError::MalformedHandshake(_))
        ));
    }
}
