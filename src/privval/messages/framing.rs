//! The varint length prefix around each privval message, decoded without I/O.
//!
//! A reader with only `read_exact` reads one byte, asks [`decode_length_prefix`], reads a
//! second byte only if asked, then reads exactly the body and calls [`decode_message`]:
//!
//! ```text
//! let mut prefix = [0u8; MAX_PREFIX_LEN];
//! let mut n = 0;
//! let body_len = loop {
//!     read_exact(&mut prefix[n..n + 1]).await?;
//!     n += 1;
//!     if let LengthPrefix::Complete { body_len, .. } = decode_length_prefix(&prefix[..n])? {
//!         break body_len;
//!     }
//! };
//! let mut body = vec![0; body_len];
//! read_exact(&mut body).await?;
//! let msg = decode_message(&body)?;
//! ```
//!
//! The length is checked against [`MAX_MESSAGE_LEN`] before the body is read, so a hostile
//! prefix never causes an allocation.

use prost::Message as _;

use super::Message;

/// The largest message body the node reads (`maxRemoteSignerMsgSize`, v0.34–v1.0); we
/// accept no more.
pub const MAX_MESSAGE_LEN: usize = 10 * 1024;

/// Enough varint bytes for any length up to [`MAX_MESSAGE_LEN`] (two bytes hold 14 bits).
pub const MAX_PREFIX_LEN: usize = 2;

/// Why bytes are not one acceptable length-delimited privval message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The varint prefix runs on past [`MAX_PREFIX_LEN`] bytes.
    #[error("message length prefix needs more than {MAX_PREFIX_LEN} bytes, so the message exceeds {MAX_MESSAGE_LEN} bytes")]
    PrefixTooLong,
    /// The prefix has superfluous trailing zero groups, so one length has two encodings.
    #[error("message length prefix is not minimally encoded")]
    NonMinimalPrefix,
    /// The prefix announces a body over [`MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    Oversized {
        /// The announced body length.
        len: usize,
    },
    /// The body is not a privval `Message`; carries the protobuf decoder's reason.
    #[error("message is not a valid privval protobuf: {0}")]
    Decode(String),
}

/// What a (possibly partial) length prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthPrefix {
    /// One more byte is needed.
    Incomplete,
    /// The prefix is `prefix_len` bytes long and a body of `body_len` bytes follows.
    Complete {
        /// The length of the message body the prefix announces.
        body_len: usize,
        /// How many bytes the prefix itself takes.
        prefix_len: usize,
    },
}

/// Decodes the varint length prefix at the start of `bytes` (which may hold more than the
/// prefix). Fails as soon as the prefix cannot describe a body within [`MAX_MESSAGE_LEN`].
pub fn decode_length_prefix(bytes: &[u8]) -> Result<LengthPrefix, FrameError> {
    let Some(&b0) = bytes.first() else {
        return Ok(LengthPrefix::Incomplete);
    };
    if b0 < 0x80 {
        return Ok(LengthPrefix::Complete {
            body_len: usize::from(b0),
            prefix_len: 1,
        });
    }
    let Some(&b1) = bytes.get(1) else {
        return Ok(LengthPrefix::Incomplete);
    };
    if b1 >= 0x80 {
        return Err(FrameError::PrefixTooLong);
    }
    if b1 == 0 {
        // Go's encoder never writes a redundant zero continuation byte.
        return Err(FrameError::NonMinimalPrefix);
    }
    let len = usize::from(b0 & 0x7F) | usize::from(b1) << 7;
    if len > MAX_MESSAGE_LEN {
        return Err(FrameError::Oversized { len });
    }
    Ok(LengthPrefix::Complete {
        body_len: len,
        prefix_len: 2,
    })
}

