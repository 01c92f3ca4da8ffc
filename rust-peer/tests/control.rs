//! The contract over the control port (docs/peer-contract.md §8), on the real binary: events
//! come over the connection, `started` first and `stopped` last, a command is answered there,
//! stdout stays silent, stdin is never read, and no second controller is accepted.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use contract::events::{Event, EventLine};

fn config(seed: u64, extra: &str) -> String {
    format!(
        r#"{{"seed":{seed},"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux",{extra}}}"#
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Connects once the peer listens (it reads its configuration first).
fn dial_until(port: u16, within: Duration) -> TcpStream {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => return conn,
            Err(e) if Instant::now() > deadline => panic!("no control port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn the_contract_is_served_over_the_control_port() {
    let port = free_port();
    let binary = std::env::var("MESHGATE_TEST_PEER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_rust-peer").to_owned());
    let mut child = Command::new(binary)
        .env(
            contract::config::CONFIG_VAR,
            config(7, &format!(r#""control_port":{port}"#)),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rust-peer");
    let _stdin = child.stdin.take();

    let mut conn = dial_until(port, Duration::from_secs(30));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut lines = BufReader::new(conn.try_clone().unwrap()).lines();
    let mut next = || -> EventLine {
        let line = lines
            .next()
            .expect("the control connection ended early")
            .expect("read a line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not an event line: {line}: {e}"))
    };
    assert!(
        matches!(next().event, Event::Started { .. }),
        "started comes first"
    );
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_err(),
        "a second controller could connect"
    );
    writeln!(conn, r#"{{"cmd":"no-such-command","cmd_id":"c1"}}"#).unwrap();
    while !matches!(next().event, Event::Error { cmd_id: Some(ref id), .. } if id == "c1") {}
    writeln!(conn, r#"{{"cmd":"stop"}}"#).unwrap();
    while !matches!(next().event, Event::Stopped) {}

    let status = child.wait().expect("the peer exits");
    assert_eq!(status.code(), Some(0), "exit status after stop");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.is_empty(), "stdout is not silent: {stdout:?}");
}

/// `events_path` (docs/peer-contract.md §1): the events go to that file, which the peer opens but
/// never creates, with `started` first and `stopped` last; stdout stays silent and commands still
/// come from stdin. Also with one runtime thread (`TOKIO_WORKER_THREADS=1`), as at scale.
#[test]
fn events_go_to_the_file_events_path_names() {
    let binary = std::env::var("MESHGATE_TEST_PEER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_rust-peer").to_owned());
    let path = std::env::temp_dir().join(format!("rust-peer-events-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let extra = format!(r#""events_path":{}"#, serde_json::to_string(&path).unwrap());
    let run = |threads: &str| {
        let mut child = Command::new(&binary)
            .env(contract::config::CONFIG_VAR, config(8, &extra))
            .env("TOKIO_WORKER_THREADS", threads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rust-peer");
        writeln!(child.stdin.take().unwrap(), r#"{{"cmd":"stop"}}"#).unwrap();
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        (child.wait().unwrap(), stdout)
    };
    let (status, _) = run("2");
    assert!(!status.success(), "with no file at events_path the peer must fail, not create it");
    for threads in ["1", "2"] {
        std::fs::write(&path, "").unwrap();
        let (status, stdout) = run(threads);
        assert!(status.success(), "exit after stop: {status}");
        assert_eq!(stdout, "", "stdout is silent with events_path");
        let events: Vec<EventLine> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event line: {l}: {e}")))
            .collect();
        assert!(matches!(events.first().map(|e| &e.event), Some(Event::Started { .. })), "started first");
        assert!(matches!(events.last().map(|e| &e.event), Some(Event::Stopped)), "stopped last");
    }
    let _ = std::fs::remove_file(&path);
}
