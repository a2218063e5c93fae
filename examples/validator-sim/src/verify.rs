//! Independent checking of every signer answer: response fields against the request, sign
//! bytes rebuilt with the tendermint crate (with the timestamp the signer returned, which the
//! node adopts), Ed25519 `verify_strict`, and the v0.38+ vote-extension rules.
//!
//! Pure functions only; the driver decides what a failure costs.

use ed25519_dalek::{Signature, VerifyingKey};
use prost::Message as _;
use sha2::{Digest, Sha256};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::types::{BlockId, CanonicalVoteExtension, Proposal, Vote};

use crate::wire::{Protocol, PubKey};

/// Why an answer is not what a node would accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("wrong response type {0}")]
    WrongType(String),
    #[error("response carries neither a payload nor an error")]
    MissingPayload,
    #[error("returned message differs from the request in {0}")]
    FieldMismatch(&'static str),
    #[error("returned message has no timestamp")]
    MissingTimestamp,
    #[error("cannot build sign bytes: {0}")]
    SignBytes(String),
    #[error("signature is {0} bytes, not 64")]
    MalformedSignature(usize),
    #[error("signature does not verify")]
    BadSignature,
    #[error("non-nil precommit without an extension signature")]
    MissingExtensionSignature,
    #[error("extension signature on a prevote or nil precommit")]
    UnexpectedExtensionSignature,
    #[error("extension signature is {0} bytes, not 64")]
    MalformedExtensionSignature(usize),
    #[error("extension signature does not verify")]
    BadExtensionSignature,
    #[error("PubKeyResponse carries no key")]
    MissingPubKey,
    #[error("no validator key known yet to verify against")]
    NoValidatorKey,
    #[error("public key type {0:?} is not ed25519")]
    UnsupportedKeyType(String),
    #[error("public key is not a valid ed25519 point")]
    InvalidPubKey,
    #[error("public key differs from the expected validator key")]
    PubKeyMismatch,
}

impl Failure {
    /// A stable short name for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::WrongType(_) => "wrong_response_type",
            Self::MissingPayload => "missing_payload",
            Self::FieldMismatch(_) => "field_mismatch",
            Self::MissingTimestamp => "missing_timestamp",
            Self::SignBytes(_) => "sign_bytes",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::BadSignature => "bad_signature",
            Self::MissingExtensionSignature => "missing_extension_signature",
            Self::UnexpectedExtensionSignature => "unexpected_extension_signature",
            Self::MalformedExtensionSignature(_) => "malformed_extension_signature",
            Self::BadExtensionSignature => "bad_extension_signature",
            Self::MissingPubKey => "missing_pubkey",
            Self::NoValidatorKey => "no_validator_key",
            Self::UnsupportedKeyType(_) => "unsupported_key_type",
            Self::InvalidPubKey => "invalid_pubkey",
            Self::PubKeyMismatch => "pubkey_mismatch",
        }
    }
}

/// A signature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The exact bytes the signature covers.
    pub sign_bytes: Vec<u8>,
    /// SHA-256 of the sign bytes with the timestamp set to the epoch: two signatures for one
    /// height/round/step with different `normalized` values are a double sign.
    pub normalized: [u8; 32],
    pub signature: [u8; 64],
    /// The timestamp the signer returned (and the node adopts).
    pub timestamp: Timestamp,
}

fn epoch() -> Timestamp {
    Timestamp {
        seconds: 0,
        nanos: 0,
    }
}

fn is_nil(b: &Option<BlockId>) -> bool {
    match b {
        None => true,
        Some(b) => {
            b.hash.is_empty()
                && b.part_set_header
                    .as_ref()
                    .is_none_or(|p| p.total == 0 && p.hash.is_empty())
        }
    }
}

/// A nil block ID may come back absent or as an empty struct; both mean nil to a node.
fn same_block(a: &Option<BlockId>, b: &Option<BlockId>) -> bool {
    (is_nil(a) && is_nil(b)) || a == b
}

/// Sign bytes of a vote (CanonicalVote, length-delimited), built by tendermint-rs.
pub fn vote_sign_bytes(chain_id: &str, vote: &Vote) -> Result<Vec<u8>, Failure> {
    let chain = tendermint::chain::Id::try_from(chain_id.to_owned())
        .map_err(|e| Failure::SignBytes(e.to_string()))?;
    let mut raw = vote.clone();
    // The domain type validates signatures' lengths; they are not part of the sign bytes.
    raw.signature.clear();
    raw.extension_signature.clear();
    let domain =
        tendermint::vote::Vote::try_from(raw).map_err(|e| Failure::SignBytes(e.to_string()))?;
    Ok(domain.into_signable_vec(chain))
}

