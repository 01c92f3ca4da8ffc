//! One probe of one recipe on a backend: the steps, each ending in its verdict (the table is in the module's
//! documentation).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use contract::commands::{Command, CommandLine, DialMode};
use contract::events::{Direction, Event};
use contract::features::{self as feature, PROBE_RESERVED};
use tokio_util::sync::CancellationToken;

use super::peer::{clip, ProbePeer, Waited};
use super::report::Verdict;
use super::{Report, Step, STEPS, TOPIC, UNKNOWN_COMMAND};
use crate::backend::{Backend, PeerLaunch};
use crate::cases::Case;
use crate::events::now_micros;
use crate::images::Recipe;
use crate::peers::config::{self as peer_config, dial_addr};
use contract::config::{Autonat, AutonatRole, PeerConfig, PortMapping, RequestResponse};

/// A line that is not JSON.
const MALFORMED_LINE: &str = "meshgate-probe: this line is not JSON";
/// The payload size asked for: room for the header, so that the message is exactly this long.
const MESSAGE_SIZE: u64 = 256;
/// The request's payload size, and its id (also the command's `cmd_id`).
const REQUEST_SIZE: u64 = 64;
const REQUEST_ID: &str = "p10";

/// How long a peer gets to say `started` and `listening` (as in runs), to answer a command, to exit after `stop`,
/// to connect, and to deliver the message.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take to be answered: a responder answers at once unless told otherwise.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the publisher's mesh may take to hold the other peer (a heartbeat or two) before it publishes anyway.
const MESH_WAIT: Duration = Duration::from_secs(3);

/// Probes one implementation on `backend`, in a network of its own (`case_index` names it). The peers' output goes
/// to `dir`. An error means the probe could not be carried out (the engine failed, it was interrupted); what the
/// peers did is in the report.
pub async fn probe<B: Backend>(
    backend: &B,
    case: &Case,
    recipe: &Recipe,
    case_index: usize,
    dir: &Path,
    cancel: &CancellationToken,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut prober = Prober {
        backend,
        case,
        recipe,
        case_index,
        dir,
        cancel,
        steps: BTreeMap::new(),
        features: None,
        stops: Vec::new(),
        done: Vec::new(),
        report: Report {
            target: match &recipe.image {
                Some(image) => format!("image {image}"),
                None => recipe.label(),
            },
            image: recipe.image_tag(),
            ..Default::default()
        },
    };
    let network = format!("probe of {}", recipe.label());
    // Not raced against Ctrl-C (an engine that got the request creates the network anyway, after the clean-up
    // looked for it); the backend bounds the call itself.
    backend.create_network(case_index, &network).await?;
    if cancel.is_cancelled() {
        let _ = backend.remove_case(case_index).await;
        bail!("interrupted");
    }
    let result = prober.run().await;
    let removed = backend.remove_case(case_index).await;
    result?;
    if let Err(e) = removed {
        tracing::warn!("clean-up of the probe of {}: {e:#}", recipe.label());
    }
    Ok(prober.into_report())
}

/// A step's outcome: the evidence, or the reason it failed.
type Outcome = Result<String, String>;

/// Returns a failed verdict from the enclosing step.
macro_rules! or_fail {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(why) => return Ok(Err(why)),
        }
    };
}

struct Prober<'a, B: Backend> {
    backend: &'a B,
    case: &'a Case,
    recipe: &'a Recipe,
    case_index: usize,
    dir: &'a Path,
    cancel: &'a CancellationToken,
    steps: BTreeMap<&'static str, (Verdict, String)>,
    /// What the peer started alone listed in `started.features` (`None`: it did not start, or listed none).
    features: Option<Vec<String>>,
    /// How each peer started normally took `stop`.
    stops: Vec<(String, Outcome)>,
    /// Peers that are gone, for the `events` step.
    done: Vec<ProbePeer>,
    report: Report,
}

