use super::*;

pub(super) fn parse(yaml: &str) -> Result<Matrix, MatrixError> {
    Matrix::parse(Path::new("m.yaml"), yaml)
}

pub(super) const GOOD: &str = r#"name: t
implementations:
  - {name: rust, language: rust}
  - {name: go, language: go}
networks:
  - name: pair
    peers: {rust: 1, go: 1}
"#;

#[test]
fn minimal_matrix_gets_defaults() {
    let m = parse(GOOD).unwrap();
    let n = &m.networks[0].value;
    assert_eq!(n.transport, Axis(vec![Transport::Tcp]));
    assert_eq!(n.gossipsub.topics, vec!["meshgate"]);
    assert_eq!(n.publish.value.messages, 5);
    assert!(m.checks.is_none());
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    let e = parse(&GOOD.replace("    peers:", "    peeers: 3\n    peers:")).unwrap_err();
    assert_eq!(e.location.map(|l| l.0), Some(7), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("m.yaml:7:"), "{text}");
    assert!(text.contains("unknown field `peeers`"), "{text}");
}

#[test]
fn wrong_type_and_unknown_value_name_the_line() {
    let e = parse(&GOOD.replace("{rust: 1, go: 1}", "{rust: many, go: 1}")).unwrap_err();
    assert_eq!(e.to_string(), "m.yaml:7:19: invalid u32");
    let e = parse(&format!("{GOOD}    transport: [tcp, carrier-pigeon]\n")).unwrap_err();
    assert_eq!(e.location.map(|l| l.0), Some(8), "{e}");
    assert!(e.to_string().contains("carrier-pigeon"), "{e}");
}

#[test]
fn empty_axis_is_an_error() {
    let e = parse(&format!("{GOOD}    transport: []\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("an empty list: expected at least one value"),
        "{e}"
    );
}

#[test]
fn checks_parse_and_reject_unknown_ones() {
    let m = parse(&format!("{GOOD}checks:\n  delivery: {{deadline: 2s}}\n")).unwrap();
    let c = m.checks.unwrap();
    assert!(c.delivery.is_some() && c.liveness.is_none());
    let e = parse(&format!("{GOOD}checks:\n  telepathy: {{}}\n")).unwrap_err();
    assert!(e.to_string().contains("telepathy"), "{e}");
}

#[test]
fn shipped_matrices_load() {
    let root = crate::images::project_root().join("matrices");
    let (_cache, reg) = crate::releases::recorded::registries();
    for dir in [root.clone(), root.join("incidents"), root.join("regressions")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let m = Matrix::load_with(&path, &reg).unwrap_or_else(|e| panic!("{e}"));
                assert!(m.releases.warnings.is_empty(), "{}: {:?}", path.display(), m.releases.warnings);
            }
        }
    }
}

/// The build script's variables of an implementation's peers, as a run hands them over.
fn env_of(m: &Matrix, implementation: &str) -> std::collections::BTreeMap<String, String> {
    let case = &crate::cases::expand(m)[0];
    let peer = case.peers.iter().find(|p| p.implementation == implementation).unwrap();
    crate::images::build_env(&peer.build)
}

