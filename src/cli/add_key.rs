//! `cosigner add-key`: adds the share of another validator key to this cosigner directory,
//! from the directory `split-key` wrote for this host when it split that key.
//!
//! Run on each host, with its cosigner stopped. Everything is checked first (both configs,
//! both shares, the new key's TLS identity, the merged config, that nothing would be
//! overwritten, that no cosigner holds the state files); then the new key's files are put
//! under `keys/<name>/` (one directory, renamed into place), each new chain's state file is
//! created, and `cosigner.toml` is replaced at once as the last step. Until that replacement
//! the directory starts as before; an error before it removes what this run wrote.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use cosigner::cluster::tls::TlsIdentity;
use cosigner::config::{merge_key, Config, LoadedConfig, NamedKey};
use cosigner::layout::{
    CLUSTER_CA_FILE, CONFIG_FILE, KEYS_DIR, KEY_SHARE_FILE, TLS_CERT_FILE, TLS_KEY_FILE,
};
use cosigner::secret_file;
use cosigner::sign_state::store::state_path;
use cosigner::sign_state::{SignState, StateError, StateFile};
use cosigner::staged_dir::{replace_file, StagedDir};

/// The largest file copied (key shares and PEM files are a few KiB).
const MAX_FILE: usize = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// This cosigner's cosigner.toml, the directory the key is added to.
    #[arg(long)]
    config: PathBuf,
    /// The new key's directory for this host, as `split-key` wrote it (`cosigner-i`, or its
    /// cosigner.toml).
    #[arg(long)]
    from: PathBuf,
    /// What the new key is called in cosigner.toml (its chains and nodes name it); the same
    /// on every host. Default: key-N, N the number of keys afterwards.
    #[arg(long)]
    name: Option<String>,
    /// The name the directory's existing [threshold] key gets when it becomes a [[key]].
    #[arg(long, default_value = "key-1")]
    existing_name: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let live = Config::load(&args.config)?;
    let from = if args.from.is_dir() {
        args.from.join(CONFIG_FILE)
    } else {
        args.from.clone()
    };
    let addition = Config::load(&from).context("the key to add")?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("key-{}", live.config.threshold_keys().len() + 1));
    let merged = merge_key(&live.config, &addition.config, &name, &args.existing_name)
        .with_context(|| format!("{}: cannot add {}", live.path.display(), from.display()))?;
    let added = match &merged.mode {
        cosigner::config::Mode::Keys(keys) => keys.last().cloned(),
        _ => None,
    }
    .context("the merged config has no [[key]]")?;
    let new_chains: Vec<String> = addition
        .config
        .chains
        .iter()
        .map(|c| c.id.clone())
        .collect();

    // The shares: this directory's, and the new one, which must be another validator's and
    // of this same host.
    let shares = live.load_key_shares()?;
    let add_th = addition
        .config
        .threshold()
        .context("the key to add has no [threshold]")?;
    let share = addition.load_key_share(add_th)?;
    if let Some((key, _)) = shares
        .iter()
        .find(|(_, s)| s.group_public_key() == share.group_public_key())
    {
        anyhow::bail!(
            "{}: validator key {} is already in this directory, as {}",
            from.display(),
            hex::encode(share.group_public_key()),
            key.label()
        );
    }
    if let Some((key, _)) = shares.iter().find(|(k, _)| k.threshold.id != add_th.id) {
        anyhow::bail!(
            "{} is cosigner {} of the new key, but this directory is cosigner {} of {}: add \
             the directory split-key wrote for this host (it numbers cosigners in the order of \
             its --cosigner options)",
            from.display(),
            add_th.id,
            key.threshold.id,
            key.label()
        );
    }
    TlsIdentity::load(&addition.tls_paths(add_th)).context("the new key's cluster TLS identity")?;

    // Holding every state file of both directories: no cosigner runs on either meanwhile.
    let live_states = lock_states(&live)?;
    let added_states = lock_states(&addition)?;
    let state_dir = live.resolve(&live.config.state_dir);
    let key_dir = live.resolve(&PathBuf::from(KEYS_DIR).join(&name));
    if key_dir.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{}: already exists, and cosigner.toml has no key `{name}` (left by an add-key that \
             did not finish?): move it away and run again",
            key_dir.display()
        );
    }
    for chain in &new_chains {
        let path = state_path(&state_dir, chain)?;
        anyhow::ensure!(
            path.symlink_metadata().is_err(),
            "{}: a state file of chain `{chain}` already exists here, though cosigner.toml does \
             not name the chain: move it away if it is not in use, and run again",
            path.display()
        );
    }

    let mut written = Written {
        key_dir: key_dir.clone(),
        state_files: Vec::new(),
        done: false,
    };
    install_key_files(&addition, add_th, &key_dir)?;
    for (chain, (_, state)) in new_chains.iter().zip(&added_states) {
        StateFile::create(&state_dir, chain, state)?;
        written.state_files.push(state_path(&state_dir, chain)?);
    }
    // The directory as `start` will load it, before it is switched to.
    let check = LoadedConfig {
        path: live.path.clone(),
        config: merged.clone(),
    };
    check
        .load_key_shares()
        .context("the merged directory does not load")?;
    let identity = TlsIdentity::load(&check.tls_paths(&added.threshold))
        .context("the copied cluster TLS identity")?;
    drop(identity);
    replace_file(&live.path, merged.to_toml().as_bytes())?;
    written.done = true;
    drop((live_states, added_states));
    print_summary(&live, &from, &added, &new_chains, &merged);
    Ok(())
}

