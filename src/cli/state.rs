//! `cosigner state show|import|init`: inspect the watermark, import a CometBFT
//! `priv_validator_state.json` so a migrated validator cannot sign below what it signed, or
//! recreate a missing state file for a key that never signed on the chain.

use std::path::PathBuf;

use anyhow::Context;

use cosigner::config::{Config, LoadedConfig};
use cosigner::sign_state::store::{missing_state_help, state_path};
use cosigner::sign_state::{import, ChainSignState, SignState, StateError, StateFile};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the watermark of every chain (or one), as on disk. Read-only: works while the
    /// cosigner runs.
    Show {
        #[arg(long)]
        config: PathBuf,
        #[arg(long = "chain-id")]
        chain_id: Option<String>,
    },
    /// Import a CometBFT priv_validator_state.json for a chain. Refuses to lower an existing
    /// watermark unless --force is given. Run it while the cosigner is stopped.
    Import {
        state_file: PathBuf,
        #[arg(long)]
        config: PathBuf,
        #[arg(long = "chain-id")]
        chain_id: String,
        #[arg(long)]
        force: bool,
    },
    /// Create a chain's missing state file with an EMPTY sign state (height 0). Only for a
    /// key that has never signed on that chain: an empty state lets it sign again at heights
    /// it already signed, which is a double sign. If it may have signed, use `cosigner state
    /// import` instead. Refuses if the file exists. (State files are normally written with the
    /// cosigner directory by split-key or init-single.)
    Init {
        #[arg(long)]
        config: PathBuf,
        #[arg(long = "chain-id")]
        chain_id: String,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Show { config, chain_id } => {
            let loaded = Config::load(&config)?;
            let state_dir = loaded.resolve(&loaded.config.state_dir);
            let mut shown = 0;
            for chain in &loaded.config.chains {
                if chain_id.as_ref().is_some_and(|c| c != &chain.id) {
                    continue;
                }
                // Read without the lock, so that it works while the cosigner runs; what is on
                // disk (a running cosigner may hold a higher watermark learnt from its peers
                // in memory for a moment: `cosigner status` shows that one).
                let state = StateFile::read(&state_dir, &chain.id)
                    .map_err(|e| match e {
                        StateError::Missing { path, chain_id } => anyhow::anyhow!(
                            missing_state_help(&path, &chain_id, Some(&loaded.path))
                        ),
                        other => other.into(),
                    })
                    .with_context(|| format!("sign state of chain `{}`", chain.id))?;
                println!("{}: {}", chain.id, import::describe(&state));
                shown += 1;
            }
            if shown == 0 {
                anyhow::bail!("{}: no chain matches", config.display());
            }
            Ok(())
        }
        Command::Import {
            state_file,
            config,
            chain_id,
            force,
        } => {
            let loaded = load_with_chain(&config, &chain_id)?;
            let json = std::fs::read_to_string(&state_file)
                .with_context(|| format!("{}: cannot read", state_file.display()))?;
            let imported = import::import_cometbft_state(&json)
                .with_context(|| format!("{}", state_file.display()))?;
            let state_dir = loaded.resolve(&loaded.config.state_dir);
            import::import_into(&state_dir, &chain_id, imported.clone(), force)?;
            println!("{chain_id}: imported {}", import::describe(&imported));
            Ok(())
        }
        Command::Init { config, chain_id } => {
            let loaded = load_with_chain(&config, &chain_id)?;
            let state_dir = loaded.resolve(&loaded.config.state_dir);
            let path = state_path(&state_dir, &chain_id)?;
            match StateFile::create(&state_dir, &chain_id, &SignState::fresh()) {
                Ok(()) => {}
                Err(StateError::AlreadyExists(_)) => anyhow::bail!(
                    "{} already exists; `state init` only creates a missing state file and \
                     never replaces one. To raise its watermark, use `cosigner state import`; \
                     `cosigner state show` prints what it holds",
                    path.display()
                ),
                Err(e) => return Err(e.into()),
            }
            println!(
                "{chain_id}: created {} with an empty sign state (nothing signed).",
                path.display()
            );
            println!(
                "This is right only for a key that never signed on `{chain_id}`. If it may have, \
                 run `cosigner state import` with the validator's last priv_validator_state.json \
                 before starting the cosigner."
            );
            Ok(())
        }
    }
}

fn load_with_chain(config: &std::path::Path, chain_id: &str) -> anyhow::Result<LoadedConfig> {
    let loaded = Config::load(config)?;
    if !loaded.config.chains.iter().any(|c| c.id == chain_id) {
        anyhow::bail!("{}: chain `{chain_id}` is not configured", config.display());
    }
    Ok(loaded)
}

/// Opens (and locks) the sign state of a configured chain; a missing state file is an error
/// naming the commands that recreate it, for this very config file.
pub fn open_chain_state(loaded: &LoadedConfig, chain_id: &str) -> anyhow::Result<ChainSignState> {
    let state_dir = loaded.resolve(&loaded.config.state_dir);
    ChainSignState::open(&state_dir, chain_id)
        .map_err(|e| match e {
            StateError::Missing { path, chain_id } => {
                anyhow::anyhow!(missing_state_help(&path, &chain_id, Some(&loaded.path)))
            }
            other => other.into(),
        })
        .with_context(|| format!("sign state of chain `{chain_id}`"))
}
