//! `nat-mapping`: every peer with the `port_mapping` role finds the case's UPnP gateway and maps a port on it within
//! the role's deadline, as it says (`gateway_found`, `port_mapped`) and as the gateway confirms from outside (a
//! `soap_action` AddPortMapping or AddAnyPortMapping from the peer's address, without a fault). The evidence quotes
//! the gateway's side: how many searches came from the peer, for which targets, which it answered and which it left
//! unanswered and why (a router quirk such as go-libp2p#3138's).
//! A peer that neither mapped nor gave up before the record ends, short of its deadline, is not judged (the case
//! was too short to tell), and the verdict stays open.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{clock, Check, Context};
use crate::events::{Micros, Observation, ParticipantEvent, PeerEvent, Recorded};
pub use crate::matrix::checks::nat_mapping::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;

pub const NAME: &str = "nat-mapping";

/// The actions that make a mapping (IGDv1 and IGDv2).
const MAPPING_ACTIONS: &[&str] = &["AddPortMapping", "AddAnyPortMapping"];

/// What one peer said about port mapping.
#[derive(Default)]
struct PeerSide {
    started: Option<Micros>,
    /// The IPv4 addresses it listens on, by which the gateway's lines name it.
    addresses: Vec<String>,
    found: Option<(Micros, String)>,
    mapped: Vec<(Micros, String)>,
    failed: Vec<(Micros, String)>,
}

/// What the gateway said, in order.
struct GatewayLine {
    at: Micros,
    event: ParticipantEvent,
}

pub struct NatMapping {
    peers: BTreeMap<String, PeerSide>,
    gateway: Vec<GatewayLine>,
    /// The last moment the record speaks of: a deadline after it was never reached.
    end: Micros,
}

impl NatMapping {
    pub fn new(_settings: Settings) -> Self {
        Self {
            peers: BTreeMap::new(),
            gateway: Vec::new(),
            end: 0,
        }
    }

    /// The gateway's lines that came from one of `addresses` (`ip:port` senders).
    fn from<'a>(&'a self, addresses: &'a [String]) -> impl Iterator<Item = &'a GatewayLine> + 'a {
        let ours = move |sender: &str| {
            let ip = sender.rsplit_once(':').map_or(sender, |(ip, _)| ip);
            addresses.iter().any(|a| a == ip)
        };
        self.gateway.iter().filter(move |l| match &l.event {
            ParticipantEvent::SsdpRequest { from, .. }
            | ParticipantEvent::SsdpIgnored { from, .. }
            | ParticipantEvent::SoapAction { from, .. } => ours(from),
            ParticipantEvent::SsdpResponse { to, .. } => ours(to),
            _ => false,
        })
    }

    /// One line of the gateway's side for a peer: its searches, answers and ignored searches with reasons.
    /// What the gateway did with a peer's searches, in full (for the evidence) and in brief (for a message: the
    /// counts and why searches were ignored, without the search targets).
    fn ssdp_summary(&self, addresses: &[String]) -> (String, String) {
        let (mut searches, mut targets, mut answered, mut ignored) = (0, Vec::new(), Vec::new(), Vec::new());
        for l in self.from(addresses) {
            match &l.event {
                ParticipantEvent::SsdpRequest { st, .. } => {
                    searches += 1;
                    if !targets.contains(st) {
                        targets.push(st.clone());
                    }
                }
                ParticipantEvent::SsdpResponse { st, .. } => answered.push(st.clone()),
                ParticipantEvent::SsdpIgnored { st, reason, .. } => ignored.push((st.clone(), reason.clone())),
                _ => {}
            }
        }
        let mut brief = format!("the gateway answered {} of {searches} M-SEARCH(es)", answered.len());
        if !ignored.is_empty() {
            let mut why: Vec<&str> = ignored.iter().map(|(_, r)| r.as_str()).collect();
            why.dedup();
            brief.push_str(&format!(", ignored {}: {}", ignored.len(), why.join("; ")));
        }
        let ignored: Vec<String> = ignored.iter().map(|(st, r)| format!("{st} ({r})")).collect();
        let mut s = format!("the gateway received {searches} M-SEARCH(es)");
        if !targets.is_empty() {
            s.push_str(&format!(" for {}", targets.join(", ")));
        }
        s.push_str(&format!(", answered {}", answered.len()));
        if !ignored.is_empty() {
            s.push_str(&format!(", ignored {}: {}", ignored.len(), ignored.join("; ")));
        }
        (s, brief)
    }

    /// The gateway's accepted mapping of a peer, if any, and its faulted attempts.
    fn soap(&self, addresses: &[String]) -> (Option<(Micros, String)>, Vec<String>) {
        let (mut ok, mut faults) = (None, Vec::new());
        for l in self.from(addresses) {
            let ParticipantEvent::SoapAction { action, args, fault, .. } = &l.event else { continue };
            if !MAPPING_ACTIONS.contains(&action.as_str()) {
                continue;
            }
            let what = format!(
                "{action} {} {}->{}",
                args.get("NewProtocol").map_or("?", String::as_str),
                args.get("NewExternalPort").map_or("?", String::as_str),
                args.get("NewInternalPort").map_or("?", String::as_str),
            );
            match fault {
                None => {
                    ok.get_or_insert((l.at, what));
                }
                Some(f) => faults.push(format!("{what} refused: {f}")),
            }
        }
        (ok, faults)
    }
}

