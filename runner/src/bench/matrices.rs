//! The matrices the bench runs, written as a user would write them (docs/matrix.md), so that the runner loads
//! and runs them exactly as it runs any other: mixed networks of half rust, half go peers.

use std::fmt::Write as _;
use std::time::Duration;

/// Payload of every message of the scale parts.
pub const MESSAGE_SIZE: u64 = 1024;
/// Neighbours each peer dials in the larger networks.
pub const DEGREE: usize = 6;

const HEADER: &str = "implementations:\n  - {name: rust, language: rust}\n  - {name: go, language: go}\n";

/// `n` peers, half rust (the odd one more), half go.
fn split(n: usize) -> (usize, usize) {
    (n.div_ceil(2), n / 2)
}

/// Random degree-6 where there are more than 7 peers; below that, every peer dials every other (the same thing).
fn topology(n: usize) -> String {
    match n > DEGREE + 1 {
        true => format!("{{random: {{degree: {DEGREE}, seed: 1}}}}"),
        false => "full-mesh".into(),
    }
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Enough memory and processes for a peer of a large network (each holds a connection per neighbour).
const LIMITS: &str = "{memory: 256MiB, pids: 256}";

/// The overhead part's case: `n` peers connect, subscribe, publish one message each, and stop.
pub fn overhead(n: usize) -> String {
    let (rust, go) = split(n);
    format!(
        "name: bench-overhead-{n}\n{HEADER}networks:\n  - name: overhead-{n}\n    peers: {{rust: {rust}, go: {go}}}\n    \
         topology: {}\n    publish: {{messages: 1, interval: 100ms, size: 64}}\n    warmup: 60s\n    drain: 1s\n    \
         limits: {LIMITS}\n",
        topology(n)
    )
}

/// How a scale case publishes: `rate` messages a second across the whole network, for `length`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub rate: f64,
    pub length: Duration,
}

impl Load {
    /// Messages each of `n` publishers sends, and the interval between them, for the network-wide rate.
    pub fn per_peer(&self, n: usize) -> (u64, Duration) {
        let total = self.rate * self.length.as_secs_f64();
        let messages = (total / n as f64).round().max(1.0) as u64;
        (messages, Duration::from_secs_f64(n as f64 / self.rate))
    }
}

/// How long a scale case may take to connect and form meshes: 100 peers need under 2 s here; a network that has
/// not formed in this long is broken, and waiting longer only makes the bench longer.
const SCALE_WARMUP: &str = "60s";

/// The scale part's case: `n` peers, one topic, 1 KiB messages at a constant network-wide rate.
pub fn scale(n: usize, load: Load, drain: Duration) -> String {
    let (rust, go) = split(n);
    let (messages, interval) = load.per_peer(n);
    format!(
        "name: bench-scale-{n}\n{HEADER}networks:\n  - name: scale-{n}\n    peers: {{rust: {rust}, go: {go}}}\n    \
         topology: {}\n    publish: {{messages: {messages}, interval: {}, size: {MESSAGE_SIZE}}}\n    warmup: {SCALE_WARMUP}\n    \
         drain: {}\n    limits: {LIMITS}\n",
        topology(n),
        ms(interval),
        ms(drain)
    )
}

/// One stage of the load curve, from the start of publishing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub at: Duration,
    pub load: Load,
}

/// Stages of rising rate, each `length` long and `gap` after the last.
pub fn stages(rates: &[f64], length: Duration, gap: Duration) -> Vec<Stage> {
    rates
        .iter()
        .enumerate()
        .map(|(i, &rate)| Stage {
            at: (length + gap) * i as u32,
            load: Load { rate, length },
        })
        .collect()
}

