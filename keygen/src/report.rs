//! What `split-key` tells the operator it wrote.

use std::fmt;
use std::path::PathBuf;

use cosigner::key_forms::PublicKeyForms;
use cosigner::privval::{NodeAddress, ProtocolVersion};

use crate::ceremony_dirs;
use crate::plan::{CosignerAddress, Plan};

/// What a split and a ceremony's directories have alike: where the directories go, what
/// they sign and which ports to open.
#[derive(Debug)]
pub struct Deployment {
    /// The directory created, holding one directory per cosigner.
    pub out: PathBuf,
    /// How many cosigners must sign together (`t`).
    pub threshold: u16,
    /// How many cosigners hold shares (`n`).
    pub shares: u16,
    /// Every cosigner's address, in identifier order.
    pub cosigners: Vec<CosignerAddress>,
    /// The chains the cosigners sign for.
    pub chain_ids: Vec<String>,
    /// The validator nodes every cosigner dials.
    pub nodes: Vec<NodeAddress>,
    /// The privval version the nodes speak.
    pub protocol: ProtocolVersion,
    /// Chains whose sign state was seeded from --state, with the watermark.
    pub seeded: Vec<(String, String)>,
}

impl Deployment {
    pub(crate) fn of(plan: &Plan) -> Deployment {
        Deployment {
            out: plan.out.clone(),
            threshold: plan.threshold,
            shares: plan.shares,
            cosigners: plan.cosigners.clone(),
            chain_ids: plan.chain_ids.clone(),
            nodes: plan.nodes.clone(),
            protocol: plan.protocol,
            seeded: plan
                .states
                .iter()
                .map(|(chain, state)| {
                    (chain.clone(), cosigner::sign_state::import::describe(state))
                })
                .collect(),
        }
    }

    pub(crate) fn write_seeded(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (chain, watermark) in &self.seeded {
            writeln!(
                f,
                "Sign state of `{chain}` seeded on every cosigner: {watermark}."
            )?;
        }
        Ok(())
    }
}

/// Chains, nodes, where each directory goes and which ports to open.
impl fmt::Display for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let out = self.out.display();
        writeln!(f, "chains:              {}", self.chain_ids.join(", "))?;
        writeln!(
            f,
            "nodes (dialled by every cosigner, protocol {}): {}",
            self.protocol.name(),
            self.nodes
                .iter()
                .map(NodeAddress::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "Copy each directory to its host, keeping its permissions:"
        )?;
        for (i, c) in self.cosigners.iter().enumerate() {
            writeln!(
                f,
                "  {out}/cosigner-{} -> the host at {} (listens on {})",
                i + 1,
                c.address,
                c.listen
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Open these UDP ports (QUIC) to the other cosigners, and nothing else to them:"
        )?;
        for (i, c) in self.cosigners.iter().enumerate() {
            let others: Vec<&str> = self
                .cosigners
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, o)| o.host.as_str())
                .collect();
            writeln!(
                f,
                "  cosigner-{}: UDP {} from {}",
                i + 1,
                c.port,
                others.join(", ")
            )?;
        }
        writeln!(f)
    }
}

/// What a split wrote.
#[derive(Debug)]
pub struct Report {
    /// The validator key file that was dealt.
    pub key_file: PathBuf,
    /// How many `t`-subsets of the shares were checked to sign.
    pub subsets_checked: usize,
    /// The validator public key in every form an operator needs.
    pub forms: PublicKeyForms,
    /// Where the directories went and what they sign.
    pub deployment: Deployment,
}

/// What `split-key` wrote.
#[derive(Debug)]
pub enum Written {
    /// A key dealt into shares.
    Split(Report),
    /// Directories for a key ceremony.
    CeremonyDirs(ceremony_dirs::Report),
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Written::Split(r) => r.fmt(f),
            Written::CeremonyDirs(r) => r.fmt(f),
        }
    }
}

fn subsets_phrase(r: &Report) -> String {
    let total = cosigner::threshold::deal::binomial(r.deployment.shares, r.deployment.threshold);
    if total == r.subsets_checked as u128 {
        format!(
            "all {} groups of {} shares were checked by signing",
            r.subsets_checked, r.deployment.threshold
        )
    } else {
        format!(
            "{} of the {} groups of {} shares were checked by signing",
            r.subsets_checked, total, r.deployment.threshold
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Split {} into {} shares; any {} can sign ({}).",
            self.key_file.display(),
            self.deployment.shares,
            self.deployment.threshold,
            subsets_phrase(self)
        )?;
        writeln!(f)?;
        write!(f, "{}", self.forms)?;
        write!(f, "{}", self.deployment)?;
        writeln!(
            f,
            "Next: remove {} from the validator host (any host holding it can sign alone and \
             double-sign); keep one offline backup only.",
            self.key_file.display()
        )?;
        self.deployment.write_seeded(f)?;
        let unseeded: Vec<&String> = self
            .deployment
            .chain_ids
            .iter()
            .filter(|c| !self.deployment.seeded.iter().any(|(s, _)| s == *c))
            .collect();
        if !unseeded.is_empty() {
            writeln!(
                f,
                "Chains {unseeded:?} start with empty sign state (written to every cosigner's \
                 state/): if the validator has signed on them, stop the old signer and seed it \
                 (--state CHAIN_ID=priv_validator_state.json, or `cosigner state import` on every \
                 host) before starting the cluster."
            )?;
        }
        Ok(())
    }
}
