//! One privval session with one node: read a request, answer it, repeat.
//!
//! PubKey and Ping are answered here, from memory. SignVote and SignProposal are turned into
//! sign documents (canonical sign bytes computed by us) and passed to the signer, which owns
//! double-sign protection. Every refusal is a RemoteSignerError reply, not a dropped
//! connection, so the node logs it and moves on. The connection is dropped only for what
//! makes the stream unusable: a malformed frame or message, a response where a request
//! belongs, a timeout.
//!
//! One exception: a threshold cosigner that cannot reach a quorum gives way. It drops the
//! connection as soon as the quorum is lost, and a sign request that arrives without one, or
//! that no quorum signed within the deadline, is not answered at all: CometBFT's `RetrySignerClient` treats a RemoteSignerError as final
//! (the vote is lost) but retries a broken connection, and that retry reaches the next
//! cosigner in the node's accept queue, which can sign.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{debug, warn};

use super::connection::NodeConnection;
use super::dialer::NodeTimeouts;
use super::messages::{
    self, decode_length_prefix, decode_message, encode_delimited, FrameError, LengthPrefix,
    Message, RemoteSignerError, Request, RequestError, RequestKind, MAX_PREFIX_LEN,
};
use super::secret_connection::SecretConnectionError;
use super::version::ProtocolVersion;
use crate::consensus::{ExtensionDoc, SignDoc, Step};
use crate::metrics::{Metrics, SignFailure};
use crate::privval::sign_doc;
use crate::signer::{SignError, SignOutcome, Signer};

/// What a session needs to know about the node it serves.
#[derive(Clone, Debug)]
pub struct SessionContext {
    /// The privval version the node speaks.
    pub protocol: ProtocolVersion,
    /// Whether to answer v1 SignBytes requests (`allow_sign_bytes` in the config).
    pub allow_sign_bytes: bool,
    /// The node's address, for logs.
    pub label: String,
    /// How long the node may stay silent and a reply may take to write.
    pub timeouts: NodeTimeouts,
    /// Where signatures, failures and the node connection are counted.
    pub metrics: Arc<Metrics>,
}

