//! `autonat`: AutoNAT clients conclude the truth about themselves, and servers survive serving them. A client
//! that probed (v1 and v2 apart) must have concluded a reachability, and its last conclusion must be the truth:
//! public, unless the case lists it in `private` (the runner's firewall refuses its inbound connections). `unknown`
//! or no conclusion at all fails. Vanishing probes (the client drops the connection after its dial request)
//! conclude nothing by design: a client whose probes all vanished is judged on the server side only. Every server
//! outcome is reported, and a server that crashes (exits without being asked, panics) fails the check with its
//! panic line.

use std::collections::{BTreeMap, BTreeSet};

use super::evidence::count;
use super::{clock, Check, Context};
use crate::events::{Command, Micros, Observation, PeerEvent, Recorded, Sent};
use crate::matrix::roles::AutonatVersion as Version;
pub use crate::matrix::checks::autonat::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;
use contract::commands::AutonatVersion;
use contract::events::{AutonatOutcome, ReachabilityStatus};

pub const NAME: &str = "autonat";

/// What one client did and concluded in one version.
#[derive(Default)]
struct Client {
    probes: usize,
    vanishing: usize,
    /// Servers probed, by peer id.
    servers: BTreeSet<String>,
    /// Its conclusions in order: (time, status, server that decided it).
    conclusions: Vec<(Micros, ReachabilityStatus, Option<String>)>,
    /// `error`s answering its probes.
    errors: Vec<String>,
    /// When its last probe was sent (the runner's clock).
    last_probe: Micros,
}

/// How long after a probe the case keeps listening for its server: a vanishing probe concludes nothing on the
/// client's side, and a server that crashes on it (rust-libp2p#5570) does so a moment after the client is gone.
const SERVE_US: Micros = 2_000_000;

/// A server's crash: when, and its panic line if it wrote one.
struct Crash {
    at: Micros,
    how: String,
    panic: Option<String>,
}

pub struct Autonat {
    settings: Settings,
    sent: Sent,
    clients: BTreeMap<(String, AutonatVersion), Client>,
    /// (server, version, outcome, reason) -> how many.
    outcomes: BTreeMap<(String, AutonatVersion, String, Option<String>), usize>,
    /// Probe commands answered `unsupported`: not exercised.
    unsupported: usize,
    /// Each peer's first panic line on stderr.
    panics: BTreeMap<String, String>,
    crashes: BTreeMap<String, Crash>,
}

impl Autonat {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            sent: Sent::default(),
            clients: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            unsupported: 0,
            panics: BTreeMap::new(),
            crashes: BTreeMap::new(),
        }
    }

    fn probe_of(&self, peer: &str, cmd_id: &Option<String>) -> Option<AutonatVersion> {
        match self.sent.get(peer, cmd_id.as_ref())?.0.command {
            Command::AutonatProbe { version, .. } => Some(version),
            _ => None,
        }
    }
}

fn wire(v: Version) -> AutonatVersion {
    crate::peers::config::autonat_version_of(v)
}

/// What a client's reachability is: private when the runner's firewall refuses its inbound connections.
fn truth(case: &crate::cases::Case, client: &str) -> ReachabilityStatus {
    match case.private.iter().any(|p| p == client) {
        true => ReachabilityStatus::Private,
        false => ReachabilityStatus::Public,
    }
}

fn status_label(s: ReachabilityStatus) -> &'static str {
    match s {
        ReachabilityStatus::Public => "public",
        ReachabilityStatus::Private => "private",
        ReachabilityStatus::Unknown => "unknown",
    }
}

fn outcome_label(o: AutonatOutcome) -> &'static str {
    match o {
        AutonatOutcome::DialedBack => "dialed back",
        AutonatOutcome::DialBackFailed => "dial-back failed",
        AutonatOutcome::Refused => "refused",
    }
}

