//! What the kernel says a process's TCP connections are, read from /proc: the evidence that confirms (or
//! contradicts) the connections a peer reports. Works for a container's process and a local one alike, since
//! /proc/<pid>/net/tcp shows the process's network namespace.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `01` in /proc/net/tcp's `st` column.
const ESTABLISHED: &str = "01";

/// Remote ends of the process's established TCP connections, sorted, one per socket, or `None` when /proc cannot
/// tell (process gone, no permission). Not deduplicated: a dialer's two connections to one listener have the same
/// remote end, and that duplicate is exactly what the `connections` check must see.
pub fn established_remotes(pid: u32) -> Option<Vec<SocketAddr>> {
    let inodes = socket_inodes(pid)?;
    let mut remotes = Vec::new();
    for file in ["tcp", "tcp6"] {
        // Each table read walks the kernel's whole connection hash table; the IPv6 one is skipped when the
        // namespace has no TCP6 socket at all, which its cheap counters tell.
        if file == "tcp6" && tcp6_in_use(pid) == Some(0) {
            continue;
        }
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        remotes.extend(
            parse_table(&table)
                .filter(|(_, inode)| inodes.contains(inode))
                .map(|(remote, _)| remote),
        );
    }
    remotes.sort();
    Some(remotes)
}

/// `TCP6: inuse N` of the process's namespace, from /proc/<pid>/net/sockstat6.
fn tcp6_in_use(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/net/sockstat6")).ok()?;
    let line = stat.lines().find_map(|l| l.strip_prefix("TCP6: inuse "))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The socket inodes the process holds open: the namespace's table lists every process's sockets.
fn socket_inodes(pid: u32) -> Option<BTreeSet<u64>> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|target| {
                target
                    .to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect(),
    )
}

/// (remote address, inode) of every established row of a /proc/net/tcp{,6} table.
fn parse_table(table: &str) -> impl Iterator<Item = (SocketAddr, u64)> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 || cols[3] != ESTABLISHED {
            return None;
        }
        Some((parse_addr(cols[2])?, cols[9].parse().ok()?))
    })
}

/// `0100007F:0FA1` (IPv4, little-endian words) or 32 hex digits for IPv6, then the port in hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, word) in (0..4)
                .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16))
                .enumerate()
            {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.ok()?.swap_bytes().to_be_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0200110A:0FA1 0300110A:A3F2 01 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 20 4 30 10 -1\n\
   1: 00000000:0FA1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41200 1 0000000000000000 100 0 0 10 0\n";
        let rows: Vec<_> = parse_table(table).collect();
        assert_eq!(rows, vec![("10.17.0.3:41970".parse().unwrap(), 41234)]);
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0FA1"),
            Some("127.0.0.1:4001".parse().unwrap())
        );
    }

    #[test]
    fn sees_a_real_connection_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, client_addr) = listener.accept().unwrap();
        let remotes = established_remotes(std::process::id()).unwrap();
        assert!(remotes.contains(&addr), "{remotes:?}");
        assert!(remotes.contains(&client_addr), "{remotes:?}");
    }

    /// The IPv6 table is read when the namespace has an IPv6 socket (this test's), and its connections count.
    #[test]
    fn sees_an_ipv6_connection() {
        let listener = std::net::TcpListener::bind("[::1]:0").expect("IPv6 loopback on this machine");
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let _accepted = listener.accept().unwrap();
        assert!(tcp6_in_use(std::process::id()).unwrap() > 0);
        let remotes = established_remotes(std::process::id()).unwrap();
        assert!(remotes.contains(&addr), "{remotes:?}");
    }

    #[test]
    fn two_sockets_to_one_listener_are_listed_twice() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _first = std::net::TcpStream::connect(addr).unwrap();
        let _second = std::net::TcpStream::connect(addr).unwrap();
        let _accepted = (listener.accept().unwrap(), listener.accept().unwrap());
        let remotes = established_remotes(std::process::id()).unwrap();
        assert_eq!(
            remotes.iter().filter(|r| **r == addr).count(),
            2,
            "{remotes:?}"
        );
    }
}
