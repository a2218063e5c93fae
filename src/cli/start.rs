//! `cosigner start`: load the directory ([`load`], as `check-config` does), build the
//! signers, dial every node, run until SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use cosigner::config::LoadedConfig;
use cosigner::key_forms::PublicKeyForms;
use cosigner::privval::{dialer, session::SessionContext};
use cosigner::sign_state::ChainSignState;
use cosigner::signer::single::SingleSigner;
use cosigner::signer::threshold::{ThresholdSetup, ThresholdSigner};
use cosigner::signer::Signer;

use super::load::{self, Directory, Keys, Purpose, ThresholdKey};

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let directory = load::load(config_path, Purpose::Start)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(directory))
}

async fn serve(directory: Directory) -> anyhow::Result<()> {
    for (name, public_key) in directory.public_keys() {
        // The forms `cosigner address` prints, without bech32 (no prefix is configured).
        let forms = PublicKeyForms::new(&public_key, None)?;
        info!(
            key = name.unwrap_or("-"),
            address = %forms.address_hex,
            public_key = %forms.base64,
            public_key_hex = %forms.hex,
            "validator key"
        );
    }
    let Directory {
        loaded,
        identity,
        keys,
        mut states,
        ..
    } = directory;
    let config = &loaded.config;
    // The signer of every node: the one key, or the node's `[[key]]`.
    let mut node_signers: Vec<Arc<Signer>> = Vec::with_capacity(config.nodes.len());
    match keys {
        Keys::Single(key) => {
            warn!(
                "SINGLE-KEY MODE: the whole validator key is on this host. It is a single \
                 point of failure and offers no protection if this host is compromised."
            );
            let signer = Arc::new(Signer::Single(Box::new(SingleSigner::new(
                key.signing_key().clone(),
                states,
            ))));
            node_signers.resize(config.nodes.len(), signer);
        }
        Keys::Threshold(keys) => {
            let signers = start_threshold_keys(&loaded, keys, &mut states).await?;
            for node in &config.nodes {
                // Validation bound every node to a key that exists (or there is only one).
                let signer = signers
                    .iter()
                    .find(|(name, _)| name.as_deref() == node.key.as_deref())
                    .map(|(_, signer)| signer.clone())
                    .with_context(|| {
                        format!("node {} names no key of this config", node.address)
                    })?;
                node_signers.push(signer);
            }
        }
    }
    info!(
        chains = ?config.chains.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        nodes = config.nodes.len(),
        "cosigner started"
    );
    let identity = Arc::new(identity);
    for (node, signer) in config.nodes.iter().zip(node_signers) {
        let ctx = SessionContext {
            protocol: node.protocol,
            allow_sign_bytes: node.allow_sign_bytes,
            label: node.address.label(),
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
async fn start_threshold_keys(
    loaded: &LoadedConfig,
    keys: Vec<ThresholdKey>,
    states: &mut HashMap<String, ChainSignState>,
) -> anyhow::Result<Vec<(Option<String>, Arc<Signer>)>> {
    let mut signers = Vec::new();
    for key in keys {
        let key_states = key
            .chains
            .iter()
            .filter_map(|c| states.remove_entry(c))
            .collect();
        let setup = ThresholdSetup {
            share: key.share,
            cluster: loaded.cluster_config(&key.threshold),
            timeouts: loaded.config.timeouts.signing(),
        };
        let signer = ThresholdSigner::start(setup, key_states)
            .await
            .with_context(|| key.label.clone())?;
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
