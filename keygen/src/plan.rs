//! `split-key`'s inputs: the command line, checked into a [`Plan`] before anything is
//! written.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use cosigner::host_port::split_host_port;
use cosigner::privval::{NodeAddress, ProtocolVersion};
use cosigner::sign_state::import::read_state_args;
use cosigner::sign_state::SignState;
use cosigner::threshold::key_share::check_threshold;
use cosigner::validator_key::ValidatorKey;

use crate::ceremony_dirs::parse_public_key;
use crate::SplitError;

const DEFAULT_NODE: &str = "tcp://127.0.0.1:26659";
const FIRST_DEFAULT_PORT: u16 = 7101;

/// Command-line arguments.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "split-key",
    version,
    about = "Deal an existing CometBFT validator key into FROST shares, one directory per cosigner",
    after_help = "To leave the cluster again: split-key combine COSIGNER_DIR... --out DIR \
                  (see split-key combine --help)."
)]
pub struct Args {
    /// The validator key: CometBFT priv_validator_key.json or a tmkms softsign key (base64 seed).
    #[arg(
        value_name = "KEY_FILE",
        required_unless_present_any = ["dkg", "horcrux_pubkey"]
    )]
    pub key_file: Option<PathBuf>,
    /// No key: write the directories without shares, for the cosigners to make a new key by
    /// distributed key generation (`cosigner dkg` on every host). Nobody ever holds the key.
    #[arg(long, conflicts_with_all = ["key_file", "horcrux_pubkey", "states"])]
    pub dkg: bool,
    /// No key here: write the directories without shares, for importing the Horcrux shards of
    /// the validator key PUBKEY (base64 or hex of the 32-byte key, or a Horcrux shard's
    /// `pubKey`) on each Horcrux host (`cosigner import-horcrux`). Give the cosigners in
    /// Horcrux's shard order: `--cosigner` number i gets Horcrux shard i.
    #[arg(long, value_name = "PUBKEY", conflicts_with = "key_file")]
    pub horcrux_pubkey: Option<String>,
    /// How many cosigners must take part in every signature (t > n/2).
    #[arg(long, value_name = "T")]
    pub threshold: u16,
    /// How many shares (cosigners) to deal.
    #[arg(long, value_name = "N")]
    pub shares: u16,
    /// Where to write cosigner-1/ .. cosigner-N/; must not exist.
    #[arg(long, value_name = "DIR", default_value = "./cosigners")]
    pub out: PathBuf,
    /// A chain the cluster signs for (repeat for several); at least one is required.
    #[arg(long = "chain-id", value_name = "ID")]
    pub chain_ids: Vec<String>,
    /// Each cosigner's QUIC address, in order (give it N times, or not at all for
    /// 127.0.0.1:7101..).
    #[arg(long = "cosigner", value_name = "HOST:PORT")]
    pub cosigners: Vec<String>,
    /// A node's priv_validator_laddr for every cosigner to dial (repeatable).
    #[arg(long = "node", value_name = "tcp://[NODE_ID@]HOST:PORT")]
    pub nodes: Vec<String>,
    /// Bech32 account prefix (e.g. `cosmos`) to print valconspub and valcons forms.
    #[arg(long, value_name = "PREFIX")]
    pub bech32_prefix: Option<String>,
    /// The privval protocol version of the nodes.
    #[arg(long, value_name = "VERSION", default_value = "v0.38")]
    pub protocol: ProtocolVersion,
    /// `CHAIN_ID=PATH` of the validator's last CometBFT `priv_validator_state.json` for that
    /// chain (repeatable): every cosigner starts from it, so none can sign below what the old
    /// signer signed. A chain without it starts from an empty state.
    #[arg(long = "state", value_name = "CHAIN_ID=PATH")]
    pub states: Vec<String>,
}

/// One cosigner's network address as given, and where it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerAddress {
    /// `HOST:PORT` as peers dial it.
    pub address: String,
    /// The host part of `address`.
    pub host: String,
    /// The port part of `address`, which the cosigner listens on.
    pub port: u16,
    /// The host as an IP if it is one; otherwise the cosigner binds 0.0.0.0.
    pub listen: SocketAddr,
}

/// Where the cosigners' shares come from.
#[derive(Debug)]
pub enum Source {
    /// Deal this key now.
    Split {
        /// The validator key file, as given.
        key_file: PathBuf,
        /// The key read from it.
        key: Box<ValidatorKey>,
    },
    /// A new key, made by the cosigners (`cosigner dkg`).
    Dkg,
    /// The key with this public key, from its Horcrux shards (`cosigner import-horcrux`).
    Horcrux {
        /// The validator public key the shards must make.
        public_key: [u8; 32],
    },
}

/// Everything checked and ready to write; building a plan writes nothing.
#[derive(Debug)]
pub struct Plan {
    /// Where the shares come from.
    pub source: Source,
    /// How many cosigners must sign together (`t`).
    pub threshold: u16,
    /// How many cosigners hold shares (`n`).
    pub shares: u16,
    /// The directory to create, holding one directory per cosigner.
    pub out: PathBuf,
    /// The existing directory `out` is created in.
    pub parent: PathBuf,
    /// The chains the cosigners sign for.
    pub chain_ids: Vec<String>,
    /// Every cosigner's address, in identifier order.
    pub cosigners: Vec<CosignerAddress>,
    /// The validator nodes every cosigner dials.
    pub nodes: Vec<NodeAddress>,
    /// The privval version the nodes speak.
    pub protocol: ProtocolVersion,
    /// The chain's bech32 prefix, for printing the key in its bech32 forms.
    pub bech32_prefix: Option<String>,
    /// Imported sign states, by chain.
    pub states: Vec<(String, SignState)>,
}

