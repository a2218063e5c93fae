//! `cosigner state show|import`: inspect the watermark, or import a CometBFT
//! `priv_validator_state.json` so a migrated validator cannot sign below what it signed.

use std::path::PathBuf;

use anyhow::Context;

use cosigner::config::Config;
use cosigner::sign_state::{import, ChainSignState};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the watermark of every chain (or one).
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
                let state = ChainSignState::open(&state_dir, &chain.id, false)
                    .with_context(|| format!("sign state of chain `{}`", chain.id))?;
                println!("{}: {}", chain.id, import::describe(&state.snapshot()));
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
            let loaded = Config::load(&config)?;
            if !loaded.config.chains.iter().any(|c| c.id == chain_id) {
                anyhow::bail!("{}: chain `{chain_id}` is not configured", config.display());
            }
            let json = std::fs::read_to_string(&state_file)
                .with_context(|| format!("{}: cannot read", state_file.display()))?;
            let imported = import::import_cometbft_state(&json)
                .with_context(|| format!("{}", state_file.display()))?;
            let state_dir = loaded.resolve(&loaded.config.state_dir);
            import::import_into(&state_dir, &chain_id, imported.clone(), force)?;
            println!("{chain_id}: imported {}", import::describe(&imported));
            Ok(())
        }
    }
}
