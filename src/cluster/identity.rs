//! Cluster TLS identities: what `split-key` issues and what a cosigner loads.
//!
//! `split-key` makes a one-off cluster CA, issues every cosigner a certificate for the DNS
//! name `cosigner-<id>` (usable for both client and server authentication), and then drops the
//! CA's private key, so nobody can mint another cluster identity afterwards. Peers trust each
//! other by the exact certificate's SHA-256 pin alone, which also maps an authenticated
//! connection to a cosigner ID ([`super::tls`] says why the CA is not checked).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

/// One cosigner's TLS identity, PEM encoded.
pub struct IssuedIdentity {
    /// The cosigner the identity is for (its certificate names it).
    pub id: u16,
    /// The cosigner's certificate, signed by the cluster CA.
    pub cert_pem: String,
    /// The certificate's private key; it is secret and goes only to that cosigner.
    pub key_pem: String,
    /// Lowercase hex SHA-256 of the DER certificate.
    pub cert_sha256: String,
}

/// A cluster's identities: the CA certificate (its key is already gone) and one identity per
/// cosigner.
pub struct IssuedCluster {
    /// The CA certificate every cosigner trusts.
    pub ca_cert_pem: String,
    /// One identity per cosigner, by identifier.
    pub identities: Vec<IssuedIdentity>,
}

/// rcgen could not make a key or certificate.
#[derive(Debug, thiserror::Error)]
#[error("cannot issue cluster TLS identities: {0}")]
pub struct IssueError(#[from] rcgen::Error);

/// The TLS server name of cosigner `id`.
pub fn server_name(id: u16) -> String {
    format!("cosigner-{id}")
}

/// Lowercase hex SHA-256 of a DER certificate.
pub fn cert_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Issues identities for cosigners `1..=n` under a fresh CA whose key is dropped on return.
pub fn issue_cluster(n: u16, cluster_name: &str) -> Result<IssuedCluster, IssueError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name = distinguished_name(&format!("{cluster_name} cluster CA"));
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut identities = Vec::with_capacity(n as usize);
    for id in 1..=n {
        let key = KeyPair::generate()?;
        let cert = member_params(id)?.signed_by(&key, &ca_cert, &ca_key)?;
        identities.push(issued(id, &cert, &key));
    }
    Ok(IssuedCluster {
        ca_cert_pem: ca_cert.pem(),
        identities,
    })
}

/// A self-signed identity for cosigner `id`, for a cosigner added after `split-key` (whose
/// CA key no longer exists): the members trust it by its pin alone (`cosigner add-peer`).
pub fn issue_self_signed(id: u16) -> Result<IssuedIdentity, IssueError> {
    let key = KeyPair::generate()?;
    let cert = member_params(id)?.self_signed(&key)?;
    Ok(issued(id, &cert, &key))
}

/// A cosigner's certificate: its name, for signing handshakes as client and server alike.
fn member_params(id: u16) -> Result<CertificateParams, IssueError> {
    let mut params = CertificateParams::new(vec![server_name(id)])?;
    params.distinguished_name = distinguished_name(&server_name(id));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

fn issued(id: u16, cert: &rcgen::Certificate, key: &KeyPair) -> IssuedIdentity {
    IssuedIdentity {
        id,
        cert_sha256: cert_fingerprint(cert.der()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_distinct_identities() {
        let cluster = issue_cluster(3, "test").unwrap();
        assert_eq!(cluster.identities.len(), 3);
        assert!(cluster
            .ca_cert_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        let fps: std::collections::BTreeSet<_> =
            cluster.identities.iter().map(|i| &i.cert_sha256).collect();
        assert_eq!(fps.len(), 3);
        assert!(cluster.identities.iter().all(|i| i.cert_sha256.len() == 64));
    }
}