/// Sign bytes of a proposal (CanonicalProposal, length-delimited), built by tendermint-rs.
pub fn proposal_sign_bytes(chain_id: &str, proposal: &Proposal) -> Result<Vec<u8>, Failure> {
    let chain = tendermint::chain::Id::try_from(chain_id.to_owned())
        .map_err(|e| Failure::SignBytes(e.to_string()))?;
    let mut raw = proposal.clone();
    raw.signature.clear();
    let domain = tendermint::proposal::Proposal::try_from(raw)
        .map_err(|e| Failure::SignBytes(e.to_string()))?;
    Ok(domain.into_signable_vec(chain))
}

/// Sign bytes of a vote extension (CanonicalVoteExtension, length-delimited).
pub fn extension_sign_bytes(chain_id: &str, vote: &Vote) -> Vec<u8> {
    CanonicalVoteExtension {
        extension: vote.extension.clone(),
        height: vote.height,
        round: i64::from(vote.round),
        chain_id: chain_id.to_owned(),
    }
    .encode_length_delimited_to_vec()
}

fn check_signature(
    key: &VerifyingKey,
    msg: &[u8],
    sig: &[u8],
    malformed: fn(usize) -> Failure,
    bad: Failure,
) -> Result<[u8; 64], Failure> {
    let bytes: [u8; 64] = sig.try_into().map_err(|_| malformed(sig.len()))?;
    key.verify_strict(msg, &Signature::from_bytes(&bytes))
        .map_err(|_| bad)?;
    Ok(bytes)
}

fn normalized(sign_bytes: Result<Vec<u8>, Failure>) -> Result<[u8; 32], Failure> {
    Ok(Sha256::digest(sign_bytes?).into())
}

/// Checks a SignedVoteResponse's vote against the request the node sent.
pub fn verify_vote(
    protocol: Protocol,
    chain_id: &str,
    request: &Vote,
    returned: &Vote,
    key: &VerifyingKey,
) -> Result<Verified, Failure> {
    let timestamp = returned.timestamp.ok_or(Failure::MissingTimestamp)?;
    let field = if returned.r#type != request.r#type {
        Some("type")
    } else if returned.height != request.height {
        Some("height")
    } else if returned.round != request.round {
        Some("round")
    } else if !same_block(&returned.block_id, &request.block_id) {
        Some("block_id")
    } else if returned.validator_address != request.validator_address {
        Some("validator_address")
    } else if returned.validator_index != request.validator_index {
        Some("validator_index")
    } else if returned.extension != request.extension {
        Some("extension")
    } else {
        None
    };
    if let Some(field) = field {
        return Err(Failure::FieldMismatch(field));
    }

    let mut signed = request.clone();
    signed.timestamp = Some(timestamp);
    let sign_bytes = vote_sign_bytes(chain_id, &signed)?;
    let signature = check_signature(
        key,
        &sign_bytes,
        &returned.signature,
        Failure::MalformedSignature,
        Failure::BadSignature,
    )?;

    if protocol.has_extensions() {
        let needs_extension = request.r#type == 2 && !is_nil(&request.block_id);
        match (needs_extension, returned.extension_signature.is_empty()) {
            (true, true) => return Err(Failure::MissingExtensionSignature),
            (false, false) => return Err(Failure::UnexpectedExtensionSignature),
            (true, false) => {
                check_signature(
                    key,
                    &extension_sign_bytes(chain_id, request),
                    &returned.extension_signature,
                    Failure::MalformedExtensionSignature,
                    Failure::BadExtensionSignature,
                )?;
            }
            (false, true) => {}
        }
    }

    signed.timestamp = Some(epoch());
    Ok(Verified {
        normalized: normalized(vote_sign_bytes(chain_id, &signed))?,
        sign_bytes,
        signature,
        timestamp,
    })
}

/// Checks a SignedProposalResponse's proposal against the request the node sent.
pub fn verify_proposal(
    chain_id: &str,
    request: &Proposal,
    returned: &Proposal,
    key: &VerifyingKey,
) -> Result<Verified, Failure> {
    let timestamp = returned.timestamp.ok_or(Failure::MissingTimestamp)?;
    let field = if returned.r#type != request.r#type {
        Some("type")
    } else if returned.height != request.height {
        Some("height")
    } else if returned.round != request.round {
        Some("round")
    } else if returned.pol_round != request.pol_round {
        Some("pol_round")
    } else if !same_block(&returned.block_id, &request.block_id) {
        Some("block_id")
    } else {
        None
    };
    if let Some(field) = field {
        return Err(Failure::FieldMismatch(field));
    }
    let mut signed = request.clone();
    signed.timestamp = Some(timestamp);
    let sign_bytes = proposal_sign_bytes(chain_id, &signed)?;
    let signature = check_signature(
        key,
        &sign_bytes,
        &returned.signature,
        Failure::MalformedSignature,
        Failure::BadSignature,
    )?;
    signed.timestamp = Some(epoch());
    Ok(Verified {
        normalized: normalized(proposal_sign_bytes(chain_id, &signed))?,
        sign_bytes,
        signature,
        timestamp,
    })
}