impl Check for NatMapping {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        self.end = self.end.max(rec.at);
        if let Observation::Participant { line } = &rec.what {
            self.gateway.push(GatewayLine {
                at: line.ts,
                event: line.event.clone(),
            });
            return;
        }
        let Observation::Event { line } = &rec.what else { return };
        let side = self.peers.entry(rec.peer.clone()).or_default();
        match &line.event {
            PeerEvent::Started { .. } => {
                side.started.get_or_insert(line.ts);
            }
            PeerEvent::Listening { addrs } => {
                for a in addrs {
                    let mut parts = a.split('/');
                    if let (Some(""), Some("ip4"), Some(ip)) = (parts.next(), parts.next(), parts.next()) {
                        // Loopback never reaches the gateway: it would only clutter the messages.
                        if !ip.starts_with("127.") && !side.addresses.iter().any(|x| x == ip) {
                            side.addresses.push(ip.to_owned());
                        }
                    }
                }
            }
            PeerEvent::GatewayFound { gateway, external_addr } => {
                let what = match external_addr {
                    Some(e) => format!("{gateway} (external address {e})"),
                    None => gateway.clone(),
                };
                side.found.get_or_insert((line.ts, what));
            }
            PeerEvent::PortMapped {
                protocol,
                internal_port,
                external_port,
                ..
            } => side
                .mapped
                .push((line.ts, format!("{protocol} {internal_port}->{external_port}"))),
            PeerEvent::PortMappingFailed { error } => side.failed.push((line.ts, error.clone())),
            _ => {}
        }
    }

    /// While the case runs: only a peer whose deadline passed without a gateway found and a port mapped.
    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        ctx.case.peers.iter().find_map(|p| {
            let deadline = port_mapping_deadline(p)?;
            let side = self.peers.get(&p.name)?;
            let by = side.started? + deadline.as_micros() as Micros;
            (now > by && (side.found.is_none() || side.mapped.is_empty())).then(|| {
                format!(
                    "{} has no port mapping {} s after its start",
                    ctx.describe(&p.name),
                    deadline.as_secs_f64()
                )
            })
        })
    }

    /// A peer that neither mapped nor gave up, before its deadline.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let open = ctx.case.peers.iter().filter_map(|p| {
            let deadline = port_mapping_deadline(p)?;
            let side = self.peers.get(&p.name)?;
            (side.mapped.is_empty() && side.failed.is_empty()).then_some(side.started? + deadline.as_micros() as Micros + 1)
        });
        Pending::latest(now, open, |n| format!("{n} peer(s) to map a port"))
    }

    fn applies(&self, case: &crate::cases::Case) -> bool {
        crate::peers::has_gateway(case) || case.peers.iter().any(|p| port_mapping_deadline(p).is_some())
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let roles: Vec<(&str, Duration)> = ctx
            .case
            .peers
            .iter()
            .filter_map(|p| Some((p.name.as_str(), port_mapping_deadline(p)?)))
            .collect();
        let gateway = crate::peers::has_gateway(ctx.case);
        match (roles.is_empty(), gateway) {
            (true, false) => {
                return CheckResult::skipped(NAME, "no peer has the port_mapping role".into());
            }
            (true, true) => {
                return CheckResult::inconclusive(
                    NAME,
                    "the case has a gateway but no peer with the port_mapping role: nothing to judge".into(),
                    Vec::new(),
                );
            }
            (false, false) => {
                let names: Vec<&str> = roles.iter().map(|(n, _)| *n).collect();
                return CheckResult::inconclusive(
                    NAME,
                    format!(
                        "{} ha(s) the port_mapping role but the case has no gateway: nothing to map a port on",
                        names.join(", ")
                    ),
                    Vec::new(),
                );
            }
            (false, true) => {}
        }
        let (mut evidence, mut failures, mut unjudged, mut passed) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for (name, deadline) in &roles {
            let empty = PeerSide::default();
            let side = self.peers.get(*name).unwrap_or(&empty);
            let who = ctx.describe(name);
            let Some(started) = side.started else {
                unjudged.push(format!("{who} never started"));
                continue;
            };
            let (full, ssdp) = self.ssdp_summary(&side.addresses);
            let (confirmed, faults) = self.soap(&side.addresses);
            let by = started + deadline.as_micros() as Micros;
            let late = |t: Micros| format!("{:.1} s after its start", (t - started) as f64 / 1e6);
            evidence.push(format!("{name}: {full}"));
            for f in &faults {
                evidence.push(format!("    {name}: the gateway answered {f}"));
            }
            if side.mapped.is_empty() && side.failed.is_empty() && self.end <= by {
                // Neither mapped nor given up: the case ended before the peer's deadline, which says nothing.
                unjudged.push(format!(
                    "{who} had mapped no port when the case ended {}, before its {} s deadline (a longer drain gives it the time); {ssdp}",
                    late(self.end),
                    deadline.as_secs_f64()
                ));
                continue;
            }
            let failure = match (&side.found, side.mapped.first()) {
                (None, _) => {
                    if let Some((t, e)) = side.failed.first() {
                        evidence.push(format!("    {name}: port_mapping_failed at {}: {e}", clock(*t)));
                    }
                    let said = side
                        .failed
                        .first()
                        .map(|(_, e)| format!("it said: {e}"))
                        .unwrap_or_else(|| "no port_mapping_failed either".into());
                    Some(format!("{who} never found the gateway ({said}); {ssdp}"))
                }
                (Some((t, _)), _) if *t > by => Some(format!(
                    "{who} found the gateway only {}, past its {} s deadline; {ssdp}",
                    late(*t),
                    deadline.as_secs_f64()
                )),
                (Some(_), None) => {
                    let said = side.failed.first().map(|(_, e)| format!(": {e}")).unwrap_or_default();
                    Some(format!("{who} found the gateway but mapped no port{said}"))
                }
                (Some(_), Some((t, _))) if *t > by => Some(format!(
                    "{who} mapped a port only {}, past its {} s deadline",
                    late(*t),
                    deadline.as_secs_f64()
                )),
                (Some(_), Some((_, m))) if confirmed.is_none() => Some(format!(
                    "{who} says it mapped {m}, but the gateway recorded no {} from {} without a fault",
                    MAPPING_ACTIONS.join(" or "),
                    side.addresses.join(", ")
                )),
                _ => None,
            };
            // What the gateway refused is the cause to quote, whatever the peer made of it.
            let failure = failure.map(|f| match faults.first() {
                Some(first) if !f.contains(first.as_str()) => format!("{f}; the gateway answered {first}"),
                _ => f,
            });
            if let (Some((tf, g)), Some((tm, m))) = (&side.found, side.mapped.first()) {
                evidence.push(format!(
                    "    {name}: found {g} {}, mapped {m} {}",
                    late(*tf),
                    late(*tm)
                ));
            }
            if let Some((t, what)) = &confirmed {
                evidence.push(format!("    {} upnp-gateway: {what} from {name}", clock(*t)));
            }
            match failure {
                Some(f) => failures.push((f, *name)),
                None => passed += 1,
            }
        }
        let coverage = format!("{} peer(s) with the port_mapping role, {passed} mapped", roles.len());
        if let Some((first, _)) = failures.first() {
            let message = match failures.len() {
                1 => first.clone(),
                n => format!("{first}; and {} more", n - 1),
            };
            return CheckResult::failed(NAME, message, evidence)
                .involving(failures.iter().map(|(_, n)| n.to_string()))
                .covering(coverage);
        }
        // A peer not judged leaves the verdict open, however many others mapped.
        if !unjudged.is_empty() {
            let more = match unjudged.len() {
                1 => String::new(),
                n => format!(" ({n} peers not judged)"),
            };
            let message = format!("{}{more}", unjudged[0]);
            evidence.extend(unjudged);
            return CheckResult::inconclusive(NAME, message, evidence).covering(coverage);
        }
        CheckResult::passed(NAME, evidence).covering(coverage)
    }
}