/// Decodes one message body (the bytes after the length prefix).
pub fn decode_message(body: &[u8]) -> Result<Message, FrameError> {
    if body.len() > MAX_MESSAGE_LEN {
        return Err(FrameError::Oversized { len: body.len() });
    }
    Message::decode(body).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Decodes one length-delimited message from the start of `buf`, for callers that buffer:
/// `Ok(None)` if `buf` does not yet hold the whole message, otherwise the message and the
/// number of bytes it took.
pub fn decode_delimited(buf: &[u8]) -> Result<Option<(Message, usize)>, FrameError> {
    let (body_len, prefix_len) = match decode_length_prefix(buf)? {
        LengthPrefix::Incomplete => return Ok(None),
        LengthPrefix::Complete {
            body_len,
            prefix_len,
        } => (body_len, prefix_len),
    };
    let end = prefix_len + body_len;
    let Some(body) = buf.get(prefix_len..end) else {
        return Ok(None);
    };
    Ok(Some((decode_message(body)?, end)))
}

/// Appends `msg` with its varint length prefix to `out`. The node refuses messages above
/// [`MAX_MESSAGE_LEN`]; callers that echo node-supplied data check
/// `msg.encoded_len()` if they need to know in advance.
pub fn encode_delimited(msg: &Message, out: &mut Vec<u8>) {
    out.extend_from_slice(&msg.encode_length_delimited_to_vec());
}

#[cfg(test)]
mod tests {
    use super::super::{message, ping_response, PingRequest, SignBytesRequest};
    use super::*;

    fn sign_bytes_msg(n: usize) -> Message {
        Message {
            sum: Some(message::Sum::SignBytesRequest(SignBytesRequest {
                value: vec![0xAB; n],
            })),
        }
    }

    #[test]
    fn round_trip_small_and_two_byte_prefix() {
        for n in [0, 1, 100, 124, 125, 126, 1000, MAX_MESSAGE_LEN - 6] {
            let msg = sign_bytes_msg(n);
            let mut out = Vec::new();
            encode_delimited(&msg, &mut out);
            let (back, used) = decode_delimited(&out).unwrap().unwrap();
            assert_eq!(back, msg);
            assert_eq!(used, out.len());
            // Every proper prefix of the encoding is "not yet".
            assert_eq!(decode_delimited(&out[..out.len() - 1]).unwrap(), None);
        }
    }

    #[test]
    fn byte_at_a_time_prefix() {
        let msg = sign_bytes_msg(300);
        let mut out = Vec::new();
        encode_delimited(&msg, &mut out);
        assert_eq!(
            decode_length_prefix(&out[..1]).unwrap(),
            LengthPrefix::Incomplete
        );
        let LengthPrefix::Complete {
            body_len,
            prefix_len,
        } = decode_length_prefix(&out[..2]).unwrap()
        else {
            panic!("prefix should be complete after two bytes")
        };
        assert_eq!(prefix_len, 2);
        assert_eq!(body_len + 2, out.len());
        assert_eq!(decode_message(&out[2..]).unwrap(), msg);
        assert_eq!(decode_length_prefix(&[]).unwrap(), LengthPrefix::Incomplete);
    }

    #[test]
    fn limits_are_enforced_before_the_body() {
        // 10240 is accepted, 10241 is not.
        let max = [0x80, 0x50];
        assert_eq!(
            decode_length_prefix(&max).unwrap(),
            LengthPrefix::Complete {
                body_len: MAX_MESSAGE_LEN,
                prefix_len: 2
            }
        );
        assert_eq!(
            decode_length_prefix(&[0x81, 0x50]),
            Err(FrameError::Oversized {
                len: MAX_MESSAGE_LEN + 1
            })
        );
        assert_eq!(
            decode_length_prefix(&[0xFF, 0x7F]),
            Err(FrameError::Oversized { len: 16383 })
        );
        assert_eq!(
            decode_length_prefix(&[0x80, 0x80]),
            Err(FrameError::PrefixTooLong)
        );
        assert_eq!(
            decode_length_prefix(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            Err(FrameError::PrefixTooLong)
        );
        assert_eq!(
            decode_length_prefix(&[0x85, 0x00]),
            Err(FrameError::NonMinimalPrefix)
        );
        assert_eq!(
            decode_message(&vec![0u8; MAX_MESSAGE_LEN + 1]),
            Err(FrameError::Oversized {
                len: MAX_MESSAGE_LEN + 1
            })
        );
        let big = sign_bytes_msg(MAX_MESSAGE_LEN);
        let mut out = Vec::new();
        encode_delimited(&big, &mut out);
        assert!(matches!(
            decode_delimited(&out),
            Err(FrameError::Oversized { .. })
        ));
    }

    #[test]
    fn malformed_body_is_an_error() {
        // Field 3 (SignVoteRequest) declared 5 bytes long with only 1 present.
        assert!(matches!(
            decode_delimited(&[0x03, 0x1A, 0x05, 0x00]),
            Err(FrameError::Decode(_))
        ));
        // Wire type 7 does not exist.
        assert!(matches!(
            decode_message(&[0x0F]),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn ping_encoding_is_what_go_sends() {
        let ping = Message {
            sum: Some(message::Sum::PingRequest(PingRequest {})),
        };
        let mut out = Vec::new();
        encode_delimited(&ping, &mut out);
        assert_eq!(out, [0x02, 0x3A, 0x00]);
        out.clear();
        encode_delimited(&ping_response(), &mut out);
        assert_eq!(out, [0x02, 0x42, 0x00]);
    }
}
