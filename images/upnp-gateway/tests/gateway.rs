//! The real binary on real sockets (127.0.0.1): SSDP answers, descriptions, SOAP state, the quirk, the life
//! cycle, and the goupnp client go-libp2p uses. Every stdout line of every run is held to the participant schema.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quick_xml::events::Event;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_upnp-gateway");
const EXTERNAL_IP: &str = "10.217.0.1";

fn free_port() -> u16 {
    // Free for TCP and UDP alike at the time of asking.
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    ssdp: SocketAddr,
    http_port: u16,
}

impl Gateway {
    fn start(quirk: Option<&str>) -> Gateway {
        let (http_port, ssdp_port) = (free_port(), free_port());
        let quirk = quirk
            .map(|q| format!(r#","quirk":{q}"#))
            .unwrap_or_default();
        let config = format!(
            r#"{{"address":"127.0.0.1","http_port":{http_port},"external_ip":"{EXTERNAL_IP}","ssdp_port":{ssdp_port}{quirk}}}"#
        );
        let mut child = Command::new(BIN)
            .env("MESHGATE_GATEWAY_CONFIG", config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut g = Gateway {
            child,
            lines,
            seen: Vec::new(),
            ssdp: SocketAddr::from(([127, 0, 0, 1], ssdp_port)),
            http_port,
        };
        let first = g
            .next_event(Duration::from_secs(10))
            .expect("a started line");
        assert_eq!(first["event"], "started", "{first}");
        assert_eq!(first["implementation"], "meshgate-upnp-gateway");
        assert_eq!(first["contract_version"], contract::VERSION);
        let listening = g
            .next_event(Duration::from_secs(5))
            .expect("a listening line");
        assert_eq!(listening["event"], "listening");
        assert_eq!(listening["addrs"][1], g.location());
        g
    }

    fn location(&self) -> String {
        format!("http://127.0.0.1:{}/rootDesc.xml", self.http_port)
    }

    fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}")),
        )
    }