/// Checks a PubKeyResponse's key: Ed25519, valid, and equal to `expected` if known.
pub fn verify_pubkey(
    key: Option<&PubKey>,
    expected: Option<&VerifyingKey>,
) -> Result<VerifyingKey, Failure> {
    let key = key.ok_or(Failure::MissingPubKey)?;
    if key.key_type != "ed25519" {
        return Err(Failure::UnsupportedKeyType(key.key_type.clone()));
    }
    let bytes: [u8; 32] = key
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| Failure::InvalidPubKey)?;
    let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| Failure::InvalidPubKey)?;
    match expected {
        Some(e) if e != &vk => Err(Failure::PubKeyMismatch),
        _ => Ok(vk),
    }
}

/// The validator address: the first 20 bytes of SHA-256 of the public key.
pub fn validator_address(key: &VerifyingKey) -> Vec<u8> {
    Sha256::digest(key.as_bytes())[..20].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::nil_block_id;
    use ed25519_dalek::{Signer, SigningKey};
    use tendermint_proto::v0_38::types::PartSetHeader;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn example_time() -> Timestamp {
        Timestamp {
            seconds: 1_767_323_045,
            nanos: 123_456_789,
        }
    }

    fn example_vote(vote_type: i32, block: Option<BlockId>) -> Vote {
        Vote {
            r#type: vote_type,
            height: 12,
            round: 0,
            block_id: block,
            timestamp: Some(example_time()),
            validator_address: vec![0; 20],
            validator_index: 0,
            signature: vec![],
            extension: vec![],
            extension_signature: vec![],
        }
    }

    fn example_block() -> BlockId {
        BlockId {
            hash: Sha256::digest(b"example block").to_vec(),
            part_set_header: Some(PartSetHeader {
                total: 1,
                hash: Sha256::digest(b"example parts").to_vec(),
            }),
        }
    }

    // Test vectors from privval-protocol.md §(c) and §(d).
    #[test]
    fn sign_bytes_match_the_documented_vectors() {
        let precommit = example_vote(2, Some(example_block()));
        assert_eq!(
            vote_sign_bytes("example-chain", &precommit).unwrap(),
            hex("710802110C0000000000000022480A20A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652122408011220F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF12A0B08A5EBDCCA0610959AEF3A320D6578616D706C652D636861696E")
        );
        for nil in [None, Some(nil_block_id())] {
            assert_eq!(
                vote_sign_bytes("example-chain", &example_vote(1, nil)).unwrap(),
                hex("27 08 01 11 0C00000000000000 2A 0B 08A5EBDCCA06 10959AEF3A 32 0D 6578616D706C652D636861696E")
            );
        }
        let mut ext = precommit.clone();
        ext.extension = b"example extension".to_vec();
        assert_eq!(
            extension_sign_bytes("example-chain", &ext),
            hex("2B 0A 11 6578616D706C6520657874656E73696F6E 11 0C00000000000000 22 0D 6578616D706C652D636861696E")
        );
        let proposal = Proposal {
            r#type: 32,
            height: 12,
            round: 0,
            pol_round: -1,
            block_id: Some(example_block()),
            timestamp: Some(example_time()),
            signature: vec![],
        };
        let sb = proposal_sign_bytes("example-chain", &proposal).unwrap();
        assert_eq!(sb[0], 0x7C);
        assert_eq!(
            &sb[1..23],
            &hex("08 20 11 0C00000000000000 20 FFFFFFFFFFFFFFFFFF01")[..]
        );
        assert!(sb.ends_with(b"\x3A\x0Dexample-chain"));
    }

    fn sign_vote(sk: &SigningKey, chain: &str, vote: &Vote, with_ext: bool) -> Vote {
        let mut v = vote.clone();
        v.signature = sk
            .sign(&vote_sign_bytes(chain, vote).unwrap())
            .to_bytes()
            .to_vec();
        if with_ext {
            v.extension_signature = sk
                .sign(&extension_sign_bytes(chain, vote))
                .to_bytes()
                .to_vec();
        }
        v
    }

    #[test]
    fn vote_checks() {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let vk = sk.verifying_key();
        let chain = "example-chain";
        let precommit = example_vote(2, Some(example_block()));
        let prevote = example_vote(1, Some(example_block()));
        let nil_precommit = example_vote(2, Some(nil_block_id()));

        let ok = verify_vote(
            Protocol::V0_38,
            chain,
            &precommit,
            &sign_vote(&sk, chain, &precommit, true),
            &vk,
        )
        .unwrap();
        assert_eq!(ok.sign_bytes, vote_sign_bytes(chain, &precommit).unwrap());

        assert_eq!(
            verify_vote(
                Protocol::V0_38,
                chain,
                &precommit,
                &sign_vote(&sk, chain, &precommit, false),
                &vk
            ),
            Err(Failure::MissingExtensionSignature)
        );
        // v0.34 has no extensions on the wire: none required.
        assert!(verify_vote(
            Protocol::V0_34,
            chain,
            &precommit,
            &sign_vote(&sk, chain, &precommit, false),
            &vk
        )
        .is_ok());
        assert_eq!(
            verify_vote(
                Protocol::V1,
                chain,
                &prevote,
                &sign_vote(&sk, chain, &prevote, true),
                &vk
            ),
            Err(Failure::UnexpectedExtensionSignature)
        );
        assert_eq!(
            verify_vote(
                Protocol::V0_38,
                chain,
                &nil_precommit,
                &sign_vote(&sk, chain, &nil_precommit, true),
                &vk
            ),
            Err(Failure::UnexpectedExtensionSignature)
        );

        let mut bad = sign_vote(&sk, chain, &precommit, true);
        bad.signature[0] ^= 1;
        assert_eq!(
            verify_vote(Protocol::V0_38, chain, &precommit, &bad, &vk),
            Err(Failure::BadSignature)
        );
        let mut bad_ext = sign_vote(&sk, chain, &precommit, true);
        bad_ext.extension_signature[5] ^= 1;
        assert_eq!(
            verify_vote(Protocol::V0_38, chain, &precommit, &bad_ext, &vk),
            Err(Failure::BadExtensionSignature)
        );

        // Another block signed correctly is still refused: it is not what was asked.
        let other = example_vote(2, Some(crate::consensus::block_id("x", 1, 0, "")));
        assert_eq!(
            verify_vote(
                Protocol::V0_38,
                chain,
                &precommit,
                &sign_vote(&sk, chain, &other, true),
                &vk
            ),
            Err(Failure::FieldMismatch("block_id"))
        );
    }

    #[test]
    fn returned_timestamp_is_what_gets_verified() {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let chain = "c";
        let request = example_vote(1, Some(example_block()));
        let mut earlier = request.clone();
        earlier.timestamp = Some(Timestamp {
            seconds: 5,
            nanos: 0,
        });
        let returned = sign_vote(&sk, chain, &earlier, false);
        let v = verify_vote(
            Protocol::V0_34,
            chain,
            &request,
            &returned,
            &sk.verifying_key(),
        )
        .unwrap();
        assert_eq!(v.timestamp.seconds, 5);
        // Same block at another time: same normalized bytes (not a double sign).
        let direct = verify_vote(
            Protocol::V0_34,
            chain,
            &request,
            &sign_vote(&sk, chain, &request, false),
            &sk.verifying_key(),
        )
        .unwrap();
        assert_eq!(v.normalized, direct.normalized);
        assert_ne!(v.sign_bytes, direct.sign_bytes);

        let mut no_ts = returned;
        no_ts.timestamp = None;
        assert_eq!(
            verify_vote(
                Protocol::V0_34,
                chain,
                &request,
                &no_ts,
                &sk.verifying_key()
            ),
            Err(Failure::MissingTimestamp)
        );
    }

    #[test]
    fn pubkey_checks() {
        let vk = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        let pk = PubKey {
            key_type: "ed25519".into(),
            bytes: vk.as_bytes().to_vec(),
        };
        assert_eq!(verify_pubkey(Some(&pk), None), Ok(vk));
        assert_eq!(
            verify_pubkey(Some(&pk), Some(&other)),
            Err(Failure::PubKeyMismatch)
        );
        assert_eq!(verify_pubkey(None, None), Err(Failure::MissingPubKey));
        let secp = PubKey {
            key_type: "secp256k1".into(),
            bytes: vec![2; 33],
        };
        assert!(matches!(
            verify_pubkey(Some(&secp), None),
            Err(Failure::UnsupportedKeyType(_))
        ));
    }
}
