//! `cosigner check-config`: load a cosigner directory with the very function `start` loads it
//! with ([`super::load`]), without starting, and print what an operator needs to confirm
//! before starting it.

use std::path::Path;

use cosigner::key_forms::PublicKeyForms;

use super::load::{self, Keys, Purpose};

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let directory = load::load(config_path, Purpose::Check)?;
    let config = &directory.loaded.config;
    println!("config:        {}", config_path.display());
    println!(
        "identity:      node-facing key {}",
        hex::encode(directory.identity.verifying_key().to_bytes())
    );
    match &directory.keys {
        Keys::Single(key) => {
            println!("mode:          single key (no fault tolerance)");
            print!("{}", PublicKeyForms::new(&key.public_key(), None)?);
        }
        Keys::Threshold(keys) => {
            for key in keys {
                let th = &key.threshold;
                if let Some(name) = &key.name {
                    println!("key:           {name}");
                }
                println!(
                    "mode:          threshold, cosigner {} of {}, threshold {}",
                    th.id,
                    th.peers.len() + 1,
                    th.threshold
                );
                print!(
                    "{}",
                    PublicKeyForms::new(&key.share.group_public_key(), None)?
                );
                println!("listen:        {} (UDP, QUIC)", th.listen);
                for peer in &th.peers {
                    println!("peer {:>3}:      {}", peer.id, peer.address);
                }
                for joining in &th.joining {
                    println!(
                        "joining {:>3}:   {} (certificate sha256 {}): not a member, nothing is \
                         signed with it; run `cosigner refresh --add {}` on every member host",
                        joining.id, joining.address, joining.cert_sha256, joining.id
                    );
                }
                if key.name.is_some() {
                    println!("  chains:      {}", key.chains.join(", "));
                }
            }
        }
    }
    for node in &config.nodes {
        match &node.key {
            Some(key) => println!("node:          {} (key {key})", node.address),
            None => println!("node:          {}", node.address),
        }
    }
    for chain in &config.chains {
        let path = match directory.states.get(&chain.id) {
            Some(state) => state.path().display().to_string(),
            None => "held by a running process".to_string(),
        };
        println!("chain:         {} (sign state {path})", chain.id);
    }
    if !directory.in_use.is_empty() {
        println!(
            "running:       a process (the cosigner of this directory?) holds its sign state, \
             so its listen ports were not checked"
        );
    }
    println!("OK");
    Ok(())
}