    /// The events that arrive within `wait`.
    fn events_for(&mut self, wait: Duration) -> Vec<Value> {
        let end = Instant::now() + wait;
        let mut found = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.next_event(left) {
                Some(e) => found.push(e),
                None => break,
            }
        }
        found
    }

    /// Stops it the way the runner does, and checks every line it wrote.
    fn stop(mut self) -> (ExitStatus, Vec<String>) {
        writeln!(self.child.stdin.as_mut().unwrap(), r#"{{"cmd":"stop"}}"#).unwrap();
        self.finish()
    }

    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = wait(&mut self.child, Duration::from_secs(10));
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        check_schema(&self.seen);
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(child: &mut Child, timeout: Duration) -> ExitStatus {
    let end = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < end, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_schema(lines: &[String]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/contract/participant-events.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for line in lines {
        let value: Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        serde_json::from_value::<contract::participant::ParticipantLine>(value).unwrap();
        assert!(line.contains(r#""participant":"upnp-gateway""#), "{line}");
    }
}

/// An M-SEARCH as goupnp writes it, sent `times` times 5 ms apart from `socket`.
fn search(socket: &UdpSocket, to: SocketAddr, st: &str, times: usize) {
    let msg = format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n"
    );
    for _ in 0..times {
        socket.send_to(msg.as_bytes(), to).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The replies that reach `socket` within `wait`, as header maps.
fn replies(socket: &UdpSocket, wait: Duration) -> Vec<std::collections::BTreeMap<String, String>> {
    let end = Instant::now() + wait;
    let mut found = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok(n) = socket.recv(&mut buf) else { break };
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        assert!(response.parse(&buf[..n]).unwrap().is_complete());
        assert_eq!(response.code, Some(200));
        found.push(
            response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_uppercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        );
    }
    found
}

fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

const IGD1: &str = "urn:schemas-upnp-org:device:WANConnectionDevice:1";
const IGD2: &str = "urn:schemas-upnp-org:device:WANConnectionDevice:2";

#[test]
fn every_target_the_clients_search_is_answered() {
    let mut g = Gateway::start(None);
    for st in [
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1", // igd-next
        "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
        "urn:schemas-upnp-org:device:WANDevice:1",
        "urn:schemas-upnp-org:device:WANDevice:2",
        IGD1, // goupnp internetgateway1 (go-libp2p IG1)
        IGD2, // goupnp internetgateway2 (go-libp2p IG2)
        "urn:schemas-upnp-org:service:WANIPConnection:1",
        "urn:schemas-upnp-org:service:WANIPConnection:2",
        "upnp:rootdevice",
    ] {
        let c = client();
        search(&c, g.ssdp, st, 1);
        let r = replies(&c, Duration::from_millis(500));
        assert_eq!(r.len(), 1, "{st}: {r:?}");
        assert_eq!(r[0]["ST"], st);
        assert_eq!(r[0]["LOCATION"], g.location());
        assert!(
            r[0]["USN"].starts_with("uuid:") && r[0]["USN"].ends_with(&format!("::{st}")),
            "{r:?}"
        );
        assert!(
            r[0].contains_key("EXT") && r[0]["CACHE-CONTROL"].starts_with("max-age="),
            "{r:?}"
        );
        assert!(r[0]["SERVER"].contains("UPnP/1.1"), "{r:?}");
    }
    // ssdp:all: the root, every device by UDN and by type, every service (go-nat's fallback looks for the IGD).
    let c = client();
    search(&c, g.ssdp, "ssdp:all", 1);
    let all = replies(&c, Duration::from_millis(500));
    let sts: Vec<&str> = all.iter().map(|r| r["ST"].as_str()).collect();
    assert_eq!(all.len(), 9, "{sts:?}");
    for st in [
        "upnp:rootdevice",
        "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
        IGD2,
    ] {
        assert!(sts.contains(&st), "{sts:?}");
    }
    // A UDN found through ssdp:all answers a search for itself.
    let udn = all.iter().find(|r| r["ST"].starts_with("uuid:")).unwrap()["ST"].clone();
    search(&c, g.ssdp, &udn, 1);
    assert_eq!(replies(&c, Duration::from_millis(500))[0]["USN"], udn);
    // Not a target it has: no reply, and it says why.
    for st in [
        "urn:schemas-upnp-org:service:WANPPPConnection:1",
        "urn:schemas-upnp-org:device:WANDevice:3",
    ] {
        search(&c, g.ssdp, st, 1);
        assert!(
            replies(&c, Duration::from_millis(300)).is_empty(),
            "{st} answered"
        );
    }
    let events = g.events_for(Duration::from_millis(300));
    let ignored: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "ssdp_ignored")
        .collect();
    assert_eq!(ignored.len(), 2, "{events:?}");
    assert_eq!(ignored[0]["reason"], "unknown search target");
    // Bad input is said, not answered.
    c.send_to(b"M-SEARCH * HTTP/1.1\r\nST: x\r\n\r\n", g.ssdp)
        .unwrap();
    assert!(replies(&c, Duration::from_millis(300)).is_empty());
    let (status, lines) = g.stop();
    assert!(status.success());
    let count = |event: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(r#""event":"{event}""#)))
            .count()
    };
    assert_eq!(count("ssdp_request"), 9 + 1 + 1 + 2);
    assert_eq!(count("ssdp_response"), 9 + 9 + 1);
    assert_eq!(count("error"), 1);
    assert!(lines.last().unwrap().contains(r#""event":"stopped""#));
}

/// An HTTP/1.1 exchange over a plain socket, the response read with httparse: (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let mut h = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut h);
    let httparse::Status::Complete(at) = response.parse(&raw).unwrap() else {
        panic!("partial response")
    };
    (
        response.code.unwrap(),
        String::from_utf8_lossy(&raw[at..]).into_owned(),
    )
}

/// The texts of every element named `name`, by local name.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut found, mut inside) = (Vec::new(), false);
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) => inside = e.local_name().as_ref() == name.as_bytes(),
            Event::Text(t) if inside => found.push(t.decode().unwrap().into_owned()),
            Event::End(_) => inside = false,
            Event::Eof => return found,
            _ => {}
        }
    }
}