impl Check for Autonat {
    fn name(&self) -> &'static str {
        NAME
    }

    fn applies(&self, case: &crate::cases::Case) -> bool {
        case.peers.iter().any(|p| p.roles.autonat.is_some())
    }

    fn observe(&mut self, rec: &Recorded) {
        if self.sent.observe(rec) {
            if let Some(Command::AutonatProbe { server, version, vanish, .. }) = rec.command() {
                let c = self.clients.entry((rec.peer.clone(), *version)).or_default();
                c.probes += 1;
                c.vanishing += usize::from(*vanish);
                c.last_probe = rec.at;
                c.servers.insert(server.clone());
            }
            return;
        }
        match &rec.what {
            Observation::Stderr { line } if self.settings.panic_markers.iter().any(|m| line.contains(m.as_str())) => {
                self.panics.entry(rec.peer.clone()).or_insert_with(|| line.clone());
            }
            Observation::Exited { expected, code, oom_killed, .. } if !expected || *oom_killed => {
                let how = match (oom_killed, code) {
                    (true, _) => "was killed for going over its memory limit".to_owned(),
                    (false, Some(c)) => format!("exited with status {c} before it was told to stop"),
                    (false, None) => "disappeared before it was told to stop".to_owned(),
                };
                self.crashes.entry(rec.peer.clone()).or_insert(Crash { at: rec.at, how, panic: None });
            }
            Observation::Event { .. } => {}
            _ => return,
        }
        if let Some(c) = self.crashes.get_mut(&rec.peer) {
            if c.panic.is_none() {
                c.panic = self.panics.get(&rec.peer).cloned();
            }
        }
        let Some(event) = rec.event() else { return };
        match event {
            PeerEvent::Reachability { version, status, server, .. } => {
                let c = self.clients.entry((rec.peer.clone(), *version)).or_default();
                c.conclusions.push((rec.time(), *status, server.clone()));
            }
            PeerEvent::AutonatRequest { version, outcome, reason, .. } => {
                let key = (rec.peer.clone(), *version, outcome_label(*outcome).to_owned(), reason.clone());
                *self.outcomes.entry(key).or_default() += 1;
            }
            PeerEvent::Error { message, cmd_id, .. } => {
                if let Some(v) = self.probe_of(&rec.peer, cmd_id) {
                    self.clients.entry((rec.peer.clone(), v)).or_default().errors.push(message.clone());
                }
            }
            PeerEvent::Unsupported { cmd_id, .. } => {
                if let Some(v) = self.probe_of(&rec.peer, cmd_id) {
                    self.unsupported += 1;
                    if let Some(c) = self.clients.get_mut(&(rec.peer.clone(), v)) {
                        c.probes = c.probes.saturating_sub(1);
                    }
                }
            }
            _ => {}
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let case = ctx.case;
        let servers: Vec<(&str, Vec<Version>)> = case
            .peers
            .iter()
            .map(|p| {
                let serves = [Version::V1, Version::V2]
                    .into_iter()
                    .filter(|v| p.roles.autonat(*v).is_some_and(|r| r.serves()))
                    .collect();
                (p.name.as_str(), serves)
            })
            .filter(|(_, v): &(&str, Vec<Version>)| !v.is_empty())
            .collect();
        let mut failures: Vec<(Micros, String, Vec<String>)> = Vec::new();
        let mut evidence = Vec::new();
        // Servers: every outcome, and whether they survived.
        let mut requests = 0;
        for (server, versions) in &servers {
            for v in versions {
                let outcomes: Vec<String> = self
                    .outcomes
                    .iter()
                    .filter(|((s, ver, _, _), _)| s == server && *ver == wire(*v))
                    .map(|((_, _, o, reason), n)| match reason {
                        Some(r) => format!("{n} {o} (\"{r}\")"),
                        None => format!("{n} {o}"),
                    })
                    .collect();
                let n: usize = self
                    .outcomes
                    .iter()
                    .filter(|((s, ver, _, _), _)| s == server && *ver == wire(*v))
                    .map(|(_, n)| n)
                    .sum();
                requests += n;
                evidence.push(format!(
                    "{} AutoNAT {} server: {} dial request(s){}",
                    ctx.describe(server),
                    v.as_str(),
                    count(n),
                    if outcomes.is_empty() { String::new() } else { format!(": {}", outcomes.join(", ")) }
                ));
            }
            if let Some(crash) = self.crashes.get(*server) {
                let panic = crash.panic.as_ref().map(|p| format!(": \"{p}\"")).unwrap_or_default();
                failures.push((
                    crash.at,
                    format!(
                        "{}, an AutoNAT server, {} at {}{panic}",
                        ctx.describe(server),
                        crash.how,
                        clock(crash.at)
                    ),
                    vec![server.to_string()],
                ));
            }
        }
        // Clients: the last conclusion of each that probed (not only vanishing) or concluded by itself.
        let mut judged_clients = 0;
        for ((client, version), c) in &self.clients {
            let v = version.as_str();
            let servers: Vec<String> = c.servers.iter().map(|s| ctx.name_of(s)).collect();
            let to = if servers.is_empty() { String::new() } else { format!(" to {}", servers.join(", ")) };
            let probes = match (c.probes, c.vanishing) {
                (p, 0) => format!("{p} probe(s){to}"),
                (p, w) if p == w => format!("{p} probe(s){to}, all vanishing"),
                (p, w) => format!("{p} probe(s){to}, {w} vanishing"),
            };
            let errors = match c.errors.first() {
                Some(e) => format!("; {} answered with error, first: \"{e}\"", c.errors.len()),
                None => String::new(),
            };
            let last = c.conclusions.last();
            let concluded = match last {
                Some((at, s, by)) => format!(
                    "; last conclusion {} at {}{} ({} in all)",
                    status_label(*s),
                    clock(*at),
                    by.as_ref().map(|b| format!(" from {}", ctx.name_of(b))).unwrap_or_default(),
                    c.conclusions.len()
                ),
                None => "; concluded nothing".to_owned(),
            };
            evidence.push(format!("{} AutoNAT {v} client: {probes}{errors}{concluded}", ctx.describe(client)));
            let only_vanishing = c.probes > 0 && c.probes == c.vanishing;
            if (only_vanishing || c.probes == 0) && c.conclusions.is_empty() {
                // Vanishing probes conclude nothing by design; the server side is what they test.
                continue;
            }
            judged_clients += 1;
            let private = case.private.contains(client);
            let truth = truth(case, client);
            let why_truth = if private {
                "the runner's firewall refuses its inbound connections"
            } else {
                "nothing blocks its inbound connections"
            };
            let problem = match last {
                None => Some((0, format!("concluded no AutoNAT {v} reachability after {probes}{errors}"))),
                Some((at, ReachabilityStatus::Unknown, _)) => Some((
                    *at,
                    format!("concluded AutoNAT {v} reachability unknown after {probes}, where it is {} ({why_truth})", status_label(truth)),
                )),
                Some((at, s, _)) if *s != truth => Some((
                    *at,
                    format!("concluded AutoNAT {v} reachability {}, where it is {} ({why_truth})", status_label(*s), status_label(truth)),
                )),
                Some(_) => None,
            };
            if let Some((at, what)) = problem {
                failures.push((at, format!("{} {what}", ctx.describe(client)), vec![client.clone()]));
            }
        }
        let probes: usize = self.clients.values().map(|c| c.probes).sum();
        let coverage = format!(
            "{} probe(s) from {} client(s), {} judged on their conclusions; {} dial request(s) answered by {} server(s)",
            count(probes),
            self.clients.len(),
            judged_clients,
            count(requests),
            servers.len()
        );
        if let Some((at, message, involved)) = failures.first().cloned() {
            let more = match failures.len() {
                1 => String::new(),
                n => format!(" ({n} problems in all)"),
            };
            let mut all: Vec<String> = failures.iter().map(|(_, m, _)| m.clone()).collect();
            all.extend(evidence);
            let mut result = CheckResult::failed(NAME, format!("{message}{more}"), all)
                .involving(failures.iter().flat_map(|(_, _, i)| i.clone()).chain(involved))
                .covering(coverage);
            if at > 0 {
                result = result.at(at);
            }
            return result;
        }
        if probes == 0 && judged_clients == 0 && requests == 0 {
            let why = match self.unsupported {
                0 => "no client probed and no server answered a dial request".to_owned(),
                n => format!("no client probed: {n} probe(s) answered `unsupported`"),
            };
            return CheckResult::inconclusive(NAME, why, evidence).covering(coverage);
        }
        CheckResult::passed(NAME, evidence).covering(coverage)
    }

    /// A client that probed (not only vanishing) and has not concluded the truth yet: a conclusion has no deadline
    /// of its own, so the case listens for it as long as the drain lasts.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let open = self
            .clients
            .iter()
            .filter(|((client, _), c)| {
                c.probes > c.vanishing && c.conclusions.last().is_none_or(|(_, s, _)| *s != truth(ctx.case, client))
            })
            .map(|_| Micros::MAX);
        let serving = self.clients.values().filter(|c| c.probes > 0).map(|c| c.last_probe + SERVE_US);
        Pending::latest(now, open.chain(serving), |n| {
            format!("{n} client(s) to conclude their reachability, or their servers to serve the last probes")
        })
    }

    /// A crash is certain at once; a conclusion may still change until the end of the case.
    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        let _ = now;
        let (server, crash) = self
            .crashes
            .iter()
            .find(|(p, _)| ctx.case.peers.iter().any(|s| &s.name == *p && s.roles.autonat.as_ref().is_some_and(|a| a.v1.is_some_and(|r| r.serves()) || a.v2.is_some_and(|r| r.serves()))))?;
        Some(format!("{}, an AutoNAT server, {} at {}", ctx.describe(server), crash.how, clock(crash.at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Status;
    use crate::testkit::{id, Kit};

    /// rust-1 serves v1, go-1 and go-2 are v1 clients; go-2 is private.
    fn kit() -> Kit {
        let mut kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let roles: crate::matrix::roles::RolesMap =
            serde_saphyr::from_str("rust: {autonat: {v1: server}}\ngo: {autonat: {v1: client}}\n").unwrap();
        for p in &mut kit.case.peers {
            p.roles = crate::matrix::roles::resolve(&roles, &p.implementation, &p.name);
        }
        kit.case.private = vec!["go-2".into()];
        kit
    }

    fn run(kit: &Kit, record: &[Recorded]) -> CheckResult {
        let mut c = Autonat::new(Settings::default());
        record.iter().for_each(|r| c.observe(r));
        c.verdict(&kit.context())
    }

    fn probe(kit: &Kit, ts: Micros, client: &str, n: u32, vanish: bool) -> Recorded {
        kit.command(
            ts,
            client,
            &format!(
                r#"{{"cmd":"autonat_probe","cmd_id":"c{n}","server":"{}","version":"v1","vanish":{vanish}}}"#,
                id("rust-1")
            ),
        )
    }

    fn concluded(kit: &Kit, ts: Micros, client: &str, status: ReachabilityStatus) -> Recorded {
        kit.event(
            ts,
            client,
            PeerEvent::Reachability { version: AutonatVersion::V1, status, server: Some(id("rust-1")), address: None },
        )
    }

    fn served(kit: &Kit, ts: Micros, client: &str, outcome: AutonatOutcome, reason: Option<&str>) -> Recorded {
        kit.event(
            ts,
            "rust-1",
            PeerEvent::AutonatRequest {
                remote: id(client),
                version: AutonatVersion::V1,
                outcome,
                reason: reason.map(str::to_owned),
            },
        )
    }

    #[test]
    fn true_conclusions_pass_and_every_server_outcome_is_reported() {
        let kit = kit();
        let record = vec![
            probe(&kit, 1_000, "go-1", 1, false),
            probe(&kit, 1_000, "go-2", 2, false),
            served(&kit, 2_000, "go-1", AutonatOutcome::DialedBack, None),
            served(&kit, 2_000, "go-2", AutonatOutcome::DialBackFailed, Some("connection refused")),
            concluded(&kit, 3_000, "go-1", ReachabilityStatus::Public),
            concluded(&kit, 3_000, "go-2", ReachabilityStatus::Private),
        ];
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert_eq!(
            r.evidence[0],
            "rust-1 (rust-libp2p 0.57.1) AutoNAT v1 server: 2 dial request(s): 1 dial-back failed (\"connection refused\"), 1 dialed back"
        );
        assert!(r.evidence[1].starts_with("go-1 (go-libp2p v0.51.0) AutoNAT v1 client: 1 probe(s) to rust-1; last conclusion public"), "{:?}", r.evidence);
    }

    #[test]
    fn a_wrong_unknown_or_missing_conclusion_fails() {
        let kit = kit();
        let base = vec![probe(&kit, 1_000, "go-1", 1, false), probe(&kit, 1_000, "go-2", 2, false)];
        // go-2 is private, yet concludes public.
        let mut record = base.clone();
        record.push(concluded(&kit, 3_000, "go-1", ReachabilityStatus::Public));
        record.push(concluded(&kit, 3_000, "go-2", ReachabilityStatus::Public));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.message.as_deref().unwrap(),
            "go-2 (go-libp2p v0.51.0) concluded AutoNAT v1 reachability public, where it is private (the runner's firewall refuses its inbound connections)"
        );
        // Unknown is no conclusion.
        let mut record = base.clone();
        record.push(concluded(&kit, 3_000, "go-1", ReachabilityStatus::Unknown));
        record.push(concluded(&kit, 3_000, "go-2", ReachabilityStatus::Private));
        let r = run(&kit, &record);
        assert!(r.message.as_deref().unwrap().starts_with("go-1 (go-libp2p v0.51.0) concluded AutoNAT v1 reachability unknown"), "{r:?}");
        // Nothing concluded, the probe answered with an error.
        let mut record = base;
        record.push(kit.event(
            2_000,
            "go-1",
            PeerEvent::Error { cmd: Some("autonat_probe".into()), cmd_id: Some("c1".into()), message: "no addresses".into() },
        ));
        record.push(concluded(&kit, 3_000, "go-2", ReachabilityStatus::Private));
        let r = run(&kit, &record);
        assert_eq!(
            r.message.as_deref().unwrap(),
            "go-1 (go-libp2p v0.51.0) concluded no AutoNAT v1 reachability after 1 probe(s) to rust-1; 1 answered with error, first: \"no addresses\""
        );
    }

    #[test]
    fn vanishing_clients_are_judged_on_the_server_which_must_survive() {
        let kit = kit();
        let mut record: Vec<Recorded> = (1..=3).map(|n| probe(&kit, 1_000 * n as Micros, "go-1", n, true)).collect();
        record.push(served(&kit, 3_500, "go-1", AutonatOutcome::Refused, Some("dial from non-connected peer")));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert!(r.evidence.iter().any(|e| e.contains("3 probe(s) to rust-1, all vanishing; concluded nothing")), "{:?}", r.evidence);

        // The server panics serving them (rust-libp2p#5570).
        record.push(kit.stderr(4_000, "rust-1", "thread 'tokio-runtime-worker' panicked at as_server.rs:161:47:"));
        record.push(kit.stderr(4_001, "rust-1", "Peer is connected."));
        record.push(kit.exited(4_100, "rust-1", Some(101), false));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.message.as_deref().unwrap(),
            "rust-1 (rust-libp2p 0.57.1), an AutoNAT server, exited with status 101 before it was told to stop at 00:00:00.004: \"thread 'tokio-runtime-worker' panicked at as_server.rs:161:47:\""
        );
        let mut c = Autonat::new(Settings::default());
        record.iter().for_each(|x| c.observe(x));
        assert!(c.failing(&kit.context(), 5_000).is_some());
        // A server stopped by the runner (expected exit) is no crash.
        let stopped = [probe(&kit, 1_000, "go-1", 1, true), kit.exited(9_000, "rust-1", Some(0), true)];
        assert_eq!(run(&kit, &stopped).status, Status::Passed);
    }

    #[test]
    fn nothing_probed_is_no_pass_and_no_roles_is_skipped() {
        let kit = kit();
        assert_eq!(run(&kit, &[]).status, Status::Inconclusive);
        let c = Autonat::new(Settings::default());
        assert!(c.applies(&kit.case));
        assert!(!c.applies(&Kit::new(&["rust-1", "go-1"]).case), "no peer has an AutoNAT role");
    }
}
