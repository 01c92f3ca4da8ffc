//! The roles of contract revision 2 between real peers over real sockets on 127.0.0.1:
//! request-response (answered, delayed, dropped, stalled, several at once to a peer not yet
//! connected), its wire framing against a hand-driven libp2p stream, AutoNAT v1 concluding a
//! status, and what is refused at start or per command.

mod common;

use std::time::Duration;

use common::{config, TestPeer};
use contract::{
    commands::{AutonatVersion, Request, Response},
    config::REQUEST_RESPONSE_PROTOCOL,
    events::{AutonatOutcome, Event, ReachabilityStatus},
    exit,
};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol};

const SHORT: Duration = Duration::from_secs(20);

fn responder(seed: u64, responder: &str) -> (TestPeer, String) {
    let mut peer = TestPeer::start(&config(seed, &format!(r#""request_response":{responder}"#)));
    let addr = peer.loopback_addr();
    (peer, addr)
}

fn request(requester: &mut TestPeer, to: &TestPeer, addr: &str, id: &str, size: u64) {
    requester.send(&format!(
        r#"{{"cmd":"request","peer":"{}","addr":"{addr}","id":"{id}","size":{size}}}"#,
        to.id
    ));
    let sent = requester.expect(
        "request_sent",
        SHORT,
        |e| matches!(e, Event::RequestSent { id: i, .. } if i == id),
    );
    assert_eq!(
        sent,
        Event::RequestSent {
            remote: to.id.clone(),
            id: id.into(),
            size
        }
    );
}

#[test]
fn answered_and_delayed_with_the_configured_size() {
    let (mut a, addr_a) = responder(11, "{}");
    let (c, addr_c) = responder(13, r#"{"response_delay_ms":700,"response_size":7}"#);
    let mut b = TestPeer::start(&config(12, r#""request_response":{}"#));

    request(&mut b, &a, &addr_a, "r1", 100);
    let Event::ResponseReceived { remote, size, .. } = b.expect(
        "response r1",
        SHORT,
        |e| matches!(e, Event::ResponseReceived { id, .. } if id == "r1"),
    ) else {
        unreachable!()
    };
    assert_eq!(
        (remote.as_str(), size),
        (a.id.as_str(), 100),
        "the default answer is as large as the request"
    );
    let received = a.expect("request_received", SHORT, |e| {
        matches!(e, Event::RequestReceived { .. })
    });
    assert_eq!(
        received,
        Event::RequestReceived {
            remote: b.id.clone(),
            id: "r1".into(),
            size: 100
        }
    );

    request(&mut b, &c, &addr_c, "r2", 50);
    let Event::ResponseReceived {
        size, latency_us, ..
    } = b.expect(
        "response r2",
        SHORT,
        |e| matches!(e, Event::ResponseReceived { id, .. } if id == "r2"),
    )
    else {
        unreachable!()
    };
    assert_eq!(size, 7);
    assert!(
        latency_us >= 700_000,
        "answered after {latency_us} µs, before the 700 ms delay"
    );
}

#[test]
fn a_dropped_request_fails() {
    let (a, addr_a) = responder(21, r#"{"failure":"drop"}"#);
    let mut b = TestPeer::start(&config(22, r#""request_response":{}"#));
    request(&mut b, &a, &addr_a, "d1", 10);
    let failed = b.expect("request_failed", SHORT, |e| {
        matches!(e, Event::RequestFailed { .. })
    });
    let Event::RequestFailed { remote, id, error } = failed else {
        unreachable!()
    };
    assert_eq!((remote, id), (a.id.clone(), "d1".to_owned()));
    assert!(!error.is_empty());
    assert!(b
        .seen(|e| matches!(e, Event::ResponseReceived { .. }))
        .is_empty());
}

/// request-response says only "Failed to dial the requested peer"; the dial's own error follows.
#[test]
fn a_request_nobody_can_take_fails_with_the_dial_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
    let mut b = TestPeer::start(&config(24, r#""request_response":{}"#));
    b.send(&format!(
        r#"{{"cmd":"request","peer":"{nobody}","addr":"/ip4/127.0.0.1/tcp/{port}/p2p/{nobody}","id":"n1","size":1}}"#
    ));
    let Event::RequestFailed { error, .. } = b.expect("request_failed", SHORT, |e| {
        matches!(e, Event::RequestFailed { .. })
    }) else {
        unreachable!()
    };
    assert!(
        error.starts_with("Failed to dial the requested peer: "),
        "{error}"
    );
    assert!(
        error.contains(&port.to_string()) || error.to_lowercase().contains("refused"),
        "{error}"
    );
    assert!(
        b.seen(|e| matches!(e, Event::Error { .. })).is_empty(),
        "not a `dial` command's error"
    );
}

#[test]
fn a_stalled_request_times_out() {
    let (mut a, addr_a) = responder(31, r#"{"failure":"stall"}"#);
    let mut b = TestPeer::start(&config(32, r#""request_response":{}"#));
    request(&mut b, &a, &addr_a, "s1", 10);
    a.expect("request_received", SHORT, |e| {
        matches!(e, Event::RequestReceived { .. })
    });
    // Nothing before the 30 s timeout, then a failure that says so.
    assert!(b
        .try_expect(Duration::from_secs(25), |e| matches!(
            e,
            Event::RequestFailed { .. }
        ))
        .is_none());
    let Event::RequestFailed { error, .. } =
        b.expect("request_failed", Duration::from_secs(15), |e| {
            matches!(e, Event::RequestFailed { .. })
        })
    else {
        unreachable!()
    };
    assert!(
        error.to_lowercase().contains("timeout") || error.to_lowercase().contains("timed out"),
        "{error}"
    );
}

/// rust-libp2p#5996: requests sent back to back to a peer not yet connected all make
/// request-response dial; with libp2p-request-response 0.27.x and 0.28.0 (libp2p 0.54, 0.55)
/// the later dials' condition fails and requests with it, from 0.28.1 (yanked; 0.29.0 with
/// libp2p 0.56) every one is answered.
#[test]
fn back_to_back_requests_to_a_peer_not_yet_connected() {
    let (a, addr_a) = responder(41, "{}");
    let mut b = TestPeer::start(&config(42, r#""request_response":{}"#));
    let version = b
        .versions
        .get("libp2p-request-response")
        .cloned()
        .expect("versions");
    let buggy = version.starts_with("0.27.") || version == "0.28.0";
    for id in ["c1", "c2", "c3"] {
        b.send(&format!(
            r#"{{"cmd":"request","peer":"{}","addr":"{addr_a}","id":"{id}","size":8}}"#,
            a.id
        ));
    }
    let mut answered = 0;
    let mut failed = Vec::new();
    for _ in 0..3 {
        match b.expect("an outcome", SHORT, |e| {
            matches!(
                e,
                Event::ResponseReceived { .. } | Event::RequestFailed { .. }
            )
        }) {
            Event::ResponseReceived { .. } => answered += 1,
            Event::RequestFailed { error, .. } => failed.push(error),
            _ => unreachable!(),
        }
    }
    if buggy {
        // The second dial's condition fails and takes every pending request to the peer along
        // (0.27) or at least the later ones (0.28.0).
        assert!(
            failed.len() >= 2,
            "request-response {version}: {answered} answered, {failed:?}"
        );
        assert!(
            failed
                .iter()
                .all(|e| e.contains("PeerCondition::NotDialing")),
            "{failed:?}"
        );
    } else {
        assert_eq!(
            (answered, failed),
            (3, Vec::<String>::new()),
            "request-response {version}"
        );
    }
}

/// The wire format: a request is exactly the JSON of `Request` up to the writer's half-close,
/// and a response written by hand the same way is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn the_wire_framing_is_json_to_the_half_close() {
    let protocol = StreamProtocol::new(REQUEST_RESPONSE_PROTOCOL);
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .build();
    let mut incoming = swarm
        .behaviour()
        .new_control()
        .accept(protocol)
        .expect("accept");
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .expect("listen");
    let addr: Multiaddr = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            swarm.select_next_some().await
        {
            break address;
        }
    };
    let hand = swarm.local_peer_id().to_string();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });

    let mut b =
        tokio::task::spawn_blocking(|| TestPeer::start(&config(52, r#""request_response":{}"#)))
            .await
            .unwrap();
    b.send(&format!(
        r#"{{"cmd":"request","peer":"{hand}","addr":"{addr}/p2p/{hand}","id":"w1","size":5}}"#
    ));
    let (_, mut stream) = tokio::time::timeout(SHORT, incoming.next())
        .await
        .expect("a stream")
        .unwrap();
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .await
        .expect("read to the half-close");
    let expected = serde_json::to_vec(&Request {
        id: "w1".into(),
        payload: "xxxxx".into(),
    })
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&expected)
    );
    let answer = serde_json::to_vec(&Response {
        id: "w1".into(),
        payload: "abc".into(),
    })
    .unwrap();
    stream.write_all(&answer).await.unwrap();
    stream.close().await.unwrap();
    let received = tokio::task::spawn_blocking(move || {
        b.expect("response_received", SHORT, |e| {
            matches!(e, Event::ResponseReceived { .. })
        })
    })
    .await
    .unwrap();
    let Event::ResponseReceived {
        remote, id, size, ..
    } = received
    else {
        unreachable!()
    };
    assert_eq!((remote, id, size), (hand, "w1".to_owned(), 3));
}

/// A v1 client asks a v1 server on 127.0.0.1: the server dials the client's loopback address
/// back (private addresses accepted), the client concludes it is public.
#[test]
fn autonat_v1_client_and_server_conclude() {
    let mut server = TestPeer::start(&config(
        61,
        r#""autonat":{"v1":"server","throttle_peer_max":10}"#,
    ));
    let addr = server.loopback_addr();
    let mut client = TestPeer::start(&config(62, r#""autonat":{"v1":"client"}"#));
    client.loopback_addr();
    client.send(&format!(
        r#"{{"cmd":"autonat_probe","server":"{}","addr":"{addr}","version":"v1"}}"#,
        server.id
    ));
    let reachability = client.expect("reachability", SHORT, |e| {
        matches!(
            e,
            Event::Reachability {
                server: Some(_),
                ..
            }
        )
    });
    let Event::Reachability {
        status,
        server: by,
        address,
        ..
    } = reachability
    else {
        unreachable!()
    };
    assert_eq!(
        (status, by.as_deref()),
        (ReachabilityStatus::Public, Some(server.id.as_str()))
    );
    assert!(address.is_some_and(|a| a.starts_with("/ip4/127.0.0.1/tcp/")));
    let request = server.expect("autonat_request", SHORT, |e| {
        matches!(e, Event::AutonatRequest { .. })
    });
    let Event::AutonatRequest {
        remote, outcome, ..
    } = request
    else {
        unreachable!()
    };
    assert_eq!(
        (remote, outcome),
        (client.id.clone(), AutonatOutcome::DialedBack)
    );
}

/// A v2 client connected to a v2 server has the address the server observed tested on the
/// library's own schedule; on 127.0.0.1 the dial-back reaches it.
#[test]
fn autonat_v2_client_and_server_conclude() {
    let mut server = TestPeer::start(&config(65, r#""autonat":{"v2":"server"}"#));
    let addr = server.loopback_addr();
    let mut client = TestPeer::start(&config(66, r#""autonat":{"v2":"client"}"#));
    client.loopback_addr();
    client.send(&format!(r#"{{"cmd":"dial","addr":"{addr}"}}"#));
    let reachability = client.expect("reachability", Duration::from_secs(30), |e| {
        matches!(e, Event::Reachability { .. })
    });
    let Event::Reachability {
        version,
        status,
        server: by,
        address,
    } = reachability
    else {
        unreachable!()
    };
    assert_eq!(
        (version, status, by.as_deref()),
        (
            AutonatVersion::V2,
            ReachabilityStatus::Public,
            Some(server.id.as_str())
        )
    );
    assert!(address.is_some_and(|a| a.starts_with("/ip4/127.0.0.1/tcp/")));
    let request = server.expect("autonat_request", SHORT, |e| {
        matches!(e, Event::AutonatRequest { .. })
    });
    let Event::AutonatRequest {
        remote,
        version,
        outcome,
        ..
    } = request
    else {
        unreachable!()
    };
    assert_eq!(
        (remote, version, outcome),
        (
            client.id.clone(),
            AutonatVersion::V2,
            AutonatOutcome::DialedBack
        )
    );
}

/// A peer that is only a v1 client refuses dial requests (its server half has a global
/// throttle of 0): the asking client hears a refusal, which is no conclusion.
#[test]
fn an_autonat_v1_client_alone_serves_nobody() {
    let mut not_server = TestPeer::start(&config(71, r#""autonat":{"v1":"client"}"#));
    let addr = not_server.loopback_addr();
    let mut client = TestPeer::start(&config(72, r#""autonat":{"v1":"client"}"#));
    client.loopback_addr();
    client.send(&format!(
        r#"{{"cmd":"autonat_probe","server":"{}","addr":"{addr}","version":"v1"}}"#,
        not_server.id
    ));
    let request = not_server.expect("autonat_request", SHORT, |e| {
        matches!(e, Event::AutonatRequest { .. })
    });
    let Event::AutonatRequest { outcome, .. } = request else {
        unreachable!()
    };
    assert_eq!(outcome, AutonatOutcome::Refused);
    client.expect(
        "the refusal",
        SHORT,
        |e| matches!(e, Event::Error { cmd: Some(c), .. } if c == "autonat_probe"),
    );
    assert!(client
        .seen(|e| matches!(
            e,
            Event::Reachability {
                status: ReachabilityStatus::Public,
                ..
            }
        ))
        .is_empty());
}

#[test]
fn started_lists_the_roles_and_unsupported_commands_say_why() {
    let mut peer = TestPeer::start(&config(
        81,
        r#""autonat":{"v1":"both","v2":"both"},"request_response":{}"#,
    ));
    assert!(!peer.id.is_empty(), "started");
    peer.send(r#"{"cmd":"autonat_probe","cmd_id":"v","server":"12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN","version":"v1","vanish":true}"#);
    let Event::Unsupported {
        feature, cmd_id, ..
    } = peer.expect("unsupported vanish", SHORT, |e| {
        matches!(e, Event::Unsupported { .. })
    })
    else {
        unreachable!()
    };
    assert_eq!(
        (feature.as_str(), cmd_id.as_deref()),
        ("autonat-v1-vanish", Some("v"))
    );
    peer.send(r#"{"cmd":"autonat_probe","cmd_id":"w","server":"12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN","version":"v2"}"#);
    let Event::Unsupported {
        feature, cmd_id, ..
    } = peer.expect("unsupported v2 probe", SHORT, |e| {
        matches!(e, Event::Unsupported { .. })
    })
    else {
        unreachable!()
    };
    assert_eq!(
        (feature.as_str(), cmd_id.as_deref()),
        ("autonat-v2-client", Some("w"))
    );
    peer.send(r#"{"cmd":"request","cmd_id":"x","peer":"not-a-peer","id":"r","size":1}"#);
    peer.expect(
        "bad peer id",
        SHORT,
        |e| matches!(e, Event::Error { cmd_id: Some(c), .. } if c == "x"),
    );

    let mut plain = TestPeer::start(&config(82, ""));
    plain.send(r#"{"cmd":"request","cmd_id":"y","peer":"12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN","id":"r","size":1}"#);
    let Event::Error { message, .. } = plain.expect(
        "no role",
        SHORT,
        |e| matches!(e, Event::Error { cmd_id: Some(c), .. } if c == "y"),
    ) else {
        unreachable!()
    };
    assert!(message.contains("request_response"), "{message}");
}

#[test]
fn features_it_lacks_and_roles_it_cannot_take_exit_3() {
    let mut started = TestPeer::start(&config(
        91,
        r#""require":["request-response","autonat-v1-server","autonat-v2-client"]"#,
    ));
    assert!(!started.id.is_empty(), "has what it requires");
    started.send(r#"{"cmd":"stop"}"#);
    assert!(started.wait(SHORT).success());

    for (extra, feature) in [
        (r#""require":["autonat-v1-vanish"]"#, "autonat-v1-vanish"),
        (r#""require":["port-mapping"]"#, "port-mapping"),
        (r#""port_mapping":{}"#, "port-mapping"),
    ] {
        let mut peer = TestPeer::start(&config(92, extra));
        assert!(peer.id.is_empty(), "{extra}: started");
        let Event::Unsupported {
            feature: said,
            reason,
            ..
        } = peer.expect("unsupported", SHORT, |e| {
            matches!(e, Event::Unsupported { .. })
        })
        else {
            unreachable!()
        };
        assert_eq!(said, feature, "{extra}");
        assert!(!reason.is_empty());
        assert_eq!(peer.wait(SHORT).code(), Some(exit::UNSUPPORTED), "{extra}");
    }
}
