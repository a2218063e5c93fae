//! `split-key combine`: leaving the cluster. Turns `t` or more cosigner directories of one
//! split back into the validator's `priv_validator_key.json` and, for every chain, the
//! highest of their sign states as CometBFT's `priv_validator_state.json`.
//!
//! This is the one command whose purpose is to make the key whole again, so it does so
//! only after everything that can be checked without the key has been: every directory
//! loads (config, key share, private modes), all are shares of one split (same group key,
//! same public key package, different cosigners, at least `t` of them), and every state
//! file opens, which locks it: a state file a running cosigner holds is refused, because a
//! cluster still signing would move its watermark past what is written here. Only then are
//! the shares combined into the scalar (`frost::keys::reconstruct`), which must give the
//! group key, and the seed taken out of the escrow the dealer left in the share files
//! ([`cosigner::threshold::seed_escrow`]), which must give the group key too.
//!
//! The output is built in a staged directory (0700, files 0600), re-read as CometBFT and our
//! own loader would read it, and renamed into place; any error leaves nothing behind.

mod error;
mod report;
mod watermark;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use clap::Parser;
use cosigner::config::{Config, LoadedConfig, Mode};
use cosigner::layout::{CONFIG_FILE, SINGLE_KEY_FILE as KEY_FILE};
use cosigner::sign_state::import::{cometbft_state_json, describe, import_cometbft_state};
use cosigner::sign_state::{StateError, StateFile};
use cosigner::staged_dir::{StagedDir, StagedDirError};
use cosigner::threshold::key_share::KeyShare;
use cosigner::threshold::seed_escrow::SeedEscrow;
use cosigner::validator_key::{address_of, KeyFileError, ValidatorKey};
use frost_ed25519 as frost;
use zeroize::Zeroizing;

pub use error::CombineError;
pub use report::{ChainReport, CombineReport};
pub use watermark::{highest, Highest};

/// CometBFT's name for a sign state (with several chains, each file is prefixed by its chain).
const STATE_FILE: &str = "priv_validator_state.json";

/// Command-line arguments of `split-key combine`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "split-key combine",
    bin_name = "split-key combine",
    version,
    about = "Leave the cluster: rebuild priv_validator_key.json and the highest \
             priv_validator_state.json from t cosigner directories",
    long_about = "Leave the cluster: rebuild priv_validator_key.json and the highest \
                  priv_validator_state.json from t or more cosigner directories of one split.\n\n\
                  Run it offline, with every cosigner stopped. Afterwards the validator key \
                  exists whole on this machine again."
)]
pub struct CombineArgs {
    /// Cosigner directories (or their cosigner.toml) of one split: at least the threshold.
    #[arg(value_name = "COSIGNER_DIR", required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the key and state files; must not exist.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write only the sign state, not the key: for shares without a seed escrow, when the
    /// original priv_validator_key.json was kept.
    #[arg(long)]
    pub state_only: bool,
    /// Which key, in directories with several (`[[key]]`): its name, or its validator
    /// address (hex).
    #[arg(long, value_name = "NAME|ADDRESS")]
    pub key: Option<String>,
}

/// One cosigner directory, loaded.
struct Member {
    /// As given on the command line.
    dir: PathBuf,
    config: LoadedConfig,
    share: KeyShare,
    /// The chains the chosen key signs.
    chains: Vec<String>,
}

/// What the members are shares of.
struct Split {
    public_key: [u8; 32],
    threshold: u16,
    shares: u16,
}

/// One chain's sign states, each open (and so locked) until the output is written.
struct ChainStates {
    chain: String,
    /// Member index, open file, state.
    states: Vec<(usize, StateFile, cosigner::sign_state::SignState)>,
}

/// One chain's combined watermark.
struct Combined {
    chain: String,
    /// The member each input state of [`highest`] came from.
    members: Vec<usize>,
    top: Highest,
}

