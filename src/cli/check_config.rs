//! `cosigner check-config`: load a cosigner directory as `start` would, without starting,
//! and print what an operator needs to confirm before starting it.

use std::path::Path;

use anyhow::Context;

use cosigner::config::{Config, Mode};
use cosigner::sign_state::store::{missing_state_help, state_path};
use cosigner::validator_key::{self, ValidatorKey};

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let loaded = Config::load(config_path)?;
    if let Some(th) = loaded.config.threshold() {
        loaded.check_no_pending_ceremony(th)?;
    }
    let config = &loaded.config;
    let identity = validator_key::load_identity_key(&loaded.resolve(&config.identity_key))?;
    println!("config:        {}", config_path.display());
    println!(
        "identity:      node-facing key {}",
        hex::encode(identity.verifying_key().to_bytes())
    );
    if let Mode::Single(single) = &config.mode {
        let key = ValidatorKey::load(&loaded.resolve(&single.key_file))?;
        println!("mode:          single key (no fault tolerance)");
        println!("validator:     {}", key.address_hex());
    }
    for (key, share) in loaded.load_key_shares()? {
        let th = key.threshold;
        let label = key.label();
        let tls = cosigner::cluster::tls::TlsIdentity::load(&loaded.tls_paths(th))
            .with_context(|| format!("{label}: cluster TLS identity"))?;
        let own = th
            .peers
            .iter()
            .find(|p| Some(&p.cert_sha256) == tls.fingerprint().as_ref());
        anyhow::ensure!(
            own.is_none(),
            "{}: {label}: this cosigner's certificate is listed as peer {}",
            loaded.path.display(),
            own.map(|p| p.id).unwrap_or_default()
        );
        if let Some(name) = key.name {
            println!("key:           {name}");
        }
        println!(
            "mode:          threshold, cosigner {} of {}, threshold {}",
            th.id,
            th.peers.len() + 1,
            th.threshold
        );
        println!("validator key: {}", hex::encode(share.group_public_key()));
        println!("listen:        {} (UDP, QUIC)", th.listen);
        for peer in &th.peers {
            println!("peer {:>3}:      {}", peer.id, peer.address);
        }
        if key.name.is_some() {
            let chains: Vec<&str> = key.chains.iter().map(|c| c.id.as_str()).collect();
            println!("  chains:      {}", chains.join(", "));
            for node in &key.nodes {
                println!("  node:        {}", node.address);
            }
        }
    }
    for node in &config.nodes {
        println!("node:          {}", node.address);
    }
    let state_dir = loaded.resolve(&config.state_dir);
    for chain in &config.chains {
        // Only whether it is there: opening would take the lock a running cosigner holds.
        let path = state_path(&state_dir, &chain.id)?;
        anyhow::ensure!(
            path.is_file(),
            "{}",
            missing_state_help(&path, &chain.id, Some(&loaded.path))
        );
        println!(
            "chain:         {} (sign state {})",
            chain.id,
            path.display()
        );
    }
    println!("OK");
    Ok(())
}
