//! Free loopback ports for tests, drawn from below the kernel's ephemeral range.
//!
//! A port found free by binding port 0 comes from the ephemeral range, so between the probe
//! and the real bind any socket that binds port 0 (a QUIC client endpoint, a process dialing
//! out over TCP) may take it, and a test fails with "address in use". Ports below that range
//! are never handed out by the kernel; each test process walks its own stretch of them, and
//! a port is returned only if both TCP and UDP can bind it now.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The stretch tests draw from: 10000..32768, below Linux's default ephemeral range.
const FIRST: u32 = 10_000;
const SPAN: u32 = 22_768;

/// A port free for both TCP and UDP on 127.0.0.1, unique within this test process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries run one at a time, but spread them anyway so that a leftover process
    // of an earlier run is unlikely to sit where this one starts.
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = u16::try_from(FIRST + offset).expect("ports fit in u16");
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}
