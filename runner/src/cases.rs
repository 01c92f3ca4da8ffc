//! Cases: the concrete networks a matrix asks for, one per combination of its axes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::matrix::resolve::{raised_by_pubsub, PUBSUB_PIN, STREAM_CRATE};
use crate::matrix::{
    self, label, rule_matches, DialMode, Gossipsub, Incident, KnownIssue, Language, Limits, Matrix, MatrixError, Muxer,
    Publish, Security, Topology, Transport,
};

/// The port every peer listens on; each peer has its own address, so one port serves all.
pub const LISTEN_PORT: u16 = 4001;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    pub network: String,
    pub peers: Vec<PeerSpec>,
    /// Who dials whom, by index into `peers`.
    pub edges: Vec<(usize, usize)>,
    pub topology: Topology,
    pub transport: Transport,
    pub security: Security,
    pub muxer: Muxer,
    pub dial: DialMode,
    /// Dials per edge.
    pub dials: u32,
    pub gossipsub: Gossipsub,
    pub publish: Publish,
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    pub incidents: Vec<Incident>,
    /// Steps on the time line besides the incidents: commands to peers and faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<matrix::timeline::Step>,
    /// What each peer may use.
    pub limits: Limits,
    pub checks: crate::matrix::checks::Settings,
    /// The known issues that apply to this case.
    pub known_issues: Vec<KnownIssue>,
    /// The case's value on every axis rules can name (`transport` -> `tcp`, `rust` -> `0.56`).
    pub axes: BTreeMap<String, String>,
    /// The UPnP gateway emulator of the case network, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<matrix::Gateway>,
    /// Peers whose inbound connections the runner's firewall refuses from their start: not reachable from outside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<String>,
    /// Why the case cannot be built as the matrix asks (a pinned go-libp2p-pubsub raises go-libp2p): it is
    /// skipped with this reason, never run with other versions than it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSpec {
    /// `rust-1`, `go-2`: implementation name and ordinal.
    pub name: String,
    /// The implementation's name in the case: `rust`, or `rust-0.56` when the matrix names versions.
    pub implementation: String,
    pub language: Language,
    pub build: BuildSpec,
    /// Identity seed; the same peer of the same case has the same peer id on every run.
    pub seed: u64,
    /// What its implementation offers instead of the case's security and muxer (TCP only).
    pub offer: matrix::Offer,
    /// What it does besides gossipsub (request-response, AutoNAT, port mapping), resolved from the network's
    /// `roles:`.
    #[serde(default, skip_serializing_if = "matrix::Roles::is_empty")]
    pub roles: matrix::Roles,
}

/// What to build for a peer: one image per distinct value in a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BuildSpec {
    pub language: Language,
    /// `None`: the version in the tree.
    pub version: Option<String>,
    /// A local checkout of the library to build against instead of a release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<std::path::PathBuf>,
    /// Sub-libraries pinned to a version (`libp2p-gossipsub` -> `0.49.0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
    /// A prebuilt image to run instead of building (`language: image`).
    pub image: Option<String>,
    /// Libraries the version needs besides, derived from the registry (`libp2p-stream` -> `0.5.0-alpha`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub companions: BTreeMap<String, String>,
}

