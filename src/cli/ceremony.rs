//! What the key-ceremony commands (`dkg`, `import-horcrux`) share: which directory, how long
//! to wait for the other hosts, and running the ceremony to its report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use cosigner::ceremony::machine::KeySource;
use cosigner::ceremony::output::StatePlan;
use cosigner::ceremony::run::{self, Prepared, DEFAULT_TIMEOUT};
use cosigner::ceremony::CeremonyKind;
use cosigner::config::{Config, LoadedConfig};

#[derive(clap::Args)]
pub struct CeremonyArgs {
    /// This host's cosigner.toml, from `split-key --dkg` or `split-key --horcrux-pubkey`.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Seconds to wait for every cosigner: start the command on every host within this.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
}

/// A ceremony of `kind` ready to run on this host: its config, its part, its wait.
pub struct Ready {
    pub loaded: LoadedConfig,
    pub prepared: Prepared,
    timeout: Duration,
}

impl CeremonyArgs {
    /// Checks the wait, loads the config and prepares this host's part; writes nothing.
    pub fn prepare(&self, kind: CeremonyKind) -> anyhow::Result<Ready> {
        let timeout = timeout(self.timeout)?;
        let loaded = Config::load(&self.config)?;
        let prepared = run::prepare(&loaded, kind)?;
        Ok(Ready {
            loaded,
            prepared,
            timeout,
        })
    }
}

impl Ready {
    /// Runs the ceremony with the other hosts and prints what it wrote.
    pub fn run(self, source: KeySource, states: Vec<StatePlan>) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let report = runtime.block_on(run::run(self.prepared, source, states, self.timeout))?;
        print!("{report}");
        Ok(())
    }
}

/// A ceremony's `--timeout`: long enough to start every host by hand, bounded.
pub fn timeout(seconds: u64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        (1..=3600).contains(&seconds),
        "--timeout {seconds}: expected 1 to 3600 seconds"
    );
    Ok(Duration::from_secs(seconds))
}
