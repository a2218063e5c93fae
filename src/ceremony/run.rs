//! The network edge of a ceremony: checks the directory, binds the cluster transport with
//! the cosigner's own identity, answers peers from the [`Machine`], asks each peer for what
//! the machine needs (retrying "not yet" and unreachable peers), stages and publishes the
//! share, and keeps one deadline for all of it.
//!
//! Every wait is bounded: each request by [`REQUEST_TIMEOUT`](super::drive::REQUEST_TIMEOUT), the ceremony by the caller's
//! timeout, the time spent answering peers afterwards by [`LINGER_AFTER_SUCCESS`] or
//! [`LINGER_AFTER_FAILURE`]. Memory is bounded by the cluster size: one request in flight
//! per peer, and the machine holds one value per peer and step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_core::OsRng;
use tokio::time::{sleep, Instant};
use tracing::{info, warn};

use super::abort::Abort;
pub(crate) use super::drive::{drive, take_into_machine, waiting_lines, Hooks, TICK};
use super::file::{session_id, CeremonyFile, CeremonyKind, SessionId, CEREMONY_FILE};
use super::machine::{KeySource, Machine, Setup};
use super::messages::Ask;
use super::output::{self, Report, StatePlan};
use crate::cluster::tls::TlsIdentity;
use crate::cluster::{Cluster, ClusterConfig, ClusterError, PeerId};
use crate::config::LoadedConfig;
use crate::key_forms::PublicKeyForms;
use crate::staged_dir::StagedFile;
use crate::threshold::messages::{ClusterRequest, ClusterResponse, Refusal, RefusalKind};

/// The default deadline of a whole ceremony: every host must be started within it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// After publishing: how long we keep answering peers that have not fetched our
/// confirmation (they publish only once they have every cosigner's).
pub const LINGER_AFTER_SUCCESS: Duration = Duration::from_secs(30);
/// After a failure: how long we keep telling peers why, so they stop at once.
pub const LINGER_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// What a signing cosigner answers a ceremony request.
pub fn refuse_while_signing() -> Refusal {
    Refusal::new(
        RefusalKind::BadRequest,
        "this cosigner is signing (`cosigner start`), not running a key ceremony: stop it first",
    )
}

/// What a cosigner in a ceremony answers a signing request.
pub(crate) fn refuse_while_in_ceremony(command: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Internal,
        format!("this cosigner is running a key ceremony (`{command}`), not signing"),
    )
}

/// Why a ceremony did not complete on this host.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// The directory or config cannot run the ceremony; says what and what to do.
    #[error("{0}")]
    Setup(String),
    /// The cluster transport failed to start or stopped.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The ceremony stopped on a misbehaving or refusing cosigner, or a local failure.
    #[error("`{command}` stopped: {abort}. Nothing was written on this host.")]
    Aborted {
        /// The ceremony command, as the operator typed it.
        command: &'static str,
        /// Why it stopped, and who is to blame.
        abort: Abort,
    },
    /// Not every cosigner answered within `--timeout`.
    #[error(
        "`{command}` timed out after {}s, still waiting for:\n{}\nNothing was written on this \
         host. Run `{command}` again on every host, all of them started within the timeout \
         (--timeout) of each other.",
        after.as_secs(),
        waiting.iter().map(|w| format!("  - {w}")).collect::<Vec<_>>().join("\n")
    )]
    TimedOut {
        /// The ceremony command, as the operator typed it.
        command: &'static str,
        /// How long it waited.
        after: Duration,
        /// One line per cosigner that was waited for, naming it.
        waiting: Vec<String>,
    },
    /// The cluster verified the key but this host's share could not be written.
    #[error(
        "`cosigner refresh` dropped the new share: {0}. The old share stays in use on every \
         cosigner; run `cosigner refresh` again on every host to refresh"
    )]
    RefreshDropped(String),
    #[error(
        "`cosigner refresh` staged the new share ({}) but could not settle with the other \
         cosigners within {}s, still waiting for:\n{}\nBoth shares stay on this host and it \
         does not start until settled: run `cosigner refresh --config FILE` again here (and \
         on the hosts named) once they are reachable; the cosigners then switch together or \
         keep the old share together",
        staged.display(),
        after.as_secs(),
        waiting.iter().map(|w| format!("  - {w}")).collect::<Vec<_>>().join("\n")
    )]
    /// A refresh whose outcome the members could not settle in time; the staged share stays.
    Unsettled {
        /// How long it waited.
        after: Duration,
        /// The members it waits for, one line each.
        waiting: Vec<String>,
        /// The staged share, left in place.
        staged: PathBuf,
    },
    #[error(
        "every cosigner verified the new key, but this host could not write its share: {0}. \
         The others have theirs; this cosigner's share is lost and must be recovered (repair) \
         before it can sign"
    )]
    /// Every cosigner verified the new key but this host could not write its share.
    Publish(String),
}

