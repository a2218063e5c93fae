//! `cosigner import-horcrux`: run on every Horcrux host, in a directory set made by
//! `split-key --horcrux-pubkey`. Reads this host's Horcrux shard and sign state (and nothing
//! of any other host), makes the FROST share of the same identifier, proves with the other
//! hosts that the shares are of the unchanged validator key (a test signature), and writes
//! the share and the watermark.

use std::path::{Path, PathBuf};

use anyhow::Context;

use cosigner::ceremony::horcrux::{import, shard};
use cosigner::ceremony::machine::KeySource;
use cosigner::ceremony::output::plan_horcrux_states;
use cosigner::ceremony::CeremonyKind;

use super::ceremony::CeremonyArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    ceremony: CeremonyArgs,
    /// Horcrux's home directory on this host, with its shard and `state/` (default
    /// `$HOME/.horcrux`).
    #[arg(long, value_name = "DIR")]
    horcrux_home: Option<PathBuf>,
    /// This host's shard file (default: `<horcrux-home>/<chain-id>_shard.json` of the first
    /// chain in cosigner.toml; every host must import the shards of one split).
    #[arg(long, value_name = "FILE")]
    shard: Option<PathBuf>,
    /// Horcrux's state directory (default `<horcrux-home>/state`).
    #[arg(long, value_name = "DIR")]
    horcrux_state_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ready = args.ceremony.prepare(CeremonyKind::HorcruxImport)?;
    let (loaded, prepared) = (&ready.loaded, &ready.prepared);
    let home = match &args.horcrux_home {
        Some(home) => home.clone(),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".horcrux"))
            .context("HOME is not set: give --horcrux-home")?,
    };
    refuse_running_horcrux(&home)?;
    let chain = &loaded
        .config
        .chains
        .first()
        .context("cosigner.toml lists no chain")?
        .id;
    let shard_path = args
        .shard
        .clone()
        .unwrap_or_else(|| home.join(format!("{chain}_shard.json")));
    let shard =
        shard::load(&shard_path).map_err(|e| anyhow::anyhow!("{}: {e}", shard_path.display()))?;
    let expected = prepared
        .file
        .public_key()
        .map_err(anyhow::Error::msg)?
        .context("the ceremony file has no validator key")?;
    let key_package =
        import::own_key_package(prepared.me, &shard, &expected, prepared.file.threshold)
            .map_err(|e| anyhow::anyhow!("{}: {e}", shard_path.display()))?;
    let state_dir = args
        .horcrux_state_dir
        .clone()
        .unwrap_or_else(|| home.join("state"));
    let chains: Vec<String> = loaded.config.chains.iter().map(|c| c.id.clone()).collect();
    let states = plan_horcrux_states(&state_dir, &prepared.state_dir, &chains, &loaded.path)
        .map_err(anyhow::Error::msg)?;
    let source = KeySource::Horcrux {
        key_package: Box::new(key_package),
        expected_key: expected,
    };
    ready.run(source, states)
}

/// Horcrux writes its PID to `horcrux.pid` in its home while it runs: its state files would
/// move on under us, and it would keep signing beside this cluster.
fn refuse_running_horcrux(home: &Path) -> anyhow::Result<()> {
    let path = home.join("horcrux.pid");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let pid = text.trim().parse::<i32>().ok();
    let alive = pid
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
    anyhow::ensure!(
        !alive,
        "Horcrux is running on this host (PID {}, {}): stop it for good on every host first; \
         a validator signed by two signers double-signs",
        pid.unwrap_or_default(),
        path.display()
    );
    Ok(())
}