/// The deadline of a peer's `port_mapping` role, if it has the role.
fn port_mapping_deadline(p: &crate::cases::PeerSpec) -> Option<Duration> {
    Some(p.roles.port_mapping.as_ref()?.deadline)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::events::ParticipantLine;
    use crate::results::Status;
    use crate::testkit::Kit;

    const S: Micros = 1_000_000;
    const IGD1: &str = "urn:schemas-upnp-org:device:WANConnectionDevice:1";
    const IGD2: &str = "urn:schemas-upnp-org:device:WANConnectionDevice:2";
    const WANIP: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";

    /// go-1 and go-2 map their port with a 20 s deadline; the case has a gateway.
    fn kit() -> Kit {
        let mut kit = Kit::new(&["go-1", "go-2"]);
        let roles: crate::matrix::roles::RolesMap =
            serde_saphyr::from_str("go: {port_mapping: {deadline: 20s}}\n").unwrap();
        for p in &mut kit.case.peers {
            p.roles = crate::matrix::roles::resolve(&roles, &p.implementation, &p.name);
        }
        kit.case.gateway = Some(crate::matrix::roles::Gateway { quirk: None });
        kit
    }

    /// go-N's address on the case network.
    fn ip(peer: &str) -> String {
        format!("10.216.4.{}", 1 + peer.trim_start_matches("go-").parse::<u32>().unwrap())
    }

    fn run(kit: &Kit, record: &[Recorded]) -> CheckResult {
        let mut c = NatMapping::new(Settings::default());
        record.iter().for_each(|r| c.observe(r));
        c.verdict(&kit.context())
    }

    /// The peer's `started` at `ts` and where it listens.
    fn started(kit: &Kit, ts: Micros, peer: &str) -> [Recorded; 2] {
        let started = serde_json::from_str(r#"{"event":"started","implementation":"go-libp2p"}"#).unwrap();
        let addrs = vec![format!("/ip4/{}/tcp/4001", ip(peer)), "/ip4/127.0.0.1/tcp/4001".into()];
        [kit.event(ts, peer, started), kit.event(ts + 1, peer, PeerEvent::Listening { addrs })]
    }

    fn found(kit: &Kit, ts: Micros, peer: &str) -> Recorded {
        let gateway = "go-libp2p NAT manager".to_owned();
        kit.event(ts, peer, PeerEvent::GatewayFound { gateway, external_addr: None })
    }

    fn mapped(kit: &Kit, ts: Micros, peer: &str) -> Recorded {
        let e = PeerEvent::PortMapped { protocol: "tcp".into(), internal_port: 4001, external_port: 40001, external_addr: None };
        kit.event(ts, peer, e)
    }

    fn gave_up(kit: &Kit, ts: Micros, peer: &str, error: &str) -> Recorded {
        kit.event(ts, peer, PeerEvent::PortMappingFailed { error: error.into() })
    }

    fn gateway(ts: Micros, event: ParticipantEvent) -> Recorded {
        Recorded {
            at: ts,
            peer: crate::images::GATEWAY.into(),
            what: Observation::Participant {
                line: ParticipantLine { ts, participant: crate::images::GATEWAY.into(), event },
            },
        }
    }

    /// The gateway's side of a search from `peer` for `st`, answered or ignored for `why`.
    fn searched(ts: Micros, peer: &str, st: &str, ignored: Option<&str>) -> [Recorded; 2] {
        let from = format!("{}:45000", ip(peer));
        let request = gateway(ts, ParticipantEvent::SsdpRequest { from: from.clone(), st: st.into() });
        let outcome = match ignored {
            None => ParticipantEvent::SsdpResponse {
                to: from,
                st: st.into(),
                location: "http://10.216.7.254:5000/rootDesc.xml".into(),
            },
            Some(reason) => ParticipantEvent::SsdpIgnored { from, st: st.into(), reason: reason.into() },
        };
        [request, gateway(ts + 10, outcome)]
    }

    /// The gateway's AddPortMapping from `peer`, answered with `fault` if any.
    fn soap(ts: Micros, peer: &str, fault: Option<&str>) -> Recorded {
        let args: BTreeMap<String, String> = [("NewProtocol", "TCP"), ("NewExternalPort", "40001"), ("NewInternalPort", "4001")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        gateway(
            ts,
            ParticipantEvent::SoapAction {
                from: format!("{}:51000", ip(peer)),
                service: WANIP.into(),
                action: "AddPortMapping".into(),
                args,
                result: BTreeMap::new(),
                fault: fault.map(str::to_owned),
            },
        )
    }

    /// `peer` starts at 1 s, finds the gateway and maps at `at`, and the gateway confirms it.
    fn maps(kit: &Kit, peer: &str, at: Micros) -> Vec<Recorded> {
        let mut r = started(kit, S, peer).to_vec();
        r.extend(searched(S + 500, peer, IGD2, None));
        r.push(found(kit, at - 200, peer));
        r.push(soap(at - 100, peer, None));
        r.push(mapped(kit, at, peer));
        r
    }

    /// The record ends 30 s in: past every deadline.
    fn ended(kit: &Kit) -> Recorded {
        kit.stopped(31 * S, "go-1")
    }

    #[test]
    fn a_mapping_within_the_deadline_confirmed_by_the_gateway_passes() {
        let kit = kit();
        let mut record = maps(&kit, "go-1", 5 * S);
        record.extend(maps(&kit, "go-2", 6 * S));
        record.push(ended(&kit));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert_eq!(r.coverage.as_deref(), Some("2 peer(s) with the port_mapping role, 2 mapped"));
        assert_eq!(r.evidence[0], format!("go-1: the gateway received 1 M-SEARCH(es) for {IGD2}, answered 1"));
        assert!(r.evidence[1].contains("found go-libp2p NAT manager 4.0 s after its start, mapped tcp 4001->40001 4.0 s after its start"), "{:?}", r.evidence);
        assert!(r.evidence[2].ends_with("upnp-gateway: AddPortMapping TCP 40001->4001 from go-1"), "{:?}", r.evidence);
    }

    #[test]
    fn a_mapping_the_gateway_never_saw_fails_whatever_the_peer_says() {
        let kit = kit();
        let mut record = maps(&kit, "go-1", 5 * S);
        // go-2 says it found the gateway and mapped, but the gateway heard only its search.
        record.extend(started(&kit, S, "go-2"));
        record.extend(searched(S + 500, "go-2", IGD2, None));
        record.push(found(&kit, 5 * S, "go-2"));
        record.push(mapped(&kit, 5 * S, "go-2"));
        record.push(ended(&kit));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert_eq!(
            r.message.as_deref().unwrap(),
            "go-2 (go-libp2p v0.51.0) says it mapped tcp 4001->40001, but the gateway recorded no AddPortMapping or AddAnyPortMapping from 10.216.4.3 without a fault"
        );
        assert_eq!(r.involved, ["go-2"]);
        // Go-1's confirmation does not stand for go-2: the gateway names the peer by its address.
        let mut record = maps(&kit, "go-1", 5 * S);
        record.extend(started(&kit, S, "go-2"));
        record.push(found(&kit, 5 * S, "go-2"));
        record.push(soap(5 * S, "go-1", None));
        record.push(mapped(&kit, 5 * S, "go-2"));
        record.push(ended(&kit));
        assert_eq!(run(&kit, &record).status, Status::Failed);
    }

    #[test]
    fn a_gateway_found_or_a_port_mapped_after_the_deadline_fails() {
        let kit = kit();
        let mut record = maps(&kit, "go-1", 5 * S);
        record.extend(maps(&kit, "go-2", 22 * S));
        record.push(ended(&kit));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(r.message.as_deref().unwrap().starts_with("go-2 (go-libp2p v0.51.0) found the gateway only 21.0 s after its start, past its 20 s deadline"), "{r:?}");
        // Found in time, mapped late.
        let mut record = maps(&kit, "go-1", 5 * S);
        record.extend(started(&kit, S, "go-2"));
        record.push(found(&kit, 4 * S, "go-2"));
        record.push(soap(24 * S, "go-2", None));
        record.push(mapped(&kit, 24 * S, "go-2"));
        record.push(ended(&kit));
        let r = run(&kit, &record);
        assert_eq!(r.message.as_deref().unwrap(), "go-2 (go-libp2p v0.51.0) mapped a port only 23.0 s after its start, past its 20 s deadline");
    }

    #[test]
    fn a_peer_that_never_found_the_gateway_fails_with_its_own_words_and_the_gateways_reasons() {
        let kit = kit();
        let quirk = "overlaps a search for another target within 500 ms (quirk)";
        let mut record = maps(&kit, "go-1", 5 * S);
        record.extend(started(&kit, S, "go-2"));
        record.extend(searched(S + 500, "go-2", IGD1, Some(quirk)));
        record.extend(searched(S + 600, "go-2", IGD2, Some(quirk)));
        record.push(gave_up(&kit, 21 * S, "go-2", "no NAT found within 20s"));
        record.push(ended(&kit));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        let message = r.message.as_deref().unwrap();
        assert_eq!(
            message,
            format!("go-2 (go-libp2p v0.51.0) never found the gateway (it said: no NAT found within 20s); the gateway answered 0 of 2 M-SEARCH(es), ignored 2: {quirk}")
        );
        assert!(r.evidence.iter().any(|e| e.ends_with("go-2: port_mapping_failed at 00:00:21.000: no NAT found within 20s")), "{:?}", r.evidence);
        // Which targets it ignored, each with its reason, is the evidence.
        let full = format!("go-2: the gateway received 2 M-SEARCH(es) for {IGD1}, {IGD2}, answered 0, ignored 2: {IGD1} ({quirk}); {IGD2} ({quirk})");
        assert!(r.evidence.contains(&full), "{:?}", r.evidence);
        assert_eq!(r.involved, ["go-2"]);
    }

    #[test]
    fn a_fault_of_the_gateway_fails_quoting_it() {
        let kit = kit();
        let mut record = maps(&kit, "go-1", 5 * S);
        record.extend(started(&kit, S, "go-2"));
        record.extend(searched(S + 500, "go-2", IGD2, None));
        record.push(found(&kit, 4 * S, "go-2"));
        record.push(soap(4 * S + 100, "go-2", Some("718 ConflictInMappingEntry")));
        record.push(gave_up(&kit, 21 * S, "go-2", "a NAT was found, but no port mapped within 20s"));
        record.push(ended(&kit));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert_eq!(
            r.message.as_deref().unwrap(),
            "go-2 (go-libp2p v0.51.0) found the gateway but mapped no port: a NAT was found, but no port mapped within 20s; the gateway answered AddPortMapping TCP 40001->4001 refused: 718 ConflictInMappingEntry"
        );
        assert!(r.evidence.iter().any(|e| e == "    go-2: the gateway answered AddPortMapping TCP 40001->4001 refused: 718 ConflictInMappingEntry"), "{:?}", r.evidence);
        // A fault the peer got past (another port, mapped) is evidence, not a failure.
        let mut record = maps(&kit, "go-1", 5 * S);
        record.push(soap(2 * S, "go-1", Some("718 ConflictInMappingEntry")));
        record.extend(maps(&kit, "go-2", 5 * S));
        record.push(ended(&kit));
        assert_eq!(run(&kit, &record).status, Status::Passed);
    }

    #[test]
    fn a_case_that_ends_before_the_deadline_leaves_an_unmapped_peer_unjudged() {
        let kit = kit();
        let mut record = maps(&kit, "go-1", 5 * S);
        record.extend(started(&kit, S, "go-2"));
        record.push(kit.stopped(8 * S, "go-2"));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Inconclusive, "{r:?}");
        assert!(r.message.as_deref().unwrap().starts_with(
            "go-2 (go-libp2p v0.51.0) had mapped no port when the case ended 7.0 s after its start, before its 20 s deadline"
        ), "{r:?}");
    }

    #[test]
    fn the_role_without_a_gateway_is_inconclusive_and_neither_is_left_out() {
        let mut kit = kit();
        kit.case.gateway = None;
        let mut record = started(&kit, S, "go-1").to_vec();
        record.push(gave_up(&kit, 21 * S, "go-1", "no NAT found within 20s"));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Inconclusive, "{r:?}");
        assert_eq!(
            r.message.as_deref().unwrap(),
            "go-1, go-2 ha(s) the port_mapping role but the case has no gateway: nothing to map a port on"
        );
        let c = NatMapping::new(Settings::default());
        assert!(c.applies(&kit.case), "a role without a gateway is judged");
        for p in &mut kit.case.peers {
            p.roles = Default::default();
        }
        assert!(!c.applies(&kit.case), "neither a role nor a gateway: left out");
        kit.case.gateway = Some(crate::matrix::roles::Gateway { quirk: None });
        assert!(c.applies(&kit.case), "a gateway without a role is judged");
        assert_eq!(run(&kit, &[]).status, Status::Inconclusive);
    }
}
