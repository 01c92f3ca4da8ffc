//! SSDP: M-SEARCHes on UDP (multicast 239.255.255.250 joined on the gateway's interface, or unicast to its
//! port), answered with unicast replies to the sender and to nobody else. The gateway never announces itself
//! (no NOTIFY): it only answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use contract::participant::ParticipantEvent;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::device::Device;
use crate::events::Events;
use crate::quirk::{Overlaps, Search, Verdict};

pub const MULTICAST: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);

/// The SSDP socket: bound to every address on the port (multicast arrives to the group address), member of the
/// group on the interface that has `address`.
pub fn bind(address: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    socket.join_multicast_v4(&MULTICAST, &address)?;
    // Replies are unicast; should anything be sent to the group, it stays on the link.
    socket.set_multicast_ttl_v4(1)?;
    UdpSocket::from_std(socket.into())
}

/// An M-SEARCH: its search target, or why it is not one.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Search {
        st: String,
    },
    /// Some other SSDP message (a NOTIFY, a reply): not for the gateway.
    Other(String),
}

/// Reads a datagram as an HTTPU request (httparse).
pub fn parse(datagram: &[u8]) -> Result<Message, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(datagram) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("an incomplete HTTPU request".into()),
        Err(e) => {
            if datagram.starts_with(b"HTTP/") {
                return Ok(Message::Other("a response".into()));
            }
            return Err(format!("not an HTTPU request: {e}"));
        }
    }
    let method = request.method.unwrap_or_default();
    if method != "M-SEARCH" {
        return Ok(Message::Other(method.to_owned()));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    if request.path != Some("*") {
        return Err(format!(
            "M-SEARCH for {:?}, not *",
            request.path.unwrap_or_default()
        ));
    }
    if header("MAN").as_deref() != Some("\"ssdp:discover\"") {
        return Err(format!(
            "M-SEARCH with MAN {:?}, not \"ssdp:discover\"",
            header("MAN").unwrap_or_default()
        ));
    }
    match header("ST") {
        Some(st) if !st.is_empty() => Ok(Message::Search { st }),
        _ => Err("M-SEARCH without ST".into()),
    }
}

/// The reply to a search, one datagram per (ST, USN).
pub fn reply(location: &str, st: &str, usn: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\nLOCATION: {location}\r\n\
         SERVER: {}\r\nST: {st}\r\nUSN: {usn}\r\nContent-Length: 0\r\n\r\n",
        crate::SERVER
    )
}

/// Answers searches until the task is dropped.
pub async fn serve(
    socket: UdpSocket,
    device: Arc<Device>,
    events: Arc<Events>,
    overlaps: Option<Overlaps>,
) {
    let socket = Arc::new(socket);
    let started = Instant::now();
    let overlaps = overlaps.map(|o| Arc::new(Mutex::new(o)));
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                events.error(format!("SSDP receive failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if !is_sender(from.ip()) {
            events.error(format!("SSDP datagram from {from}: no address to reply to"));
            continue;
        }
        let st = match parse(&buf[..n]) {
            Ok(Message::Search { st }) => st,
            Ok(Message::Other(what)) => {
                eprintln!("upnp-gateway: not a search from {from}: {what}");
                continue;
            }
            Err(why) => {
                events.error(format!("bad SSDP datagram from {from}: {why}"));
                continue;
            }
        };
        events.emit(ParticipantEvent::SsdpRequest {
            from: from.to_string(),
            st: st.clone(),
        });
        let answers = device.answers(&st);
        let search = Search {
            at: started.elapsed(),
            host: from.ip(),
            st: st.clone(),
        };
        if let Some(overlaps) = &overlaps {
            // Every search counts for the quirk, known target or not: the router sees them all.
            overlaps.lock().unwrap().arrived(search.clone());
        }
        if answers.is_empty() {
            events.emit(ParticipantEvent::SsdpIgnored {
                from: from.to_string(),
                st,
                reason: "unknown search target".into(),
            });
            continue;
        }
        let (socket, device, events) = (socket.clone(), device.clone(), events.clone());
        match &overlaps {
            None => answer(&socket, &device, &events, from, &answers).await,
            Some(overlaps) => {
                let overlaps = overlaps.clone();
                tokio::spawn(async move {
                    let window = overlaps.lock().unwrap().window();
                    tokio::time::sleep_until((started + search.at + window).into()).await;
                    let verdict = overlaps.lock().unwrap().verdict(&search);
                    match verdict {
                        Verdict::Answer => answer(&socket, &device, &events, from, &answers).await,
                        Verdict::Ignore(reason) => events.emit(ParticipantEvent::SsdpIgnored {
                            from: from.to_string(),
                            st: search.st,
                            reason,
                        }),
                    }
                });
            }
        }
    }
}

async fn answer(
    socket: &UdpSocket,
    device: &Device,
    events: &Events,
    to: SocketAddr,
    answers: &[(String, String)],
) {
    let location = device.location();
    for (st, usn) in answers {
        match socket
            .send_to(reply(&location, st, usn).as_bytes(), to)
            .await
        {
            Ok(_) => events.emit(ParticipantEvent::SsdpResponse {
                to: to.to_string(),
                st: st.clone(),
                location: location.clone(),
            }),
            Err(e) => events.error(format!("SSDP reply to {to} failed: {e}")),
        }
    }
}

/// Whether an address is one a reply may go to: never the group itself.
pub fn is_sender(ip: IpAddr) -> bool {
    !ip.is_multicast() && !ip.is_unspecified()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_are_read_as_clients_write_them() {
        // goupnp's (headers upper-case, MAN quoted), igd-next's (mixed case).
        let goupnp = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: urn:schemas-upnp-org:device:WANConnectionDevice:1\r\n\r\n";
        assert_eq!(
            parse(goupnp),
            Ok(Message::Search {
                st: "urn:schemas-upnp-org:device:WANConnectionDevice:1".into()
            })
        );
        let igd = b"M-SEARCH * HTTP/1.1\r\nHost:239.255.255.250:1900\r\nST:urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMan:\"ssdp:discover\"\r\nMX:3\r\n\r\n";
        assert_eq!(
            parse(igd),
            Ok(Message::Search {
                st: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into()
            })
        );
        assert!(matches!(
            parse(b"NOTIFY * HTTP/1.1\r\nNT: x\r\n\r\n"),
            Ok(Message::Other(_))
        ));
        assert!(
            parse(b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\n\r\n")
                .unwrap_err()
                .contains("without ST")
        );
        assert!(parse(b"M-SEARCH * HTTP/1.1\r\nST: x\r\n\r\n")
            .unwrap_err()
            .contains("MAN"));
        assert!(parse(b"\x00\x01garbage").is_err());
    }
}