#[test]
fn the_descriptions_hold_the_device_and_its_services() {
    let g = Gateway::start(None);
    let (status, root) = http(g.http_port, "GET", "/rootDesc.xml", &[], "");
    assert_eq!(status, 200);
    assert!(root.contains(r#"<root xmlns="urn:schemas-upnp-org:device-1-0">"#));
    assert_eq!(
        texts(&root, "deviceType"),
        [
            "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
            "urn:schemas-upnp-org:device:WANDevice:2",
            "urn:schemas-upnp-org:device:WANConnectionDevice:2"
        ]
    );
    assert_eq!(
        texts(&root, "serviceType"),
        [
            "urn:schemas-upnp-org:service:WANIPConnection:1",
            "urn:schemas-upnp-org:service:WANIPConnection:2"
        ]
    );
    let scpds = texts(&root, "SCPDURL");
    for (scpd, any) in scpds.iter().zip([false, true]) {
        let (status, body) = http(g.http_port, "GET", scpd, &[], "");
        assert_eq!(status, 200, "{scpd}");
        let actions = texts(&body, "name");
        for action in [
            "GetExternalIPAddress",
            "GetNATRSIPStatus",
            "AddPortMapping",
            "DeletePortMapping",
        ] {
            assert!(actions.iter().any(|a| a == action), "{scpd} lacks {action}");
        }
        assert_eq!(
            actions.iter().any(|a| a == "AddAnyPortMapping"),
            any,
            "{scpd}"
        );
    }
    assert_eq!(http(g.http_port, "GET", "/nothing.xml", &[], "").0, 404);
    let (status, _) = g.stop();
    assert!(status.success());
}

fn envelope(service: &str, action: &str, args: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:{action} xmlns:u="{service}">{args}</u:{action}></s:Body></s:Envelope>"#
    )
}

#[test]
fn soap_actions_keep_a_mapping_table() {
    let mut g = Gateway::start(None);
    const V1: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";
    // igd-next writes `WANIPConnection:1` even to a :2 service: accepted on either control URL.
    let call = |path: &str, action: &str, args: &str| {
        let action_header = format!("\"{V1}#{action}\"");
        http(
            g.http_port,
            "POST",
            path,
            &[
                ("SOAPAction", &action_header),
                ("Content-Type", "text/xml; charset=\"utf-8\""),
            ],
            &envelope(V1, action, args),
        )
    };
    let add = |client: &str| {
        format!("<NewRemoteHost></NewRemoteHost><NewExternalPort>41234</NewExternalPort><NewProtocol>UDP</NewProtocol><NewInternalPort>4001</NewInternalPort><NewInternalClient>{client}</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>rust-libp2p</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>")
    };
    let key = "<NewRemoteHost></NewRemoteHost><NewExternalPort>41234</NewExternalPort><NewProtocol>UDP</NewProtocol>";
    let (status, body) = call("/ctl/IPConn2", "GetExternalIPAddress", "");
    assert_eq!(status, 200);
    assert_eq!(texts(&body, "NewExternalIPAddress"), [EXTERNAL_IP]);
    assert!(body.contains(
        "GetExternalIPAddressResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\""
    ));
    assert_eq!(
        call("/ctl/IPConn1", "AddPortMapping", &add("127.0.0.1")).0,
        200
    );
    let (status, body) = call("/ctl/IPConn2", "GetSpecificPortMappingEntry", key);
    assert_eq!(
        (status, texts(&body, "NewInternalClient")),
        (200, vec!["127.0.0.1".to_owned()])
    );
    let (status, body) = call("/ctl/IPConn1", "AddPortMapping", &add("127.0.0.2"));
    assert_eq!(
        (status, texts(&body, "errorCode")),
        (500, vec!["718".to_owned()])
    );
    assert_eq!(texts(&body, "faultstring"), ["UPnPError"]);
    let (status, body) = call(
        "/ctl/IPConn1",
        "GetGenericPortMappingEntry",
        "<NewPortMappingIndex>0</NewPortMappingIndex>",
    );
    assert_eq!(
        (status, texts(&body, "NewExternalPort")),
        (200, vec!["41234".to_owned()])
    );
    assert_eq!(call("/ctl/IPConn1", "DeletePortMapping", key).0, 200);
    let (status, body) = call("/ctl/IPConn1", "DeletePortMapping", key);
    assert_eq!(
        (status, texts(&body, "errorCode")),
        (500, vec!["714".to_owned()])
    );
    let (status, body) = call("/ctl/IPConn1", "GetSpecificPortMappingEntry", key);
    assert_eq!(
        (status, texts(&body, "errorCode")),
        (500, vec!["714".to_owned()])
    );
    let (status, body) = call("/ctl/IPConn1", "ForceTermination", "");
    assert_eq!(
        (status, texts(&body, "errorCode")),
        (500, vec!["401".to_owned()])
    );
    let (status, _) = http(
        g.http_port,
        "POST",
        "/ctl/IPConn1",
        &[("SOAPAction", "\"x#y\"")],
        "<not-soap/>",
    );
    assert_eq!(status, 400);
    let events: Vec<Value> = g.events_for(Duration::from_millis(300));
    let soap: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "soap_action")
        .collect();
    assert_eq!(soap.len(), 9, "{events:?}");
    assert_eq!(soap[1]["action"], "AddPortMapping");
    assert_eq!(soap[1]["args"]["NewInternalClient"], "127.0.0.1");
    assert_eq!(soap[1]["service"], V1);
    assert_eq!(
        soap[2]["service"],
        "urn:schemas-upnp-org:service:WANIPConnection:2"
    );
    assert_eq!(soap[3]["fault"], "718 ConflictInMappingEntry");
    assert_eq!(soap[6]["fault"], "714 NoSuchEntryInArray");
    assert_eq!(soap[8]["fault"], "401 Invalid Action");
    assert!(events
        .iter()
        .any(|e| e["event"] == "error" && e["message"].as_str().unwrap().contains("SOAP")));
    let (status, _) = g.stop();
    assert!(status.success());
}

