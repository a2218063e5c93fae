//! The floor: exactly the curve work RFC 9591 asks of one t-of-n signing, by frost's own
//! functions, with nothing of ours around it (no transport, no threads, no watermark, no
//! encoding beyond the points themselves). What a running cluster spends per signature above
//! this is overhead; `docs/benchmarks.md` shows the ratio.
//!
//! Per participant: one nonce pair (`round1::commit`), validating each of the `t - 1` other
//! members' commitments (decompression and prime-order check of both points, RFC 9591 §5.2),
//! and the share (`round2::sign`, which computes the binding factors and group commitment
//! itself). Per coordinator: validating the `t - 1` remote commitments, the binding factors
//! and group commitment, the sum of the shares and one strict verification (what
//! `cosigner::threshold::coordinator` does on the success path). `floor/signature/t-of-n`
//! is all of it for one signing, run in one thread: t nonce pairs, t(t-1) validations (the
//! coordinator's own participant takes the coordinator's validated ones), t shares, one
//! group commitment and one verification.
//!
//! `FLOOR_ITERATIONS=N` (and `FLOOR_SIZE=t-of-n`, default 2-of-3) runs N whole signings
//! outside criterion and exits, for an instruction count under callgrind
//! (`scripts/cpu_profile.sh` does this):
//! `valgrind --tool=callgrind --toggle-collect='*floor_signature*' target/release/deps/floor-*`.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use curve25519_dalek::Scalar;
use frost_ed25519::keys::{generate_with_dealer, IdentifierList, KeyPackage, PublicKeyPackage};
use frost_ed25519::round1::{self, NonceCommitment, SigningCommitments, SigningNonces};
use frost_ed25519::round2::{self, SignatureShare};
use frost_ed25519::{Identifier, SigningPackage};
use rand_core::OsRng;

const SIZES: [(u16, u16); 3] = [(2, 3), (3, 5), (5, 7)];
/// A CometBFT precommit's sign bytes are about this long.
const MESSAGE: [u8; 130] = [0x5a; 130];

struct Group {
    keys: Vec<KeyPackage>,
    public: PublicKeyPackage,
    group_key: ed25519_dalek::VerifyingKey,
    t: usize,
}

fn group(t: u16, n: u16) -> Group {
    let (shares, public) = generate_with_dealer(n, t, IdentifierList::Default, OsRng).unwrap();
    let keys = shares
        .into_values()
        .map(|s| KeyPackage::try_from(s).unwrap())
        .collect();
    let vk: [u8; 32] = public
        .verifying_key()
        .serialize()
        .unwrap()
        .try_into()
        .unwrap();
    Group {
        keys,
        group_key: ed25519_dalek::VerifyingKey::from_bytes(&vk).unwrap(),
        public,
        t: usize::from(t),
    }
}

/// A commitment's two points as they travel.
fn wire(c: &SigningCommitments) -> [[u8; 32]; 2] {
    let point = |n: &NonceCommitment| n.serialize().unwrap().try_into().unwrap();
    [point(c.hiding()), point(c.binding())]
}

/// Decompression and the prime-order check of both points: what a receiver must do.
fn validate(wire: &[[u8; 32]; 2]) -> SigningCommitments {
    SigningCommitments::new(
        NonceCommitment::deserialize(&wire[0]).unwrap(),
        NonceCommitment::deserialize(&wire[1]).unwrap(),
    )
}

/// The binding factors and group commitment R (RFC 9591 §4.4-4.5).
fn group_commitment(package: &SigningPackage, public: &PublicKeyPackage) -> [u8; 32] {
    let factors =
        frost_core::compute_binding_factor_list(package, public.verifying_key(), &[]).unwrap();
    let r = frost_core::compute_group_commitment(package, &factors).unwrap();
    r.to_element().compress().to_bytes()
}

/// R and the sum of the shares, verified strictly as a validator would.
fn assemble(g: &Group, r: &[u8; 32], shares: &[SignatureShare]) -> [u8; 64] {
    let mut z = Scalar::ZERO;
    for s in shares {
        let bytes: [u8; 32] = s.serialize().try_into().unwrap();
        z += Scalar::from_canonical_bytes(bytes).unwrap();
    }
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(r);
    signature[32..].copy_from_slice(z.as_bytes());
    g.group_key
        .verify_strict(&MESSAGE, &ed25519_dalek::Signature::from_bytes(&signature))
        .unwrap();
    signature
}

