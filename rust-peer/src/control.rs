//! Where commands come from: stdin, or the control port (docs/peer-contract.md §8), whose one
//! connection is then both stdin and stdout.

use std::{
    io::{self, BufRead, BufReader, Read},
    net::{Ipv4Addr, TcpListener, TcpStream},
};

use tokio::sync::mpsc;

/// Listens on the control port of every IPv4 interface and takes the first connection (read and
/// write halves); it listens no more after that. Blocking: nothing else runs yet.
pub fn accept(port: u16) -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
    tracing::info!("waiting for the controller on {}", listener.local_addr()?);
    let (conn, from) = listener.accept()?;
    tracing::info!("controller connected from {from}");
    Ok((conn.try_clone()?, conn))
}

/// The input's lines, read on a thread of their own (blocking reads, as tokio's stdin does).
/// The channel ends at the end of input, after an error if reading failed.
pub fn lines(read: impl Read + Send + 'static) -> mpsc::Receiver<io::Result<String>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in BufReader::new(read).lines() {
            let failed = line.is_err();
            if tx.blocking_send(line).is_err() || failed {
                break;
            }
        }
    });
    rx
}