#[test]
fn goupnp_reads_the_device_and_maps_ports() {
    // The client library of go-libp2p's NAT port mapping (goupnp v1.3.0), not a stand-in for it.
    let g = Gateway::start(None);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/goupnp");
    let out = Command::new("go")
        .args([
            "run",
            ".",
            "-location",
            &g.location(),
            "-external",
            EXTERNAL_IP,
            "-client",
            "10.216.0.4",
        ])
        .current_dir(&dir)
        .output()
        .expect("go is installed: the goupnp test needs it");
    assert!(
        out.status.success(),
        "goupnp failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, lines) = g.stop();
    assert!(status.success());
    for action in [
        "GetNATRSIPStatus",
        "GetExternalIPAddress",
        "AddPortMapping",
        "AddAnyPortMapping",
        "DeletePortMapping",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(r#""action":"{action}""#))),
            "no {action} in {lines:?}"
        );
    }
}

/// go-libp2p <= 0.40 (go-nat v0.2.0): IG1 and IG2 searched at once, each target sent three times 5 ms apart,
/// from two sockets. Returns the replies each socket got.
fn concurrent(g: &Gateway) -> (usize, usize) {
    let (a, b) = (client(), client());
    let (to, to2) = (g.ssdp, g.ssdp);
    let b2 = b.try_clone().unwrap();
    let other = std::thread::spawn(move || search(&b2, to2, IGD2, 3));
    search(&a, to, IGD1, 3);
    other.join().unwrap();
    (
        replies(&a, Duration::from_millis(1500)).len(),
        replies(&b, Duration::from_millis(100)).len(),
    )
}

/// go-libp2p >= 0.41: IG1, then IG2 once goupnp's 2 s search for IG1 is over.
fn serial(g: &Gateway) -> (usize, usize) {
    let (a, b) = (client(), client());
    search(&a, g.ssdp, IGD1, 3);
    let first = replies(&a, Duration::from_secs(2)).len();
    search(&b, g.ssdp, IGD2, 3);
    (first, replies(&b, Duration::from_secs(2)).len())
}

#[test]
fn the_quirk_fails_concurrent_searches_and_lets_serial_ones_through() {
    let mut g = Gateway::start(Some(r#"{"window_ms":300,"answer":"none"}"#));
    assert_eq!(concurrent(&g), (0, 0));
    let events = g.events_for(Duration::from_millis(200));
    let ignored: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "ssdp_ignored")
        .collect();
    assert_eq!(ignored.len(), 6, "{events:?}");
    assert!(
        ignored
            .iter()
            .all(|e| e["reason"] == "quirk: 2 search targets within 300ms"),
        "{ignored:?}"
    );
    // Repeats of one target are no concurrency: every one of the three sends is answered.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(serial(&g), (3, 3));
    let (status, _) = g.stop();
    assert!(status.success());

    // Without the quirk the concurrent searches are answered at once.
    let g = Gateway::start(None);
    assert_eq!(concurrent(&g), (3, 3));
    assert!(g.stop().0.success());
}

#[test]
fn the_quirk_can_answer_the_first_target_only() {
    let mut g = Gateway::start(Some(r#"{"window_ms":300,"answer":"first"}"#));
    let start = Instant::now();
    assert_eq!(concurrent(&g), (3, 0));
    let events = g.events_for(Duration::from_millis(200));
    let ignored: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "ssdp_ignored")
        .collect();
    assert_eq!(ignored.len(), 3, "{events:?}");
    assert!(ignored.iter().all(|e| e["st"] == IGD2
        && e["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("only {IGD1}"))));
    // Answers were held for the window.
    let answered = events
        .iter()
        .filter(|e| e["event"] == "ssdp_response")
        .count();
    assert_eq!(answered, 3);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(g.stop().0.success());
}

#[test]
fn a_bad_configuration_exits_2() {
    for (config, why) in [
        (None, "is not set"),
        (Some("{"), "MESHGATE_GATEWAY_CONFIG"),
        (
            Some(r#"{"address":"127.0.0.1","http_port":5000}"#),
            "external_ip",
        ),
        (
            Some(r#"{"address":"127.0.0.1","http_port":5000,"external_ip":"8.8.8.8"}"#),
            "not a private",
        ),
        (
            Some(r#"{"address":"nowhere","http_port":5000,"external_ip":"10.0.0.1"}"#),
            "not an IPv4",
        ),
        (
            Some(
                r#"{"address":"127.0.0.1","http_port":5000,"external_ip":"10.0.0.1","quirk":{"window_ms":0}}"#,
            ),
            "window_ms",
        ),
    ] {
        let mut c = Command::new(BIN);
        c.env_remove("MESHGATE_GATEWAY_CONFIG");
        if let Some(config) = config {
            c.env("MESHGATE_GATEWAY_CONFIG", config);
        }
        let out = c.stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{config:?}");
        assert!(out.stdout.is_empty(), "{config:?} wrote to stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{config:?}: {stderr}");
    }
}

#[test]
fn it_stops_on_stop_on_eof_and_on_sigterm() {
    let (status, lines) = Gateway::start(None).stop();
    assert!(status.success());
    assert!(lines.last().unwrap().contains(r#""event":"stopped""#));

    let mut g = Gateway::start(None);
    // An unknown command is an error, not a stop.
    writeln!(
        g.child.stdin.as_mut().unwrap(),
        r#"{{"cmd":"dial","addr":"/ip4/1.2.3.4/tcp/1"}}"#
    )
    .unwrap();
    writeln!(g.child.stdin.as_mut().unwrap(), "not json").unwrap();
    let events = g.events_for(Duration::from_millis(300));
    assert_eq!(
        events.iter().filter(|e| e["event"] == "error").count(),
        2,
        "{events:?}"
    );
    drop(g.child.stdin.take());
    let (status, lines) = g.finish();
    assert!(status.success());
    assert!(lines.last().unwrap().contains(r#""event":"stopped""#));

    let g = Gateway::start(None);
    let pid = g.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (status, lines) = g.finish();
    assert!(status.success());
    assert!(lines.last().unwrap().contains(r#""event":"stopped""#));
}

#[test]
fn igd_next_finds_the_gateway_and_maps_ports() {
    // rust-libp2p's UPnP client, searching the gateway's port instead of the group.
    use igd_next::{AddPortError, PortMappingProtocol, RemovePortError, SearchOptions};
    let g = Gateway::start(None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = SearchOptions {
            bind_addr: "127.0.0.1:0".parse().unwrap(),
            broadcast_address: g.ssdp,
            timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let gateway = igd_next::aio::tokio::search_gateway(options)
            .await
            .expect("igd-next finds the gateway");
        let external: std::net::IpAddr = EXTERNAL_IP.parse().unwrap();
        assert_eq!(gateway.get_external_ip().await.unwrap(), external);
        let local: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        gateway
            .add_port(PortMappingProtocol::TCP, 41000, local, 60, "rust-libp2p")
            .await
            .unwrap();
        let other: SocketAddr = "127.0.0.2:4001".parse().unwrap();
        let taken = gateway
            .add_port(PortMappingProtocol::TCP, 41000, other, 60, "other")
            .await;
        assert!(matches!(taken, Err(AddPortError::PortInUse)), "{taken:?}");
        let any = gateway
            .add_any_port(PortMappingProtocol::UDP, local, 60, "rust-libp2p")
            .await
            .unwrap();
        assert_ne!(any, 0);
        gateway
            .remove_port(PortMappingProtocol::TCP, 41000)
            .await
            .unwrap();
        let gone = gateway.remove_port(PortMappingProtocol::TCP, 41000).await;
        assert!(
            matches!(gone, Err(RemovePortError::NoSuchPortMapping)),
            "{gone:?}"
        );
    });
    let (status, lines) = g.stop();
    assert!(status.success());
    let search = lines
        .iter()
        .find(|l| l.contains(r#""event":"ssdp_request""#))
        .unwrap();
    assert!(
        search.contains("urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
        "{search}"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains(r#""fault":"718 ConflictInMappingEntry""#)));
    assert!(lines
        .iter()
        .any(|l| l.contains(r#""fault":"714 NoSuchEntryInArray""#)));
}