/// Each member's commitment as it travels, by identifier.
type Announced = Vec<(Identifier, [[u8; 32]; 2])>;

fn commit_all(g: &Group) -> (Vec<SigningNonces>, Announced) {
    g.keys[..g.t]
        .iter()
        .map(|k| {
            let (nonces, c) = round1::commit(k.signing_share(), &mut OsRng);
            (nonces, (*k.identifier(), wire(&c)))
        })
        .unzip()
}

/// One whole signing's curve work; member 0 coordinates.
#[inline(never)]
fn floor_signature(g: &Group) -> [u8; 64] {
    let (nonces, wires) = commit_all(g);
    // The coordinator validates the remote members' commitments; its own it made itself.
    let coordinator_view: BTreeMap<Identifier, SigningCommitments> = wires
        .iter()
        .enumerate()
        .map(|(i, (id, w))| {
            let c = if i == 0 {
                *nonces[0].commitments()
            } else {
                validate(w)
            };
            (*id, c)
        })
        .collect();
    let coordinator_package = SigningPackage::new(coordinator_view.clone(), &MESSAGE);
    let mut shares = Vec::with_capacity(g.t);
    for (i, key) in g.keys[..g.t].iter().enumerate() {
        // A remote member validates every commitment but its own.
        let package = if i == 0 {
            coordinator_package.clone()
        } else {
            let view = wires
                .iter()
                .map(|(id, w)| {
                    (
                        *id,
                        if id == key.identifier() {
                            coordinator_view[id]
                        } else {
                            validate(w)
                        },
                    )
                })
                .collect();
            SigningPackage::new(view, &MESSAGE)
        };
        shares.push(round2::sign(&package, &nonces[i], key).unwrap());
    }
    let r = group_commitment(&coordinator_package, &g.public);
    assemble(g, &r, &shares)
}

fn bench_parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    let (t, n) = SIZES[0];
    let two = group(t, n);
    g.bench_function("commit", |b| {
        b.iter(|| round1::commit(two.keys[0].signing_share(), &mut OsRng))
    });
    let (_, c) = round1::commit(two.keys[1].signing_share(), &mut OsRng);
    let w = wire(&c);
    g.bench_function("validate_commitment", |b| b.iter(|| validate(&w)));
    for (t, n) in SIZES {
        let grp = group(t, n);
        let (nonces, wires) = commit_all(&grp);
        let package = SigningPackage::new(
            wires.iter().map(|(id, w)| (*id, validate(w))).collect(),
            &MESSAGE,
        );
        let size = format!("{t}-of-{n}");
        g.bench_function(BenchmarkId::new("sign", &size), |b| {
            b.iter(|| round2::sign(&package, &nonces[0], &grp.keys[0]).unwrap())
        });
        g.bench_function(BenchmarkId::new("group_commitment", &size), |b| {
            b.iter(|| group_commitment(&package, &grp.public))
        });
        let shares: Vec<_> = (0..grp.t)
            .map(|i| round2::sign(&package, &nonces[i], &grp.keys[i]).unwrap())
            .collect();
        let r = group_commitment(&package, &grp.public);
        g.bench_function(BenchmarkId::new("sum_and_verify", &size), |b| {
            b.iter(|| assemble(&grp, &r, &shares))
        });
        g.bench_function(BenchmarkId::new("signature", &size), |b| {
            b.iter(|| floor_signature(&grp))
        });
    }
    g.finish();
}

fn main() {
    if let Some(n) = std::env::var("FLOOR_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        let size = std::env::var("FLOOR_SIZE").unwrap_or_else(|_| "2-of-3".into());
        let Some((t, members)) = SIZES
            .into_iter()
            .find(|(t, n)| format!("{t}-of-{n}") == size)
        else {
            eprintln!("FLOOR_SIZE must be one of 2-of-3, 3-of-5, 5-of-7");
            std::process::exit(2);
        };
        let grp = group(t, members);
        for _ in 0..n {
            std::hint::black_box(floor_signature(&grp));
        }
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args();
    bench_parts(&mut c);
    c.final_summary();
}