impl Case {
    /// How often each peer reports every connection's stream counts (changes are reported as they are seen):
    /// every second up to 100 peers, then less often as the network grows, up to every 3 s. At 200 peers the
    /// per-second reports were 45% of all the peers wrote, on a host their own work already saturates; the
    /// `streams` and `liveness` checks take their timing from here.
    pub fn streams_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis((self.peers.len() as u64 * 10).clamp(1_000, 3_000))
    }

    /// Peers expected to receive on a topic: all of them (incidents do not change what is expected).
    pub fn subscribers(&self, _topic: &str) -> impl Iterator<Item = &PeerSpec> {
        self.peers.iter()
    }

    /// Names of the peers that publish.
    pub fn publishers(&self) -> Vec<&str> {
        match &self.publish.publishers {
            Some(names) => self
                .peers
                .iter()
                .filter(|p| names.contains(&p.name))
                .map(|p| p.name.as_str())
                .collect(),
            None => self.peers.iter().map(|p| p.name.as_str()).collect(),
        }
    }

    /// Whether no message is published at all: neither the network's publishing nor a step publishes.
    pub fn publishes_nothing(&self) -> bool {
        let steps = self.incidents.iter().map(|i| i.as_step()).chain(self.timeline.iter().cloned());
        (self.publish.messages == 0 || self.publishers().is_empty())
            && !steps.into_iter().any(|s| matches!(s.action, matrix::Action::Publish(_)))
    }

    /// The security protocols peer `i` offers, in preference order.
    pub fn security_offer(&self, i: usize) -> Vec<Security> {
        self.peers[i].offer.security.clone().unwrap_or_else(|| vec![self.security])
    }

    /// The muxers peer `i` offers, in preference order.
    pub fn muxer_offer(&self, i: usize) -> Vec<Muxer> {
        self.peers[i].offer.muxer.clone().unwrap_or_else(|| vec![self.muxer])
    }

    /// What a connection dialed by `dialer` to `listener` must negotiate: (security, muxer) in the contract's
    /// spelling, the dialer's first choice the listener also offers (multistream-select); `None` where they share
    /// nothing.
    pub fn expected_negotiation(&self, dialer: usize, listener: usize) -> (Option<String>, Option<String>) {
        if self.transport == Transport::QuicV1 {
            return (Some("tls".into()), Some("quic-v1".into()));
        }
        fn first<T: PartialEq + Serialize>(ours: Vec<T>, theirs: Vec<T>) -> Option<String> {
            ours.into_iter().find(|x| theirs.contains(x)).map(|x| label(&x))
        }
        (
            first(self.security_offer(dialer), self.security_offer(listener)),
            first(self.muxer_offer(dialer), self.muxer_offer(listener)),
        )
    }

    pub fn stack(&self) -> String {
        let offers = |f: &dyn Fn(&PeerSpec) -> bool| self.peers.iter().any(f);
        let security = if offers(&|p| p.offer.security.is_some()) { "offer".into() } else { label(&self.security) };
        let muxer = if offers(&|p| p.offer.muxer.is_some()) { "offer".into() } else { label(&self.muxer) };
        match self.transport {
            Transport::Tcp => format!("tcp+{security}+{muxer}"),
            Transport::QuicV1 => "quic-v1".into(),
        }
    }

    /// What the case is made of, for reports (JUnit properties, summary columns).
    pub fn properties(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        let mut imps: Vec<&str> = self
            .peers
            .iter()
            .map(|p| p.implementation.as_str())
            .collect();
        imps.dedup();
        p.insert("implementations".into(), imps.join(","));
        p.insert("network".into(), self.network.clone());
        p.insert("peers".into(), self.peers.len().to_string());
        p.insert("transport".into(), label(&self.transport));
        p.insert("security".into(), label(&self.security));
        p.insert("muxer".into(), label(&self.muxer));
        for (i, peer) in self.peers.iter().enumerate() {
            let list = |l: Vec<String>| l.join(">");
            if peer.offer != matrix::Offer::default() && !p.contains_key(&format!("offer.{}", peer.implementation)) {
                p.insert(
                    format!("offer.{}", peer.implementation),
                    format!(
                        "{} {}",
                        list(self.security_offer(i).iter().map(label).collect()),
                        list(self.muxer_offer(i).iter().map(label).collect())
                    ),
                );
            }
        }
        p.insert(
            "dial".into(),
            format!("{} x{}", label(&self.dial), self.dials),
        );
        p.insert("topology".into(), self.topology.to_string());
        let faults: Vec<String> = self
            .incidents
            .iter()
            .map(|i| i.as_step())
            .chain(self.timeline.iter().cloned())
            .filter(|s| s.action.is_fault())
            .map(|s| s.summary())
            .collect();
        if !faults.is_empty() {
            p.insert("faults".into(), faults.join("; "));
        }
        p.insert(
            "seeds".into(),
            self.peers
                .iter()
                .map(|p| p.seed.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        p
    }
}

/// Reads a matrix and expands it into its cases; a matrix whose `include` and `exclude` leave no case is an
/// error at the rule that emptied it.
pub fn load(path: &Path) -> Result<(Matrix, Vec<Case>), MatrixError> {
    let m = Matrix::load(path)?;
    let cases = expand(&m);
    if cases.is_empty() {
        let at = m
            .exclude
            .first()
            .or(m.include.first())
            .map(|r| (r.referenced.line(), r.referenced.column()));
        return Err(MatrixError {
            file: path.into(),
            location: at,
            message: "no case is left after `include` and `exclude`: expected at least one".into(),
        });
    }
    Ok((m, cases))
}

/// Every case of a matrix, in file order, axes varying last-listed fastest.
pub fn expand(m: &Matrix) -> Vec<Case> {
    let mut cases = Vec::new();
    for net in m.networks.iter().map(|n| &n.value) {
        let checks = m.checks_of(net);
        for peers in version_combinations(m, net) {
            for &transport in &net.transport.0 {
                // QUIC brings its own security and muxer: those axes do not multiply it.
                let (securities, muxers) = match transport {
                    Transport::QuicV1 => (vec![net.security.0[0]], vec![net.muxer.0[0]]),
                    Transport::Tcp => (net.security.0.clone(), net.muxer.0.clone()),
                };
                for &security in &securities {
                    for &muxer in &muxers {
                        for &dial in &net.dial.0 {
                            let mut case = Case {
                                name: String::new(),
                                network: net.name.clone(),
                                edges: edges(&net.topology, &peers),
                                peers: peers.clone(),
                                topology: net.topology.clone(),
                                transport,
                                security,
                                muxer,
                                dial,
                                dials: net.dials,
                                gossipsub: net.gossipsub.clone(),
                                publish: net.publish.value.clone(),
                                warmup: net.warmup,
                                drain: net.drain,
                                incidents: net.incidents.iter().map(|i| i.value.clone()).collect(),
                                timeline: net.timeline.iter().map(|s| s.value.clone()).collect(),
                                limits: net.limits,
                                checks: checks.clone(),
                                known_issues: Vec::new(),
                                axes: BTreeMap::new(),
                                gateway: net.gateway.clone(),
                                private: net.private.value.clone(),
                                unsupported: None,
                            };
                            case.unsupported = unsupported(m, &case.peers);
                            case.name = case_name(&case, net.dial.0.len() > 1);
                            case.axes = axes_of(m, &case);
                            if selected(m, &case.axes) {
                                case.known_issues = m
                                    .known_issues
                                    .iter()
                                    .map(|k| &k.value)
                                    .filter(|k| {
                                        k.cases.as_ref().is_none_or(|r| rule_matches(r, &case.axes))
                                    })
                                    .cloned()
                                    .collect();
                                cases.push(case);
                            }
                        }
                    }
                }
            }
        }
    }
    cases
}

/// The case's value on every axis a rule can name: the settings, and each implementation's version (`tree` for
/// the version in the tree).
fn axes_of(m: &Matrix, case: &Case) -> BTreeMap<String, String> {
    let mut axes = BTreeMap::new();
    axes.insert("network".to_owned(), case.network.clone());
    axes.insert("transport".to_owned(), label(&case.transport));
    axes.insert("security".to_owned(), label(&case.security));
    axes.insert("muxer".to_owned(), label(&case.muxer));
    axes.insert("dial".to_owned(), label(&case.dial));
    axes.insert("topology".to_owned(), case.topology.to_string());
    for imp in m.implementations.iter().map(|i| &i.value) {
        let first = format!("{}-1", imp.name);
        if let Some(p) = case.peers.iter().find(|p| p.name == first) {
            axes.insert(
                imp.name.clone(),
                p.build.version.clone().unwrap_or_else(|| "tree".into()),
            );
            if let Some(v) = p.build.pins.get(PUBSUB_PIN) {
                axes.insert(format!("{}.{PUBSUB_PIN}", imp.name), v.clone());
            }
        }
    }
    axes
}

/// Why a case cannot be built as asked: a go peer's pinned go-libp2p-pubsub requires a newer go-libp2p than the
/// one it names (for the version in the tree, go-peer/go.mod's, which builds).
fn unsupported(m: &Matrix, peers: &[PeerSpec]) -> Option<String> {
    peers.iter().find_map(|p| {
        let (Language::Go, Some(v), Some(pubsub)) =
            (p.language, p.build.version.as_deref(), p.build.pins.get(PUBSUB_PIN))
        else {
            return None;
        };
        raised_by_pubsub(&m.releases, v, pubsub).map(|why| format!("{}: {why}", p.name))
    })
}

/// `include` keeps the cases that match one of its rules (all when it is empty); `exclude` then drops matches.
fn selected(m: &Matrix, axes: &BTreeMap<String, String>) -> bool {
    let included = m.include.is_empty() || m.include.iter().any(|r| rule_matches(&r.value, axes));
    included && !m.exclude.iter().any(|r| rule_matches(&r.value, axes))
}

fn case_name(case: &Case, with_dial: bool) -> String {
    let mut imps: Vec<&str> = case
        .peers
        .iter()
        .map(|p| p.implementation.as_str())
        .collect();
    imps.dedup();
    let mut name = format!("{} / {} / {}", imps.join(" x "), case.stack(), case.network);
    if with_dial {
        name.push_str(&format!(" / dial-{}", label(&case.dial)));
    }
    name
}

/// The peers of a network, once per combination of the versions of the implementations it uses (the first
/// implementation's version varying slowest). Peers are in the order the matrix lists implementations, numbered
/// from 1 per implementation.
fn version_combinations(m: &Matrix, net: &matrix::Network) -> Vec<Vec<PeerSpec>> {
    let mut combos: Vec<Vec<PeerSpec>> = vec![Vec::new()];
    for imp in m.implementations.iter().map(|i| &i.value) {
        let count = net.peers.value.get(&imp.name).copied().unwrap_or(0);
        if count == 0 {
            continue;
        }
        let mut next = Vec::new();
        let builds: Vec<(Option<String>, BTreeMap<String, String>)> = imp
            .versions()
            .into_iter()
            .flat_map(|v| imp.pin_combinations().into_iter().map(move |p| (v.clone(), p)))
            .collect();
        for peers in &combos {
            for (version, pins) in &builds {
                let mut implementation = match (version, &imp.version) {
                    (Some(v), Some(_)) => format!("{}-{}", imp.name, v.trim_start_matches('=')),
                    _ => imp.name.clone(),
                };
                // A pin that is an axis names the case: `go-v0.52.0+pubsub-v0.19.0`.
                for pin in &imp.pin_axes {
                    let short = pin.trim_start_matches("go-libp2p-");
                    implementation.push_str(&format!("+{short}-{}", pins[pin]));
                }
                let mut companions = BTreeMap::new();
                if let (Language::Rust, Some(v)) = (imp.language, version) {
                    if let Some(stream) = m.releases.streams.get(v) {
                        companions.insert(STREAM_CRATE.to_owned(), stream.clone());
                    }
                }
                let mut peers = peers.clone();
                for i in 1..=count {
                    peers.push(PeerSpec {
                        name: format!("{}-{i}", imp.name),
                        implementation: implementation.clone(),
                        language: imp.language,
                        build: BuildSpec {
                            language: imp.language,
                            version: version.clone(),
                            path: imp.path.clone(),
                            pins: pins.clone(),
                            image: imp.image.clone(),
                            companions: companions.clone(),
                        },
                        seed: peers.len() as u64 + 1,
                        offer: imp.offer.clone().unwrap_or_default(),
                        roles: matrix::roles::resolve(&net.roles, &imp.name, &format!("{}-{i}", imp.name)),
                    });
                }
                next.push(peers);
            }
        }
        combos = next;
    }
    combos
}

fn edges(topology: &Topology, peers: &[PeerSpec]) -> Vec<(usize, usize)> {
    let n = peers.len();
    match topology {
        Topology::FullMesh => (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .collect(),
        Topology::Ring if n == 2 => vec![(0, 1)],
        Topology::Ring => (0..n).map(|a| (a, (a + 1) % n)).collect(),
        Topology::Star => (1..n).map(|a| (a, 0)).collect(),
        Topology::Random { degree, seed } => random_edges(n, *degree, *seed),
        Topology::Edges(named) => {
            let index = |name: &str| {
                peers
                    .iter()
                    .position(|p| p.name == name)
                    .expect("validated")
            };
            named.iter().map(|(a, b)| (index(a), index(b))).collect()
        }
    }
}

/// A ring, so that the network is connected, then random extra edges until every peer has `degree` neighbours
/// (or no pair is left). ChaCha8 keeps the same seed giving the same network on every machine and version.
fn random_edges(n: usize, degree: usize, seed: u64) -> Vec<(usize, usize)> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut edges: Vec<(usize, usize)> = if n == 2 {
        vec![(0, 1)]
    } else {
        (0..n).map(|a| (a, (a + 1) % n)).collect()
    };
    let mut neighbours = vec![if n == 2 { 1 } else { 2 }; n];
    let linked = |edges: &[(usize, usize)], a: usize, b: usize| {
        edges
            .iter()
            .any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a))
    };
    let mut candidates: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    candidates.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    for (a, b) in candidates {
        if neighbours[a] < degree && neighbours[b] < degree && !linked(&edges, a, b) {
            edges.push((a, b));
            neighbours[a] += 1;
            neighbours[b] += 1;
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies() {
        let kit = crate::testkit::Kit::new(&["rust-1", "rust-2", "go-1"]);
        let peers = &kit.case.peers;
        assert_eq!(
            edges(&Topology::FullMesh, peers),
            vec![(0, 1), (0, 2), (1, 2)]
        );
        assert_eq!(edges(&Topology::Ring, peers), vec![(0, 1), (1, 2), (2, 0)]);
        assert_eq!(edges(&Topology::Ring, &peers[..2]), vec![(0, 1)]);
        assert_eq!(edges(&Topology::Star, peers), vec![(1, 0), (2, 0)]);
        assert_eq!(
            edges(
                &Topology::Edges(vec![("go-1".into(), "rust-1".into())]),
                peers
            ),
            vec![(2, 0)]
        );
    }

    #[test]
    fn stream_counts_are_sampled_less_often_in_large_networks() {
        let kit = |n: usize| crate::testkit::Kit::many(n / 2, n - n / 2);
        let interval = |n| kit(n).case.streams_interval().as_millis();
        assert_eq!((interval(2), interval(100)), (1_000, 1_000));
        assert_eq!((interval(200), interval(1_000)), (2_000, 3_000));
    }

    #[test]
    fn random_networks_are_connected_reproducible_and_near_the_degree() {
        let a = random_edges(20, 4, 7);
        assert_eq!(a, random_edges(20, 4, 7), "same seed, same network");
        assert_ne!(a, random_edges(20, 4, 8));
        let mut degree = vec![0; 20];
        for &(x, y) in &a {
            degree[x] += 1;
            degree[y] += 1;
        }
        assert!(degree.iter().all(|&d| (2..=4).contains(&d)), "{degree:?}");
        assert!(
            degree.iter().filter(|&&d| d == 4).count() >= 16,
            "{degree:?}"
        );
        // The ring is in: every peer reaches the next.
        assert!((0..20).all(|i| a.contains(&(i, (i + 1) % 20))));
    }

    #[test]
    fn cross_product_and_names() {
        let yaml = r#"
name: t
implementations:
  - {name: rust, language: rust}
  - {name: go, language: go}
networks:
  - name: mixed-4
    peers: {go: 2, rust: 2}
    transport: [tcp, quic-v1]
    security: [noise, tls]
"#;
        let m = Matrix::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let cases = expand(&m);
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "rust x go / tcp+noise+yamux / mixed-4",
                "rust x go / tcp+tls+yamux / mixed-4",
                "rust x go / quic-v1 / mixed-4",
            ]
        );
        let peers: Vec<_> = cases[0].peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(peers, vec!["rust-1", "rust-2", "go-1", "go-2"]);
        assert_eq!(cases[0].edges.len(), 6);
    }

    #[test]
    fn versions_are_axes_and_name_the_case() {
        let yaml = r#"
name: t
implementations:
  - {name: rust, language: rust, version: [0.56, "=0.57.1"]}
  - {name: go, language: go, version: v0.41.1}
  - {name: other, language: go}
networks:
  - name: pair
    peers: {go: 1, rust: 1}
"#;
        let m = Matrix::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let cases = expand(&m);
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "rust-0.56 x go-v0.41.1 / tcp+noise+yamux / pair",
                "rust-0.57.1 x go-v0.41.1 / tcp+noise+yamux / pair"
            ]
        );
        assert_eq!(
            cases[1].peers[0].build,
            BuildSpec {
                language: Language::Rust,
                version: Some("=0.57.1".into()),
                path: None,
                pins: BTreeMap::new(),
                image: None,
                companions: BTreeMap::new(),
            }
        );
        assert_eq!(cases[1].peers[1].build.version.as_deref(), Some("v0.41.1"));
    }

    #[test]
    fn include_exclude_and_known_issues_select_by_axes() {
        let yaml = r#"
name: t
implementations:
  - {name: rust, language: rust, version: ["0.56", "0.57"]}
  - {name: go, language: go}
networks:
  - name: pair
    peers: {go: 1, rust: 1}
    transport: [tcp, quic-v1]
    security: [noise, tls]
exclude:
  - {rust: "0.56", transport: quic-v1}
known_issues:
  - {reference: "rust-libp2p#6047", check: delivery, cases: {security: tls}}
"#;
        let m = Matrix::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let cases = expand(&m);
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "rust-0.56 x go / tcp+noise+yamux / pair",
                "rust-0.56 x go / tcp+tls+yamux / pair",
                "rust-0.57 x go / tcp+noise+yamux / pair",
                "rust-0.57 x go / tcp+tls+yamux / pair",
                "rust-0.57 x go / quic-v1 / pair",
            ]
        );
        let known: Vec<usize> = cases.iter().map(|c| c.known_issues.len()).collect();
        assert_eq!(known, vec![0, 1, 0, 1, 0]);

        let only = yaml.replace("exclude:", "include:\n  - {transport: quic-v1}\nexclude:");
        let m = Matrix::parse(std::path::Path::new("t.yaml"), &only).unwrap();
        let names: Vec<_> = expand(&m).into_iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["rust-0.57 x go / quic-v1 / pair"]);
    }
}
