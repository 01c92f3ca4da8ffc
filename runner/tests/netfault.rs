//! Network faults on real namespaces: two (`mgt-...-a`, `mgt-...-b`) joined by a veth pair in 10.214.0.0/24, UDP
//! echo servers in both, and probes timed from threads that enter a namespace with setns. Needs root, iproute2,
//! iptables and nsenter: without them the tests fail, they do not pass empty. The tests take turns (one lock), so
//! that "no delay-line thread is left" can be checked on the whole process.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meshgate::backend::netfault::{self, Direction, Netns, ShapeError, Shaping, CHAIN_PREFIX};

const A: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 2);
/// A second address of B's, for link shapes and partitions of one address.
const B2: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 3);
const ECHO_PORT: u16 = 7777;

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a new thread inside the named namespace.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let file = File::open(format!("/run/netns/{ns}")).expect("open the namespace");
    std::thread::spawn(move || {
        // SAFETY: the descriptor is open for the call.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        f()
    })
}

/// Two namespaces on one veth, each with an echo server; removed on drop, even after a failed assertion.
struct Pair {
    a: String,
    b: String,
    stop: Arc<AtomicBool>,
    echoes: Vec<JoinHandle<()>>,
}

impl Pair {
    fn new(tag: &str) -> Self {
        let a = format!("mgt-{}-{tag}-a", std::process::id());
        let b = format!("mgt-{}-{tag}-b", std::process::id());
        run("ip", &["netns", "add", &a]);
        let mut pair = Pair {
            a,
            b,
            stop: Arc::new(AtomicBool::new(false)),
            echoes: Vec::new(),
        };
        run("ip", &["netns", "add", &pair.b]);
        let (a, b) = (pair.a.clone(), pair.b.clone());
        // Both ends are made inside the namespaces: nothing appears in the host's.
        run(
            "ip",
            &[
                "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
                &b,
            ],
        );
        for (ns, addrs) in [(&a, vec![A]), (&b, vec![B, B2])] {
            for addr in addrs {
                run(
                    "ip",
                    &[
                        "-n",
                        ns,
                        "addr",
                        "add",
                        &format!("{addr}/24"),
                        "dev",
                        "eth0",
                    ],
                );
            }
            run("ip", &["-n", ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        // One server per address, so that each reply leaves from the address the probe went to.
        for (ns, addr) in [(&a, A), (&b, B), (&b, B2)] {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stop = Arc::clone(&pair.stop);
            pair.echoes.push(in_ns(ns, move || {
                let sock = UdpSocket::bind((addr, ECHO_PORT)).expect("echo socket");
                sock.set_read_timeout(Some(ms(20))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            }));
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("echo server ready");
        }
        pair
    }

    fn netns(name: &str) -> Netns {
        Netns::at(format!("/run/netns/{name}"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for e in self.echoes.drain(..) {
            let _ = e.join();
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// What a run of probes saw: each probe's round trip (`None`: lost) and the order the replies came in.
struct Probes {
    rtts: Vec<Option<Duration>>,
    order: Vec<usize>,
}

impl Probes {
    fn lost(&self) -> usize {
        self.rtts.iter().filter(|r| r.is_none()).count()
    }
    fn min(&self) -> Duration {
        self.rtts
            .iter()
            .flatten()
            .min()
            .copied()
            .expect("some reply")
    }
    fn max(&self) -> Duration {
        self.rtts
            .iter()
            .flatten()
            .max()
            .copied()
            .expect("some reply")
    }
    fn reordered(&self) -> bool {
        self.order.windows(2).any(|w| w[0] > w[1])
    }
}

/// Sends `count` UDP probes of `size` bytes from namespace `ns` to `target`'s echo server, one per `interval`, and
/// waits up to `wait` after the last for the replies.
fn probe(
    ns: &str,
    target: Ipv4Addr,
    count: usize,
    interval: Duration,
    size: usize,
    wait: Duration,
) -> Probes {
    in_ns(ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("probe socket");
        sock.set_read_timeout(Some(ms(1))).unwrap();
        let to = SocketAddrV4::new(target, ECHO_PORT);
        let start = Instant::now();
        let mut sent = vec![None; count];
        let mut rtts = vec![None; count];
        let mut order = Vec::new();
        let mut next = 0;
        let mut buf = vec![0u8; size.max(8)];
        loop {
            let now = Instant::now();
            if next < count && now >= start + interval * next as u32 {
                buf[..8].copy_from_slice(&(next as u64).to_le_bytes());
                // A DROP rule on the sender's OUTPUT fails the send (EPERM): that probe is lost.
                let _ = sock.send_to(&buf, to);
                sent[next] = Some(now);
                next += 1;
                continue;
            }
            if next == count && (order.len() == count || now > sent[count - 1].unwrap() + wait) {
                break;
            }
            let mut reply = [0u8; 2048];
            if let Ok(n) = sock.recv(&mut reply) {
                if n >= 8 {
                    let seq = u64::from_le_bytes(reply[..8].try_into().unwrap()) as usize;
                    if seq < count && rtts[seq].is_none() {
                        rtts[seq] = Some(Instant::now() - sent[seq].unwrap());
                        order.push(seq);
                    }
                }
            }
        }
        Probes { rtts, order }
    })
    .join()
    .expect("probe thread")
}

/// A few probes, quickly.
fn ping(ns: &str, target: Ipv4Addr) -> Probes {
    probe(ns, target, 5, ms(30), 64, ms(1500))
}

/// Nothing of meshgate left in the namespace, nor a delay-line thread in this process.
fn assert_clean(ns: &str) {
    let rules = run("ip", &["netns", "exec", ns, "iptables", "-S"]);
    assert!(
        !rules.contains(CHAIN_PREFIX),
        "rules left in {ns}:\n{rules}"
    );
    let qdiscs = run("ip", &["netns", "exec", ns, "tc", "qdisc", "show"]);
    assert!(
        !qdiscs.contains("netem") && !qdiscs.contains("tbf"),
        "qdiscs left in {ns}:\n{qdiscs}"
    );
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("mg-delay"))
        .collect();
    assert!(threads.is_empty(), "delay-line threads left: {threads:?}");
}

fn latency(ms_: u64, direction: Direction) -> Shaping {
    Shaping {
        latency: ms(ms_),
        direction,
        ..Shaping::default()
    }
}

#[test]
fn latency_from_one_side_then_both_then_none() {
    let _t = turn();
    let pair = Pair::new("lat");
    let a = Pair::netns(&pair.a);

    let mut from = netfault::shape(&a, &latency(300, Direction::From)).unwrap();
    let p = ping(&pair.a, B);
    assert_eq!(p.lost(), 0);
    assert!(
        p.min() >= ms(300) && p.max() < ms(600),
        "{:?}..{:?}",
        p.min(),
        p.max()
    );
    from.health().unwrap();
    from.undo().unwrap();
    from.undo().unwrap(); // idempotent
    assert_clean(&pair.a);

    let mut both = netfault::shape(&a, &latency(300, Direction::Both)).unwrap();
    let p = ping(&pair.a, B);
    assert_eq!(p.lost(), 0);
    assert!(p.min() >= ms(600), "{:?}", p.min());
    both.undo().unwrap();
    assert_clean(&pair.a);

    let p = ping(&pair.a, B);
    assert_eq!(p.lost(), 0);
    assert!(p.max() < ms(50), "{:?}", p.max());

    // Dropping the handle undoes it too (a panic or an early return cleans up).
    let dropped = netfault::shape(&a, &latency(100, Direction::Both)).unwrap();
    drop(dropped);
    assert_clean(&pair.a);
}

#[test]
fn jitter_spreads_and_reorders() {
    let _t = turn();
    let pair = Pair::new("jit");
    let a = Pair::netns(&pair.a);
    let shaping = Shaping {
        latency: ms(200),
        jitter: ms(100),
        direction: Direction::From,
        ..Shaping::default()
    };
    let mut applied = netfault::shape(&a, &shaping).unwrap();
    let p = probe(&pair.a, B, 30, ms(10), 64, ms(1000));
    applied.undo().unwrap();
    assert_eq!(p.lost(), 0);
    assert!(
        p.min() >= ms(100) && p.max() < ms(400),
        "{:?}..{:?}",
        p.min(),
        p.max()
    );
    assert!(p.max() - p.min() > ms(50), "{:?}..{:?}", p.min(), p.max());
    assert!(p.reordered(), "order {:?}", p.order);
    assert_clean(&pair.a);
}

#[test]
fn loss_to_the_peer() {
    let _t = turn();
    let pair = Pair::new("loss");
    let a = Pair::netns(&pair.a);
    let shaping = Shaping {
        loss_percent: 30.0,
        direction: Direction::To,
        ..Shaping::default()
    };
    let mut applied = netfault::shape(&a, &shaping).unwrap();
    let p = probe(&pair.a, B, 200, ms(2), 64, ms(300));
    assert!((30..=90).contains(&p.lost()), "{} of 200 lost", p.lost());
    // Loss alone needs no delay line, and delays nothing.
    assert!(p.max() < ms(50), "{:?}", p.max());
    applied.undo().unwrap();
    assert_clean(&pair.a);
    let p = probe(&pair.a, B, 200, ms(2), 64, ms(300));
    assert_eq!(p.lost(), 0);
}

#[test]
fn rate_spaces_a_burst() {
    let _t = turn();
    let pair = Pair::new("rate");
    let a = Pair::netns(&pair.a);
    // 1000-byte datagrams (1028 bytes with headers) at 800 kbit/s: about 10 ms each.
    let shaping = Shaping {
        rate_bits_per_sec: Some(800_000),
        direction: Direction::From,
        ..Shaping::default()
    };
    let mut applied = netfault::shape(&a, &shaping).unwrap();
    let p = probe(&pair.a, B, 10, Duration::ZERO, 1000, ms(1000));
    applied.undo().unwrap();
    assert_eq!(p.lost(), 0);
    assert!(p.max() >= ms(80) && p.max() < ms(300), "{:?}", p.max());
    assert!(!p.reordered(), "a rate keeps order: {:?}", p.order);
    assert_clean(&pair.a);
}

#[test]
fn partition_and_heal() {
    let _t = turn();
    let pair = Pair::new("part");
    let a = Pair::netns(&pair.a);
    let mut cut = netfault::partition(&a, &[B]).unwrap();
    assert_eq!(ping(&pair.a, B).lost(), 5, "A to B");
    assert_eq!(ping(&pair.b, A).lost(), 5, "B to A");
    // Only the named address: B's other one still answers.
    assert_eq!(ping(&pair.a, B2).lost(), 0);
    cut.undo().unwrap();
    assert_clean(&pair.a);
    assert_eq!(ping(&pair.a, B).lost(), 0);
    assert_eq!(ping(&pair.b, A).lost(), 0);
}

#[test]
fn link_shapes_touch_only_their_address_and_compose() {
    let _t = turn();
    let pair = Pair::new("link");
    let a = Pair::netns(&pair.a);
    let link = Shaping {
        remote: Some(B),
        ..latency(300, Direction::From)
    };
    let mut link = netfault::shape(&a, &link).unwrap();
    let p = ping(&pair.a, B);
    assert!(
        p.min() >= ms(300) && p.max() < ms(600),
        "{:?}..{:?}",
        p.min(),
        p.max()
    );
    assert!(ping(&pair.a, B2).max() < ms(50));

    // A whole-peer shape beside it: the link keeps its own delay, the rest gets the whole-peer one.
    let mut whole = netfault::shape(&a, &latency(100, Direction::From)).unwrap();
    let p = ping(&pair.a, B);
    assert!(
        p.min() >= ms(300) && p.max() < ms(400),
        "link: {:?}..{:?}",
        p.min(),
        p.max()
    );
    let p = ping(&pair.a, B2);
    assert!(
        p.min() >= ms(100) && p.max() < ms(200),
        "rest: {:?}..{:?}",
        p.min(),
        p.max()
    );

    // A partition applied last still comes first.
    let mut cut = netfault::partition(&a, &[B]).unwrap();
    assert_eq!(ping(&pair.a, B).lost(), 5);
    for f in [&mut cut, &mut whole, &mut link] {
        f.health().unwrap();
        f.undo().unwrap();
    }
    assert_clean(&pair.a);
    assert!(ping(&pair.a, B).max() < ms(50));
}

#[test]
fn duplication_is_unsupported() {
    let _t = turn();
    let pair = Pair::new("dup");
    let shaping = Shaping {
        duplicate_percent: 5.0,
        ..latency(10, Direction::Both)
    };
    match netfault::shape(&Pair::netns(&pair.a), &shaping) {
        Err(e @ ShapeError::Unsupported(_)) => {
            assert!(e.to_string().contains("cannot be made by meshgate's NFQUEUE delay line"), "{e}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("duplication was accepted"),
    }
    assert_clean(&pair.a);
}

#[test]
fn a_dead_delay_line_fails_closed() {
    let _t = turn();
    let pair = Pair::new("dead");
    let a = Pair::netns(&pair.a);
    let mut applied = netfault::shape(&a, &latency(20, Direction::From)).unwrap();
    assert_eq!(ping(&pair.a, B).lost(), 0);
    applied.health().unwrap();

    applied.kill_delay_lines_for_test();
    let deadline = Instant::now() + Duration::from_secs(2);
    let why = loop {
        match applied.health() {
            Err(why) => break why,
            Ok(()) if Instant::now() < deadline => std::thread::sleep(ms(10)),
            Ok(()) => panic!("health still fine after the delay line was killed"),
        }
    };
    assert!(why.contains("delay line died"), "{why}");
    assert_eq!(
        ping(&pair.a, B).lost(),
        5,
        "traffic passed without its delay line"
    );

    applied.undo().unwrap();
    assert_clean(&pair.a);
    assert_eq!(ping(&pair.a, B).lost(), 0);
}

#[test]
fn the_shaping_path_is_found() {
    let _t = turn();
    let path = netfault::shaping_path();
    assert!(path.usable(), "{}", path.describe());
    assert!(path.describe().contains("NFQUEUE"), "{}", path.describe());
}

#[test]
fn the_runners_own_namespace_is_refused() {
    let _t = turn();
    let own = netfault::Netns::of_pid(std::process::id());
    let before = std::process::Command::new("iptables").arg("-S").output().unwrap().stdout;
    let err = netfault::partition(&own, &[B]).unwrap_err().to_string();
    assert!(err.contains("the runner's own network namespace"), "{err}");
    let err = netfault::shape(&own, &latency(100, Direction::Both)).unwrap_err().to_string();
    assert!(err.contains("the runner's own network namespace"), "{err}");
    let after = std::process::Command::new("iptables").arg("-S").output().unwrap().stdout;
    assert_eq!(before, after, "the host's firewall was touched");
}
