//! `nat-mapping`: every peer with the `port_mapping` role finds the case's UPnP gateway and maps a port on it within
//! the role's deadline, as it says (`gateway_found`, `port_mapped`) and as the gateway confirms from outside (a
//! `soap_action` AddPortMapping or AddAnyPortMapping from the peer's address, without a fault). The evidence quotes
//! the gateway's side: how many searches came from the peer, for which targets, which it answered and which it left
//! unanswered and why (a router quirk such as go-libp2p#3138's).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{clock, Check, Context};
use crate::events::{Micros, Observation, ParticipantEvent, PeerEvent, Recorded};
pub use crate::matrix::checks::nat_mapping::Settings;
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
}

impl NatMapping {
    pub fn new(_settings: Settings) -> Self {
        Self {
            peers: BTreeMap::new(),
            gateway: Vec::new(),
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
    fn ssdp_summary(&self, addresses: &[String]) -> String {
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
                ParticipantEvent::SsdpIgnored { st, reason, .. } => ignored.push(format!("{st} ({reason})")),
                _ => {}
            }
        }
        let mut s = format!("the gateway received {searches} M-SEARCH(es)");
        if !targets.is_empty() {
            s.push_str(&format!(" for {}", targets.join(", ")));
        }
        s.push_str(&format!(", answered {}", answered.len()));
        if !ignored.is_empty() {
            s.push_str(&format!(", ignored {}: {}", ignored.len(), ignored.join("; ")));
        }
        s
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
                        if !side.addresses.iter().any(|x| x == ip) {
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
            let ssdp = self.ssdp_summary(&side.addresses);
            let (confirmed, faults) = self.soap(&side.addresses);
            let by = started + deadline.as_micros() as Micros;
            let late = |t: Micros| format!("{:.1} s after its start", (t - started) as f64 / 1e6);
            evidence.push(format!("{name}: {ssdp}"));
            for f in &faults {
                evidence.push(format!("    {name}: the gateway answered {f}"));
            }
            let failure = match (&side.found, side.mapped.first()) {
                (None, _) => {
                    let said = side
                        .failed
                        .first()
                        .map(|(t, e)| format!("port_mapping_failed at {}: {e}", clock(*t)))
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
        if passed == 0 {
            return CheckResult::inconclusive(NAME, unjudged.join("; "), evidence).covering(coverage);
        }
        CheckResult::passed(NAME, evidence).covering(coverage)
    }
}

/// The deadline of a peer's `port_mapping` role, if it has the role.
fn port_mapping_deadline(p: &crate::cases::PeerSpec) -> Option<Duration> {
    Some(p.roles.port_mapping.as_ref()?.deadline)
}