/// A checked cosigner directory, ready for its ceremony.
pub struct Prepared {
    /// Which ceremony the directory is made for.
    pub kind: CeremonyKind,
    /// The directory's `ceremony.json`.
    pub file: CeremonyFile,
    /// This cosigner's identifier.
    pub me: PeerId,
    /// The ceremony's identity; peers in another ceremony are refused.
    pub session: SessionId,
    /// Where the share will be written.
    pub key_share: PathBuf,
    /// Where the sign states live (an import writes the chains' watermarks there).
    pub state_dir: PathBuf,
    /// The transport settings for the ceremony's cluster.
    pub cluster: ClusterConfig,
    /// Every peer's `HOST:PORT`, for messages that name them.
    pub addresses: BTreeMap<PeerId, String>,
    /// The config file, for messages that name it.
    pub config_path: PathBuf,
}

/// Checks that `loaded` is a directory waiting for a `kind` ceremony, and derives the
/// session. Writes nothing (but removes a staged share a killed ceremony left behind).
pub fn prepare(loaded: &LoadedConfig, kind: CeremonyKind) -> Result<Prepared, CeremonyError> {
    let setup = |m: String| CeremonyError::Setup(m);
    let config_path = loaded.path.clone();
    let th = loaded.config.threshold().ok_or_else(|| {
        setup(format!(
            "{}: a key ceremony needs a threshold cosigner ([threshold]), not a single-key \
             signer",
            config_path.display()
        ))
    })?;
    let ceremony_path = loaded.resolve(std::path::Path::new(CEREMONY_FILE));
    let file = CeremonyFile::load(&ceremony_path).map_err(|e| {
        setup(format!(
            "{e}. A directory for a key ceremony comes from `split-key --dkg` (a new key) or \
             `split-key --horcrux-pubkey` (a Horcrux import)"
        ))
    })?;
    if file.kind != kind {
        return Err(setup(format!(
            "{}: this directory is for `{}`, not `{}`",
            ceremony_path.display(),
            file.kind.command(),
            kind.command()
        )));
    }
    let shares = u16::try_from(th.peers.len() + 1).unwrap_or(u16::MAX);
    if th.threshold != file.threshold || shares != file.shares {
        return Err(setup(format!(
            "{}: the config says {}-of-{}, but {} says {}-of-{}",
            config_path.display(),
            th.threshold,
            shares,
            ceremony_path.display(),
            file.threshold,
            file.shares
        )));
    }
    let key_share = loaded.resolve(&th.key_share);
    output::prepare_share_path(&key_share, kind).map_err(setup)?;
    let cluster = loaded.cluster_config(th);
    let pins = member_pins(&cluster, th.id).map_err(setup)?;
    let session =
        session_id(&file, &pins).map_err(|e| setup(format!("{}: {e}", config_path.display())))?;
    Ok(Prepared {
        kind,
        me: th.id,
        session,
        key_share,
        state_dir: loaded.resolve(&loaded.config.state_dir),
        addresses: th.peers.iter().map(|p| (p.id, p.address.clone())).collect(),
        cluster,
        config_path,
        file,
    })
}

/// The pinned certificate of every member of `cluster`, ourselves (`own_id`, from our own
/// identity) included: what a ceremony's session id is made of.
pub(crate) fn member_pins(
    cluster: &ClusterConfig,
    own_id: PeerId,
) -> Result<BTreeMap<PeerId, String>, String> {
    let identity = TlsIdentity::load(&cluster.tls).map_err(|e| e.to_string())?;
    let own_pin = identity
        .fingerprint()
        .ok_or_else(|| format!("{}: no certificate found", cluster.tls.cert.display()))?;
    let mut pins: BTreeMap<PeerId, String> = cluster
        .peers
        .iter()
        .map(|p| (p.id, p.cert_sha256.clone()))
        .collect();
    pins.insert(own_id, own_pin);
    Ok(pins)
}

