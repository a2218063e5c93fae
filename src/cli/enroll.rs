//! `cosigner enroll`, on the host being added: writes its cosigner directory (no key share
//! yet) from a copy of a member's cosigner.toml and one `--peer` per member, and prints what
//! every member's operator runs next.

use std::net::SocketAddr;
use std::path::PathBuf;

use rand_core::OsRng;

use cosigner::ceremony::join::enroll::{enroll, EnrollPlan};

#[derive(clap::Args)]
pub struct Args {
    /// The new cosigner's id: a number no member has or had.
    #[arg(long, value_name = "ID")]
    id: u16,
    /// Where this cosigner listens for its peers (UDP, QUIC).
    #[arg(long, value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// `HOST:PORT` the members dial to reach it (default: --listen).
    #[arg(long, value_name = "HOST:PORT")]
    address: Option<String>,
    /// A copy of any member's cosigner.toml: its nodes, chains, threshold, timeouts and
    /// metrics are taken (its paths and peers are not).
    #[arg(long, value_name = "MEMBER_TOML")]
    like: PathBuf,
    /// `ID=HOST:PORT=SHA256`, one per member, as that member's `cosigner add-peer` printed.
    #[arg(long, value_name = "ID=HOST:PORT=SHA256", required = true)]
    peer: Vec<String>,
    /// The directory to write; it must not exist.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let address = match args.address {
        Some(a) => a,
        None => {
            anyhow::ensure!(
                !args.listen.ip().is_unspecified(),
                "--listen {}: the members cannot dial an unspecified address; give --address \
                 HOST:PORT as they reach this host",
                args.listen
            );
            args.listen.to_string()
        }
    };
    let plan = EnrollPlan {
        id: args.id,
        listen: args.listen,
        address,
        like: args.like,
        peers: args.peer,
        out: args.out,
    };
    let report = enroll(&plan, &mut OsRng)?;
    print!("{report}");
    Ok(())
}