#[test]
fn checkouts_and_pins_become_build_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("go-libp2p")).unwrap();
    let yaml = GOOD.replace(
        "{name: go, language: go}",
        "{name: go, language: go, path: go-libp2p, pins: {go-libp2p-pubsub: v0.13.0}}",
    );
    let m = Matrix::parse(&dir.path().join("m.yaml"), &yaml).unwrap();
    let env = env_of(&m, "go");
    assert_eq!(
        env["MESHGATE_GO_PATH"],
        dir.path().join("go-libp2p").display().to_string()
    );
    assert_eq!(env["MESHGATE_GO_PUBSUB"], "v0.13.0");

    let e = Matrix::parse(
        &dir.path().join("m.yaml"),
        &yaml.replace("path: go-libp2p", "path: nowhere"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("is not a directory, expected a local checkout"),
        "{e}"
    );
    let e = parse(&GOOD.replace(
        "{name: go, language: go}",
        "{name: go, language: go, pins: {go-mplex: v1.0.0}}",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("pins `go-mplex`, expected go-libp2p-pubsub or go-yamux"),
        "{e}"
    );
    let rust = parse(&GOOD.replace(
        "{name: rust, language: rust}",
        "{name: rust, language: rust, pins: {libp2p-gossipsub: 0.49.0, libp2p-yamux: 0.47.0}}",
    ))
    .unwrap();
    assert_eq!(
        env_of(&rust, "rust")["MESHGATE_RUST_PINS"],
        "libp2p-gossipsub@0.49.0 libp2p-yamux@0.47.0"
    );
}

#[test]
fn check_entries_merge_into_the_defaults_and_off_is_explicit() {
    let m = parse(&format!(
        "{GOOD}checks:\n  delivery: {{deadline: 2s}}\n  streams: off\n"
    ))
    .unwrap();
    let case = &crate::cases::expand(&m)[0];
    let names: Vec<&str> = case.checks.instantiate().iter().map(|c| c.name()).collect();
    // Every check but the one turned off runs; naming one check does not drop the others.
    assert!(!names.contains(&"streams"), "{names:?}");
    for n in ["connectivity", "no-protocol-downgrade", "delivery", "subscriptions", "mesh", "connections", "commands", "liveness"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let results = crate::checks::skip_all(&case.checks, "x");
    let streams = results.iter().find(|r| r.name == "streams").unwrap();
    assert_eq!(streams.message.as_deref(), Some("off in the matrix"));

    // A network's entry changes its check only.
    let m = parse(&GOOD.replace(
        "    peers: {rust: 1, go: 1}\n",
        "    peers: {rust: 1, go: 1}\n    checks: {streams: off}\n",
    ))
    .unwrap();
    let checks = &crate::cases::expand(&m)[0].checks;
    assert!(!checks.is_on("streams") && checks.is_on("delivery"));
    // `messages: 0` is fine once delivery is off.
    let quiet = GOOD.replace("    peers:", "    publish: {messages: 0}\n    checks: {delivery: off}\n    peers:");
    assert!(parse(&quiet).is_ok(), "{:?}", parse(&quiet).err());
}

#[test]
fn the_nightly_matrix_runs_every_check() {
    // Its version-pair networks change some settings but turn nothing off; the incident networks turn off only what
    // their own matrices (matrices/incidents/) turn off, and say why there.
    let (_cache, reg) = crate::releases::recorded::registries();
    let m = Matrix::load_with(&crate::images::project_root().join("matrices/nightly.yaml"), &reg).unwrap();
    let cases = crate::cases::expand(&m);
    for case in &cases {
        for name in crate::matrix::checks::Settings::NAMES.iter() {
            let allowed = case.network.starts_with("incident-a-") && ["mesh", "subscriptions"].contains(name);
            assert!(case.checks.is_on(name) || allowed, "{name} is off in {}", case.name);
        }
    }
    // Every check is on somewhere.
    for name in crate::matrix::checks::Settings::NAMES.iter() {
        assert!(cases.iter().any(|c| c.checks.is_on(name)), "{name} is off everywhere");
    }
}

fn limits(yaml: &str) -> Result<Limits, MatrixError> {
    Matrix::parse(Path::new("m.yaml"), &format!("{GOOD}{yaml}"))
        .map(|m| m.networks[0].value.limits)
}

#[test]
fn limits_default_and_parse_sizes() {
    assert_eq!(limits("").unwrap(), Limits::default());
    let l = limits("    limits: {memory: 512MiB, pids: 1024}\n").unwrap();
    assert_eq!(
        l,
        Limits {
            memory: Size(512 << 20),
            pids: 1024,
            threads: None,
        }
    );
    let l = limits("    limits: {threads: 1}\n").unwrap();
    assert_eq!(l.threads, Some(1));
    assert_eq!(l.runtime_env(), ["GOMAXPROCS=1", "TOKIO_WORKER_THREADS=1"]);
    assert!(Limits::default().runtime_env().is_empty(), "no limit leaves the runtimes their defaults");
    let l = limits("    limits: {memory: 1 GiB}\n").unwrap();
    assert_eq!(l.memory, Size(1 << 30));
    assert_eq!(l.pids, DEFAULT_PIDS, "an absent key keeps its default");
    assert_eq!(
        limits("    limits: {memory: 8388608}\n").unwrap().memory,
        Size(8 << 20)
    );
    assert_eq!("64KiB".parse::<Size>().unwrap(), Size(64 << 10));
    assert_eq!("7B".parse::<Size>().unwrap(), Size(7));
}

#[test]
fn bad_limits_name_file_line_and_column() {
    let e = limits("    limits: {memory: 512MB}\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "m.yaml:8:22: size `512MB` has unit `MB`: expected a size like 256MiB (a whole number of B, KiB, MiB or GiB)"
    );
    let e = limits("    limits:\n      memory: 1.5GiB\n").unwrap_err();
    assert!(
        e.to_string().starts_with("m.yaml:9:15: size `1.5GiB`"),
        "{e}"
    );
    let e = limits("    limits: {memory: 4MiB}\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "m.yaml:8:22: memory limit 4 MiB is below 6 MiB, the least the Docker engine accepts"
    );
    let e = limits("    limits: {pids: 0}\n").unwrap_err();
    assert!(e.to_string().starts_with("m.yaml:8:"), "{e}");
    assert!(e.to_string().contains("expected at least 1"), "{e}");
    let e = limits("    limits: {cpu: 2}\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `cpu`"), "{e}");
    let e = limits("    limits: {memory: 99999999999GiB}\n").unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn bytes_read_like_people_write_them() {
    assert_eq!(format_bytes(256 << 20), "256 MiB");
    assert_eq!(format_bytes(8 << 20), "8 MiB");
    assert_eq!(format_bytes((8 << 20) - 4096), "8.0 MiB");
    assert_eq!(format_bytes(3 << 30), "3 GiB");
    assert_eq!(format_bytes(1536), "1.5 KiB");
    assert_eq!(format_bytes(0), "0 B");
    assert_eq!(Size(512 << 20).to_string(), "512 MiB");
}

/// A network of roles (incident D's shape): two peers never connected, nothing published, request-response and
/// AutoNAT roles, a gateway and a private peer.
pub(crate) const ROLES: &str = r#"name: roles
implementations:
  - {name: rust, language: rust}
  - {name: go, language: go}
networks:
  - name: d
    peers: {rust: 1, go: 2}
    topology: {edges: []}
    publish: {messages: 0}
    gateway: {quirk: {window: 200ms, answer: first}}
    private: [go-2]
    roles:
      rust: {request_response: {}, autonat: {v1: server, throttle: {peer_max: 100, global_max: 1000, period: 100ms}}, swarm: {handler_queue: 1}}
      go: {request_response: {response_delay: 50ms, failure: drop}, autonat: {v1: client}, port_mapping: {}}
      go-2: {request_response: {response_size: 10}}
    timeline:
      - {peer: rust-1, do: {request: {to: go-1, count: 5, via: address}}}
      - {at: 1s, every: 1s, times: 3, peer: go-1, do: {autonat-probe: {server: rust-1, vanish: true}}}
      - {at: 2s, peer: go-2, do: {request: {to: rust-1}}}
"#;

#[test]
fn roles_gateway_and_private_reach_the_cases() {
    use crate::matrix::roles::{AutonatRole, AutonatVersion, Failure, QuirkAnswer};
    use crate::matrix::timeline::{Action, Via};
    let m = parse(ROLES).unwrap();
    let cases = crate::cases::expand(&m);
    assert_eq!(cases.len(), 1);
    let case = &cases[0];
    assert!(case.edges.is_empty());
    assert!(case.publishes_nothing());
    assert_eq!(case.private, vec!["go-2"]);
    let quirk = case.gateway.as_ref().unwrap().quirk.as_ref().unwrap();
    assert_eq!((quirk.window, quirk.answer), (Duration::from_millis(200), QuirkAnswer::First));
    let roles = |name: &str| &case.peers.iter().find(|p| p.name == name).unwrap().roles;
    assert_eq!(roles("rust-1").autonat(AutonatVersion::V1), Some(AutonatRole::Server));
    assert_eq!(roles("rust-1").autonat.as_ref().unwrap().throttle.as_ref().unwrap().period, Some(Duration::from_millis(100)));
    assert_eq!(roles("rust-1").swarm.as_ref().unwrap().handler_queue.map(|q| q.get()), Some(1));
    assert_eq!(roles("go-1").swarm, None);
    assert_eq!(roles("go-1").request_response.as_ref().unwrap().failure, Some(Failure::Drop));
    assert_eq!(roles("go-1").port_mapping.as_ref().unwrap().deadline, Duration::from_secs(30));
    // go-2's own request_response replaces go's whole; its autonat and port mapping are go's.
    let go2 = roles("go-2");
    assert_eq!(go2.request_response.as_ref().unwrap().response_size, Some(10));
    assert_eq!(go2.request_response.as_ref().unwrap().failure, None);
    assert_eq!(go2.autonat(AutonatVersion::V1), Some(AutonatRole::Client));
    let Action::Request(r) = &case.timeline[0].action else { panic!("{:?}", case.timeline[0]) };
    assert_eq!((r.count, r.size, r.via), (5, 64, Via::Address));
    let Action::AutonatProbe(p) = &case.timeline[1].action else { panic!() };
    assert_eq!((p.version, p.vanish, p.via), (AutonatVersion::V1, true, Via::Address));
    let Action::Request(r) = &case.timeline[2].action else { panic!() };
    assert_eq!((r.count, r.via), (1, Via::Connection));
    // case.json keeps all of it.
    let json = serde_json::to_string(case).unwrap();
    let back: crate::cases::Case = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    assert!(json.contains(r#""private":["go-2"]"#), "{json}");
    // Without roles, nothing of them is written.
    let plain = serde_json::to_string(&crate::cases::expand(&parse(GOOD).unwrap())[0]).unwrap();
    assert!(!plain.contains("roles") && !plain.contains("gateway") && !plain.contains("private"), "{plain}");
}

#[test]
fn a_probe_needs_the_client_role_of_its_version() {
    let e = parse(&ROLES.replace("autonat: {v1: client}", "autonat: {v2: client}")).unwrap_err();
    assert_eq!(e.location.map(|l| l.0), Some(18), "{e}");
    assert!(e.to_string().contains("client `go-1` has no AutoNAT v1 client role"), "{e}");
    let e = parse(&ROLES.replace("count: 5", "count: 0")).unwrap_err();
    assert!(e.to_string().contains("`request: {count: 0}` sends nothing"), "{e}");
    let e = parse(&ROLES.replace("{to: go-1, count", "{to: rust-1, count")).unwrap_err();
    assert!(e.to_string().contains("act on itself"), "{e}");
    let e = parse(&ROLES.replace("private: [go-2]", "private: [go-2, go-2]")).unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
}

#[test]
fn the_nightly_matrix_follows_the_newest_releases_and_its_rules_still_match() {
    let (_cache, reg) = crate::releases::recorded::registries();
    let m = Matrix::load_with(&crate::images::project_root().join("matrices/nightly.yaml"), &reg).unwrap();
    let r: Vec<(String, String, Vec<String>)> = m
        .releases
        .resolutions
        .iter()
        .map(|r| (r.implementation.clone(), r.request.clone(), r.versions.clone()))
        .collect();
    assert_eq!(
        r,
        [
            ("rust".into(), "newest: 4".into(), vec!["0.57.1".into(), "0.56.0".into(), "0.55.0".into(), "0.54.1".into()]),
            ("go".into(), "newest: 2".into(), vec!["v0.52.0".into(), "v0.51.0".into()]),
        ]
    );
    assert!(m.releases.resolutions.iter().all(|r| r.cached && r.offline.is_none()));
    let cases = crate::cases::expand(&m);
    let named = |parts: &[&str]| cases.iter().filter(|c| parts.iter().all(|p| c.name.contains(p))).count();
    assert_eq!(named(&["rust-0.57.1 x go-v0.52.0", "/ pair"]), 3, "the newest of both, named by the matrix nowhere");
    // `rust: ["0.54", "0.55"]` still names the resolved =0.54.1 and =0.55.0.
    let issue = |c: &crate::cases::Case| c.known_issues.iter().any(|k| k.reference == "rust-libp2p#5996");
    for c in cases.iter().filter(|c| c.network == "incident-d-unconnected-responder") {
        let old = c.name.contains("rust-0.54.1") || c.name.contains("rust-0.55.0");
        assert_eq!(issue(c), old, "{}", c.name);
    }
    // The rust-side incidents run against the newest go lines only.
    assert!(cases.iter().filter(|c| c.network == "incident-e-mixed-6").all(|c| c.name.contains("go-v0.52.0") || c.name.contains("go-v0.51.0")));
    // Each rust release builds with the libp2p-stream on its libp2p-swarm.
    let stream = |v: &str| cases.iter().flat_map(|c| &c.peers).find(|p| p.build.version.as_deref() == Some(v)).map(|p| p.build.companions["libp2p-stream"].clone());
    assert_eq!(stream("=0.56.0").as_deref(), Some("0.4.0-alpha"));
    assert_eq!(stream("=0.57.1").as_deref(), Some("0.5.0-alpha"));
}

#[test]
fn pubsub_is_an_axis_and_a_go_libp2p_it_would_raise_is_unsupported() {
    let (_cache, reg) = crate::releases::recorded::registries();
    let yaml = "name: m\nimplementations:\n  - {name: go, language: go, version: [latest, v0.48.0], pins: {go-libp2p-pubsub: [v0.17.0, latest]}}\nnetworks:\n  - {name: two, peers: {go: 2}}\nexclude:\n  - {go.go-libp2p-pubsub: v0.17.0, go: v0.52.0}\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, yaml).unwrap();
    let m = Matrix::load_with(&path, &reg).unwrap();
    let cases = crate::cases::expand(&m);
    let names: Vec<(&str, Option<&str>)> = cases.iter().map(|c| (c.name.as_str(), c.unsupported.as_deref())).collect();
    let raised = "go-1: go-libp2p-pubsub v0.19.0 requires go-libp2p v0.51.0 or newer: Go's minimal version selection would build that, not the go-libp2p v0.48.0 asked for";
    assert_eq!(
        names,
        [
            ("go-v0.52.0+pubsub-v0.19.0 / tcp+noise+yamux / two", None),
            ("go-v0.48.0+pubsub-v0.17.0 / tcp+noise+yamux / two", None),
            ("go-v0.48.0+pubsub-v0.19.0 / tcp+noise+yamux / two", Some(raised)),
        ]
    );
    assert_eq!(cases[0].peers[1].build.pins["go-libp2p-pubsub"], "v0.19.0");
    assert_eq!(m.releases.resolutions[1].library, "github.com/libp2p/go-libp2p-pubsub");
}

#[test]
fn version_requests_are_checked_and_an_unreachable_registry_without_cache_is_an_error_at_the_implementation() {
    for (bad, expected) in [
        ("{newest: 0}", "`newest: 0` names no release"),
        ("{oldest: 2}", "unknown key `oldest`"),
    ] {
        let e = parse(&GOOD.replace("{name: go, language: go}", &format!("{{name: go, language: go, version: {bad}}}"))).unwrap_err();
        assert!(e.to_string().contains(expected), "{bad}: {e}");
    }
    let e = parse(&GOOD.replace("{name: go, language: go}", "{name: go, language: go, pins: {go-yamux: latest}}")).unwrap_err();
    assert!(e.to_string().contains("only go-libp2p-pubsub may be an axis"), "{e}");

    let cache = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let reg = crate::releases::Registries { crates_index: closed.clone(), goproxy: closed, cache: cache.path().to_owned() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, GOOD.replace("{name: go, language: go}", "{name: go, language: go, version: latest}")).unwrap();
    let e = Matrix::load_with(&path, &reg).unwrap_err();
    assert_eq!(e.location.map(|l| l.0), Some(4), "{e}");
    assert!(e.to_string().contains("implementation `go`: cannot resolve its versions") && e.to_string().contains("nothing is cached"), "{e}");
}