pub(crate) fn lock(machine: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    // The machine is plain data changed in small steps; a panic elsewhere leaves it usable.
    machine.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the ceremony: all of it within `timeout`. On success the share (and any states) are
/// published and the report says what to do next.
pub async fn run(
    prepared: Prepared,
    source: KeySource,
    states: Vec<StatePlan>,
    timeout: Duration,
) -> Result<Report, CeremonyError> {
    let command = prepared.kind.command();
    let me = prepared.me;
    let (threshold, shares) = (prepared.file.threshold, prepared.file.shares);
    let deadline = Instant::now() + timeout;
    let setup = Setup {
        me,
        threshold,
        members: (1..=shares).collect(),
        session: prepared.session,
        source,
    };
    let machine = Machine::new(setup, &mut OsRng)
        .map_err(|abort| CeremonyError::Aborted { command, abort })?;
    let machine = Arc::new(Mutex::new(machine));
    let cluster = Arc::new(Cluster::bind(prepared.cluster.clone()).await?);
    let served = machine.clone();
    let kind = prepared.kind;
    cluster.serve(move |peer, request: ClusterRequest| {
        let machine = served.clone();
        async move {
            match request {
                ClusterRequest::Ceremony(r) => {
                    ClusterResponse::Ceremony(lock(&machine).answer(peer, &r))
                }
                _ => ClusterResponse::Refused(refuse_while_in_ceremony(kind.command())),
            }
        }
    });
    info!(
        cosigner = me,
        threshold, shares, "{command}: waiting for every cosigner"
    );

    let peers = lock(&machine).peers();
    let mut hooks = CeremonyHooks {
        machine: &machine,
        key_share: &prepared.key_share,
        me,
        threshold,
        shares,
        command,
        staged: None,
    };
    let driven = drive(&cluster, prepared.session, peers, deadline, &mut hooks).await;
    let staged = hooks.staged.take();
    let timed_out = driven.timed_out;
    let tracks = driven.tracks;

    if timed_out {
        let waiting = {
            let m = lock(&machine);
            waiting_lines(
                &|peer| m.next_ask(peer),
                &m.waiting_for(),
                &tracks,
                &cluster,
                &prepared.addresses,
                command,
            )
        };
        lock(&machine).fail(Abort::local(format!(
            "cosigner {me} timed out after {}s",
            timeout.as_secs()
        )));
        drop(staged);
        linger_failed(&cluster).await;
        return Err(CeremonyError::TimedOut {
            command,
            after: timeout,
            waiting,
        });
    }
    let failed = lock(&machine).failed().cloned();
    if let Some(abort) = failed {
        warn!("{command}: stopped: {abort}");
        // The staged copy was never published; dropping it removes it.
        drop(staged);
        linger_failed(&cluster).await;
        return Err(CeremonyError::Aborted { command, abort });
    }

    let Some(staged) = staged else {
        return Err(CeremonyError::Publish("no share was staged".into()));
    };
    let state_dir = prepared.state_dir.clone();
    let published = tokio::task::spawn_blocking(move || {
        output::publish(staged, &state_dir, &states).map(|p| (p, states))
    })
    .await
    .map_err(|e| CeremonyError::Publish(e.to_string()))?;
    let (key_share, states) = match published {
        Ok(done) => done,
        Err(e) => {
            linger_until_fetched(&machine).await;
            cluster.shutdown().await;
            return Err(CeremonyError::Publish(e));
        }
    };
    info!("{command}: share published at {}", key_share.display());
    let unconfirmed = linger_until_fetched(&machine).await;
    cluster.shutdown().await;
    let group_key = lock(&machine)
        .keys()
        .map(|k| k.group_key)
        .ok_or_else(|| CeremonyError::Publish("the keys are gone".into()))?;
    let forms = PublicKeyForms::new(&group_key, prepared.file.bech32_prefix.as_deref())
        .map_err(|e| CeremonyError::Setup(e.to_string()))?;
    Ok(Report {
        kind,
        me,
        threshold,
        shares,
        key_share,
        config: prepared.config_path,
        forms,
        states,
        unconfirmed,
    })
}

/// Keeps answering until every peer has fetched our confirmation, at most
/// [`LINGER_AFTER_SUCCESS`]; returns the peers that did not.
pub(crate) async fn linger_until_fetched(machine: &Mutex<Machine>) -> Vec<PeerId> {
    let until = Instant::now() + LINGER_AFTER_SUCCESS;
    loop {
        let missing = lock(machine).unconfirmed_peers();
        if missing.is_empty() || Instant::now() >= until {
            return missing;
        }
        sleep(TICK).await;
    }
}

/// Keeps telling peers why we stopped for a moment, then closes.
pub(crate) async fn linger_failed(cluster: &Cluster) {
    sleep(LINGER_AFTER_FAILURE).await;
    cluster.shutdown().await;
}

/// A DKG's or an import's hooks: the machine says what to ask; its share is staged once
/// the test signature verified.
struct CeremonyHooks<'a> {
    machine: &'a Mutex<Machine>,
    key_share: &'a std::path::Path,
    me: PeerId,
    threshold: u16,
    shares: u16,
    command: &'static str,
    staged: Option<StagedFile>,
}

impl Hooks for CeremonyHooks<'_> {
    fn done(&mut self) -> bool {
        let mut m = lock(self.machine);
        if let Some(keys) = m.needs_staging() {
            match output::stage_share(self.key_share, self.me, self.threshold, self.shares, keys) {
                Ok(file) => {
                    self.staged = Some(file);
                    m.mark_staged();
                    info!("{}: test signature verified, share staged", self.command);
                }
                Err(abort) => m.fail(abort),
            }
        }
        m.failed().is_some() || m.complete()
    }

    fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        lock(self.machine).next_ask(peer)
    }

    fn take(&mut self, peer: PeerId, ask: Ask, response: ClusterResponse) -> Option<String> {
        take_into_machine(&mut lock(self.machine), peer, ask, response)
    }

    fn fail(&mut self, abort: Abort) {
        lock(self.machine).fail(abort);
    }
}
