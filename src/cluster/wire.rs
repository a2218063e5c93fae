//! The frame format of the cluster transport, pure: one request or response per frame, one
//! request/response pair per QUIC bidirectional stream.
//!
//! A frame is a 1-byte protocol version, a big-endian `u32` body length and a bincode body
//! (fixed-width integers, little endian, no trailing bytes). The length is checked against
//! [`MAX_FRAME_LEN`] before anything is allocated, and bincode gets the same limit, so a
//! peer cannot make us reserve more than one frame's worth of memory per stream.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The only frame version this build speaks. Version 3: a connection's first stream carries
/// the hello (see `transport::hello`), not a request.
pub const PROTOCOL_VERSION: u8 = 3;
/// The largest body a frame may carry. Signing packages and shares are a few KiB at most.
pub const MAX_FRAME_LEN: u32 = 64 * 1024;
/// Version byte plus length.
pub const HEADER_LEN: usize = 5;

/// Why bytes are not a valid cluster frame, or a message could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame's version byte is not [`PROTOCOL_VERSION`].
    #[error("frame protocol version {got} is not supported (we speak {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version the frame carries.
        got: u8,
    },
    /// The frame announces a body over [`MAX_FRAME_LEN`].
    #[error("frame body of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}")]
    TooLarge {
        /// The announced body length.
        len: u64,
    },
    /// bincode could not encode the message.
    #[error("cannot encode message: {0}")]
    Encode(bincode::Error),
    /// The body does not decode as the expected message.
    #[error("cannot decode message: {0}")]
    Decode(bincode::Error),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(u64::from(MAX_FRAME_LEN))
        .with_little_endian()
        .with_fixint_encoding()
        .reject_trailing_bytes()
}

/// Serialises `msg` into a complete frame (header and body).
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, WireError> {
    let len = match options().serialized_size(msg) {
        Ok(len) => len,
        Err(e) => {
            return Err(match *e {
                bincode::ErrorKind::SizeLimit => WireError::TooLarge {
                    len: u64::from(MAX_FRAME_LEN) + 1,
                },
                _ => WireError::Encode(e),
            })
        }
    };
    let body_len = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_FRAME_LEN)
        .ok_or(WireError::TooLarge { len })?;
    let mut frame = Vec::with_capacity(HEADER_LEN + body_len as usize);
    frame.push(PROTOCOL_VERSION);
    frame.extend_from_slice(&body_len.to_be_bytes());
    options()
        .serialize_into(&mut frame, msg)
        .map_err(WireError::Encode)?;
    Ok(frame)
}

/// Checks a frame header and returns the body length it announces.
pub fn decode_header(header: [u8; HEADER_LEN]) -> Result<usize, WireError> {
    let [version, len @ ..] = header;
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion { got: version });
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge {
            len: u64::from(len),
        });
    }
    Ok(len as usize)
}

/// Deserialises a frame body.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    if body.len() > MAX_FRAME_LEN as usize {
        return Err(WireError::TooLarge {
            len: body.len() as u64,
        });
    }
    options().deserialize(body).map_err(WireError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Msg {
        a: u64,
        b: Vec<u8>,
    }

    fn split(frame: &[u8]) -> ([u8; HEADER_LEN], &[u8]) {
        let (h, b) = frame.split_at(HEADER_LEN);
        (h.try_into().unwrap(), b)
    }

    #[test]
    fn round_trips() {
        let m = Msg {
            a: 7,
            b: vec![1, 2, 3],
        };
        let frame = encode(&m).unwrap();
        let (h, body) = split(&frame);
        assert_eq!(h[0], PROTOCOL_VERSION);
        assert_eq!(decode_header(h).unwrap(), body.len());
        // Fixed-width integers: 8 bytes of `a`, 8 bytes of length, 3 bytes of data.
        assert_eq!(body.len(), 8 + 8 + 3);
        assert_eq!(decode_body::<Msg>(body).unwrap(), m);
    }

    #[test]
    fn refuses_unknown_version() {
        for other in [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1] {
            let mut frame = encode(&1u8).unwrap();
            frame[0] = other;
            let (h, _) = split(&frame);
            assert!(matches!(
                decode_header(h),
                Err(WireError::UnsupportedVersion { got }) if got == other
            ));
        }
    }

    #[test]
    fn refuses_oversized_header_before_allocating() {
        let mut h = [PROTOCOL_VERSION, 0, 0, 0, 0];
        h[1..].copy_from_slice(&(MAX_FRAME_LEN + 1).to_be_bytes());
        assert!(
            matches!(decode_header(h), Err(WireError::TooLarge { len }) if len == u64::from(MAX_FRAME_LEN) + 1)
        );
        h[1..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode_header(h), Err(WireError::TooLarge { .. })));
        h[1..].copy_from_slice(&MAX_FRAME_LEN.to_be_bytes());
        assert_eq!(decode_header(h).unwrap(), MAX_FRAME_LEN as usize);
    }

    #[test]
    fn refuses_to_encode_oversized_messages() {
        let big = vec![0u8; MAX_FRAME_LEN as usize];
        assert!(matches!(encode(&big), Err(WireError::TooLarge { .. })));
        let fits = vec![0u8; MAX_FRAME_LEN as usize - 8];
        assert_eq!(
            encode(&fits).unwrap().len(),
            HEADER_LEN + MAX_FRAME_LEN as usize
        );
    }

    #[test]
    fn refuses_trailing_and_truncated_bodies() {
        let frame = encode(&Msg { a: 1, b: vec![9] }).unwrap();
        let (_, body) = split(&frame);
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(matches!(
            decode_body::<Msg>(&longer),
            Err(WireError::Decode(_))
        ));
        assert!(matches!(
            decode_body::<Msg>(&body[..body.len() - 1]),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn a_huge_declared_vec_length_fails_without_allocating_it() {
        let mut body = 0u64.to_le_bytes().to_vec();
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_body::<Msg>(&body),
            Err(WireError::Decode(_))
        ));
    }
}
