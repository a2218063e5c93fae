//! The cluster transport over real loopback UDP: request/response in all directions,
//! concurrency, deadlines, peer restarts, and refusal of every identity that is not a
//! configured cluster member.

#[path = "common/ports.rs"]
mod ports;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosigner::cluster::identity::{cert_fingerprint, issue_cluster, IssuedCluster};
use cosigner::cluster::wire::{WireError, MAX_FRAME_LEN};
use cosigner::cluster::{Cluster, ClusterConfig, ClusterError, PeerAddr, PeerId, TlsPaths};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u64,
    payload: Vec<u8>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pong {
    /// Who answered.
    from: PeerId,
    /// Who the answering side authenticated the requester as.
    requester: PeerId,
    n: u64,
}

const N_HANG: u64 = u64::MAX;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports::free_port()))
}

fn write_tls(dir: &Path, name: &str, cert_pem: &str, key_pem: &str, ca_pem: &str) -> TlsPaths {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let paths = TlsPaths {
        cert: d.join("cert.pem"),
        key: d.join("key.pem"),
        ca: d.join("ca.pem"),
    };
    std::fs::write(&paths.cert, cert_pem).unwrap();
    std::fs::write(&paths.key, key_pem).unwrap();
    std::fs::write(&paths.ca, ca_pem).unwrap();
    paths
}

/// Configs for cosigners `1..=n` of `cluster`, each knowing all the others at `addrs`.
fn configs(dir: &Path, cluster: &IssuedCluster, addrs: &[SocketAddr]) -> Vec<ClusterConfig> {
    cluster
        .identities
        .iter()
        .map(|me| ClusterConfig {
            id: me.id,
            listen: addrs[me.id as usize - 1],
            peers: cluster
                .identities
                .iter()
                .filter(|p| p.id != me.id)
                .map(|p| PeerAddr {
                    id: p.id,
                    address: addrs[p.id as usize - 1].to_string(),
                    cert_sha256: p.cert_sha256.clone(),
                })
                .collect(),
            tls: write_tls(
                dir,
                &format!("c{}", me.id),
                &me.cert_pem,
                &me.key_pem,
                &cluster.ca_cert_pem,
            ),
            allowed_sources: Vec::new(),
        })
        .collect()
}

/// Binds a cosigner that answers `Ping`s and counts the requests its handler saw.
async fn start(cfg: ClusterConfig) -> (Arc<Cluster>, Arc<AtomicUsize>) {
    let me = cfg.id;
    let cluster = Arc::new(Cluster::bind(cfg).await.unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    cluster.serve(move |requester: PeerId, req: Ping| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if req.n == N_HANG {
                std::future::pending::<()>().await;
            }
            Pong {
                from: me,
                requester,
                n: req.n,
            }
        }
    });
    (cluster, seen)
}

fn ping(n: u64) -> Ping {
    Ping {
        n,
        payload: vec![7; 32],
    }
}

async fn ask(c: &Cluster, peer: PeerId, n: u64, t: Duration) -> Result<Pong, ClusterError> {
    c.request(peer, &ping(n), t).await
}