/// Checks every input and reads the key; writes nothing.
pub fn plan(args: &Args) -> Result<Plan, SplitError> {
    let (t, n) = (args.threshold, args.shares);
    check_threshold(t, n).map_err(|error| SplitError::Threshold { t, n, error })?;

    if args.chain_ids.is_empty() {
        return Err(SplitError::NoChainId);
    }
    let mut chain_ids: Vec<String> = Vec::new();
    for id in &args.chain_ids {
        if !cosigner::consensus::ChainId::is_valid(id) {
            return Err(SplitError::BadChainId(id.clone()));
        }
        if chain_ids.contains(id) {
            return Err(SplitError::DuplicateChainId(id.clone()));
        }
        chain_ids.push(id.clone());
    }

    let cosigners = cosigner_addresses(&args.cosigners, n)?;
    let states = read_state_args(&args.states, &chain_ids).map_err(|e| SplitError::BadState {
        arg: e.arg,
        problem: e.problem,
    })?;

    let given_nodes = if args.nodes.is_empty() {
        vec![DEFAULT_NODE.to_string()]
    } else {
        args.nodes.clone()
    };
    let mut nodes: Vec<NodeAddress> = Vec::new();
    let mut seen_nodes = BTreeSet::new();
    for address in given_nodes {
        let parsed = NodeAddress::parse(&address).map_err(|problem| SplitError::BadNode {
            address: address.clone(),
            problem,
        })?;
        if !seen_nodes.insert(parsed.label()) {
            return Err(SplitError::BadNode {
                address,
                problem: "this node is given twice".into(),
            });
        }
        nodes.push(parsed);
    }

    if let Some(prefix) = &args.bech32_prefix {
        if cosigner::key_forms::check_prefix(prefix).is_err() {
            return Err(SplitError::BadPrefix(prefix.clone()));
        }
    }

    let (out, parent) = output_location(&args.out)?;
    let source = match (&args.key_file, &args.horcrux_pubkey, args.dkg) {
        (Some(key_file), None, false) => Source::Split {
            key_file: key_file.clone(),
            key: Box::new(ValidatorKey::load_source(key_file)?.0),
        },
        (None, Some(public_key), false) => Source::Horcrux {
            public_key: parse_public_key(public_key)
                .ok_or_else(|| SplitError::BadPublicKey(public_key.clone()))?,
        },
        (None, None, true) => Source::Dkg,
        // clap refuses these combinations; a library caller may not have used clap.
        _ => {
            return Err(SplitError::Check(
                "give exactly one of KEY_FILE, --dkg and --horcrux-pubkey".into(),
            ))
        }
    };
    Ok(Plan {
        source,
        threshold: t,
        shares: n,
        out,
        parent,
        chain_ids,
        cosigners,
        nodes,
        protocol: args.protocol,
        bech32_prefix: args.bech32_prefix.clone(),
        states,
    })
}

fn cosigner_addresses(given: &[String], n: u16) -> Result<Vec<CosignerAddress>, SplitError> {
    let given: Vec<String> = if given.is_empty() {
        (0..n)
            .map(|i| format!("127.0.0.1:{}", FIRST_DEFAULT_PORT + i))
            .collect()
    } else if given.len() != usize::from(n) {
        return Err(SplitError::CosignerCount {
            given: given.len(),
            n,
        });
    } else {
        given.to_vec()
    };
    let mut out: Vec<CosignerAddress> = Vec::with_capacity(given.len());
    for address in given {
        let bad = |problem: String| SplitError::BadCosigner {
            address: address.clone(),
            problem,
        };
        let (host, port) = split_host_port(&address).map_err(bad)?;
        // A hostname cannot be bound; listen on every interface and let peers dial the name.
        let ip = host
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if out
            .iter()
            .any(|c| c.host.eq_ignore_ascii_case(&host) && c.port == port)
        {
            return Err(bad("two cosigners cannot share one address".into()));
        }
        out.push(CosignerAddress {
            listen: SocketAddr::new(ip, port),
            address,
            host,
            port,
        });
    }
    Ok(out)
}

pub(crate) fn output_location(out: &Path) -> Result<(PathBuf, PathBuf), SplitError> {
    let bad = |problem: &str| SplitError::OutputLocation {
        path: out.to_path_buf(),
        problem: problem.to_string(),
    };
    if out.file_name().is_none() {
        return Err(bad("expected a path ending in a directory name"));
    }
    if fs::symlink_metadata(out).is_ok() {
        return Err(SplitError::OutputExists(out.to_path_buf()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match fs::metadata(&parent) {
        Ok(m) if m.is_dir() => Ok((out.to_path_buf(), parent)),
        Ok(_) => Err(bad(&format!("{} is not a directory", parent.display()))),
        Err(e) => Err(bad(&format!("{}: {e}", parent.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_on_ips_and_on_all_interfaces_for_names() {
        let c = cosigner_addresses(
            &[
                "10.0.0.1:7101".into(),
                "signer-b.example:7102".into(),
                "[::1]:7103".into(),
            ],
            3,
        )
        .unwrap();
        assert_eq!(c[0].listen, "10.0.0.1:7101".parse().unwrap());
        assert_eq!(c[1].listen, "0.0.0.0:7102".parse().unwrap());
        assert_eq!(c[2].listen, "[::1]:7103".parse().unwrap());
        assert_eq!(
            cosigner_addresses(&[], 2).unwrap()[1].address,
            "127.0.0.1:7102"
        );
        assert!(matches!(
            cosigner_addresses(&["a:1".into(), "A:1".into()], 2),
            Err(SplitError::BadCosigner { .. })
        ));
    }
}
