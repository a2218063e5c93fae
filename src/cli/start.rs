//! `cosigner start`: load the directory ([`load`], as `check-config` does; a refresh
//! interrupted here is settled first), build the signers, dial every node, run until
//! SIGINT/SIGTERM.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use cosigner::ceremony::refresh::run as refresh;
use cosigner::ceremony::run::{CeremonyError, DEFAULT_TIMEOUT};
use cosigner::config::{Config, KeyShareLoadError, LoadedConfig};
use cosigner::key_forms::PublicKeyForms;
use cosigner::layout::ADMIN_SOCKET;
use cosigner::metrics::{self, Layout, Metrics};
use cosigner::privval::{dialer, session::SessionContext};
use cosigner::sign_state::ChainSignState;
use cosigner::signer::single::SingleSigner;
use cosigner::signer::threshold::{ThresholdSetup, ThresholdSigner};
use cosigner::signer::Signer;
use cosigner::status::{socket, Monitor, MonitoredKey};

use super::load::{self, Directory, Keys, Purpose, ThresholdKey};

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let directory = match load::load(config_path, Purpose::Start) {
        Err(e)
            if matches!(
                e.downcast_ref::<KeyShareLoadError>(),
                Some(KeyShareLoadError::PendingRefresh { .. })
            ) =>
        {
            settle_refresh(&runtime(None)?, config_path)?;
            load::load(config_path, Purpose::Start)?
        }
        other => other?,
    };
    let workers = match directory.keys {
        Keys::Threshold(_) => Some(THRESHOLD_WORKERS),
        // The single key writes its watermark on the async worker: a second one keeps
        // serving other nodes meanwhile.
        Keys::Single(_) => None,
    };
    runtime(workers)?.block_on(serve(directory))
}

/// Async worker threads of a threshold cosigner. Everything that computes or writes for
/// long runs on blocking threads (shares, group commitments, watermark writes) or the
/// background thread; the workers only move messages, and with two of them almost every
/// message woke the other one (a futex wake and a context switch each). One worker took 40-55 %
/// of the futex calls and about a fifth of the context switches out of a 2-of-3 signing
/// (docs/benchmarks.md). `TOKIO_WORKER_THREADS` overrides it.
const THRESHOLD_WORKERS: usize = 1;