/// Polls `f` until it returns true or `limit` passes.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cosigners_answer_each_other_in_all_directions() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let mut nodes = Vec::new();
    for cfg in configs(dir.path(), &issued, &addrs) {
        nodes.push(start(cfg).await);
    }
    let mut n = 0;
    for a in 1..=3u16 {
        for b in (1..=3u16).filter(|b| *b != a) {
            n += 1;
            let pong = ask(&nodes[a as usize - 1].0, b, n, T).await.unwrap();
            assert_eq!(
                pong,
                Pong {
                    from: b,
                    requester: a,
                    n
                }
            );
        }
    }
    for (i, (c, seen)) in nodes.iter().enumerate() {
        assert_eq!(seen.load(Ordering::SeqCst), 2, "cosigner {}", i + 1);
        let mut others: Vec<PeerId> = (1..=3).filter(|p| *p != i as u16 + 1).collect();
        others.sort();
        assert_eq!(c.connected_peers(), others);
        for p in others {
            assert!(c.rtt(p).is_some());
        }
    }
    assert_eq!(nodes[0].0.rtt(9), None);
    assert!(matches!(
        ask(&nodes[0].0, 9, 1, T).await,
        Err(ClusterError::UnknownPeer(9))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_all_complete() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let (b, b_seen) = start(cfgs[1].clone()).await;
    // More than the per-connection stream limit, so some wait for a stream to free up.
    let count = 400u64;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let (a, b) = (a.clone(), b.clone());
        tasks.spawn(async move {
            if n % 2 == 0 {
                (n, ask(&a, 2, n, Duration::from_secs(20)).await)
            } else {
                (n, ask(&b, 1, n, Duration::from_secs(20)).await)
            }
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        let (n, pong) = r.unwrap();
        let pong = pong.unwrap();
        assert_eq!(pong.n, n);
        assert_eq!(pong.from, if n % 2 == 0 { 2 } else { 1 });
        done += 1;
    }
    assert_eq!(done, count);
    assert_eq!(b_seen.load(Ordering::SeqCst), count as usize / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_answers_times_out_within_the_deadline() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let b = Arc::new(Cluster::bind(cfgs[1].clone()).await.unwrap());
    // Counts handler futures that were dropped, i.e. abandoned after the requester left.
    let dropped = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    b.serve(move |requester: PeerId, req: Ping| {
        let guard = OnDrop(d.clone());
        async move {
            let _guard = guard;
            if req.n == N_HANG {
                std::future::pending::<()>().await;
            }
            Pong {
                from: 2,
                requester,
                n: req.n,
            }
        }
    });
    // Warm up so the deadline below measures the stream, not the first handshake.
    ask(&a, 2, 1, T).await.unwrap();

    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let r = ask(&a, 2, N_HANG, limit).await;
    let took = started.elapsed();
    assert!(
        matches!(r, Err(ClusterError::Timeout { peer: 2, .. })),
        "{r:?}"
    );
    assert!(took >= limit, "{took:?}");
    assert!(took < limit + Duration::from_millis(700), "{took:?}");
    // The requester's cancellation reaches the server, which drops the handler.
    assert!(
        eventually(T, || dropped.load(Ordering::SeqCst) == 2).await,
        "hanging handler was not abandoned"
    );
    // The connection is still good for the next request.
    assert_eq!(ask(&a, 2, 5, T).await.unwrap().n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reachable_again() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let (b, _) = start(cfgs[1].clone()).await;
    assert_eq!(ask(&a, 2, 1, T).await.unwrap().from, 2);

    b.shutdown().await;
    drop(b);
    assert!(
        eventually(T, || a.connected_peers().is_empty()).await,
        "a still thinks b is connected"
    );
    assert!(ask(&a, 2, 2, Duration::from_millis(200)).await.is_err());

    // The old endpoint's socket is released by its driver task shortly after the drop.
    let deadline = Instant::now() + T;
    let b = loop {
        match Cluster::bind(cfgs[1].clone()).await {
            Ok(b) => break Arc::new(b),
            Err(ClusterError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("rebind: {e}"),
        }
    };
    let back = Instant::now();
    b.serve(|requester: PeerId, req: Ping| async move {
        Pong {
            from: 2,
            requester,
            n: req.n + 1000,
        }
    });
    let pong = loop {
        match ask(&a, 2, 3, Duration::from_millis(250)).await {
            Ok(p) => break p,
            Err(e) => assert!(back.elapsed() < T, "b never came back: {e}"),
        }
    };
    let took = back.elapsed();
    assert_eq!(pong.n, 1003, "answered by the new instance");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(ask(&b, 1, 4, T).await.unwrap().from, 1);
}

/// Cosigner 1 of `issued` (pinning `intruder_fp` as peer 3) and an intruder at peer 3's
/// place presenting `cert`/`key` but trusting the real cluster CA.
async fn intruder_case(intruder_cert: &str, intruder_key: &str, intruder_fp: String) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    // Even with the intruder's fingerprint pinned, cosigner 1 must refuse it: the CA check
    // fails first.
    cfgs[0].peers[1].cert_sha256 = intruder_fp;
    let mut intruder_cfg = cfgs[2].clone();
    intruder_cfg.tls = write_tls(
        dir.path(),
        "intruder",
        intruder_cert,
        intruder_key,
        &issued.ca_cert_pem,
    );
    let (one, one_seen) = start(cfgs[0].clone()).await;
    let (intruder, intruder_seen) = start(intruder_cfg).await;
    for n in 0..3 {
        let r = ask(&intruder, 1, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "intruder got an answer: {r:?}");
        let r = ask(&one, 3, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "cosigner 1 accepted the intruder: {r:?}");
    }
    assert_eq!(one_seen.load(Ordering::SeqCst), 0);
    assert_eq!(intruder_seen.load(Ordering::SeqCst), 0);
    assert!(one.connected_peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_client_gets_nothing() {
    let ck = rcgen::generate_simple_self_signed(vec!["cosigner-3".to_string()]).unwrap();
    intruder_case(
        &ck.cert.pem(),
        &ck.key_pair.serialize_pem(),
        cert_fingerprint(ck.cert.der()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_cluster_gets_nothing() {
    let other = issue_cluster(3, "other").unwrap();
    let id = &other.identities[2];
    intruder_case(&id.cert_pem, &id.key_pem, id.cert_sha256.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_certificate_that_is_not_pinned_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    // Cosigner 1 pins some other certificate for peer 3: both directions must fail.
    cfgs[0].peers[1].cert_sha256 = "00".repeat(32);
    let (one, one_seen) = start(cfgs[0].clone()).await;
    let (two, _) = start(cfgs[1].clone()).await;
    let (three, three_seen) = start(cfgs[2].clone()).await;
    // Cosigner 1 still works with 2, so the refusal is specific.
    assert_eq!(ask(&one, 2, 1, T).await.unwrap().from, 2);
    assert_eq!(ask(&two, 1, 1, T).await.unwrap().requester, 2);
    let seen_before = one_seen.load(Ordering::SeqCst);
    for n in 0..3 {
        let r = ask(&three, 1, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "unpinned cosigner 3 got an answer: {r:?}");
        let r = ask(&one, 3, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "cosigner 1 accepted an unpinned server: {r:?}");
    }
    assert_eq!(one_seen.load(Ordering::SeqCst), seen_before);
    assert_eq!(three_seen.load(Ordering::SeqCst), 0);
    assert_eq!(one.connected_peers(), vec![2]);
    assert_eq!(three.connected_peers(), vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_at_the_wrong_address_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    // Cosigner 1 has the addresses of 2 and 3 swapped.
    cfgs[0].peers[0].address = addrs[2].to_string();
    cfgs[0].peers[1].address = addrs[1].to_string();
    // 2 and 3 look for 1 where nothing listens, so the only connections are 1's dials.
    let nowhere = free_addr().to_string();
    cfgs[1].peers[0].address = nowhere.clone();
    cfgs[2].peers[0].address = nowhere;
    let (one, _) = start(cfgs[0].clone()).await;
    let (_two, two_seen) = start(cfgs[1].clone()).await;
    let (_three, three_seen) = start(cfgs[2].clone()).await;
    for peer in [2, 3] {
        let r = ask(&one, peer, 1, Duration::from_millis(800)).await;
        assert!(
            r.is_err(),
            "peer {peer} answered at the wrong address: {r:?}"
        );
    }
    assert_eq!(two_seen.load(Ordering::SeqCst), 0);
    assert_eq!(three_seen.load(Ordering::SeqCst), 0);
    assert!(one.connected_peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused_before_sending() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let (_b, b_seen) = start(cfgs[1].clone()).await;
    let big = Ping {
        n: 1,
        payload: vec![0; MAX_FRAME_LEN as usize],
    };
    let r: Result<Pong, _> = a.request(2, &big, T).await;
    assert!(
        matches!(
            r,
            Err(ClusterError::Wire {
                peer: 2,
                source: WireError::TooLarge { .. }
            })
        ),
        "{r:?}"
    );
    assert_eq!(b_seen.load(Ordering::SeqCst), 0);
    assert_eq!(ask(&a, 2, 2, T).await.unwrap().n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_peer_is_reachable_again_soon_after_it_comes_back() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;

    // Cosigner 2 runs on a runtime of its own, so that dropping that runtime kills every
    // task of it (the endpoint driver included) without a CONNECTION_CLOSE: a crash.
    let cfg_b = cfgs[1].clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let host = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (b, _) = rt.block_on(start(cfg_b));
        ready_tx.send(()).unwrap();
        crash_rx.recv().unwrap();
        drop(rt);
        drop(b);
    });
    ready_rx.await.unwrap();
    assert_eq!(ask(&a, 2, 1, T).await.unwrap().from, 2);
    crash_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || host.join().unwrap())
        .await
        .unwrap();
    // Nothing told cosigner 1: its connection is stale until the idle timeout.
    assert_eq!(a.connected_peers(), vec![2]);

    let deadline = Instant::now() + T;
    let b = loop {
        match Cluster::bind(cfgs[1].clone()).await {
            Ok(b) => break Arc::new(b),
            Err(ClusterError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("rebind: {e}"),
        }
    };
    let back = Instant::now();
    b.serve(|requester: PeerId, req: Ping| async move {
        Pong {
            from: 2,
            requester,
            n: req.n + 1000,
        }
    });
    let pong = loop {
        match ask(&a, 2, 3, Duration::from_millis(250)).await {
            Ok(p) => break p,
            Err(e) => assert!(back.elapsed() < T, "b never came back: {e}"),
        }
    };
    let took = back.elapsed();
    assert_eq!(pong.n, 1003, "answered by the new instance");
    // Under the 2 s idle timeout: the restarted peer's own dial replaces the stale
    // connection.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(ask(&b, 1, 4, T).await.unwrap().from, 1);
}