/// What this run wrote before the config switched to it; removed if the run fails.
struct Written {
    key_dir: PathBuf,
    state_files: Vec<PathBuf>,
    done: bool,
}

impl Drop for Written {
    fn drop(&mut self) {
        if !self.done {
            for path in &self.state_files {
                let _ = std::fs::remove_file(path);
            }
            let _ = std::fs::remove_dir_all(&self.key_dir);
        }
    }
}

/// Opens every chain's state file of a directory: the lock a running cosigner holds makes
/// this fail, naming the file.
fn lock_states(loaded: &LoadedConfig) -> anyhow::Result<Vec<(StateFile, SignState)>> {
    let state_dir = loaded.resolve(&loaded.config.state_dir);
    loaded
        .config
        .chains
        .iter()
        .map(|chain| {
            StateFile::open(&state_dir, &chain.id).map_err(|e| match e {
                StateError::Locked(path) => anyhow::anyhow!(
                    "{}: in use by another process: stop the cosigner of {} first",
                    path.display(),
                    loaded.path.display()
                ),
                other => anyhow::Error::new(other),
            })
        })
        .collect()
}

/// Copies the new key's share and TLS files to `key_dir` (`keys/<name>/`), all at once.
fn install_key_files(
    addition: &LoadedConfig,
    th: &cosigner::config::ThresholdConfig,
    key_dir: &Path,
) -> anyhow::Result<()> {
    if let Some(keys) = key_dir.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(keys)
            .with_context(|| format!("{}: cannot create", keys.display()))?;
    }
    let staged = StagedDir::create(key_dir)?;
    let ca = th
        .cluster_ca
        .as_ref()
        .map(|ca| (ca, CLUSTER_CA_FILE, false));
    for (from, to, secret) in [
        (&th.key_share, KEY_SHARE_FILE, true),
        (&th.tls_cert, TLS_CERT_FILE, false),
        (&th.tls_key, TLS_KEY_FILE, true),
    ]
    .into_iter()
    .chain(ca)
    {
        let path = addition.resolve(from);
        let bytes = if secret {
            secret_file::read_private(&path, MAX_FILE)
        } else {
            secret_file::read_any_mode(&path, MAX_FILE)
        }
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        staged.write_file(Path::new(to), &bytes)?;
    }
    staged.commit()?;
    Ok(())
}

fn print_summary(
    live: &LoadedConfig,
    from: &Path,
    added: &NamedKey,
    chains: &[String],
    merged: &Config,
) {
    println!(
        "Added key `{}` (cosigner {} of a {}-of-{} cluster listening on {}) to {}, signing {}.",
        added.name,
        added.threshold.id,
        added.threshold.threshold,
        added.threshold.peers.len() + 1,
        added.threshold.listen,
        live.path.display(),
        chains.join(", ")
    );
    for key in merged.threshold_keys() {
        let chains: Vec<&str> = key.chains.iter().map(|c| c.id.as_str()).collect();
        let nodes: Vec<String> = key.nodes.iter().map(|n| n.address.to_string()).collect();
        println!(
            "  {}: chains {}; nodes {}",
            key.label(),
            chains.join(", "),
            if nodes.is_empty() {
                "none".to_string()
            } else {
                nodes.join(", ")
            }
        );
    }
    println!("The new key's node identity and timeouts were not used: this directory's are kept.");
    println!(
        "Next: `cosigner check-config --config {}`, then start the cosigner. Delete {} (it \
         holds a key share) once every host has its key.",
        cosigner::shell::quote(&live.path),
        cosigner::shell::quote(from.parent().unwrap_or(from))
    );
}