/// The async runtime: `workers` threads unless `TOKIO_WORKER_THREADS` says otherwise, or
/// tokio's default (one per core) for `None`.
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        // Set explicitly, the count would hide the variable tokio reads itself.
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            builder.worker_threads(workers);
        }
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A refresh interrupted on this host (a crash, a timeout after staging) is settled with the
/// other cosigners before anything is signed: the share this cosigner then signs with is the
/// one every member ends on.
fn settle_refresh(runtime: &tokio::runtime::Runtime, config_path: &Path) -> anyhow::Result<()> {
    warn!("a share refresh was interrupted here: settling it with the other cosigners first");
    let prepared = refresh::prepare(config_path, &[], None, None)?;
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

/// The handles every series needs, made before anything can sign: each configured chain,
/// each key with its peers (in [`Config::threshold_keys`] order), each node.
fn metrics_layout<'a>(config: &'a Config, node_labels: &[String]) -> Layout<'a> {
    let mut keys: Vec<(Option<&str>, Vec<u16>)> = config
        .threshold_keys()
        .iter()
        .map(|key| (key.name, key.threshold.peers.iter().map(|p| p.id).collect()))
        .collect();
    if keys.is_empty() {
        keys.push((None, Vec::new()));
    }
    Layout {
        chains: config.chains.iter().map(|c| c.id.as_str()).collect(),
        keys,
        nodes: node_labels.to_vec(),
    }
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
    // Bound before anything is signed: a port already taken stops the start.
    let metrics_listener = match &config.metrics {
        Some(m) => Some(metrics::http::bind(m.listen).await?),
        None => None,
    };
    let node_labels: Vec<String> = config.nodes.iter().map(|n| n.address.label()).collect();
    let metrics = Arc::new(Metrics::new(&metrics_layout(config, &node_labels)));
    // The signer of every node: the one key, or the node's `[[key]]`.
    let mut node_signers: Vec<Arc<Signer>> = Vec::with_capacity(config.nodes.len());
    let mut monitored: Vec<MonitoredKey> = Vec::new();
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
            node_signers.resize(config.nodes.len(), signer.clone());
            monitored.push(MonitoredKey {
                name: None,
                signer,
                peers: Vec::new(),
            });
        }
        Keys::Threshold(keys) => {
            monitored = start_threshold_keys(&loaded, keys, &mut states, &metrics).await?;
            for node in &config.nodes {
                // Validation bound every node to a key that exists (or there is only one).
                let signer = monitored
                    .iter()
                    .find(|key| key.name.as_deref() == node.key.as_deref())
                    .map(|key| key.signer.clone())
                    .with_context(|| {
                        format!("node {} names no key of this config", node.address)
                    })?;
                node_signers.push(signer);
            }
        }
    }
    let monitor = Arc::new(Monitor {
        metrics: metrics.clone(),
        keys: monitored,
        nodes: node_labels.clone(),
    });
    let _admin_socket = serve_admin_socket(&loaded, &monitor);
    if let Some(listener) = metrics_listener {
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        info!("serving Prometheus metrics at http://{local}/metrics");
        let monitor = monitor.clone();
        tokio::spawn(metrics::http::serve(
            listener,
            Arc::new(move || monitor.metrics_text()),
        ));
    }
    info!(
        chains = ?config.chains.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        nodes = config.nodes.len(),
        "cosigner started"
    );
    let identity = Arc::new(identity);
    for ((node, signer), label) in config.nodes.iter().zip(node_signers).zip(node_labels) {
        let ctx = SessionContext {
            protocol: node.protocol,
            allow_sign_bytes: node.allow_sign_bytes,
            label,
            timeouts: config.timeouts.node(),
            metrics: metrics.clone(),
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

/// Serves the status on the admin socket in the state directory, if it can be opened; without
/// it the cosigner signs as well, so a failure is a warning. The guard removes the socket.
fn serve_admin_socket(loaded: &LoadedConfig, monitor: &Arc<Monitor>) -> Option<socket::SocketFile> {
    let path = loaded.resolve(&loaded.config.state_dir).join(ADMIN_SOCKET);
    match socket::bind(&path) {
        Ok((listener, guard)) => {
            let monitor = monitor.clone();
            tokio::spawn(socket::serve(listener, Arc::new(move || monitor.status())));
            Some(guard)
        }
        Err(e) => {
            warn!("{e}; `cosigner status` cannot reach this cosigner");
            None
        }
    }
}

/// Starts one threshold signer per key, each with the sign states of its own chains (taken
/// out of `states`) and a cluster of its own: nothing of one key's signing is shared with
/// another's.
async fn start_threshold_keys(
    loaded: &LoadedConfig,
    keys: Vec<ThresholdKey>,
    states: &mut HashMap<String, ChainSignState>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Vec<MonitoredKey>> {
    let mut signers = Vec::new();
    // In `Config::threshold_keys` order, as the metrics layout numbers them.
    for (index, key) in keys.into_iter().enumerate() {
        let key_states = key
            .chains
            .iter()
            .filter_map(|c| states.remove_entry(c))
            .collect();
        for joining in &key.threshold.joining {
            info!(
                key = key.name.as_deref().unwrap_or("-"),
                joining = joining.id,
                "cosigner {id} is joining: run `cosigner refresh --add {id}` on every member host \
                 and `cosigner join` on its host",
                id = joining.id
            );
        }
        let setup = ThresholdSetup {
            share: key.share,
            cluster: loaded.cluster_config(&key.threshold),
            timeouts: loaded.config.timeouts.signing(),
            metrics: metrics.key(index),
        };
        let signer = ThresholdSigner::start(setup, key_states)
            .await
            .with_context(|| key.label.clone())?;
        signers.push(MonitoredKey {
            name: key.name,
            signer: Arc::new(Signer::Threshold(signer)),
            peers: key
                .threshold
                .peers
                .iter()
                .map(|p| (p.id, p.address.clone()))
                .collect(),
        });
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
