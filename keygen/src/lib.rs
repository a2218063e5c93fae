//! `split-key`: deals an existing CometBFT validator key into FROST shares and writes one
//! self-contained directory per cosigner (share, TLS identity, SecretConnection identity,
//! every chain's initial sign state, `cosigner.toml`). `split-key combine` ([`combine`])
//! goes the other way, for leaving the cluster.
//!
//! With `--dkg` or `--horcrux-pubkey` it writes the same directories without a share, for
//! the cosigners to make theirs in a key ceremony ([`layout`]).
//!
//! The validator key is only read. Every input is checked before anything is written; the
//! output is built in a temporary directory next to the destination and renamed into place
//! only once it is complete, synced and re-loaded the way a cosigner would load it, so a
//! failure leaves nothing behind.

#![forbid(unsafe_code)]
// Input decides whether these would panic; outside tests every failure is a typed error.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod layout;

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use cosigner::cluster::identity::{issue_cluster, IssueError, IssuedCluster, IssuedIdentity};
use cosigner::config::{
    ChainConfig, Config, Mode, NodeConfig, PeerConfig, ThresholdConfig, Timeouts,
};
use cosigner::host_port::split_host_port;
use cosigner::key_forms::{Bech32Error, PublicKeyForms};
use cosigner::layout::{
    CLUSTER_CA_FILE, CONFIG_FILE, IDENTITY_KEY_FILE, KEY_SHARE_FILE, STATE_DIR, TLS_CERT_FILE,
    TLS_KEY_FILE,
};
use cosigner::privval::{NodeAddress, ProtocolVersion};
use cosigner::sign_state::import::{read_state_args, write_initial_states, ImportError};
use cosigner::sign_state::{SignState, StateFile};
use cosigner::staged_dir::{StagedDir, StagedDirError};
use cosigner::threshold::key_share::{self, check_threshold, DealError, ThresholdError};
use cosigner::validator_key::{
    identity_key_file_contents, load_identity_key, KeyFileError, ValidatorKey,
};
use rand_core::{CryptoRng, RngCore};

pub use cosigner::key_forms::{valcons, valconspub};

pub mod combine;

const DEFAULT_NODE: &str = "tcp://127.0.0.1:26659";
const FIRST_DEFAULT_PORT: u16 = 7101;