/// Why a session with a node ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The node sent nothing within its idle timeout.
    #[error("the node sent nothing for {0:?}")]
    Idle(std::time::Duration),
    /// A reply could not be written within the write timeout.
    #[error("writing the reply took longer than {0:?}")]
    WriteTimeout(std::time::Duration),
    /// The SecretConnection failed.
    #[error(transparent)]
    Connection(#[from] SecretConnectionError),
    /// The Unix socket to the node failed.
    #[error("Unix socket: {0}")]
    Socket(std::io::Error),
    /// The node sent a frame that is no privval message.
    #[error("malformed message: {0}")]
    Frame(#[from] FrameError),
    /// The node sent a response where a request belongs, or no request at all.
    #[error("protocol violation: {0}")]
    Protocol(#[from] RequestError),
    /// The cluster lost its quorum; the connection is dropped so the node retries elsewhere.
    #[error("giving way: this cosigner cannot reach a quorum of cosigners")]
    NoQuorum,
    /// This cosigner cannot sign now but another may (its disk failed, no quorum answered in
    /// time): the connection is dropped unanswered so that the node retries elsewhere.
    #[error("giving way: {0}")]
    GaveWay(String),
}

/// What a sign request gets: a reply, or (threshold mode, no quorum signed) nothing.
// One lives briefly on the stack per request; boxing the common case buys nothing.
#[allow(clippy::large_enum_variant)]
enum Reply {
    Send(Message),
    GiveWay(String),
}

impl From<Message> for Reply {
    fn from(message: Message) -> Reply {
        Reply::Send(message)
    }
}

/// How long after a node's first request on a connection this cosigner counts as having just
/// taken over from another signer, which may have died a moment ago unnoticed by its peers:
/// its signings then ask every reachable peer at once. Long enough for the node's retry of
/// the request the dead signer held and the next step or two; after that the first signing
/// has told the engine which peer is silent.
const TAKEOVER_WINDOW: std::time::Duration = std::time::Duration::from_millis(250);

/// Resolves when `quorum` says the quorum is lost; never for a single key or once the signer
/// is gone.
pub(crate) async fn quorum_lost(quorum: &mut Option<watch::Receiver<bool>>) {
    match quorum {
        Some(rx) => {
            if rx.wait_for(|q| !*q).await.is_ok() {
                return;
            }
            std::future::pending::<()>().await
        }
        None => std::future::pending::<()>().await,
    }
}

fn has_quorum(quorum: &Option<watch::Receiver<bool>>) -> bool {
    quorum.as_ref().is_none_or(|rx| *rx.borrow())
}

/// Serves requests until the connection fails or goes idle. A connection the node has not
/// sent anything on yet is not idle but spare: the node holds it until its current signer's
/// connection fails, and then needs it at once, so it is kept (TCP keep-alives tell whether
/// the node is still there).
pub async fn serve(
    conn: &mut NodeConnection,
    ctx: &SessionContext,
    signer: &Signer,
) -> Result<(), SessionError> {
    let idle = ctx.timeouts.idle;
    let write = ctx.timeouts.write;
    let mut out = Vec::with_capacity(512);
    let mut quorum = signer.availability();
    let mut first_request: Option<Instant> = None;
    loop {
        // A cancelled read leaves the stream mid-frame, but the connection is dropped then.
        let serving = first_request.is_some();
        let read = async {
            if serving {
                tokio::time::timeout(idle, read_message(conn))
                    .await
                    .map_err(|_| SessionError::Idle(idle))?
            } else {
                read_message(conn).await
            }
        };
        let message = tokio::select! {
            read = read => read?,
            _ = quorum_lost(&mut quorum) => return Err(SessionError::NoQuorum),
        };
        let takeover = first_request.get_or_insert_with(Instant::now).elapsed() < TAKEOVER_WINDOW;
        let request = Request::from_message(message)?;
        if matches!(request, Request::SignVote(_) | Request::SignProposal(_))
            && !has_quorum(&quorum)
        {
            return Err(SessionError::NoQuorum);
        }
        let reply = match reply(request, ctx, signer, takeover).await {
            Reply::Send(message) => message,
            Reply::GiveWay(reason) => return Err(SessionError::GaveWay(reason)),
        };
        out.clear();
        encode_delimited(&reply, &mut out);
        tokio::time::timeout(write, conn.write_all(&out))
            .await
            .map_err(|_| SessionError::WriteTimeout(write))??;
    }
}

/// The one thing [`read_message`] needs of a connection: the fuzz harness (feature
/// `testkit`) feeds it bytes from memory, so that it reads them exactly as a session does.
pub(crate) trait ReadExact {
    fn read_exact(
        &mut self,
        buf: &mut [u8],
    ) -> impl std::future::Future<Output = Result<(), SessionError>> + Send;
}

/// Reads one length-delimited message; the length is checked against the node's limit
/// before anything is allocated.
pub(crate) async fn read_message<C: ReadExact + Send>(
    conn: &mut C,
) -> Result<Message, SessionError> {
    let mut prefix = [0u8; MAX_PREFIX_LEN];
    let mut have = 0;
    let body_len = loop {
        conn.read_exact(&mut prefix[have..have + 1]).await?;
        have += 1;
        match decode_length_prefix(&prefix[..have])? {
            LengthPrefix::Complete { body_len, .. } => break body_len,
            LengthPrefix::Incomplete if have < MAX_PREFIX_LEN => continue,
            LengthPrefix::Incomplete => return Err(FrameError::PrefixTooLong.into()),
        }
    };
    let mut body = vec![0u8; body_len];
    conn.read_exact(&mut body).await?;
    Ok(decode_message(&body)?)
}

fn refusal(kind: RequestKind, description: impl Into<String>) -> Message {
    messages::error_response(kind, RemoteSignerError::new(0, description))
        .unwrap_or_else(messages::ping_response)
}

/// Answers one request. Never fails: anything we will not sign becomes an error reply.
pub async fn answer(request: Request, ctx: &SessionContext, signer: &Signer) -> Message {
    let kind = request.kind();
    match reply(request, ctx, signer, false).await {
        Reply::Send(message) => message,
        Reply::GiveWay(reason) => refusal(kind, reason),
    }
}

async fn reply(request: Request, ctx: &SessionContext, signer: &Signer, takeover: bool) -> Reply {
    let kind = request.kind();
    if let Some(chain_id) = request.chain_id() {
        if !signer.has_chain(chain_id) {
            warn!(node = %ctx.label, %kind, chain_id, "refused: chain is not configured");
            return refusal(
                kind,
                format!("chain ID `{chain_id}` is not served by this signer"),
            )
            .into();
        }
    }
    match request {
        Request::Ping => messages::ping_response().into(),
        Request::PubKey(req) => {
            ctx.metrics.pubkey_request(&req.chain_id);
            messages::pubkey_response(ctx.protocol, &signer.public_key()).into()
        }
        Request::SignVote(req) => sign(req, ctx, signer, takeover).await,
        Request::SignProposal(req) => sign(req, ctx, signer, takeover).await,
        Request::SignBytes(req) => sign_raw(req, ctx, signer).await.into(),
    }
}

/// What the one signing path needs of a request to sign a vote or a proposal (tmkms's
/// model: one `sign` over a request trait, not two copies of it).
trait SignRequest: Sized {
    const KIND: RequestKind;

    /// Checks the request and computes what is signed: the document and, where the node
    /// needs one, the vote extension's.
    fn docs(&self, protocol: ProtocolVersion) -> Result<(SignDoc, Option<ExtensionDoc>), Rejected>;

    /// The response: the vote or proposal with the signature(s) and the timestamp filled in.
    fn signed(self, outcome: SignOutcome) -> Message;
}

/// Why a request was not passed to the signer, and what it was for if that much is known.
struct Rejected {
    doc: Option<Box<SignDoc>>,
    reason: String,
}

impl Rejected {
    fn new(doc: Option<&SignDoc>, reason: impl Into<String>) -> Rejected {
        Rejected {
            doc: doc.cloned().map(Box::new),
            reason: reason.into(),
        }
    }
}

impl SignRequest for messages::SignVoteRequest {
    const KIND: RequestKind = RequestKind::SignVote;

    fn docs(&self, protocol: ProtocolVersion) -> Result<(SignDoc, Option<ExtensionDoc>), Rejected> {
        let vote = self
            .vote
            .as_ref()
            .ok_or_else(|| Rejected::new(None, "SignVoteRequest carries no vote"))?;
        let doc = sign_doc::vote_sign_doc(&self.chain_id, vote)
            .map_err(|e| Rejected::new(None, e.to_string()))?;
        let non_nil_precommit = doc.hrs.step == Step::Precommit && doc.block_id.is_some();
        if !non_nil_precommit && !vote.extension.is_empty() {
            return Err(Rejected::new(
                Some(&doc),
                "a vote extension on a prevote or nil precommit",
            ));
        }
        // v0.38: every non-nil precommit gets an extension signature, even for an empty
        // extension; a node with extensions disabled drops it. v1 says explicitly.
        let sign_extension = non_nil_precommit
            && match protocol {
                ProtocolVersion::V0_34 | ProtocolVersion::V0_37 => false,
                ProtocolVersion::V0_38 => true,
                ProtocolVersion::V1 => !self.skip_extension_signing,
            };
        let extension = sign_extension
            .then(|| sign_doc::extension_sign_doc(&self.chain_id, vote))
            .transpose()
            .map_err(|e| Rejected::new(Some(&doc), e.to_string()))?;
        Ok((doc, extension))
    }

    fn signed(self, outcome: SignOutcome) -> Message {
        let Some(mut vote) = self.vote else {
            return refusal(Self::KIND, "SignVoteRequest carries no vote");
        };
        vote.signature = outcome.signature.to_vec();
        vote.timestamp = Some(outcome.timestamp);
        vote.extension_signature = outcome
            .extension_signature
            .map(|s| s.to_vec())
            .unwrap_or_default();
        messages::signed_vote_response(vote)
    }
}

impl SignRequest for messages::SignProposalRequest {
    const KIND: RequestKind = RequestKind::SignProposal;

    fn docs(&self, _: ProtocolVersion) -> Result<(SignDoc, Option<ExtensionDoc>), Rejected> {
        let proposal = self
            .proposal
            .as_ref()
            .ok_or_else(|| Rejected::new(None, "SignProposalRequest carries no proposal"))?;
        let doc = sign_doc::proposal_sign_doc(&self.chain_id, proposal)
            .map_err(|e| Rejected::new(None, e.to_string()))?;
        Ok((doc, None))
    }

    fn signed(self, outcome: SignOutcome) -> Message {
        let Some(mut proposal) = self.proposal else {
            return refusal(Self::KIND, "SignProposalRequest carries no proposal");
        };
        proposal.signature = outcome.signature.to_vec();
        proposal.timestamp = Some(outcome.timestamp);
        messages::signed_proposal_response(proposal)
    }
}

/// Signs a vote or a proposal: the one path both take.
async fn sign<R: SignRequest>(
    req: R,
    ctx: &SessionContext,
    signer: &Signer,
    takeover: bool,
) -> Reply {
    let (doc, extension) = match req.docs(ctx.protocol) {
        Ok(docs) => docs,
        Err(rejected) => {
            return refused(ctx, R::KIND, rejected.doc.as_deref(), rejected.reason).into()
        }
    };
    let started = Instant::now();
    let hrs = doc.hrs;
    match signer.sign(doc.clone(), extension, takeover).await {
        Ok(outcome) => {
            let took = started.elapsed();
            ctx.metrics
                .signed(&doc.chain_id, hrs.step, hrs.height, hrs.round, took);
            debug!(node = %ctx.label, kind = %R::KIND, chain = %doc.chain_id, hrs = %doc.hrs,
                   micros = took.as_micros() as u64, "signed");
            req.signed(outcome).into()
        }
        Err(e) => {
            let failure = match &e {
                SignError::Refused(_) => SignFailure::Refused,
                SignError::Unavailable(_) => SignFailure::Unavailable,
                SignError::GiveWay(_) => SignFailure::GaveWay,
            };
            ctx.metrics.sign_failed(&doc.chain_id, hrs.step, failure);
            refused_sign(ctx, R::KIND, &doc, e)
        }
    }
}

async fn sign_raw(
    req: messages::SignBytesRequest,
    ctx: &SessionContext,
    signer: &Signer,
) -> Message {
    let kind = RequestKind::SignBytes;
    if !ctx.allow_sign_bytes {
        return refused(
            ctx,
            kind,
            None,
            "SignBytes is disabled for this node".into(),
        );
    }
    if sign_doc::looks_like_consensus_message(&req.value) {
        return refused(
            ctx,
            kind,
            None,
            "SignBytes refused: the bytes decode as a vote or proposal".into(),
        );
    }
    match signer.sign_raw(&req.value).await {
        Ok(signature) => messages::sign_bytes_response(signature.to_vec()),
        Err(e) => refused(ctx, kind, None, e.to_string()),
    }
}

fn refused(
    ctx: &SessionContext,
    kind: RequestKind,
    doc: Option<&SignDoc>,
    reason: String,
) -> Message {
    match doc {
        Some(doc) => {
            warn!(node = %ctx.label, %kind, chain = %doc.chain_id, hrs = %doc.hrs, "refused: {reason}")
        }
        None => warn!(node = %ctx.label, %kind, "refused: {reason}"),
    }
    refusal(kind, reason)
}

/// A refusal is answered; a signing this cosigner gave up so that another may do it is not
/// (see the module doc): the node's retry then reaches a cosigner that can sign.
fn refused_sign(ctx: &SessionContext, kind: RequestKind, doc: &SignDoc, error: SignError) -> Reply {
    match error {
        SignError::GiveWay(reason) => {
            warn!(node = %ctx.label, %kind, chain = %doc.chain_id, hrs = %doc.hrs,
                  "not signed, giving way so the node retries elsewhere: {reason}");
            Reply::GiveWay(reason)
        }
        error => refused(ctx, kind, Some(doc), error.to_string()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privval::messages::{
        message::Sum, SignBytesRequest, SignVoteRequest, SignedMsgType, Timestamp, Vote,
        WireBlockId as BlockId, WirePartSetHeader as PartSetHeader,
    };
    use crate::sign_state::ChainSignState;
    use crate::signer::single::SingleSigner;

    const CHAIN: &str = "test-chain";

    fn signer(dir: &std::path::Path) -> Signer {
        crate::sign_state::StateFile::create(dir, CHAIN, &crate::sign_state::SignState::fresh())
            .unwrap();
        let state = ChainSignState::open(dir, CHAIN).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        Signer::Single(Box::new(SingleSigner::new(
            key,
            [(CHAIN.to_string(), state)].into_iter().collect(),
        )))
    }

    fn ctx(protocol: ProtocolVersion, allow_sign_bytes: bool) -> SessionContext {
        SessionContext {
            protocol,
            allow_sign_bytes,
            label: "test".into(),
            timeouts: crate::config::Timeouts::default().node(),
            metrics: Arc::new(Metrics::empty()),
        }
    }

    fn vote(kind: SignedMsgType, nil: bool, extension: &[u8]) -> Vote {
        Vote {
            r#type: kind as i32,
            height: 5,
            round: 0,
            block_id: (!nil).then(|| BlockId {
                hash: vec![1; 32],
                part_set_header: Some(PartSetHeader {
                    total: 1,
                    hash: vec![2; 32],
                }),
            }),
            timestamp: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            extension: extension.to_vec(),
            ..Default::default()
        }
    }

    fn sign_vote_request(vote: Vote, skip_extension_signing: bool) -> Request {
        Request::SignVote(SignVoteRequest {
            vote: Some(vote),
            chain_id: CHAIN.into(),
            skip_extension_signing,
        })
    }

    fn signed_vote(reply: Message) -> Vote {
        match reply.sum {
            Some(Sum::SignedVoteResponse(r)) => {
                assert!(r.error.is_none(), "refused: {:?}", r.error);
                r.vote.unwrap()
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn error_of(reply: Message) -> String {
        match reply.sum {
            Some(Sum::SignedVoteResponse(r)) => r.error.map(|e| e.description),
            Some(Sum::SignBytesResponse(r)) => r.error.map(|e| e.description),
            Some(Sum::PubKeyResponse(r)) => r.error.map(|e| e.description),
            other => panic!("unexpected reply {other:?}"),
        }
        .expect("an error reply")
    }

    #[tokio::test]
    async fn extension_signatures_follow_each_protocol_version() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        // v0.38: a non-nil precommit always gets one, even for an empty extension.
        let v = signed_vote(
            answer(
                sign_vote_request(vote(SignedMsgType::Precommit, false, b""), false),
                &ctx(ProtocolVersion::V0_38, false),
                &signer,
            )
            .await,
        );
        assert_eq!(v.extension_signature.len(), 64);
        // v0.34: never (a replay of the same vote, so the stored signature comes back).
        let v = signed_vote(
            answer(
                sign_vote_request(vote(SignedMsgType::Precommit, false, b""), false),
                &ctx(ProtocolVersion::V0_34, false),
                &signer,
            )
            .await,
        );
        assert!(v.extension_signature.is_empty());
        // v1: only when the node asks for it.
        let v = signed_vote(
            answer(
                sign_vote_request(vote(SignedMsgType::Precommit, false, b""), true),
                &ctx(ProtocolVersion::V1, false),
                &signer,
            )
            .await,
        );
        assert!(v.extension_signature.is_empty());
    }

    #[tokio::test]
    async fn an_extension_on_a_prevote_or_nil_precommit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        for v in [
            vote(SignedMsgType::Prevote, false, b"ext"),
            vote(SignedMsgType::Precommit, true, b"ext"),
        ] {
            let reply = answer(
                sign_vote_request(v, false),
                &ctx(ProtocolVersion::V0_38, false),
                &signer,
            )
            .await;
            assert!(error_of(reply).contains("extension"));
        }
        // A nil precommit without an extension is signed, without an extension signature.
        let v = signed_vote(
            answer(
                sign_vote_request(vote(SignedMsgType::Precommit, true, b""), false),
                &ctx(ProtocolVersion::V0_38, false),
                &signer,
            )
            .await,
        );
        assert!(v.extension_signature.is_empty() && v.signature.len() == 64);
    }

    #[tokio::test]
    async fn sign_bytes_is_off_by_default_and_never_signs_consensus_messages() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let raw = |value: Vec<u8>| Request::SignBytes(SignBytesRequest { value });
        let off = answer(
            raw(b"hello".to_vec()),
            &ctx(ProtocolVersion::V1, false),
            &signer,
        )
        .await;
        assert!(error_of(off).contains("disabled"));

        let on = ctx(ProtocolVersion::V1, true);
        match answer(raw(b"hello".to_vec()), &on, &signer).await.sum {
            Some(Sum::SignBytesResponse(r)) => {
                assert!(r.error.is_none());
                let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
                let sig = ed25519_dalek::Signature::from_slice(&r.signature).unwrap();
                key.verify_strict(b"hello", &sig).unwrap();
            }
            other => panic!("unexpected reply {other:?}"),
        }
        let vote_bytes = crate::privval::sign_doc::vote_sign_doc(
            CHAIN,
            &vote(SignedMsgType::Prevote, false, b""),
        )
        .unwrap()
        .sign_bytes;
        let refused = answer(raw(vote_bytes), &on, &signer).await;
        assert!(error_of(refused).contains("decode as a vote or proposal"));
    }

    #[tokio::test]
    async fn unknown_chains_are_refused_and_pubkey_follows_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer(dir.path());
        let other = Request::PubKey(crate::privval::messages::PubKeyRequest {
            chain_id: "other-chain".into(),
        });
        let reply = answer(other, &ctx(ProtocolVersion::V0_38, false), &signer).await;
        assert!(error_of(reply).contains("other-chain"));
        for (version, v1_fields) in [(ProtocolVersion::V0_34, false), (ProtocolVersion::V1, true)] {
            let req = Request::PubKey(crate::privval::messages::PubKeyRequest {
                chain_id: CHAIN.into(),
            });
            match answer(req, &ctx(version, false), &signer).await.sum {
                Some(Sum::PubKeyResponse(r)) => {
                    assert_eq!(r.pub_key_bytes.len() == 32, v1_fields);
                    assert_eq!(r.pub_key.is_some(), !v1_fields);
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }
    }
}
