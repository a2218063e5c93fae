//! `cosigner start`: load the directory, build the signer, dial every node, run until
//! SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use cosigner::config::{Config, LoadedConfig, Mode};
use cosigner::privval::{dialer, session::SessionContext};
use cosigner::sign_state::ChainSignState;
use cosigner::signer::single::SingleSigner;
use cosigner::signer::threshold::{ThresholdSetup, ThresholdSigner};
use cosigner::signer::Signer;
use cosigner::validator_key::{self, ValidatorKey};

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    init_tracing();
    let loaded = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(loaded))
}

fn init_tracing() {
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
    let states = open_chain_states(&loaded)?;
    let signer = match &config.mode {
        Mode::Single(single) => {
            let key = ValidatorKey::load(&loaded.resolve(&single.key_file))?;
            warn!(
                "SINGLE-KEY MODE: the whole validator key is on this host. It is a single point \
                 of failure and offers no protection if this host is compromised."
            );
            Signer::Single(Box::new(SingleSigner::new(
                key.signing_key().clone(),
                states,
            )))
        }
        Mode::Threshold(th) => {
            let setup = ThresholdSetup {
                share: loaded.load_key_share(th)?,
                cluster: loaded.cluster_config(th),
                timeouts: config.timeouts.signing(),
            };
            Signer::Threshold(ThresholdSigner::start(setup, states).await?)
        }
    };
    let signer = Arc::new(signer);
    info!(
        public_key = %hex::encode(signer.public_key()),
        chains = ?config.chains.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        nodes = config.nodes.len(),
        "cosigner started"
    );
    let identity = Arc::new(identity);
    for node in &config.nodes {
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
            signer.clone(),
        ));
    }
    shutdown_signal().await;
    info!("shutting down");
    Ok(())
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