/// Command-line arguments.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "split-key",
    version,
    about = "Deal an existing CometBFT validator key into FROST shares, one directory per cosigner",
    after_help = "To leave the cluster again: split-key combine COSIGNER_DIR... --out DIR \
                  (see split-key combine --help)."
)]
pub struct Args {
    /// The validator key: CometBFT priv_validator_key.json or a tmkms softsign key (base64 seed).
    #[arg(
        value_name = "KEY_FILE",
        required_unless_present_any = ["dkg", "horcrux_pubkey"]
    )]
    pub key_file: Option<PathBuf>,
    /// No key: write the directories without shares, for the cosigners to make a new key by
    /// distributed key generation (`cosigner dkg` on every host). Nobody ever holds the key.
    #[arg(long, conflicts_with_all = ["key_file", "horcrux_pubkey", "states"])]
    pub dkg: bool,
    /// No key here: write the directories without shares, for importing the Horcrux shards of
    /// the validator key PUBKEY (base64 or hex of the 32-byte key, or a Horcrux shard's
    /// `pubKey`) on each Horcrux host (`cosigner import-horcrux`). Give the cosigners in
    /// Horcrux's shard order: `--cosigner` number i gets Horcrux shard i.
    #[arg(long, value_name = "PUBKEY", conflicts_with = "key_file")]
    pub horcrux_pubkey: Option<String>,
    /// How many cosigners must take part in every signature (t > n/2).
    #[arg(long, value_name = "T")]
    pub threshold: u16,
    /// How many shares (cosigners) to deal.
    #[arg(long, value_name = "N")]
    pub shares: u16,
    /// Where to write cosigner-1/ .. cosigner-N/; must not exist.
    #[arg(long, value_name = "DIR", default_value = "./cosigners")]
    pub out: PathBuf,
    /// A chain the cluster signs for (repeat for several); at least one is required.
    #[arg(long = "chain-id", value_name = "ID")]
    pub chain_ids: Vec<String>,
    /// Each cosigner's QUIC address, in order (give it N times, or not at all for
    /// 127.0.0.1:7101..).
    #[arg(long = "cosigner", value_name = "HOST:PORT")]
    pub cosigners: Vec<String>,
    /// A node's priv_validator_laddr for every cosigner to dial (repeatable).
    #[arg(long = "node", value_name = "tcp://[NODE_ID@]HOST:PORT")]
    pub nodes: Vec<String>,
    /// Bech32 account prefix (e.g. `cosmos`) to print valconspub and valcons forms.
    #[arg(long, value_name = "PREFIX")]
    pub bech32_prefix: Option<String>,
    /// The privval protocol version of the nodes.
    #[arg(long, value_name = "VERSION", default_value = "v0.38")]
    pub protocol: ProtocolVersion,
    /// `CHAIN_ID=PATH` of the validator's last CometBFT `priv_validator_state.json` for that
    /// chain (repeatable): every cosigner starts from it, so none can sign below what the old
    /// signer signed. A chain without it starts from an empty state.
    #[arg(long = "state", value_name = "CHAIN_ID=PATH")]
    pub states: Vec<String>,
}
/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("--threshold {t} --shares {n}: {source}")]
    Threshold {
        t: u16,
        n: u16,
        source: ThresholdError,
    },
    #[error("at least one --chain-id is required: a signer must know which chains it signs for")]
    NoChainId,
    #[error("--chain-id `{0}` is not a chain ID: 1 to 50 characters of A-Z a-z 0-9 . _ -")]
    BadChainId(String),
    #[error("--chain-id `{0}` is given twice")]
    DuplicateChainId(String),
    #[error("--cosigner given {given} times; give it once per share ({n}) or not at all")]
    CosignerCount { given: usize, n: u16 },
    #[error("--cosigner `{address}`: {problem}")]
    BadCosigner { address: String, problem: String },
    #[error("--node `{address}`: {problem}")]
    BadNode { address: String, problem: String },
    #[error("--bech32-prefix `{0}`: expected lowercase letters and digits, like `cosmos`")]
    BadPrefix(String),
    #[error("--horcrux-pubkey `{0}`: expected base64 or hex of a 32-byte Ed25519 public key, or a Horcrux shard's pubKey")]
    BadPublicKey(String),
    #[error("{}: already exists; refusing to overwrite (move it away or choose another --out)", .0.display())]
    OutputExists(PathBuf),
    #[error("{}: cannot write here: {problem}", path.display())]
    OutputLocation { path: PathBuf, problem: String },
    #[error(transparent)]
    Deal(#[from] DealError),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] StagedDirError),
    #[error("--state `{arg}`: {problem}")]
    BadState { arg: String, problem: String },
    #[error("cannot seed the sign state of chain `{chain}`: {source}")]
    SeedState { chain: String, source: ImportError },
    #[error("written output failed its check: {0}")]
    Check(String),
    #[error(transparent)]
    Bech32(#[from] Bech32Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SplitError + '_ {
    move |source| SplitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One cosigner's network address as given, and where it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerAddress {
    /// `HOST:PORT` as peers dial it.
    pub address: String,
    pub host: String,
    pub port: u16,
    /// The host as an IP if it is one; otherwise the cosigner binds 0.0.0.0.
    pub listen: SocketAddr,
}

/// Where the cosigners' shares come from.
#[derive(Debug)]
pub enum Source {
    /// Deal this key now.
    Split {
        key_file: PathBuf,
        key: Box<ValidatorKey>,
    },
    /// A new key, made by the cosigners (`cosigner dkg`).
    Dkg,
    /// The key with this public key, from its Horcrux shards (`cosigner import-horcrux`).
    Horcrux { public_key: [u8; 32] },
}

/// Everything checked and ready to write; building a plan writes nothing.
#[derive(Debug)]
pub struct Plan {
    pub source: Source,
    pub threshold: u16,
    pub shares: u16,
    pub out: PathBuf,
    /// The existing directory `out` is created in.
    pub parent: PathBuf,
    pub chain_ids: Vec<String>,
    pub cosigners: Vec<CosignerAddress>,
    pub nodes: Vec<NodeAddress>,
    pub protocol: ProtocolVersion,
    pub bech32_prefix: Option<String>,
    /// Imported sign states, by chain.
    pub states: Vec<(String, SignState)>,
}

/// Checks every input and reads the key; writes nothing.
pub fn plan(args: &Args) -> Result<Plan, SplitError> {
    let (t, n) = (args.threshold, args.shares);
    check_threshold(t, n).map_err(|source| SplitError::Threshold { t, n, source })?;

    if args.chain_ids.is_empty() {
        return Err(SplitError::NoChainId);
    }
    let mut chain_ids: Vec<String> = Vec::new();
    for id in &args.chain_ids {
        if !cosigner::consensus::ChainId::is_valid(id) {
            return Err(SplitError::BadChainId(id.clone()));
        }
        if chain_ids.contains(id) {
            return Err(SplitError::DuplicateChainId(id.clone()));
        }
        chain_ids.push(id.clone());
    }

    let cosigners = cosigner_addresses(&args.cosigners, n)?;
    let states = read_state_args(&args.states, &chain_ids).map_err(|e| SplitError::BadState {
        arg: e.arg,
        problem: e.problem,
    })?;

    let given_nodes = if args.nodes.is_empty() {
        vec![DEFAULT_NODE.to_string()]
    } else {
        args.nodes.clone()
    };
    let mut nodes: Vec<NodeAddress> = Vec::new();
    let mut seen_nodes = BTreeSet::new();
    for address in given_nodes {
        let parsed = NodeAddress::parse(&address).map_err(|problem| SplitError::BadNode {
            address: address.clone(),
            problem,
        })?;
        if !seen_nodes.insert(parsed.host_port()) {
            return Err(SplitError::BadNode {
                address,
                problem: "this node is given twice".into(),
            });
        }
        nodes.push(parsed);
    }

    if let Some(prefix) = &args.bech32_prefix {
        if cosigner::key_forms::check_prefix(prefix).is_err() {
            return Err(SplitError::BadPrefix(prefix.clone()));
        }
    }

    let (out, parent) = output_location(&args.out)?;
    let source = match (&args.key_file, &args.horcrux_pubkey, args.dkg) {
        (Some(key_file), None, false) => Source::Split {
            key_file: key_file.clone(),
            key: Box::new(ValidatorKey::load_source(key_file)?.0),
        },
        (None, Some(public_key), false) => Source::Horcrux {
            public_key: layout::parse_public_key(public_key)
                .ok_or_else(|| SplitError::BadPublicKey(public_key.clone()))?,
        },
        (None, None, true) => Source::Dkg,
        // clap refuses these combinations; a library caller may not have used clap.
        _ => {
            return Err(SplitError::Check(
                "give exactly one of KEY_FILE, --dkg and --horcrux-pubkey".into(),
            ))
        }
    };
    Ok(Plan {
        source,
        threshold: t,
        shares: n,
        out,
        parent,
        chain_ids,
        cosigners,
        nodes,
        protocol: args.protocol,
        bech32_prefix: args.bech32_prefix.clone(),
        states,
    })
}

fn cosigner_addresses(given: &[String], n: u16) -> Result<Vec<CosignerAddress>, SplitError> {
    let given: Vec<String> = if given.is_empty() {
        (0..n)
            .map(|i| format!("127.0.0.1:{}", FIRST_DEFAULT_PORT + i))
            .collect()
    } else if given.len() != usize::from(n) {
        return Err(SplitError::CosignerCount {
            given: given.len(),
            n,
        });
    } else {
        given.to_vec()
    };
    let mut out: Vec<CosignerAddress> = Vec::with_capacity(given.len());
    for address in given {
        let bad = |problem: String| SplitError::BadCosigner {
            address: address.clone(),
            problem,
        };
        let (host, port) = split_host_port(&address).map_err(bad)?;
        // A hostname cannot be bound; listen on every interface and let peers dial the name.
        let ip = host
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if out
            .iter()
            .any(|c| c.host.eq_ignore_ascii_case(&host) && c.port == port)
        {
            return Err(bad("two cosigners cannot share one address".into()));
        }
        out.push(CosignerAddress {
            listen: SocketAddr::new(ip, port),
            address,
            host,
            port,
        });
    }
    Ok(out)
}

pub(crate) fn output_location(out: &Path) -> Result<(PathBuf, PathBuf), SplitError> {
    let bad = |problem: &str| SplitError::OutputLocation {
        path: out.to_path_buf(),
        problem: problem.to_string(),
    };
    if out.file_name().is_none() {
        return Err(bad("expected a path ending in a directory name"));
    }
    if fs::symlink_metadata(out).is_ok() {
        return Err(SplitError::OutputExists(out.to_path_buf()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match fs::metadata(&parent) {
        Ok(m) if m.is_dir() => Ok((out.to_path_buf(), parent)),
        Ok(_) => Err(bad(&format!("{} is not a directory", parent.display()))),
        Err(e) => Err(bad(&format!("{}: {e}", parent.display()))),
    }
}

/// What was written, for the operator.
#[derive(Debug)]
pub struct Report {
    pub key_file: PathBuf,
    pub out: PathBuf,
    pub threshold: u16,
    pub shares: u16,
    pub subsets_checked: usize,
    pub forms: PublicKeyForms,
    pub cosigners: Vec<CosignerAddress>,
    pub chain_ids: Vec<String>,
    pub nodes: Vec<NodeAddress>,
    pub protocol: ProtocolVersion,
    /// Chains whose sign state was seeded from --state, with the watermark.
    pub seeded: Vec<(String, String)>,
}

/// What `split-key` wrote.
#[derive(Debug)]
pub enum Written {
    /// A key dealt into shares.
    Split(Report),
    /// Directories for a key ceremony.
    Layout(layout::Report),
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Written::Split(r) => r.fmt(f),
            Written::Layout(r) => r.fmt(f),
        }
    }
}

/// Checks the inputs, deals the key (or prepares a ceremony) and writes the directories.
pub fn run<R: RngCore + CryptoRng>(args: &Args, rng: &mut R) -> Result<Written, SplitError> {
    let plan = plan(args)?;
    write(&plan, rng)
}

/// Writes the directories of a checked plan atomically.
pub fn write<R: RngCore + CryptoRng>(plan: &Plan, rng: &mut R) -> Result<Written, SplitError> {
    match &plan.source {
        Source::Split { key_file, key } => split(plan, key_file, key, rng).map(Written::Split),
        Source::Dkg | Source::Horcrux { .. } => layout::write(plan, rng).map(Written::Layout),
    }
}

/// Every cosigner's config, checked as a cosigner would check it.
pub(crate) fn checked_configs(
    plan: &Plan,
    cluster: &IssuedCluster,
) -> Result<Vec<Config>, SplitError> {
    let configs: Vec<Config> = (1..=plan.shares)
        .map(|id| cosigner_config(plan, id, cluster))
        .collect();
    for (config, id) in configs.iter().zip(1u16..) {
        config.validate().map_err(|(field, problem)| {
            SplitError::Check(format!("cosigner-{id} config: {field}: {problem}"))
        })?;
    }
    Ok(configs)
}

/// Starts the output directory: built next to the destination and renamed into place;
/// dropping it on any early return removes everything it holds.
pub(crate) fn stage_output(plan: &Plan) -> Result<StagedDir, SplitError> {
    StagedDir::create(&plan.out).map_err(|e| match e {
        StagedDirError::Exists(path) => SplitError::OutputExists(path),
        other => SplitError::OutputLocation {
            path: plan.out.clone(),
            problem: other.to_string(),
        },
    })
}

/// Writes what every cosigner directory has whatever its share's origin: its TLS identity,
/// the cluster CA, a fresh SecretConnection identity and `cosigner.toml`.
pub(crate) fn write_identity<R: RngCore + CryptoRng>(
    staged: &StagedDir,
    dir: &Path,
    identity: &IssuedIdentity,
    cluster: &IssuedCluster,
    config_text: &str,
    rng: &mut R,
) -> Result<(), SplitError> {
    staged.write_file(&dir.join(TLS_CERT_FILE), identity.cert_pem.as_bytes())?;
    staged.write_file(&dir.join(TLS_KEY_FILE), identity.key_pem.as_bytes())?;
    staged.write_file(&dir.join(CLUSTER_CA_FILE), cluster.ca_cert_pem.as_bytes())?;
    let session_key = ed25519_dalek::SigningKey::generate(rng);
    staged.write_file(
        &dir.join(IDENTITY_KEY_FILE),
        identity_key_file_contents(&session_key).as_bytes(),
    )?;
    staged.write_file(&dir.join(CONFIG_FILE), config_text.as_bytes())?;
    Ok(())
}

/// Deals `key` and writes the directories atomically.
fn split<R: RngCore + CryptoRng>(
    plan: &Plan,
    key_file: &Path,
    key: &ValidatorKey,
    rng: &mut R,
) -> Result<Report, SplitError> {
    let (t, n) = (plan.threshold, plan.shares);
    let dealt = key_share::deal(key, t, n, rng)?;
    let address_hex = key.address_hex();
    let cluster = issue_cluster(n, &format!("validator {address_hex}"))?;
    let forms = PublicKeyForms::new(&key.public_key(), plan.bech32_prefix.as_deref())?;
    let configs = checked_configs(plan, &cluster)?;
    let staged = stage_output(plan)?;
    for ((identity, file), config) in cluster
        .identities
        .iter()
        .zip(dealt.share_files())
        .zip(&configs)
    {
        let dir = PathBuf::from(format!("cosigner-{}", identity.id));
        staged.create_dir(&dir.join(STATE_DIR))?;
        write_initial_states(
            &staged.path().join(&dir).join(STATE_DIR),
            &plan.chain_ids,
            &plan.states,
        )
        .map_err(|e| SplitError::SeedState {
            chain: e.chain,
            source: e.error,
        })?;
        let share_json = file
            .to_json()
            .map_err(|e| SplitError::Check(format!("cannot encode share {}: {e}", file.id)))?;
        staged.write_file(&dir.join(KEY_SHARE_FILE), share_json.as_bytes())?;
        let header = config_header(
            identity.id,
            &format!(
                "share {} of a {t}-of-{n} FROST split of validator {address_hex}",
                identity.id
            ),
        );
        let text = format!("{header}{}", config.to_toml());
        write_identity(&staged, &dir, identity, &cluster, &text, rng)?;
    }
    check_written(staged.path(), plan, key, &dealt)?;
    staged.commit()?;

    Ok(Report {
        key_file: key_file.to_path_buf(),
        out: plan.out.clone(),
        threshold: t,
        shares: n,
        subsets_checked: dealt.subsets_checked(),
        forms,
        cosigners: plan.cosigners.clone(),
        chain_ids: plan.chain_ids.clone(),
        nodes: plan.nodes.clone(),
        protocol: plan.protocol,
        seeded: plan
            .states
            .iter()
            .map(|(chain, state)| (chain.clone(), cosigner::sign_state::import::describe(state)))
            .collect(),
    })
}

fn cosigner_config(
    plan: &Plan,
    id: u16,
    cluster: &cosigner::cluster::identity::IssuedCluster,
) -> Config {
    let me = &plan.cosigners[usize::from(id - 1)];
    let peers = cluster
        .identities
        .iter()
        .filter(|i| i.id != id)
        .map(|i| PeerConfig {
            id: i.id,
            address: plan.cosigners[usize::from(i.id - 1)].address.clone(),
            cert_sha256: i.cert_sha256.clone(),
        })
        .collect();
    Config {
        state_dir: STATE_DIR.into(),
        identity_key: IDENTITY_KEY_FILE.into(),
        chains: plan
            .chain_ids
            .iter()
            .map(|id| ChainConfig {
                id: id.clone(),
                max_height_jump: None,
                key: None,
            })
            .collect(),
        nodes: plan
            .nodes
            .iter()
            .map(|address| NodeConfig {
                address: address.clone(),
                protocol: plan.protocol,
                allow_sign_bytes: false,
                key: None,
            })
            .collect(),
        mode: Mode::Threshold(ThresholdConfig {
            id,
            threshold: plan.threshold,
            listen: me.listen,
            key_share: KEY_SHARE_FILE.into(),
            tls_cert: TLS_CERT_FILE.into(),
            tls_key: TLS_KEY_FILE.into(),
            cluster_ca: CLUSTER_CA_FILE.into(),
            peers,
            allowed_sources: Vec::new(),
        }),
        timeouts: Timeouts::default(),
    }
}

/// The comment at the top of a `cosigner.toml`; `what` says whose share it is.
pub(crate) fn config_header(id: u16, what: &str) -> String {
    format!(
        "# cosigner-{id}: {what},\n\
         # written by split-key. Paths are relative to this file's directory.\n\
         #\n\
         # Each chain's sign state is in state/<chain-id>.state, written with this directory.\n\
         # A missing state file stops the start: it means lost history, and starting empty\n\
         # could sign twice.\n\n"
    )
}

/// Re-loads every written directory the way a cosigner does and checks it against the plan.
fn check_written(
    root: &Path,
    plan: &Plan,
    key: &ValidatorKey,
    dealt: &key_share::DealtShares,
) -> Result<(), SplitError> {
    let check = |what: String| SplitError::Check(what);
    for id in 1..=plan.shares {
        let dir = root.join(format!("cosigner-{id}"));
        let loaded = Config::load(&dir.join(CONFIG_FILE)).map_err(|e| check(e.to_string()))?;
        let threshold = loaded
            .config
            .threshold()
            .ok_or_else(|| check(format!("cosigner-{id}: no [threshold]")))?;
        let share = loaded
            .load_key_share(threshold)
            .map_err(|e| check(e.to_string()))?;
        if share.index() != id
            || threshold.id != id
            || share.threshold() != plan.threshold
            || share.group_public_key() != key.public_key()
            || share.public_key_package() != dealt.public_key_package()
            || share.seed_escrow().is_none()
            || share.seed_escrow()
                != dealt.share_files()[usize::from(id - 1)]
                    .seed_escrow
                    .as_ref()
        {
            return Err(check(format!(
                "cosigner-{id}: share does not match what was dealt"
            )));
        }
        check_identity_and_states(&loaded, threshold, plan, id, &plan.chain_ids)?;
    }
    Ok(())
}

/// Checks a written directory's identity files, and the sign state of `chains` against the
/// plan's (seeded, or empty).
pub(crate) fn check_identity_and_states(
    loaded: &cosigner::config::LoadedConfig,
    threshold: &ThresholdConfig,
    plan: &Plan,
    id: u16,
    chains: &[String],
) -> Result<(), SplitError> {
    let check = |what: String| SplitError::Check(what);
    load_identity_key(&loaded.resolve(&loaded.config.identity_key))
        .map_err(|e| check(e.to_string()))?;
    for path in [
        &threshold.tls_cert,
        &threshold.tls_key,
        &threshold.cluster_ca,
    ] {
        let path = loaded.resolve(path);
        let len = fs::metadata(&path).map_err(io_err(&path))?.len();
        if len == 0 {
            return Err(check(format!("{} is empty", path.display())));
        }
    }
    let state_dir = loaded.resolve(&loaded.config.state_dir);
    for chain in chains {
        let expected = plan
            .states
            .iter()
            .find(|(c, _)| c == chain)
            .map_or_else(SignState::fresh, |(_, s)| s.clone());
        let (_, state) =
            StateFile::open(&state_dir, chain).map_err(|e| check(format!("cosigner-{id}: {e}")))?;
        if state != expected {
            return Err(check(format!(
                "cosigner-{id}: the sign state of `{chain}` differs from what was written"
            )));
        }
    }
    Ok(())
}

fn subsets_phrase(r: &Report) -> String {
    let total = key_share::binomial(r.shares, r.threshold);
    if total == r.subsets_checked as u128 {
        format!(
            "all {} groups of {} shares were checked by signing",
            r.subsets_checked, r.threshold
        )
    } else {
        format!(
            "{} of the {} groups of {} shares were checked by signing",
            r.subsets_checked, total, r.threshold
        )
    }
}

/// Chains, nodes, where each directory goes and which ports to open: printed alike for a
/// split and for a ceremony's directories.
pub(crate) fn write_deployment(
    f: &mut fmt::Formatter<'_>,
    out: &Path,
    chain_ids: &[String],
    nodes: &[NodeAddress],
    protocol: ProtocolVersion,
    cosigners: &[CosignerAddress],
) -> fmt::Result {
    let out = out.display();
    writeln!(f, "chains:              {}", chain_ids.join(", "))?;
    writeln!(
        f,
        "nodes (dialled by every cosigner, protocol {}): {}",
        protocol.name(),
        nodes
            .iter()
            .map(NodeAddress::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(f)?;
    writeln!(
        f,
        "Copy each directory to its host, keeping its permissions:"
    )?;
    for (i, c) in cosigners.iter().enumerate() {
        writeln!(
            f,
            "  {out}/cosigner-{} -> the host at {} (listens on {})",
            i + 1,
            c.address,
            c.listen
        )?;
    }
    writeln!(f)?;
    writeln!(
        f,
        "Open these UDP ports (QUIC) to the other cosigners, and nothing else to them:"
    )?;
    for (i, c) in cosigners.iter().enumerate() {
        let others: Vec<&str> = cosigners
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| o.host.as_str())
            .collect();
        writeln!(
            f,
            "  cosigner-{}: UDP {} from {}",
            i + 1,
            c.port,
            others.join(", ")
        )?;
    }
    writeln!(f)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Split {} into {} shares; any {} can sign ({}).",
            self.key_file.display(),
            self.shares,
            self.threshold,
            subsets_phrase(self)
        )?;
        writeln!(f)?;
        write!(f, "{}", self.forms)?;
        write_deployment(
            f,
            &self.out,
            &self.chain_ids,
            &self.nodes,
            self.protocol,
            &self.cosigners,
        )?;
        writeln!(
            f,
            "Next: remove {} from the validator host (any host holding it can sign alone and \
             double-sign); keep one offline backup only.",
            self.key_file.display()
        )?;
        for (chain, watermark) in &self.seeded {
            writeln!(
                f,
                "Sign state of `{chain}` seeded on every cosigner: {watermark}."
            )?;
        }
        let unseeded: Vec<&String> = self
            .chain_ids
            .iter()
            .filter(|c| !self.seeded.iter().any(|(s, _)| s == *c))
            .collect();
        if !unseeded.is_empty() {
            writeln!(
                f,
                "Chains {unseeded:?} start with empty sign state (written to every cosigner's \
                 state/): if the validator has signed on them, stop the old signer and seed it \
                 (--state CHAIN_ID=priv_validator_state.json, or `cosigner state import` on every \
                 host) before starting the cluster."
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_ips_and_on_all_interfaces_for_names() {
        let c = cosigner_addresses(
            &[
                "10.0.0.1:7101".into(),
                "signer-b.example:7102".into(),
                "[::1]:7103".into(),
            ],
            3,
        )
        .unwrap();
        assert_eq!(c[0].listen, "10.0.0.1:7101".parse().unwrap());
        assert_eq!(c[1].listen, "0.0.0.0:7102".parse().unwrap());
        assert_eq!(c[2].listen, "[::1]:7103".parse().unwrap());
        assert_eq!(
            cosigner_addresses(&[], 2).unwrap()[1].address,
            "127.0.0.1:7102"
        );
        assert!(matches!(
            cosigner_addresses(&["a:1".into(), "A:1".into()], 2),
            Err(SplitError::BadCosigner { .. })
        ));
    }
}
