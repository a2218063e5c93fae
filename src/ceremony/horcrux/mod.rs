//! Importing a Horcrux (strangelove-ventures/horcrux v3) cosigner: its shard becomes this
//! project's FROST share for the same identifier, and its sign state our watermark.
//!
//! # What a Horcrux shard is (read from the sources)
//!
//! Horcrux v3.3.2 (commit `fb49be9`), `signer/cosigner_key_shares.go`,
//! `CreateCosignerEd25519Shards`: `tsed25519.DealShares(tsed25519.ExpandSecret(
//! pv.PrivKey.Bytes()[:32]), threshold, shards)`, and shard `i` (0-based) is written with
//! `ID: i + 1`. `PrivKey.Bytes()` of a CometBFT Ed25519 key is seed ‖ public key, so the
//! input is the 32-byte seed. In unit410/threshold-ed25519 (the version Horcrux pins,
//! `v0.0.0-20220812172601-56783212c4cc`, commit `5678321`), `pkg/ed25519.go`:
//! - `ExpandSecret(seed)` = SHA-512(seed)[0..32] with RFC 8032's clamping (`&= 248`,
//!   `&= 127`, `|= 64`) and **no reduction**: the integer `a` in [2^254, 2^255), read
//!   little-endian. It is the Ed25519 secret scalar, whose `a·B` is the public key.
//! - `DealShares(secret, t, n)`: coefficient 0 is that integer (`SetBytes(Reverse(secret))`,
//!   little-endian), coefficients 1..t-1 are uniform in [0, l) (`rand.Int(rand.Reader,
//!   orderL)`); share `i` (0-based) is the polynomial at `x = i + 1` by Horner's rule with
//!   a reduction mod l after each step, so it is **reduced mod l** (for every t >= 2, which
//!   both Horcrux and we require), and written as `Reverse(share.Bytes())` into 32 zeroed
//!   bytes: **32-byte little-endian, canonical**. Reduction mod l commutes with the
//!   arithmetic, so the shares are a Shamir sharing over the scalar field of `a mod l`, the
//!   very scalar [`crate::threshold::deal::frost_signing_key`] derives from the seed.
//!
//! So shard `id` is the value at `x = id` of a degree `t - 1` polynomial over Z_l whose value
//! at 0 is the validator's secret scalar: with FROST identifier `id` (the scalar `id`, as
//! `Identifier::try_from(u16)` makes it) it is a FROST signing share as it stands, and
//! `s·B` its verifying share. `tests/e2e_ceremony.rs` and the unit tests here deal shards the
//! way Horcrux does, from this description, and sign with the imported shares.
//!
//! # The shard file
//!
//! `<chain-id>_shard.json` in Horcrux's home (`~/.horcrux`, or `keyDir`), written by
//! `WriteCosignerEd25519ShardFile` (`json.Marshal`, mode 0600) with `CosignerEd25519Key`'s
//! `MarshalJSON` (`signer/cosigner_key.go`): `{"pubKey": base64, "privateShard": base64,
//! "id": number}`. Go encodes `[]byte` as padded standard base64. `pubKey` holds the
//! protobuf `tendermint.crypto.PublicKey` (field 1, `ed25519`: bytes `0a 20` then the 32-byte
//! key); files from before the protobuf migration hold go-amino's binary encoding (`16 24 de
//! 64 20` then the key), which Horcrux still reads, and so do we ([`shard`]).
//!
//! # The sign state
//!
//! Per chain, in `~/.horcrux/state/` (`signer/config.go`): `<chain-id>_share_sign_state.json`
//! is this cosigner's own watermark (saved by `LocalCosigner` when it releases a share; its
//! `signature` is that partial signature), and `<chain-id>_priv_validator_state.json` the
//! cluster's (saved by `ThresholdValidator` with the combined signature, and replicated to
//! followers over raft). Both are `SignState` written by CometBFT's `libs/json` (int64
//! fields as strings): `height`, `round`, `step`, `nonce_public`, `signature`, `signbytes`
//! (hex), `vote_ext_signature` ([`state`]). We take the higher of the two, and never lower a
//! watermark this directory already has.

pub mod import;
pub mod shard;
pub(crate) mod state;

pub use shard::HorcruxShard;
