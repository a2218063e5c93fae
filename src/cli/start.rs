//! `cosigner start`: load the directory (settling a refresh interrupted here first), build
//! the signer, dial every node, run until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use cosigner::ceremony::refresh::run as refresh;
use cosigner::ceremony::run::{CeremonyError, DEFAULT_TIMEOUT};
use cosigner::config::{Config, KeyShareLoadError, LoadedConfig, Mode};
use cosigner::privval::{dialer, session::SessionContext};
use cosigner::sign_state::ChainSignState;
use cosigner::signer::single::SingleSigner;
use cosigner::signer::threshold::{ThresholdSetup, ThresholdSigner};
use cosigner::signer::Signer;
use cosigner::validator_key::{self, ValidatorKey};

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut loaded = Config::load(config_path)?;
    if let Some(th) = loaded.config.threshold() {
        match loaded.check_no_pending_ceremony(th) {
            Err(KeyShareLoadError::PendingRefresh { .. }) => {
                settle_refresh(&runtime, config_path)?;
                loaded = Config::load(config_path)?;
                if let Some(th) = loaded.config.threshold() {
                    loaded.check_no_pending_ceremony(th)?;
                }
            }
            other => other?,
        }
    }
    runtime.block_on(serve(loaded))
}

/// A refresh interrupted on this host (a crash, a timeout after staging) is settled with the
/// other cosigners before anything is signed: the share this cosigner then signs with is the
/// one every member ends on.
fn settle_refresh(runtime: &tokio::runtime::Runtime, config_path: &Path) -> anyhow::Result<()> {
    warn!("a share refresh was interrupted here: settling it with the other cosigners first");
    let prepared = refresh::prepare(config_path, &[], None)?;
    if !prepared.settles() {
        // Only the second half of a switch or an abort was left; `prepare` finished it.
        return Ok(());
    }
    match runtime.block_on(refresh::run(prepared, DEFAULT_TIMEOUT)) {
        Ok(report) => {
            info!("refresh settled: {}", report.to_string().trim_end());
            Ok(())
        }
        Err(CeremonyError::RefreshDropped(why)) => {
            warn!("refresh settled by dropping the new share ({why}); the old share stays");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Opens the sign state of every configured chain. A missing, corrupt or unreadable state
/// file stops the process here, before anything is signed.
pub fn open_chain_states(loaded: &LoadedConfig) -> anyhow::Result<HashMap<String, ChainSignState>> {
    let mut states = HashMap::new();
    for chain in &loaded.config.chains {
        let state = super::state::open_chain_state(loaded, &chain.id)?
            .with_max_jump(chain.max_height_jump());
        states.insert(chain.id.clone(), state);
    }
    Ok(states)
}

async fn serve(loaded: LoadedConfig) -> anyhow::Result<()> {
    let config = &loaded.config;
    let identity = validator_key::load_identity_key(&loaded.resolve(&config.identity_key))?;
    let mut states = open_chain_states(&loaded)?;
    // The signer of every node: the one key, or the node's `[[key]]`.
    let mut node_signers: Vec<Arc<Signer>> = Vec::with_capacity(config.nodes.len());
    let mut public_keys: Vec<String> = Vec::new();
    if let Mode::Single(single) = &config.mode {
        let key = ValidatorKey::load(&loaded.resolve(&single.key_file))?;
        warn!(
            "SINGLE-KEY MODE: the whole validator key is on this host. It is a single point \
             of failure and offers no protection if this host is compromised."
        );
        let signer = Arc::new(Signer::Single(Box::new(SingleSigner::new(
            key.signing_key().clone(),
            states,
        ))));
        public_keys.push(hex::encode(signer.public_key()));
        node_signers.resize(config.nodes.len(), signer);
    } else {
        let signers = start_threshold_keys(&loaded, &mut states).await?;
        for (name, signer) in &signers {
            public_keys.push(match name {
                Some(name) => format!("{name}={}", hex::encode(signer.public_key())),
                None => hex::encode(signer.public_key()),
            });
        }
        for node in &config.nodes {
            // Validation bound every node to a key that exists (or there is only one).
            let signer = signers
                .iter()
                .find(|(name, _)| *name == node.key.as_deref())
                .map(|(_, signer)| signer.clone())
                .with_context(|| format!("node {} names no key of this config", node.address))?;
            node_signers.push(signer);
        }
    }
    info!(
        public_key = %public_keys.join(", "),
        chains = ?config.chains.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        nodes = config.nodes.len(),
        "cosigner started"
    );
    let identity = Arc::new(identity);
    for (node, signer) in config.nodes.iter().zip(node_signers) {
        let ctx = SessionContext {
            protocol: node.protocol,
            allow_sign_bytes: node.allow_sign_bytes,
            label: node.address.host_port(),
            timeouts: config.timeouts.node(),
        };
        tokio::spawn(dialer::run(
            node.address.clone(),
            ctx,
            identity.clone(),
            signer,
        ));
    }
    shutdown_signal().await;
    info!("shutting down");
    Ok(())
}

/// Starts one threshold signer per key, each with the sign states of its own chains (taken
/// out of `states`) and a cluster of its own: nothing of one key's signing is shared with
/// another's.
async fn start_threshold_keys<'a>(
    loaded: &'a LoadedConfig,
    states: &mut HashMap<String, ChainSignState>,
) -> anyhow::Result<Vec<(Option<&'a str>, Arc<Signer>)>> {
    let mut signers: Vec<(Option<&str>, Arc<Signer>)> = Vec::new();
    for (key, share) in loaded.load_key_shares()? {
        let label = key.label();
        let key_states = key
            .chains
            .iter()
            .filter_map(|c| states.remove_entry(&c.id))
            .collect();
        let setup = ThresholdSetup {
            share,
            cluster: loaded.cluster_config(key.threshold),
            timeouts: loaded.config.timeouts.signing(),
        };
        let signer = ThresholdSigner::start(setup, key_states)
            .await
            .with_context(|| label.clone())?;
        signers.push((key.name, Arc::new(Signer::Threshold(signer))));
    }
    Ok(signers)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
