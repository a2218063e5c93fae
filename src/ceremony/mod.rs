//! Key ceremonies: the cosigners make their key shares among themselves, over the cluster
//! transport, so that no host ever holds the whole key.
//!
//! Three ceremonies share one protocol and differ only in their key phase and their end:
//! - **DKG** (`split-key --dkg`, then `cosigner dkg` on every host): frost's distributed key
//!   generation (RFC 9591 App. C; `frost_ed25519::keys::dkg`) makes a new validator key that
//!   nobody ever holds.
//! - **Horcrux import** (`split-key --horcrux-pubkey`, then `cosigner import-horcrux` on every
//!   Horcrux host): each host turns its own Horcrux shard into a FROST share of the same key
//!   ([`horcrux`]); the hosts only exchange the public verifying shares.
//! - **Refresh** (`cosigner refresh` on every host): frost's DKG-based refresh gives new
//!   shares of the same key; it stages them and switches by its own commit rule
//!   ([`refresh`]), in place of step 5 below.
//!
//! # The protocol
//!
//! Every message is a request for something the answering cosigner has (pull): the requester
//! asks again until it gets it or its deadline passes, so a host may start late, and a lost
//! answer costs a retry. A message never names its sender: the answer to a request sent to
//! cosigner `j` over the mutually authenticated QUIC connection pinned to `j`'s certificate
//! is `j`'s, and a request arriving on it comes from `j`. Every request carries the
//! ceremony's session id ([`file::session_id`]), a digest of the ceremony file every
//! directory got from the same `split-key` run and of every cosigner's certificate pin, so a
//! host of another run or with an edited config is refused before anything is used.
//!
//! 1. **Contribution** ([`messages::Ask::Contribution`]): the DKG round-1 package
//!    (commitment and proof of knowledge), or for an import the verifying share `s_i·B`.
//!    These must be a broadcast: one package per sender, the same for everyone.
//! 2. **Echo** ([`echo`]): once a host holds every contribution it answers with a digest of
//!    each, and it compares every other host's echo with its own. A difference stops the
//!    ceremony and names who is inconsistent: a host whose echo of its own package differs
//!    from what it sent us sent different packages to different hosts; a host echoing a
//!    package of ours that we did not send misreports; otherwise the sender or the reporter
//!    lies, and both are named (without signatures over the packages the two cannot be told
//!    apart, and either way the honest hosts stop). Nothing secret leaves a host before its
//!    echo check passed.
//! 3. **Round 2** (DKG only, [`dkg`]): each host hands `f_i(j)` to exactly the authenticated
//!    peer `j` that asks for it, over the confidential connection. frost's part 3 checks every
//!    received share against its sender's commitment and names a cheater.
//! 4. **Test signature** ([`test_sign`]): with its new key package each host commits, gathers
//!    every host's commitment, signs one fixed message (derived from the session and the
//!    group key, starting with `0xff` so it can never be CometBFT sign bytes) exactly once
//!    with that nonce, and gathers every host's signature share together with the
//!    commitments that host signed over. Differing commitments are named as in step 2; then
//!    frost's `aggregate` (which names a host whose share is wrong) and `ed25519-dalek`'s
//!    `verify_strict` under the group key must both accept. All `n` hosts sign, so every
//!    verifying share is exercised.
//! 5. **Verified**: a host that verified answers with a digest of its public key package;
//!    a host stages its `key_share.json` (written and fsynced under a temporary name) and
//!    publishes it (one atomic, durable link) only after **every** host said it verified the
//!    same package. It then keeps answering until every peer has fetched its own "verified"
//!    (bounded), so peers are not left waiting for it.
//!
//! A host that stops the ceremony answers every later request with why, so the others stop
//! at once with the same reason instead of waiting out their deadline. A host that is missing
//! makes every other host stop at its deadline, naming it. Either way nothing is written: a
//! host writes only after all `n` said they verified. The one window left is after that: a
//! host that dies between its peers' "verified" and its own write has no share while the
//! others have theirs (the cluster still signs with any `t`; that share can be recovered later
//! with frost's repairable scheme, not built here).
//!
//! # Where the code is
//! - [`file`](mod@file): `ceremony.json` (written by `split-key`) and the session id.
//! - [`messages`]: what cosigners ask each other during a ceremony.
//! - [`abort`]: why a ceremony stopped, naming who is wrong.
//! - [`echo`], [`dkg`], [`test_sign`], [`horcrux`]: the pure protocol steps.
//! - [`machine`]: one host's ceremony as a pure state machine (what to ask, what to answer).
//! - [`run`]: the network edge: binds the cluster, drives the machine, keeps the deadline;
//!   `drive`: the driving loop it shares with a refresh.
//! - [`refresh`]: share refresh (and removing cosigners): its frost steps, its files, its
//!   commit rule and its edge.
//! - [`output`]: the disk edge: staging and publishing the share and sign states.

pub(crate) mod abort;
pub(crate) mod dkg;
mod drive;
pub(crate) mod echo;
pub(crate) mod file;
pub mod horcrux;
pub mod join;
pub mod machine;
pub(crate) mod messages;
pub mod output;
pub mod refresh;
pub mod run;
pub(crate) mod test_sign;

pub use abort::Abort;
pub use file::{CeremonyFile, CeremonyKind, CEREMONY_FILE};
pub use messages::{Ask, CeremonyRequest, CeremonyResponse};