impl<B: Backend> Prober<'_, B> {
    async fn run(&mut self) -> anyhow::Result<()> {
        let started = self.alone().await?;
        self.require().await?;
        if started {
            self.roles().await?;
            self.pair().await?;
        } else {
            for step in ["roles", "connect", "subscribe", "message", "request-response"] {
                self.set(step, Err("not tried: the peer did not start alone".into()));
            }
        }
        self.stop_step();
        self.events_step();
        Ok(())
    }

    fn into_report(mut self) -> Report {
        self.report.steps = STEPS
            .iter()
            .map(|&name| {
                let (verdict, reason) = self
                    .steps
                    .remove(name)
                    .unwrap_or_else(|| (Verdict::Fail, "not tried".into()));
                Step {
                    name: name.to_owned(),
                    verdict,
                    reason,
                }
            })
            .collect();
        self.report
    }

    fn set(&mut self, step: &'static str, outcome: Outcome) {
        let verdict = match outcome {
            Ok(r) => (Verdict::Pass, r),
            Err(r) => (Verdict::Fail, r),
        };
        self.set_verdict(step, verdict);
    }

    /// The step does not apply: the implementation says it does not do what it tests.
    fn skip(&mut self, step: &'static str, reason: String) {
        self.set_verdict(step, (Verdict::Skip, reason));
    }

    fn set_verdict(&mut self, step: &'static str, verdict: (Verdict, String)) {
        debug_assert!(STEPS.contains(&step));
        self.steps.insert(step, verdict);
    }

    /// Whether the peer started alone listed `name` in `started.features`.
    fn lists(&self, name: &str) -> bool {
        self.features
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == name))
    }

    async fn start(&mut self, name: &str, config: PeerConfig) -> anyhow::Result<ProbePeer> {
        let launch = PeerLaunch {
            name: name.to_owned(),
            recipe: self.recipe.clone(),
            config,
            limits: self.case.limits,
            cancel: self.cancel.clone(),
        };
        let process = tokio::select! {
            r = self.backend.start_peer(self.case_index, launch) => {
                r.with_context(|| format!("cannot start the {} peer `{name}`", self.recipe.label()))?
            }
            _ = self.cancel.cancelled() => bail!("interrupted"),
        };
        ProbePeer::new(name, process, self.dir)
    }

    /// Ends a peer that is still running (`stop`, then a kill), and keeps it for the `events` step.
    async fn finish(&mut self, mut p: ProbePeer) -> anyhow::Result<()> {
        if !p.exited() {
            let stop = CommandLine {
                command: Command::Stop,
                cmd_id: Some("p-end".into()),
            };
            let exited = p.send(&stop.to_json()).await.is_ok()
                && p.wait_exit(STOP_TIMEOUT, self.cancel).await?;
            if !exited {
                self.backend.kill(&p.process.id).await;
                p.wait_exit(Duration::from_secs(5), self.cancel).await?;
            }
        }
        self.done.push(p);
        Ok(())
    }

    /// The first start: `started`, `listening`, the answers to an unknown command and a malformed line, `stop`.
    /// Returns whether the peer started at all.
    async fn alone(&mut self) -> anyhow::Result<bool> {
        let mut a = self
            .start("alone", peer_config::for_peer(self.case, 0))
            .await?;
        let is_started = |e: &Event| matches!(e, Event::Started { .. });
        let started = match a.wait(0, START_TIMEOUT, self.cancel, is_started).await? {
            Waited::Event(i) => i,
            waited => {
                let why = match waited {
                    Waited::Exited => format!("it {} before `started`", a.describe_exit()),
                    _ => format!(
                        "no `started` within {} s{}",
                        START_TIMEOUT.as_secs(),
                        first_line_note(&a)
                    ),
                };
                self.set("started", Err(why));
                for step in ["listening", "unknown-command", "malformed-line"] {
                    self.set(step, Err("not tried: the peer did not start".into()));
                }
                self.stops.push((
                    a.name.clone(),
                    Err("not tried: the peer did not start".into()),
                ));
                self.finish(a).await?;
                return Ok(false);
            }
        };
        let verdict = self.judge_started(&a, started);
        self.set("started", verdict);

        let verdict = match a
            .wait(started + 1, START_TIMEOUT, self.cancel, |_| true)
            .await?
        {
            Waited::Event(i) => match a.event(i) {
                Event::Listening { addrs } => {
                    let port = a.process.address.port();
                    let ends = [format!("/tcp/{port}"), format!("/udp/{port}/quic-v1")];
                    if addrs
                        .iter()
                        .any(|addr| ends.iter().any(|e| addr.ends_with(e.as_str())))
                    {
                        Ok(format!("addrs {}", addrs.join(", ")))
                    } else {
                        Err(format!(
                            "`listening` does not list the listen port {port}: [{}]",
                            addrs.join(", ")
                        ))
                    }
                }
                other => Err(format!(
                    "the event after `started` is `{}`, not `listening`",
                    event_name(other)
                )),
            },
            Waited::Exited => Err(format!("it {} before `listening`", a.describe_exit())),
            Waited::TimedOut => Err(format!(
                "no event after `started` within {} s",
                START_TIMEOUT.as_secs()
            )),
        };
        self.set("listening", verdict);

        let unknown = format!(r#"{{"cmd":"{UNKNOWN_COMMAND}","cmd_id":"p1"}}"#);
        let verdict = self
            .answered(&mut a, &unknown, Some(UNKNOWN_COMMAND), Some("p1"))
            .await?;
        self.set("unknown-command", verdict);
        let verdict = self.answered(&mut a, MALFORMED_LINE, None, None).await?;
        self.set("malformed-line", verdict);

        let verdict = self.stop(&mut a, "p3").await?;
        self.stops.push((a.name.clone(), verdict));
        self.finish(a).await?;
        Ok(true)
    }

    fn judge_started(&mut self, a: &ProbePeer, i: usize) -> Outcome {
        let crate::probe::peer::Read {
            stream,
            line_no,
            raw,
            line,
        } = &a.events[i];
        let Event::Started {
            implementation,
            versions,
            features,
            contract_version,
        } = &line.event
        else {
            unreachable!("waited for `started`")
        };
        self.report.implementation = Some(implementation.clone());
        self.report.versions = versions.clone();
        self.report.contract_version = *contract_version;
        self.features = features.clone();
        let mut problems = Vec::new();
        if *line_no != 1 {
            problems.push(format!(
                "the first {stream} line is not `started`: line 1 is `{}` (`started` is line {line_no})",
                clip(a.first_line(*stream).unwrap_or_default(), 120)
            ));
        }
        if implementation.is_empty() {
            problems.push("`implementation` is empty".to_owned());
        }
        // The type lets `versions` default; the contract has every peer send it.
        let value: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
        if !value
            .get("versions")
            .is_some_and(serde_json::Value::is_object)
        {
            problems.push("`started` has no `versions` object".to_owned());
        }
        if let Some(f) = features {
            if !f.is_sorted() {
                problems.push(format!("`features` is not sorted: [{}]", f.join(", ")));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        // The library's own version first, where it is one meshgate knows, then how many more were said.
        let main = ["libp2p", "github.com/libp2p/go-libp2p"]
            .iter()
            .find_map(|k| versions.get_key_value(*k))
            .or_else(|| versions.iter().next());
        let versions = match main {
            Some((k, v)) if versions.len() > 1 => {
                format!("{k} {v} and {} more", versions.len() - 1)
            }
            Some((k, v)) => format!("{k} {v}"),
            None => "no versions".to_owned(),
        };
        let contract = match contract_version {
            Some(v) => format!("contract version {v}"),
            None => "no contract_version (revision 0)".to_owned(),
        };
        Ok(format!("{implementation}, {versions}; {contract}"))
    }

    /// Sends `line` and expects the next `error` to name `cmd` and `cmd_id`.
    async fn answered(
        &mut self,
        a: &mut ProbePeer,
        line: &str,
        cmd: Option<&str>,
        cmd_id: Option<&str>,
    ) -> anyhow::Result<Outcome> {
        if a.exited() {
            return Ok(Err(format!("not tried: the peer {}", a.describe_exit())));
        }
        let from = a.events.len();
        or_fail!(a.send(line).await);
        let is_error = |e: &Event| matches!(e, Event::Error { .. });
        Ok(
            match a.wait(from, ANSWER_TIMEOUT, self.cancel, is_error).await? {
                Waited::Event(i) => {
                    let Event::Error {
                        cmd: got_cmd,
                        cmd_id: got_id,
                        message,
                    } = a.event(i)
                    else {
                        unreachable!("waited for `error`")
                    };
                    let named = format!("cmd {}, cmd_id {}", show(got_cmd), show(got_id));
                    if got_cmd.as_deref() == cmd && got_id.as_deref() == cmd_id {
                        Ok(format!("`error` ({named}): {}", clip(message, 120)))
                    } else {
                        Err(format!(
                            "the `error` answering it has {named}, expected cmd {}, cmd_id {}: {}",
                            show(&cmd.map(str::to_owned)),
                            show(&cmd_id.map(str::to_owned)),
                            clip(message, 120)
                        ))
                    }
                }
                Waited::Exited => Err(format!("it {} instead of answering", a.describe_exit())),
                Waited::TimedOut => {
                    Err(format!("no `error` within {} s", ANSWER_TIMEOUT.as_secs()))
                }
            },
        )
    }

    /// Sends `stop`: `stopped`, then exit status 0.
    async fn stop(&mut self, a: &mut ProbePeer, cmd_id: &str) -> anyhow::Result<Outcome> {
        if a.exited() {
            return Ok(Err(format!("not tried: it {}", a.describe_exit())));
        }
        let from = a.events.len();
        let stop = CommandLine {
            command: Command::Stop,
            cmd_id: Some(cmd_id.to_owned()),
        };
        or_fail!(a.send(&stop.to_json()).await);
        let is_stopped = |e: &Event| matches!(e, Event::Stopped);
        let stopped = matches!(
            a.wait(from, STOP_TIMEOUT, self.cancel, is_stopped).await?,
            Waited::Event(_)
        );
        let exited = a.exited() || a.wait_exit(STOP_TIMEOUT, self.cancel).await?;
        if !exited {
            self.backend.kill(&a.process.id).await;
            a.wait_exit(Duration::from_secs(5), self.cancel).await?;
            return Ok(Err(format!(
                "{}, and no exit within {} s",
                if stopped { "`stopped`" } else { "no `stopped`" },
                STOP_TIMEOUT.as_secs()
            )));
        }
        let code = a.exit.as_ref().and_then(|e| e.code);
        Ok(match (stopped, code) {
            (true, Some(0)) => Ok("`stopped`, exit status 0".to_owned()),
            (false, Some(0)) => Err("exit status 0 without `stopped`".to_owned()),
            (true, _) => Err(format!("`stopped`, then it {}", a.describe_exit())),
            (false, _) => Err(format!("no `stopped`; it {}", a.describe_exit())),
        })
    }

    fn stop_step(&mut self) {
        let failed: Vec<String> = self
            .stops
            .iter()
            .filter_map(|(name, v)| v.as_ref().err().map(|why| format!("{name}: {why}")))
            .collect();
        let names: Vec<&str> = self.stops.iter().map(|(n, _)| n.as_str()).collect();
        let verdict = if failed.is_empty() {
            Ok(format!("`stopped`, exit status 0 ({})", names.join(", ")))
        } else {
            Err(failed.join("; "))
        };
        self.set("stop", verdict);
    }

    /// A start that requires the reserved feature, which no peer has: `unsupported` naming it, exit status 3.
    async fn require(&mut self) -> anyhow::Result<()> {
        let mut config = peer_config::for_peer(self.case, 0);
        config.require = vec![PROBE_RESERVED.to_owned()];
        let mut r = self.start("require", config).await?;
        let asked = format!("`require: [\"{PROBE_RESERVED}\"]`");
        let verdict = self.refuses(&mut r, PROBE_RESERVED, &asked).await?;
        self.set("require", verdict);
        self.finish(r).await
    }

    /// Waits for the refusal of a configuration (`asked` says what in it) that the peer cannot honour: `unsupported`
    /// naming `feature` with `cmd_id` null, then exit status 3.
    async fn refuses(
        &mut self,
        r: &mut ProbePeer,
        feature: &str,
        asked: &str,
    ) -> anyhow::Result<Outcome> {
        let refused_or_running =
            |e: &Event| matches!(e, Event::Unsupported { .. } | Event::Listening { .. });
        Ok(match r.wait(0, START_TIMEOUT, self.cancel, refused_or_running).await? {
            Waited::Event(i) => match r.event(i).clone() {
                Event::Unsupported {
                    feature: named,
                    reason,
                    cmd_id,
                } if named == feature => {
                    let exited = r.exited() || r.wait_exit(STOP_TIMEOUT, self.cancel).await?;
                    let code = r.exit.as_ref().and_then(|e| e.code);
                    if !exited {
                        Err(format!(
                            "`unsupported` {feature}, but no exit within {} s",
                            STOP_TIMEOUT.as_secs()
                        ))
                    } else if code != Some(contract::exit::UNSUPPORTED.into()) {
                        Err(format!(
                            "`unsupported` {feature}, then it {}; expected exit status {}",
                            r.describe_exit(),
                            contract::exit::UNSUPPORTED
                        ))
                    } else if let Some(id) = cmd_id {
                        Err(format!(
                            "`unsupported` {feature} answers no command, but has cmd_id `{id}` (expected null)"
                        ))
                    } else {
                        Ok(format!(
                            "`unsupported` {feature} ({}), exit status 3",
                            clip(&reason, 100)
                        ))
                    }
                }
                Event::Unsupported { feature: named, .. } => Err(format!(
                    "`unsupported` names `{named}`, expected `{feature}`"
                )),
                _ => Err(format!(
                    "it started and listens: a configuration with {asked} must be refused with `unsupported` \
                     {feature} and exit status 3"
                )),
            },
            Waited::Exited => Err(format!(
                "it {} without `unsupported` naming {feature}",
                r.describe_exit()
            )),
            Waited::TimedOut => Err(format!(
                "neither `unsupported` nor `listening` within {} s",
                START_TIMEOUT.as_secs()
            )),
        })
    }

    /// Two starts of the revision 2 roles: one asked every role the peer lists (it must start and listen), one
    /// asked a role it does not list (it must refuse it). Peers of earlier revisions ignore the fields: skipped.
    async fn roles(&mut self) -> anyhow::Result<()> {
        if self.report.contract_version.is_none_or(|v| v < 2) {
            let said = match self.report.contract_version {
                Some(v) => format!("contract version {v}"),
                None => "no contract version".to_owned(),
            };
            self.skip(
                "roles",
                format!("it says {said}: the roles are revision 2, and earlier peers ignore their configuration"),
            );
            return Ok(());
        }
        let listed: Vec<&'static str> = ROLES.iter().copied().filter(|r| self.lists(r)).collect();
        let unlisted = ROLES.iter().copied().find(|r| !self.lists(r));
        let mut said = vec![if listed.is_empty() {
            "it lists none of the roles".to_owned()
        } else {
            format!("it lists {}", listed.join(", "))
        }];
        let mut failed = Vec::new();

        if listed.is_empty() {
            said.push("no start asked for them".to_owned());
        } else {
            let mut config = peer_config::for_peer(self.case, 0);
            for &role in &listed {
                with_role(&mut config, role);
            }
            let mut r = self.start("roles", config).await?;
            match self.started_with_roles(&mut r).await? {
                Ok(()) => {
                    said.push("started with all of them and listened".to_owned());
                    let outcome = self.stop(&mut r, "p11").await?;
                    self.stops.push((r.name.clone(), outcome));
                }
                Err(why) => failed.push(format!("asked every role it lists: {why}")),
            }
            self.finish(r).await?;
        }

        match unlisted {
            None => said.push("it lists every role: none could be asked to be refused".to_owned()),
            Some(role) => {
                let mut config = peer_config::for_peer(self.case, 0);
                with_role(&mut config, role);
                let asked = format!("`{}`", roles_asked(&config));
                let mut r = self.start("roles-unlisted", config).await?;
                match self.refuses(&mut r, role, &asked).await? {
                    Ok(how) => said.push(format!("asked {role}, which it does not list: {how}")),
                    Err(why) => failed.push(format!("asked {role}, which it does not list: {why}")),
                }
                self.finish(r).await?;
            }
        }

        // One half at least was tried: ROLES is either listed or not.
        let outcome = if failed.is_empty() {
            Ok(said.join("; "))
        } else {
            Err(format!("{}; {}", failed.join("; "), said.join("; ")))
        };
        self.set("roles", outcome);
        Ok(())
    }

    /// A start with roles configured: `listening`, no `unsupported` or `error` before it.
    async fn started_with_roles(&mut self, r: &mut ProbePeer) -> anyhow::Result<Result<(), String>> {
        let settled = |e: &Event| {
            matches!(
                e,
                Event::Listening { .. } | Event::Unsupported { .. } | Event::Error { .. }
            )
        };
        Ok(match r.wait(0, START_TIMEOUT, self.cancel, settled).await? {
            Waited::Event(i) => match r.event(i) {
                Event::Listening { .. } => Ok(()),
                Event::Unsupported { feature, reason, .. } => Err(format!(
                    "`unsupported` {feature} ({}) instead of `listening`",
                    clip(reason, 100)
                )),
                Event::Error { message, .. } => Err(format!(
                    "`error` ({}) instead of `listening`",
                    clip(message, 100)
                )),
                _ => unreachable!("waited for those"),
            },
            Waited::Exited => Err(format!("it {} before `listening`", r.describe_exit())),
            Waited::TimedOut => Err(format!(
                "no `listening` within {} s",
                START_TIMEOUT.as_secs()
            )),
        })
    }

    /// Two peers: the second dials the first, both subscribe, the first publishes, the second receives; then the
    /// second sends the first a request, when the implementation lists request-response (configured then, without
    /// `require`: the role is asked for only of an implementation that says it has it).
    async fn pair(&mut self) -> anyhow::Result<()> {
        let request_response = self.lists(feature::REQUEST_RESPONSE);
        let config = |index| {
            let mut config = peer_config::for_peer(self.case, index);
            if request_response {
                config.request_response = Some(RequestResponse::default());
            }
            config
        };
        let (config_l, config_d) = (config(0), config(1));
        let mut l = self.start("probe-1", config_l).await?;
        let mut d = self.start("probe-2", config_d).await?;
        let mut not_ready = Vec::new();
        for p in [&mut l, &mut d] {
            let is_listening = |e: &Event| matches!(e, Event::Listening { .. });
            match p.wait(0, START_TIMEOUT, self.cancel, is_listening).await? {
                Waited::Event(_) => {}
                Waited::Exited => not_ready.push(format!("{} {}", p.name, p.describe_exit())),
                Waited::TimedOut => not_ready.push(format!(
                    "{} did not start and listen within {} s",
                    p.name,
                    START_TIMEOUT.as_secs()
                )),
            }
        }
        let connected = if !not_ready.is_empty() {
            self.set("connect", Err(not_ready.join("; ")));
            for step in ["subscribe", "message"] {
                self.set(step, Err("not tried: the peers did not connect".into()));
            }
            false
        } else {
            let connected = self.connect(&mut l, &mut d).await?;
            let is_connected = connected.is_ok();
            self.set("connect", connected);
            let subscribed = if is_connected {
                self.subscribe(&mut l, &mut d).await?
            } else {
                Err("not tried: the peers did not connect".into())
            };
            let ok = subscribed.is_ok();
            self.set("subscribe", subscribed);
            let delivered = if ok {
                self.message(&mut l, &mut d).await?
            } else {
                Err("not tried: the peers did not subscribe".into())
            };
            self.set("message", delivered);
            is_connected
        };
        // Each of the pair says it again (they are the same implementation, but what they say is what counts).
        let unlisted_by = [&l, &d]
            .into_iter()
            .find(|p| !started_features(p).contains(&feature::REQUEST_RESPONSE))
            .map(|p| {
                format!(
                    "{} does not list {} in `started.features` (the peer started alone did)",
                    p.name,
                    feature::REQUEST_RESPONSE
                )
            });
        if !request_response {
            self.skip(
                "request-response",
                format!(
                    "the implementation does not list {} in `started.features`",
                    feature::REQUEST_RESPONSE
                ),
            );
        } else if let Some(why) = unlisted_by {
            self.skip("request-response", why);
        } else {
            let answered = if connected {
                self.request(&mut l, &mut d).await?
            } else {
                Err("not tried: the peers did not connect".into())
            };
            self.set("request-response", answered);
        }
        for (p, cmd_id) in [(&mut l, "p8"), (&mut d, "p9")] {
            let verdict = self.stop(p, cmd_id).await?;
            self.stops.push((p.name.clone(), verdict));
        }
        self.finish(l).await?;
        self.finish(d).await
    }

    async fn connect(&mut self, l: &mut ProbePeer, d: &mut ProbePeer) -> anyhow::Result<Outcome> {
        let (lid, did) = (id_of(l), id_of(d));
        let addr = dial_addr(self.case, l.process.address, &lid);
        let dial = CommandLine {
            command: Command::Dial {
                addr: addr.clone(),
                mode: DialMode::Dedup,
            },
            cmd_id: Some("p4".into()),
        };
        let (from_l, from_d) = (l.events.len(), d.events.len());
        or_fail!(d.send(&dial.to_json()).await);
        let to = |remote: String| move |e: &Event| matches!(e, Event::ConnectionOpened { remote: r, .. } if *r == remote);
        let what = format!("`connection_opened` to {}", l.name);
        let di = or_fail!(
            expect(
                d,
                from_d,
                CONNECT_TIMEOUT,
                self.cancel,
                &what,
                Some("p4"),
                to(lid)
            )
            .await?
        );
        let what = format!("`connection_opened` from {}", d.name);
        let li = or_fail!(
            expect(
                l,
                from_l,
                CONNECT_TIMEOUT,
                self.cancel,
                &what,
                None,
                to(did)
            )
            .await?
        );
        let mut problems = Vec::new();
        let (want_security, want_muxer) = self.case.expected_negotiation(1, 0);
        let mut negotiated = String::new();
        for (p, i, want) in [
            (&*d, di, Direction::Outbound),
            (&*l, li, Direction::Inbound),
        ] {
            let Event::ConnectionOpened {
                direction,
                security,
                muxer,
                ..
            } = p.event(i)
            else {
                unreachable!("waited for `connection_opened`")
            };
            if *direction != want {
                problems.push(format!(
                    "{} reports the connection {direction:?}, expected {want:?}",
                    p.name
                ));
            }
            for (what, got, want) in [
                ("security", security, &want_security),
                ("muxer", muxer, &want_muxer),
            ] {
                if got.is_some() && got != want {
                    problems.push(format!(
                        "{} reports {what} {}, expected {}",
                        p.name,
                        show(got),
                        show(want)
                    ));
                }
            }
            let said = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not said)".into());
            negotiated = format!("{}+{}", said(security), said(muxer));
        }
        if !problems.is_empty() {
            return Ok(Err(problems.join("; ")));
        }
        Ok(Ok(format!(
            "{} dialed {addr}: outbound there, inbound on {}, {negotiated}",
            d.name, l.name
        )))
    }

    async fn subscribe(&mut self, l: &mut ProbePeer, d: &mut ProbePeer) -> anyhow::Result<Outcome> {
        let (lid, did) = (id_of(l), id_of(d));
        let (from_l, from_d) = (l.events.len(), d.events.len());
        for (p, cmd_id) in [(&mut *l, "p5"), (&mut *d, "p6")] {
            let subscribe = CommandLine {
                command: Command::Subscribe {
                    topic: TOPIC.into(),
                },
                cmd_id: Some(cmd_id.into()),
            };
            or_fail!(p
                .send(&subscribe.to_json())
                .await
                .map_err(|why| format!("{} {why}", p.name)));
        }
        let of = |remote: String| move |e: &Event| matches!(e, Event::Subscribed { remote: r, topic } if *r == remote && topic == TOPIC);
        let (l_name, d_name) = (l.name.clone(), d.name.clone());
        for (p, from, cmd_id, other, other_name) in [
            (&mut *l, from_l, "p5", did, d_name),
            (&mut *d, from_d, "p6", lid, l_name),
        ] {
            let what = format!("`subscribed` of {other_name} to `{TOPIC}`");
            or_fail!(
                expect(
                    p,
                    from,
                    CONNECT_TIMEOUT,
                    self.cancel,
                    &what,
                    Some(cmd_id),
                    of(other)
                )
                .await?
            );
        }
        Ok(Ok(format!(
            "both subscribed to `{TOPIC}`; each reports the other's subscription"
        )))
    }

    async fn message(&mut self, l: &mut ProbePeer, d: &mut ProbePeer) -> anyhow::Result<Outcome> {
        let (lid, did) = (id_of(l), id_of(d));
        // Publishing floods to subscribers, but a mesh that holds the other peer is the usual path: wait a little.
        let in_mesh = |e: &Event| matches!(e, Event::Mesh { topic, peers } if topic == TOPIC && peers.contains(&did));
        l.wait(0, MESH_WAIT, self.cancel, in_mesh).await?;
        let id = format!("{}/{TOPIC}/0", l.name);
        let publish = CommandLine {
            command: Command::Publish {
                topic: TOPIC.into(),
                id: id.clone(),
                size: MESSAGE_SIZE,
            },
            cmd_id: Some("p7".into()),
        };
        let (from_l, from_d) = (l.events.len(), d.events.len());
        let sent = now_micros();
        or_fail!(l
            .send(&publish.to_json())
            .await
            .map_err(|why| format!("{} {why}", l.name)));
        let is = |id: String| {
            move |e: &Event| match e {
                Event::Published { id: i, .. } | Event::Message { id: i, .. } => *i == id,
                _ => false,
            }
        };
        let pi = or_fail!(
            expect(
                l,
                from_l,
                ANSWER_TIMEOUT,
                self.cancel,
                "`published`",
                Some("p7"),
                is(id.clone())
            )
            .await?
        );
        let Event::Published {
            size: published, ..
        } = l.event(pi).clone()
        else {
            return Ok(Err(format!(
                "{} reports a `message` of its own `{id}`",
                l.name
            )));
        };
        let what = format!("`message` `{id}` (published by {})", l.name);
        let mi = or_fail!(
            expect(
                d,
                from_d,
                MESSAGE_TIMEOUT,
                self.cancel,
                &what,
                None,
                is(id.clone())
            )
            .await?
        );
        let ts = d.events[mi].line.ts;
        let Event::Message {
            topic,
            source,
            size,
            sent_us,
            ..
        } = d.event(mi).clone()
        else {
            return Ok(Err(format!(
                "{} reports `published` for `{id}`, which it did not publish",
                d.name
            )));
        };
        let mut problems = Vec::new();
        if published != MESSAGE_SIZE {
            problems.push(format!(
                "{} published {published} bytes, asked for {MESSAGE_SIZE} (the header fits)",
                l.name
            ));
        }
        if topic != TOPIC {
            problems.push(format!("the message is on `{topic}`, expected `{TOPIC}`"));
        }
        if source != lid {
            problems.push(format!(
                "its source is {source}, expected {} ({lid})",
                l.name
            ));
        }
        if size != published {
            problems.push(format!(
                "its size is {size}, {} published {published}",
                l.name
            ));
        }
        // `sent_us` comes from the payload's header: the publisher's clock when it published (one host's clock).
        const SLACK_US: i64 = 1_000_000;
        if sent_us < sent - SLACK_US || sent_us > ts + SLACK_US {
            problems.push(format!(
                "its sent_us {sent_us} is not between the publish command ({sent}) and the delivery ({ts})"
            ));
        }
        if !problems.is_empty() {
            return Ok(Err(problems.join("; ")));
        }
        Ok(Ok(format!(
            "{} received `{id}` ({size} bytes) from {} after {} ms",
            d.name,
            l.name,
            (ts - sent_us).max(0) / 1000
        )))
    }

    /// The dialer requests [`REQUEST_SIZE`] bytes of the listener over their connection: `request_sent`, then
    /// `response_received` of that size, and the listener's `request_received`.
    async fn request(&mut self, l: &mut ProbePeer, d: &mut ProbePeer) -> anyhow::Result<Outcome> {
        let (lid, did) = (id_of(l), id_of(d));
        let request = CommandLine {
            command: Command::Request {
                peer: lid.clone(),
                addr: None,
                id: REQUEST_ID.into(),
                size: REQUEST_SIZE,
            },
            cmd_id: Some(REQUEST_ID.into()),
        };
        let (from_l, from_d) = (l.events.len(), d.events.len());
        or_fail!(d
            .send(&request.to_json())
            .await
            .map_err(|why| format!("{} {why}", d.name)));
        let refused = |e: &Event| {
            matches!(e, Event::Unsupported { cmd_id: Some(id), .. } if id == REQUEST_ID)
        };
        let sent = |e: &Event| matches!(e, Event::RequestSent { id, .. } if id == REQUEST_ID);
        let what = format!("`request_sent` `{REQUEST_ID}`");
        let si = or_fail!(
            expect(
                d,
                from_d,
                ANSWER_TIMEOUT,
                self.cancel,
                &what,
                Some(REQUEST_ID),
                |e| sent(e) || refused(e)
            )
            .await?
        );
        let Event::RequestSent { remote, size, .. } = d.event(si).clone() else {
            let Event::Unsupported {
                feature, reason, ..
            } = d.event(si)
            else {
                unreachable!("waited for those")
            };
            return Ok(Err(format!(
                "{} answered `request` with `unsupported` {feature}: {}",
                d.name,
                clip(reason, 160)
            )));
        };
        let mut problems = Vec::new();
        if remote != lid {
            problems.push(format!(
                "`request_sent` names {remote}, expected {} ({lid})",
                l.name
            ));
        }
        if size != REQUEST_SIZE {
            problems.push(format!(
                "`request_sent` says {size} bytes, asked for {REQUEST_SIZE}"
            ));
        }

        let ended = |e: &Event| match e {
            Event::ResponseReceived { id, .. } | Event::RequestFailed { id, .. } => id == REQUEST_ID,
            _ => false,
        };
        let what = format!("`response_received` or `request_failed` `{REQUEST_ID}`");
        let ri = or_fail!(
            expect(
                d,
                from_d,
                REQUEST_TIMEOUT,
                self.cancel,
                &what,
                Some(REQUEST_ID),
                ended
            )
            .await?
        );
        let latency_us = match d.event(ri).clone() {
            Event::RequestFailed { error, .. } => {
                problems.push(format!(
                    "{} reports `request_failed`: {}",
                    d.name,
                    clip(&error, 200)
                ));
                None
            }
            Event::ResponseReceived {
                remote,
                size,
                latency_us,
                ..
            } => {
                if ri < si {
                    problems.push("`response_received` came before `request_sent`".to_owned());
                }
                if remote != lid {
                    problems.push(format!(
                        "`response_received` names {remote}, expected {} ({lid})",
                        l.name
                    ));
                }
                if size != REQUEST_SIZE {
                    problems.push(format!(
                        "the response has {size} bytes, expected the request's {REQUEST_SIZE} (no `response_size`)"
                    ));
                }
                if latency_us < 0 {
                    problems.push(format!("its latency_us is negative: {latency_us}"));
                }
                Some(latency_us)
            }
            _ => unreachable!("waited for those"),
        };

        let received = |e: &Event| matches!(e, Event::RequestReceived { id, .. } if id == REQUEST_ID);
        let what = format!("`request_received` `{REQUEST_ID}`");
        match expect(l, from_l, ANSWER_TIMEOUT, self.cancel, &what, None, received).await? {
            Ok(i) => {
                let Event::RequestReceived { remote, size, .. } = l.event(i) else {
                    unreachable!("waited for `request_received`")
                };
                if *remote != did {
                    problems.push(format!(
                        "`request_received` names {remote}, expected {} ({did})",
                        d.name
                    ));
                }
                if *size != REQUEST_SIZE {
                    problems.push(format!(
                        "`request_received` says {size} bytes, {} sent {REQUEST_SIZE}",
                        d.name
                    ));
                }
            }
            Err(why) => problems.push(why),
        }
        if !problems.is_empty() {
            return Ok(Err(problems.join("; ")));
        }
        Ok(Ok(format!(
            "{} requested `{REQUEST_ID}` ({REQUEST_SIZE} bytes) of {}, which received it; the {REQUEST_SIZE}-byte \
             response came after {} ms",
            d.name,
            l.name,
            latency_us.unwrap_or_default() / 1000
        )))
    }

    fn events_step(&mut self) {
        let lines: u64 = self.done.iter().map(|p| p.lines()).sum();
        let violations: Vec<String> = self
            .done
            .iter()
            .flat_map(|p| p.violations.iter().map(move |v| format!("{} {v}", p.name)))
            .collect();
        let verdict = if violations.is_empty() {
            Ok(format!(
                "{lines} event lines of {} peers, each a contract event",
                self.done.len()
            ))
        } else {
            Err(violations.join("; "))
        };
        self.set("events", verdict);
    }
}

/// The roles a configuration asks for on their own (contract revision 2), by feature name, in the order the
/// `roles` step tries them. (`autonat-v1-vanish` is a way of `autonat_probe`, not a role to configure.)
const ROLES: [&str; 6] = [
    feature::REQUEST_RESPONSE,
    feature::AUTONAT_V1_SERVER,
    feature::AUTONAT_V1_CLIENT,
    feature::AUTONAT_V2_SERVER,
    feature::AUTONAT_V2_CLIENT,
    feature::PORT_MAPPING,
];

/// Adds the role `role` (one of [`ROLES`]) to `config`, with the contract's defaults; a server and a client of
/// one AutoNAT version are `both`.
fn with_role(config: &mut PeerConfig, role: &str) {
    fn add(had: &mut Option<AutonatRole>, role: AutonatRole) {
        *had = Some(match *had {
            Some(h) if h != role => AutonatRole::Both,
            _ => role,
        });
    }
    fn autonat(config: &mut PeerConfig) -> &mut Autonat {
        config.autonat.get_or_insert_with(Autonat::default)
    }
    match role {
        feature::REQUEST_RESPONSE => config.request_response = Some(RequestResponse::default()),
        feature::AUTONAT_V1_SERVER => add(&mut autonat(config).v1, AutonatRole::Server),
        feature::AUTONAT_V1_CLIENT => add(&mut autonat(config).v1, AutonatRole::Client),
        feature::AUTONAT_V2_SERVER => add(&mut autonat(config).v2, AutonatRole::Server),
        feature::AUTONAT_V2_CLIENT => add(&mut autonat(config).v2, AutonatRole::Client),
        feature::PORT_MAPPING => config.port_mapping = Some(PortMapping::default()),
        other => unreachable!("{other} is not one of ROLES"),
    }
}

/// The role fields of `config` as sent: `port_mapping: {}`.
fn roles_asked(config: &PeerConfig) -> String {
    let sent = serde_json::to_value(config).unwrap_or_default();
    ["request_response", "autonat", "port_mapping"]
        .iter()
        .filter_map(|k| sent.get(k).map(|v| format!("{k}: {v}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits at `p` for an event matching `matches`; an `error` answering `cmd_id`, an exit or the deadline fail the
/// step, naming the peer and what it waited for.
async fn expect(
    p: &mut ProbePeer,
    from: usize,
    within: Duration,
    cancel: &CancellationToken,
    what: &str,
    cmd_id: Option<&str>,
    matches: impl Fn(&Event) -> bool,
) -> anyhow::Result<Result<usize, String>> {
    let answers = |e: &Event| matches!(e, Event::Error { cmd_id: Some(id), .. } if Some(id.as_str()) == cmd_id);
    Ok(
        match p
            .wait(from, within, cancel, |e| matches(e) || answers(e))
            .await?
        {
            Waited::Event(i) if !answers(p.event(i)) => Ok(i),
            Waited::Event(i) => {
                let Event::Error { cmd, message, .. } = p.event(i) else {
                    unreachable!("an error")
                };
                Err(format!(
                    "{} answered {} with `error`: {}",
                    p.name,
                    show(cmd),
                    clip(message, 160)
                ))
            }
            Waited::Exited => Err(format!(
                "{} {} while waiting for {what}",
                p.name,
                p.describe_exit()
            )),
            Waited::TimedOut => Err(format!(
                "{}: no {what} within {} s",
                p.name,
                within.as_secs()
            )),
        },
    )
}

/// What a peer listed in its `started.features`.
fn started_features(p: &ProbePeer) -> Vec<&str> {
    p.events
        .iter()
        .find_map(|r| match &r.line.event {
            Event::Started {
                features: Some(f), ..
            } => Some(f.iter().map(String::as_str).collect()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The peer id of a peer that started.
fn id_of(p: &ProbePeer) -> String {
    p.peer_id().unwrap_or_default().to_owned()
}

/// `` `x` `` or `null`.
fn show(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("`{s}`"),
        None => "null".to_owned(),
    }
}

/// The event's name on the wire.
fn event_name(e: &Event) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.get("event").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// `; its first stdout line is ...`, for each stream it wrote on.
fn first_line_note(p: &ProbePeer) -> String {
    if p.first_lines.is_empty() {
        return "; it wrote nothing on stdout or in its events file".to_owned();
    }
    p.first_lines
        .iter()
        .map(|(stream, l)| format!("; its first {stream} line is `{}`", clip(l, 120)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_is_configured_on_its_own_and_the_two_sides_of_a_version_make_both() {
        let case = super::super::probe_case(&super::super::target_spec("rust")).unwrap();
        let plain = peer_config::for_peer(&case, 0);
        assert_eq!(roles_asked(&plain), "", "runs ask no role");
        for role in ROLES {
            let mut config = plain.clone();
            with_role(&mut config, role);
            assert_ne!(config, plain, "{role}");
        }
        let mut config = plain.clone();
        for role in [
            feature::AUTONAT_V1_CLIENT,
            feature::AUTONAT_V1_SERVER,
            feature::AUTONAT_V2_CLIENT,
            feature::PORT_MAPPING,
        ] {
            with_role(&mut config, role);
        }
        let autonat = config.autonat.clone().unwrap();
        assert_eq!(autonat.v1, Some(AutonatRole::Both));
        assert_eq!(autonat.v2, Some(AutonatRole::Client));
        assert_eq!(
            roles_asked(&config),
            r#"autonat: {"v1":"both","v2":"client"}, port_mapping: {}"#
        );
        // What the peer is sent reads back as asked.
        let sent: PeerConfig = serde_json::from_str(&config.to_json()).unwrap();
        assert_eq!(sent.autonat, config.autonat);
        assert_eq!(sent.port_mapping, Some(PortMapping::default()));
        assert!(sent.require.is_empty(), "roles are asked, never required");
    }
}
