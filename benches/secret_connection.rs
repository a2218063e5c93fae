//! SecretConnection framing through the public API: two connections handshaken over an
//! in-memory `tokio::io::duplex` pipe, then one side writes a message and the other reads it
//! (seal, write, read, open). Sizes: a privval sign request (~200 bytes), a signed vote
//! response (~250 bytes), and a multi-frame 4 KiB message.

use std::time::{Duration, Instant};

use cosigner::privval::secret_connection::SecretConnection;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use tokio::io::DuplexStream;

type Pair = (
    SecretConnection<DuplexStream>,
    SecretConnection<DuplexStream>,
);

fn pair(rt: &tokio::runtime::Runtime) -> Pair {
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ka = SigningKey::generate(&mut OsRng);
        let kb = SigningKey::generate(&mut OsRng);
        let (x, y) = tokio::join!(
            SecretConnection::handshake(a, &ka),
            SecretConnection::handshake(b, &kb)
        );
        (x.unwrap(), y.unwrap())
    })
}

fn bench_framing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("secret_connection");
    for size in [200usize, 250, 4096] {
        let (mut tx, mut rx) = pair(&rt);
        let msg = vec![0xabu8; size];
        let mut buf = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("write_then_read/{size}B"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        tx.write_all(&msg).await.unwrap();
                        rx.read_exact(&mut buf).await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("handshake_pair", |b| b.iter(|| pair(&rt)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_framing
}
criterion_main!(benches);