/// Checks everything, rebuilds the key and writes the output directory.
pub fn run(args: &CombineArgs) -> Result<CombineReport, CombineError> {
    let (out, _) = crate::output_location(&args.out).map_err(|e| match e {
        crate::SplitError::OutputExists(p) => CombineError::OutputExists(p),
        crate::SplitError::OutputLocation { path, problem } => {
            CombineError::OutputLocation { path, problem }
        }
        other => CombineError::OutputLocation {
            path: args.out.clone(),
            problem: other.to_string(),
        },
    })?;
    let members = args
        .dirs
        .iter()
        .map(|dir| load_member(dir, args.key.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let split = one_split(&members)?;
    let held = open_states(&members, split.threshold)?;
    let verifying_key = ed25519_dalek::VerifyingKey::from_bytes(&split.public_key)
        .map_err(|_| CombineError::RebuiltMismatch)?;
    let mut combined = Vec::with_capacity(held.len());
    for chain in &held {
        let states: Vec<_> = chain.states.iter().map(|(_, _, s)| s.clone()).collect();
        let top = highest(&states, &verifying_key)
            .ok_or_else(|| CombineError::Check(format!("no state of chain `{}`", chain.chain)))?;
        combined.push(Combined {
            chain: chain.chain.clone(),
            members: chain.states.iter().map(|(i, _, _)| *i).collect(),
            top,
        });
    }
    let key = if args.state_only {
        None
    } else {
        Some(rebuild(&members, &split)?)
    };

    let file_names: Vec<String> = combined
        .iter()
        .map(|c| state_file_name(&c.chain, combined.len()))
        .collect();
    let staged = StagedDir::create(&out).map_err(|e| match e {
        StagedDirError::Exists(path) => CombineError::OutputExists(path),
        other => CombineError::OutputLocation {
            path: out.clone(),
            problem: other.to_string(),
        },
    })?;
    if let Some(key) = &key {
        staged.write_file(Path::new(KEY_FILE), key.cometbft_json().as_bytes())?;
    }
    for (c, name) in combined.iter().zip(&file_names) {
        staged.write_file(
            Path::new(name),
            cometbft_state_json(&c.top.state).as_bytes(),
        )?;
    }
    check_written(staged.path(), key.as_ref(), &split, &combined, &file_names)?;
    staged.commit()?;
    // The state files stay locked until the output is in place.
    drop(held);

    let member_id = |i: usize| members[i].share.index();
    Ok(CombineReport {
        address_hex: hex::encode_upper(address_of(&split.public_key)),
        public_key_base64: BASE64.encode(split.public_key),
        threshold: split.threshold,
        shares: split.shares,
        used: members
            .iter()
            .map(|m| (m.share.index(), m.dir.clone()))
            .collect(),
        key_file: key.as_ref().map(|_| out.join(KEY_FILE)),
        chains: combined
            .iter()
            .zip(&file_names)
            .map(|(c, name)| ChainReport {
                chain: c.chain.clone(),
                file: out.join(name),
                watermark: describe(&c.top.state)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                with_sign_bytes: c.top.signed_by.is_some(),
                from: c
                    .top
                    .at_top
                    .iter()
                    .map(|&i| member_id(c.members[i]))
                    .collect(),
            })
            .collect(),
        out,
    })
}

/// `priv_validator_state.json` for a single chain; with several, each file names its chain
/// the way tmkms names its state files.
fn state_file_name(chain: &str, chains: usize) -> String {
    if chains == 1 {
        STATE_FILE.to_string()
    } else {
        format!("{chain}_{STATE_FILE}")
    }
}

fn load_member(dir: &Path, wanted: Option<&str>) -> Result<Member, CombineError> {
    let config_path = if dir.is_dir() {
        dir.join(CONFIG_FILE)
    } else {
        dir.to_path_buf()
    };
    let config = Config::load(&config_path).map_err(|error| CombineError::Config {
        dir: dir.to_path_buf(),
        error,
    })?;
    if matches!(config.config.mode, Mode::Single(_)) {
        return Err(CombineError::NotThreshold(dir.to_path_buf()));
    }
    let keys = config
        .load_key_shares()
        .map_err(|error| CombineError::Shares {
            dir: dir.to_path_buf(),
            error,
        })?;
    let address = |share: &KeyShare| hex::encode_upper(address_of(&share.group_public_key()));
    let chosen = match wanted {
        None => (keys.len() == 1).then_some(0),
        Some(wanted) => keys.iter().position(|(key, share)| {
            key.name == Some(wanted) || address(share).eq_ignore_ascii_case(wanted)
        }),
    };
    let Some(chosen) = chosen else {
        let listing: Vec<String> = keys
            .iter()
            .map(|(key, share)| {
                let chains: Vec<&str> = key.chains.iter().map(|c| c.id.as_str()).collect();
                format!(
                    "{} (validator {}, chains {})",
                    key.name.unwrap_or("[threshold]"),
                    address(share),
                    chains.join(", ")
                )
            })
            .collect();
        return Err(CombineError::WhichKey {
            dir: dir.to_path_buf(),
            wanted: wanted.map(str::to_string),
            keys: listing.join("; "),
        });
    };
    let Some((key, share)) = keys.into_iter().nth(chosen) else {
        return Err(CombineError::Check("the chosen key vanished".into()));
    };
    let chains = key.chains.iter().map(|c| c.id.clone()).collect();
    Ok(Member {
        dir: dir.to_path_buf(),
        share,
        chains,
        config,
    })
}

/// Checks that the members are at least `t` different cosigners of one split.
fn one_split(members: &[Member]) -> Result<Split, CombineError> {
    let first = members
        .first()
        .ok_or_else(|| CombineError::Check("no cosigner directory given".into()))?;
    let address = |m: &Member| hex::encode_upper(address_of(&m.share.group_public_key()));
    for (i, m) in members.iter().enumerate() {
        if m.share.group_public_key() != first.share.group_public_key() {
            return Err(CombineError::DifferentKeys {
                first: first.dir.clone(),
                first_address: address(first),
                other: m.dir.clone(),
                other_address: address(m),
            });
        }
        if m.share.public_key_package() != first.share.public_key_package() {
            return Err(CombineError::DifferentSplits {
                first: first.dir.clone(),
                other: m.dir.clone(),
            });
        }
        if let Some(earlier) = members[..i]
            .iter()
            .find(|e| e.share.index() == m.share.index())
        {
            return Err(CombineError::SameCosigner {
                first: earlier.dir.clone(),
                other: m.dir.clone(),
                id: m.share.index(),
                threshold: m.share.threshold(),
            });
        }
    }
    // One public key package, so one threshold and one number of shares.
    let (threshold, shares) = (first.share.threshold(), first.share.shares());
    if members.len() < usize::from(threshold) {
        let ids: Vec<String> = members
            .iter()
            .map(|m| m.share.index().to_string())
            .collect();
        return Err(CombineError::TooFew {
            given: members.len(),
            ids: ids.join(", "),
            threshold,
            shares,
        });
    }
    Ok(Split {
        public_key: first.share.group_public_key(),
        threshold,
        shares,
    })
}

/// Opens every configured chain's state file of every member, in the order chains first
/// appear. A file a running cosigner holds is refused, and so is a chain fewer than
/// `threshold` members sign: only the highest of `t` states is sure to be at or above the
/// cluster's last signature (any `t` of the cosigners that sign a chain include one that
/// took part in it).
fn open_states(members: &[Member], threshold: u16) -> Result<Vec<ChainStates>, CombineError> {
    let mut chains: Vec<ChainStates> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let state_dir = m.config.resolve(&m.config.config.state_dir);
        for chain in &m.chains {
            let (file, state) = StateFile::open(&state_dir, chain).map_err(|e| match e {
                StateError::Locked(path) => CombineError::StateInUse {
                    path,
                    dir: m.dir.clone(),
                },
                error => CombineError::State {
                    dir: m.dir.clone(),
                    error,
                },
            })?;
            match chains.iter_mut().find(|c| &c.chain == chain) {
                Some(c) => c.states.push((i, file, state)),
                None => chains.push(ChainStates {
                    chain: chain.clone(),
                    states: vec![(i, file, state)],
                }),
            }
        }
    }
    if let Some(c) = chains
        .iter()
        .find(|c| c.states.len() < usize::from(threshold))
    {
        let ids: Vec<String> = c
            .states
            .iter()
            .map(|(i, _, _)| members[*i].share.index().to_string())
            .collect();
        return Err(CombineError::ChainTooFew {
            chain: c.chain.clone(),
            have: c.states.len(),
            ids: ids.join(", "),
            threshold,
        });
    }
    Ok(chains)
}

/// The one place the key becomes whole: the shares combined into the scalar, and the seed
/// taken out of the escrow with it.
fn rebuild(members: &[Member], split: &Split) -> Result<ValidatorKey, CombineError> {
    let escrow = common_escrow(members)?;
    // `KeyPackage` wipes itself on drop.
    let key_packages: Vec<_> = members
        .iter()
        .map(|m| m.share.key_package().clone())
        .collect();
    let signing_key = frost::keys::reconstruct(&key_packages).map_err(CombineError::Reconstruct)?;
    drop(key_packages);
    let rebuilt = frost::VerifyingKey::from(&signing_key)
        .serialize()
        .map_err(CombineError::Reconstruct)?;
    if rebuilt.as_slice() != split.public_key {
        return Err(CombineError::RebuiltMismatch);
    }
    // frost hands the scalar out by value; the copy kept here is wiped on drop.
    let scalar = Zeroizing::new(signing_key.to_scalar());
    let seed = escrow
        .open(&scalar, &split.public_key)
        .map_err(CombineError::Escrow)?;
    let key = ValidatorKey::from_seed(&seed);
    if key.public_key() != split.public_key {
        return Err(CombineError::RebuiltMismatch);
    }
    Ok(key)
}

/// The escrow every member's share file holds; they must all hold the same one.
fn common_escrow(members: &[Member]) -> Result<&SeedEscrow, CombineError> {
    let first = &members[0];
    if let Some(other) = members
        .iter()
        .find(|m| m.share.seed_escrow() != first.share.seed_escrow())
    {
        return Err(CombineError::EscrowsDiffer {
            first: first.dir.clone(),
            other: other.dir.clone(),
        });
    }
    first.share.seed_escrow().ok_or(CombineError::NoEscrow)
}

/// Reads the staged output back as CometBFT and our own loaders would, and compares it with
/// what was meant to be written.
fn check_written(
    root: &Path,
    key: Option<&ValidatorKey>,
    split: &Split,
    combined: &[Combined],
    file_names: &[String],
) -> Result<(), CombineError> {
    let check = |what: String| CombineError::Check(what);
    if let Some(key) = key {
        let path = root.join(KEY_FILE);
        let loaded = ValidatorKey::load(&path).map_err(|e: KeyFileError| check(e.to_string()))?;
        if loaded.public_key() != split.public_key || *loaded.seed() != *key.seed() {
            return Err(check(format!("{KEY_FILE} does not hold the rebuilt key")));
        }
    }
    for (c, name) in combined.iter().zip(file_names) {
        let text =
            std::fs::read_to_string(root.join(name)).map_err(|e| check(format!("{name}: {e}")))?;
        let state = import_cometbft_state(&text).map_err(|e| check(format!("{name}: {e}")))?;
        if state != c.top.state {
            return Err(check(format!("{name} does not read back as written")));
        }
    }
    Ok(())
}