/// The load curve's case: one network of `n` peers publishing in stages of rising network-wide rate, every peer a
/// burst per stage, the peers' first messages spread over the stage's first interval.
pub fn load_curve(n: usize, stages: &[Stage], drain: Duration) -> String {
    let (rust, go) = split(n);
    // rust-1, go-1, rust-2, ...: the implementations take turns.
    let names: Vec<String> = (1..=rust)
        .flat_map(|k| {
            let go = (k <= go).then(|| format!("go-{k}"));
            std::iter::once(format!("rust-{k}")).chain(go)
        })
        .collect();
    let mut timeline = String::new();
    for stage in stages {
        let (messages, interval) = stage.load.per_peer(n);
        for (k, peer) in names.iter().enumerate() {
            let at = stage.at + interval.mul_f64(k as f64 / n as f64);
            let _ = writeln!(
                timeline,
                "      - {{at: {}, peer: {peer}, do: {{publish: {{messages: {messages}, interval: {}, size: {MESSAGE_SIZE}}}}}}}",
                ms(at),
                ms(interval)
            );
        }
    }
    format!(
        "name: bench-load-{n}\n{HEADER}networks:\n  - name: load-{n}\n    peers: {{rust: {rust}, go: {go}}}\n    \
         topology: {}\n    publish: {{messages: 0}}\n    warmup: {SCALE_WARMUP}\n    drain: {}\n    limits: {LIMITS}\n    \
         timeline:\n{timeline}",
        topology(n),
        ms(drain)
    )
}

/// The detection part's case: go-1 stops serving /meshsub/1.1.0 one second into publishing, so its identify push
/// breaks `no-protocol-downgrade` (as runner/tests/matrices/downgrade.yaml stages it).
pub const DETECTION: &str = "name: bench-detection
implementations:
  - {name: rust, language: rust}
  - {name: go, language: go}
networks:
  - name: downgrade
    peers: {rust: 1, go: 1}
    gossipsub: {topics: [meshgate], heartbeat: 700ms}
    publish: {messages: 10, interval: 200ms, size: 128}
    warmup: 10s
    drain: 1s
    incidents:
      - {at: 1s, peer: go-1, action: {drop-protocol: /meshsub/1.1.0}}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases;

    fn load(yaml: &str) -> Vec<cases::Case> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, yaml).unwrap();
        cases::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}")).1
    }

    #[test]
    fn every_matrix_loads_as_one_mixed_case() {
        let second = Duration::from_secs(1);
        let load10 = Load { rate: 10.0, length: 20 * second };
        for (yaml, n) in [
            (overhead(2), 2),
            (overhead(50), 50),
            (scale(25, load10, 5 * second), 25),
            (scale(200, load10, 5 * second), 200),
            (load_curve(9, &stages(&[10.0, 40.0], 4 * second, second), second), 9),
            (DETECTION.to_owned(), 2),
        ] {
            let cases = load(&yaml);
            assert_eq!(cases.len(), 1, "{yaml}");
            let case = &cases[0];
            assert_eq!(case.peers.len(), n);
            let rust = case.peers.iter().filter(|p| p.name.starts_with("rust-")).count();
            assert_eq!(rust, n.div_ceil(2));
        }
    }

    #[test]
    fn a_network_wide_rate_is_spread_over_the_peers() {
        let load = Load { rate: 10.0, length: Duration::from_secs(20) };
        // 200 messages in all: 25 peers send 8 each, every 2.5 s; 200 peers one each, spread over 20 s.
        assert_eq!(load.per_peer(25), (8, Duration::from_millis(2500)));
        assert_eq!(load.per_peer(200), (1, Duration::from_secs(20)));
        let yaml = scale(100, load, Duration::from_secs(5));
        assert!(yaml.contains("publish: {messages: 2, interval: 10000ms, size: 1024}"), "{yaml}");
        assert!(yaml.contains("topology: {random: {degree: 6, seed: 1}}"), "{yaml}");
    }

    #[test]
    fn the_load_curve_has_every_peer_publish_in_every_stage() {
        let second = Duration::from_secs(1);
        let stages = stages(&[10.0, 40.0], 4 * second, second);
        assert_eq!(stages[1].at, 5 * second);
        let case = &load(&load_curve(10, &stages, second))[0];
        assert_eq!(case.timeline.len(), 20);
        // The second stage: 40 msg/s over 10 peers is 16 messages each, every 250 ms.
        let yaml = load_curve(10, &stages, second);
        assert!(
            yaml.contains("- {at: 5000ms, peer: rust-1, do: {publish: {messages: 16, interval: 250ms, size: 1024}}}"),
            "{yaml}"
        );
        assert!(yaml.contains("- {at: 5025ms, peer: go-1,"), "{yaml}");
    }
}
