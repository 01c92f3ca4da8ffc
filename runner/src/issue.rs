//! `meshgate report RESULTS --issue CASE`: one failing case of a run as the body of an upstream issue, and a matrix
//! that runs that case alone, at the exact library versions its peers reported.
//!
//! It stands among the commands, above `reports`: reports render `results.json` and nothing else, while an issue
//! also needs what the run kept of the case (`stored`: the case as expanded from its matrix, to write the
//! reproducing matrix; the record, for the time line and stderr around the failure, told as the failure's evidence
//! tells it, `checks::evidence::window`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::{json, Map, Value};

use crate::cases::{Case, PeerSpec};
use crate::checks::{self, clock, evidence};
use crate::events::Recorded;
use crate::matrix::{label, DialMode, Language};
use crate::results::{CaseResult, CheckResult, PeerReport, RunResults, Status};
use crate::stored::{self, StoredCase};

/// The go modules a matrix can pin (`matrix::GO_PINNABLE`), by the module path a go peer reports.
const GO_PINS: &[(&str, &str)] = &[
    ("github.com/libp2p/go-libp2p-pubsub", "go-libp2p-pubsub"),
    ("github.com/libp2p/go-yamux/v5", "go-yamux"),
    ("github.com/libp2p/go-yamux/v4", "go-yamux"),
];
const GO_LIBP2P: &str = "github.com/libp2p/go-libp2p";
const RUST_LIBP2P: &str = "libp2p";

/// An issue written from a run.
pub struct Issue {
    pub title: String,
    /// The Markdown body, the title as its first line (`# ...`).
    pub body: String,
    /// The reproducing matrix (YAML).
    pub matrix: String,
    /// The case and its failing check.
    pub case: String,
    pub check: String,
}

/// Where [`write`] put an issue.
pub struct Written {
    pub issue: Issue,
    pub body_file: PathBuf,
    pub matrix_file: PathBuf,
}

/// Writes `issue-<case>-<check>.md` and `.yaml` for the case `query` names (its name, its folder, or a part of its
/// name only it has) of the run whose results file is `results`, into `out`.
pub fn write(results: &Path, query: &str, out: &Path) -> anyhow::Result<Written> {
    let run = RunResults::read(results)?;
    let dir = results.parent().unwrap_or(Path::new("."));
    let case = find_case(&run, query)?;
    let check = failing_check(case)?;
    let attempt = check
        .attempts
        .iter()
        .position(|a| matches!(a.status, Status::Failed | Status::Known))
        .map_or(1, |i| i as u32 + 1);
    let folder = dir.join(stored::attempt_logs(&case.logs, attempt));
    let kept = StoredCase::read(&folder).with_context(|| {
        format!("an issue is written from the run's folder (results.json and cases/ beside it): {} is missing what the run kept of case `{}`", dir.display(), case.name)
    })?;
    let record = stored::read_record(&folder)?;

    let stem = format!("issue-{}-{}", stored::slug(&case.name), stored::slug(&check.name));
    let matrix_file = out.join(format!("{stem}.yaml"));
    let matrix = reproducing_matrix(&run, &kept, check)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(&matrix_file, &matrix)
        .with_context(|| format!("cannot write {}", matrix_file.display()))?;
    if let Err(e) = verify_reproduces(&matrix_file, &kept.case) {
        // A matrix that does not reproduce the case is no reproducer: none is left behind.
        let _ = std::fs::remove_file(&matrix_file);
        return Err(e);
    }

    let file_name = matrix_file.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let issue = compose(&run, case, check, &kept, &record, &matrix, &file_name);
    let body_file = out.join(format!("{stem}.md"));
    std::fs::write(&body_file, &issue.body)
        .with_context(|| format!("cannot write {}", body_file.display()))?;
    Ok(Written {
        issue,
        body_file,
        matrix_file,
    })
}

/// The case a query names: its exact name, its folder (`cases/000-...` or `000-...` or `000`), or the one case whose
/// name contains it.
fn find_case<'a>(run: &'a RunResults, query: &str) -> anyhow::Result<&'a CaseResult> {
    let folder = |c: &CaseResult| c.logs.rsplit('/').next().unwrap_or_default().to_owned();
    let q = query.trim_end_matches('/');
    if let Some(c) = run
        .cases
        .iter()
        .find(|c| c.name == q || c.logs == q || folder(c) == q || folder(c).split('-').next() == Some(q))
    {
        return Ok(c);
    }
    let found: Vec<&CaseResult> = run.cases.iter().filter(|c| c.name.contains(q)).collect();
    let failing: Vec<String> = run
        .cases
        .iter()
        .filter(|c| failing_check(c).is_ok())
        .map(|c| format!("  {} ({})", c.name, folder(c)))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "no case of this run is named `{query}`: expected a case name, its folder or a part of its name; the cases that failed:\n{}",
            if failing.is_empty() { "  none".to_owned() } else { failing.join("\n") }
        ),
        many => bail!(
            "{} cases of this run match `{query}`: expected one; they are:\n{}",
            many.len(),
            many.iter().map(|c| format!("  {} ({})", c.name, folder(c))).collect::<Vec<_>>().join("\n")
        ),
    }
}

/// The check an issue is about: the case's first failure, else its first known issue.
fn failing_check(case: &CaseResult) -> anyhow::Result<&CheckResult> {
    case.with(Status::Failed)
        .next()
        .or_else(|| case.with(Status::Known).next())
        .with_context(|| {
            format!(
                "case `{}` has no failed check (it is {}): there is nothing to write an issue about",
                case.name,
                case.status().label()
            )
        })
}

/// The implementation's name in the matrix: the peer's name without its number (`rust-1` -> `rust`).
fn base_name(peer: &str) -> &str {
    peer.rsplit_once('-').map_or(peer, |(base, _)| base)
}

/// A matrix that runs this case alone: its implementations at the versions its peers reported (rust: libp2p
/// exactly, and every sub-crate it reported pinned; go: go-libp2p, and go-libp2p-pubsub and go-yamux pinned), its
/// network with every setting and step it had, its resolved check settings, and no known issue (so that the
/// failure shows as one). Peers keep their names and identity seeds: implementations are listed in the case's order.
fn reproducing_matrix(run: &RunResults, kept: &StoredCase, check: &CheckResult) -> anyhow::Result<String> {
    let case = &kept.case;
    let mut implementations: Vec<Ordered> = Vec::new();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let mut roles = Map::new();
    for peer in &case.peers {
        let base = base_name(&peer.name);
        let n = counts.entry(base.to_owned()).or_default();
        *n += 1;
        if *n == 1 {
            let report = kept.peers.iter().find(|r| r.name == peer.name);
            implementations.push(implementation(base, peer, report));
        }
        if !peer.roles.is_empty() {
            roles.insert(peer.name.clone(), serde_json::to_value(&peer.roles)?);
        }
    }
    let c = serde_json::to_value(case)?;
    let mut network = Ordered::default();
    network.insert("name", json!(case.network));
    network.insert("peers", json!(counts));
    for key in [
        "topology", "transport", "security", "muxer", "dial", "dials", "gossipsub", "publish", "warmup", "drain",
        "incidents", "timeline", "limits", "gateway", "private",
    ] {
        match c.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(v) => network.insert(key, without_nulls(v.clone())),
        }
    }
    if !roles.is_empty() {
        network.insert("roles", without_nulls(Value::Object(roles)));
    }
    let description = format!(
        "Case `{}` of matrix `{}` ({}) alone, where `{}` failed (meshgate {}), at the library versions its peers reported.",
        case.name, run.matrix.name, run.matrix.file, check.name, run.meshgate
    );
    let mut matrix = Ordered::default();
    matrix.insert("name", json!(format!("{}-{}", run.matrix.name, check.name)));
    matrix.insert("description", json!(description));
    matrix.insert("implementations", implementations);
    if c.get("checks").is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty())) {
        matrix.insert("checks", without_nulls(c["checks"].clone()));
    }
    matrix.insert("networks", vec![network]);
    let yaml = serde_saphyr::to_string(&matrix).context("cannot write the reproducing matrix as YAML")?;
    Ok(format!(
        "# Written by `meshgate report --issue` from {}; run it with `meshgate run <this file>`.\n{yaml}",
        run.matrix.file
    ))
}

/// An implementation entry of the reproducing matrix, at the versions its peer reported.
fn implementation(base: &str, peer: &PeerSpec, report: Option<&PeerReport>) -> Ordered {
    let mut imp = Ordered::default();
    imp.insert("name", json!(base));
    imp.insert("language", json!(label(&peer.language)));
    let build = &peer.build;
    let reported = report.map(|r| &r.versions);
    let mut pins: BTreeMap<String, String> = build.pins.clone();
    let version = match peer.language {
        Language::Image => {
            imp.insert("image", json!(build.image));
            None
        }
        // A local checkout has no release to name: it stays the checkout, as the case built it.
        _ if build.path.is_some() => build.version.clone(),
        Language::Rust => {
            for (name, v) in reported.into_iter().flatten() {
                if name != RUST_LIBP2P && name.starts_with("libp2p") {
                    pins.insert(name.clone(), v.clone());
                }
            }
            reported
                .and_then(|v| v.get(RUST_LIBP2P))
                .map(|v| format!("={v}"))
                .or_else(|| build.version.clone())
        }
        Language::Go => {
            for (module, pin) in GO_PINS {
                if let Some(v) = reported.and_then(|r| r.get(*module)) {
                    pins.insert((*pin).to_owned(), v.clone());
                }
            }
            reported
                .and_then(|v| v.get(GO_LIBP2P))
                .filter(|v| !v.ends_with("+local"))
                .cloned()
                .or_else(|| build.version.clone())
        }
    };
    if let Some(v) = version {
        imp.insert("version", json!(v));
    }
    if let Some(p) = &build.path {
        imp.insert("path", json!(p));
    }
    if !pins.is_empty() {
        imp.insert("pins", json!(pins));
    }
    if peer.offer != Default::default() {
        imp.insert("offer", serde_json::to_value(&peer.offer).unwrap_or_default());
    }
    imp
}

/// A YAML mapping in the order a matrix is read (name first), where `serde_json`'s maps sort their keys.
#[derive(Default)]
struct Ordered(Vec<(&'static str, Node)>);

/// A value of an [`Ordered`] mapping.
enum Node {
    Plain(Value),
    Map(Ordered),
    List(Vec<Ordered>),
}

impl Ordered {
    fn insert(&mut self, key: &'static str, value: impl Into<Node>) {
        self.0.push((key, value.into()));
    }
}

impl From<Value> for Node {
    fn from(v: Value) -> Self {
        Node::Plain(v)
    }
}

impl From<Ordered> for Node {
    fn from(m: Ordered) -> Self {
        Node::Map(m)
    }
}

impl From<Vec<Ordered>> for Node {
    fn from(l: Vec<Ordered>) -> Self {
        Node::List(l)
    }
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Plain(v) => v.serialize(s),
            Node::Map(m) => m.serialize(s),
            Node::List(l) => l.serialize(s),
        }
    }
}

impl serde::Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The value without its `null` members (an absent optional setting reads as its default).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        v => v,
    }
}

/// Loads the written matrix as `meshgate run` would and refuses it unless it expands to exactly the case: one case,
/// the same peers and seeds, edges, stack, dials, publishing, time line, limits and check settings.
fn verify_reproduces(file: &Path, case: &Case) -> anyhow::Result<()> {
    let (_, cases) = crate::cases::load(file).map_err(|e| anyhow::anyhow!("the reproducing matrix does not load: {e}"))?;
    let [again] = cases.as_slice() else {
        bail!("the reproducing matrix {} has {} cases, expected the one case", file.display(), cases.len());
    };
    let comparable = |c: &Case| -> anyhow::Result<Value> {
        let mut v = serde_json::to_value(c)?;
        let m = v.as_object_mut().expect("a case is an object");
        // What differs by design: the name (it carries the versions now), how peers are built (exact versions
        // instead of the run's requirement), the axes that name them, and the known issues left out.
        for key in ["name", "axes", "known_issues"] {
            m.remove(key);
        }
        for p in m.get_mut("peers").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(p) = p.as_object_mut() {
                p.remove("build");
                p.remove("implementation");
            }
        }
        Ok(v)
    };
    let (want, got) = (comparable(case)?, comparable(again)?);
    if want != got {
        bail!(
            "the reproducing matrix {} does not expand to the case it was written from (a bug in meshgate):\nexpected {want}\ngot {got}",
            file.display()
        );
    }
    Ok(())
}

/// The check's symptom in a maintainer's words: what the first peer does to the other ("stop receiving messages
/// from"), and the component a title leads with.
fn symptom(check: &str) -> (&'static str, &'static str) {
    match check {
        "connectivity" => ("connectivity", "fail to connect to"),
        "no-protocol-downgrade" => ("identify", "stop advertising protocols to"),
        "delivery" => ("gossipsub", "stop receiving messages from"),
        "subscriptions" => ("gossipsub", "miss subscriptions of"),
        "mesh" => ("gossipsub", "do not keep in their mesh"),
        "connections" => ("connections", "keep duplicate connections to"),
        "streams" => ("yamux", "leave too many streams open to"),
        "commands" => ("swarm", "refuse commands while connected to"),
        "liveness" => ("crash", "die while connected to"),
        "request-response" => ("request-response", "lose requests to"),
        "autonat" => ("autonat", "get a wrong AutoNAT answer with"),
        "nat-mapping" => ("upnp", "fail to map their port next to"),
        _ => ("interop", "fail with"),
    }
}

/// What in the case's settings brings the failure about, in words: `when they dial them 3 times with a new
/// connection each (duplicate connections)`.
fn circumstances(case: &Case) -> Vec<String> {
    let mut out = Vec::new();
    match case.dial {
        DialMode::New if case.dials > 1 => out.push(format!(
            "when one dials the other {} times, each time a new connection",
            case.dials
        )),
        DialMode::New => out.push("when dialed with a new connection".into()),
        DialMode::Simultaneous => out.push("when both dial each other at once (simultaneous dial)".into()),
        DialMode::WrongPeerId => out.push("when dialed with another peer id than theirs".into()),
        DialMode::Dedup => {}
    }
    let steps: Vec<String> = case
        .incidents
        .iter()
        .map(|i| i.as_step())
        .chain(case.timeline.iter().cloned())
        .filter(|s| s.action.is_fault())
        // What was done, without when (`at 1s: go-1 kill` -> `go-1 kill`).
        .map(|s| s.summary().split_once(": ").map(|(_, what)| what.to_owned()).unwrap_or_default())
        .collect();
    if let Some(first) = steps.first() {
        out.push(format!("after {first}"));
    }
    out
}

fn compose(
    run: &RunResults,
    case: &CaseResult,
    check: &CheckResult,
    kept: &StoredCase,
    record: &[Recorded],
    matrix: &str,
    matrix_file: &str,
) -> Issue {
    let peer = |name: &str| case.peers.iter().find(|p| p.name == name);
    let involved: Vec<&PeerReport> = check.involved.iter().filter_map(|n| peer(n)).collect();
    let first = involved.first().copied();
    let other = first.and_then(|f| involved.iter().find(|p| p.implementation_label() != f.implementation_label()));
    let (component, what) = symptom(&check.name);
    let mut title = match (first, other) {
        (Some(a), Some(b)) => format!("{component}: {} peers {what} {} peers", a.implementation_label(), b.implementation_label()),
        (Some(a), None) => format!("{component}: {} peers {what} each other", a.implementation_label()),
        (None, _) => format!("{component}: `{}` fails in {}", check.name, case.name),
    };
    for c in circumstances(&kept.case) {
        title.push(' ');
        title.push_str(&c);
    }
    title.push_str(&format!(" ({})", kept.case.stack()));

    let mut b = String::new();
    b.push_str(&format!("# {title}\n\n"));
    b.push_str(&format!(
        "**What happens.** {}\n\n",
        check.message.as_deref().unwrap_or("(no message)")
    ));
    b.push_str(&format!(
        "Found by meshgate {} (check `{}`) in case `{}` of matrix `{}` (`{}`), run {}.",
        run.meshgate,
        check.name,
        case.name,
        run.matrix.name,
        run.matrix.file,
        rfc3339(run.started_us)
    ));
    if let Some(reference) = &check.known_issue {
        b.push_str(&format!(
            " The run's matrix lists it as a known issue ({reference}); the matrix below leaves known issues out, so that it fails."
        ));
    }
    if check.flaky {
        b.push_str(" It does not fail on every attempt:");
        let statuses: Vec<&str> = check.attempts.iter().map(|a| a.status.label()).collect();
        b.push_str(&format!(" {}.", statuses.join(", ")));
    }
    b.push_str("\n\n## Versions\n\n");
    b.push_str("As compiled into each peer (the `started` event of the peer contract):\n\n");
    b.push_str("| peers | implementation | crate / module versions |\n| --- | --- | --- |\n");
    // One row per implementation and versions, naming its peers.
    let mut rows: Vec<(String, String, Vec<&str>)> = Vec::new();
    for p in &case.peers {
        let label = p.implementation_label();
        let versions = p.versions.iter().map(|(k, v)| format!("`{k}` {v}")).collect::<Vec<_>>().join(", ");
        match rows.iter_mut().find(|(l, v, _)| *l == label && *v == versions) {
            Some((_, _, names)) => names.push(&p.name),
            None => rows.push((label, versions, vec![&p.name])),
        }
    }
    for (label, versions, names) in &rows {
        let versions = if versions.is_empty() { "not reported" } else { versions };
        b.push_str(&format!("| {} | {label} | {versions} |\n", names.join(", ")));
    }

    b.push_str("\n## Setting\n\n");
    b.push_str(&format!(
        "{} peers ({}), {} topology, {}, dial mode `{}` x{}.",
        kept.case.peers.len(),
        kept.case.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        kept.case.topology,
        kept.case.stack(),
        label(&kept.case.dial),
        kept.case.dials
    ));
    let faults = case.properties.get("faults");
    if let Some(f) = faults {
        b.push_str(&format!(" Faults: {f}."));
    }
    b.push('\n');
    for n in &case.notes {
        b.push_str(&format!("\n- note: {n}"));
    }
    for u in &case.unexercised {
        b.push_str(&format!("\n- not exercised: {u}"));
    }
    if !(case.notes.is_empty() && case.unexercised.is_empty()) {
        b.push('\n');
    }

    b.push_str("\n## Reproduce\n\n");
    b.push_str(&format!(
        "In a meshgate checkout, save the matrix below as `{matrix_file}` and run it (exit status 1, `{}` failed):\n\n",
        check.name
    ));
    b.push_str(&format!("```sh\nbin/meshgate run {matrix_file} --out reports/issue\n```\n\n"));
    b.push_str(&fenced("yaml", matrix));

    b.push_str("\n## Failure and evidence\n\n");
    b.push_str(&format!(
        "`{}` {}: {}\n\n",
        check.name,
        check.status.label(),
        check.message.as_deref().unwrap_or_default()
    ));
    // The check's own evidence; the context the runner appends to it is told below, from the record.
    let own: Vec<&str> = check
        .evidence
        .iter()
        .map(String::as_str)
        .take_while(|l| !l.starts_with("context around "))
        .collect();
    if !own.is_empty() {
        b.push_str(&fenced("text", &own.join("\n")));
    }
    if let Some(c) = &check.coverage {
        b.push_str(&format!("\nJudged: {c}.\n"));
    }

    let ctx = checks::Context {
        case: &kept.case,
        peers: &kept.peers,
    };
    match (check.at_us, check.involved.is_empty()) {
        (Some(at), false) => {
            let w = evidence::window(record, &ctx, &check.involved, at);
            b.push_str(&format!(
                "\n## Time line around the first failure ({})\n\n",
                clock(at)
            ));
            b.push_str(&format!(
                "From {} s before to {} s after, for {} (events, commands from the runner, faults):\n\n",
                evidence::BEFORE_US / 1_000_000,
                evidence::AFTER_US / 1_000_000,
                check.involved.join(", ")
            ));
            let mut lines: Vec<String> = Vec::new();
            let skip = w.timeline.len().saturating_sub(evidence::MAX_EVENTS);
            if skip > 0 {
                lines.push(format!("({skip} earlier events left out)"));
            }
            let mut marked = false;
            for (t, text) in w.timeline.iter().skip(skip) {
                if !marked && *t > at {
                    lines.push(format!("{} >>> {} fails here", clock(at), check.name));
                    marked = true;
                }
                lines.push(format!("{} {text}", clock(*t)));
            }
            if !marked {
                lines.push(format!("{} >>> {} fails here", clock(at), check.name));
            }
            b.push_str(&fenced("text", &lines.join("\n")));
            if !w.state.is_empty() {
                b.push_str("\nAt that moment:\n\n");
                b.push_str(&fenced(
                    "text",
                    &w.state.iter().map(|l| l.trim_start()).collect::<Vec<_>>().join("\n"),
                ));
            }
            b.push_str(&format!("\n## stderr of {} near it\n\n", check.involved.join(" and ")));
            if w.stderr.is_empty() {
                b.push_str(&format!(
                    "Nothing, from {} to {}.\n",
                    clock(at - evidence::BEFORE_US),
                    clock(at + evidence::AFTER_US)
                ));
            } else {
                let skip = w.stderr.len().saturating_sub(evidence::MAX_STDERR);
                let lines: Vec<String> = w
                    .stderr
                    .iter()
                    .skip(skip)
                    .map(|(t, peer, line)| format!("{} {peer} | {line}", clock(*t)))
                    .collect();
                b.push_str(&fenced("text", &lines.join("\n")));
            }
        }
        _ => b.push_str(
            "\nThe check did not say when or between whom it failed: no time line or stderr is picked out; the \
             case folder has every peer's events and stderr.\n",
        ),
    }
    b.push_str(&format!(
        "\n<sub>Every event, stderr line and command of the run is in its case folder `{}` (record.jsonl, \
         &lt;peer&gt;.stderr).</sub>\n",
        kept.logs
    ));
    Issue {
        title,
        body: b,
        matrix: matrix.to_owned(),
        case: case.name.clone(),
        check: check.name.clone(),
    }
}

/// A fenced code block whose fence no line of the text can close.
fn fenced(lang: &str, text: &str) -> String {
    let mut fence = "```".to_owned();
    while text.contains(&fence) {
        fence.push('`');
    }
    format!("{fence}{lang}\n{}\n{fence}\n", text.trim_end())
}

fn rfc3339(us: crate::events::Micros) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;

    /// A matrix with something of everything a case carries: versions as an axis, offers, a random topology, two
    /// dial modes, gossipsub and publishing settings, an incident, faults and repeated steps on a time line,
    /// limits, roles by implementation and by peer, check settings at both levels, a known issue.
    const RICH: &str = r#"
name: rich
implementations:
  - {name: rust, language: rust, version: ["0.56", "0.57"]}
  - {name: go, language: go, offer: {security: [tls, noise], muxer: [yamux]}}
checks:
  delivery: {deadline: 2s}
  streams: off
networks:
  - name: mixed
    peers: {rust: 2, go: 2}
    topology: {random: {degree: 2, seed: 7}}
    dial: [dedup, new]
    dials: 2
    gossipsub: {topics: [a, b], d: 4, d_lo: 2, d_hi: 8, heartbeat: 500ms, message_id: content-sha256}
    publish: {messages: 3, interval: 100ms, size: 64, publishers: [rust-1, go-2]}
    warmup: 5s
    drain: 1s
    incidents:
      - {at: 900ms, peer: go-2, action: {unsubscribe: a}}
    timeline:
      - {at: 1s, do: {partition: [[rust-1, go-1], [rust-2, go-2]]}, name: split}
      - {after: {step: split}, at: 2s, do: heal}
      - {at: 1s, peer: go-1, do: {shape: {latency: 100ms, jitter: 10ms, loss: 5, rate: 1mbit, with: rust-1}}}
      - {at: 3s, every: 1s, times: 2, peer: rust-2, do: {publish: {messages: 2, interval: 50ms, size: 128, topic: a}}}
    checks:
      connections: {settle: 2s}
    limits: {memory: 100MiB, pids: 64}
    roles:
      rust: {request_response: {response_delay: 10ms}}
      go-1: {request_response: {}}
known_issues:
  - {reference: "x#1", check: delivery}
"#;

    /// A stored run of the rich matrix's case with rust 0.57 and `dial: new`, where `connections` failed between
    /// rust-1 and go-1 at 2 s; and a second case that passed.
    fn stored_run(dir: &Path) -> RunResults {
        let file = dir.join("rich.yaml");
        std::fs::write(&file, RICH).unwrap();
        let (_, cases) = crate::cases::load(&file).unwrap();
        let case = cases
            .into_iter()
            .find(|c| c.name.starts_with("rust-0.57 x go") && c.dial == DialMode::New)
            .unwrap();
        let mut kit = Kit::new(&["rust-1", "rust-2", "go-1", "go-2"]);
        for p in &mut kit.peers {
            let extra: &[(&str, &str)] = match p.name.starts_with("rust") {
                true => &[("libp2p-gossipsub", "0.50.1"), ("libp2p-yamux", "0.48.0")],
                false => &[("github.com/libp2p/go-libp2p-pubsub", "v0.17.0"), ("github.com/libp2p/go-yamux/v5", "v5.1.0")],
            };
            p.versions.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            p.implementation = case.peers.iter().find(|s| s.name == p.name).unwrap().implementation.clone();
        }
        kit.case = case;
        let mut record: Vec<Recorded> = vec![kit.command(500_000, "rust-1", r#"{"cmd":"dial","addr":"/ip4/10.0.0.3/tcp/4001","mode":"new","cmd_id":"c1"}"#)];
        record.push(kit.stderr(1_000_000, "go-1", "WARN swarm: a second connection"));
        record.push(kit.opened(1_500_000, "rust-1", "go-1", "1"));
        record.push(kit.opened(1_600_000, "rust-1", "go-1", "2"));
        record.push(kit.stderr(9_000_000, "go-1", "long after"));
        let kept = StoredCase {
            case: kit.case.clone(),
            peers: kit.peers.clone(),
            logs: "cases/000-rich".into(),
            ..crate::stored::tests::stored(&kit)
        };
        let folder = dir.join(&kept.logs);
        std::fs::create_dir_all(&folder).unwrap();
        kept.write(&folder).unwrap();
        stored::write_record(&folder, &record).unwrap();
        let failed = CheckResult::failed(
            "connections",
            "rust-1 (rust-libp2p 0.57.1) held 2 connections to go-1 (go-libp2p v0.51.0)".into(),
            vec!["  connection 1 outbound opened 00:00:01.500".into(), "context around 00:00:01.600:".into(), "  noise".into()],
        )
        .involving(["rust-1", "go-1"])
        .at(1_600_000);
        let mut result = crate::results::tests::case(vec![CheckResult::passed("delivery", vec![]), failed]);
        result.name = kit.case.name.clone();
        result.peers = kit.peers.clone();
        result.logs = kept.logs.clone();
        let mut passed = crate::results::tests::case(vec![CheckResult::passed("delivery", vec![])]);
        passed.name = "rust-0.56 x go / tcp+noise+yamux / mixed".into();
        passed.logs = "cases/001-other".into();
        let run = RunResults {
            matrix: crate::results::MatrixRef { name: "rich".into(), file: "rich.yaml".into() },
            ..crate::results::tests::run(vec![result, passed])
        };
        run.write(dir).unwrap();
        run
    }

    #[test]
    fn an_issue_names_the_versions_and_its_matrix_is_the_case_alone() {
        let dir = tempfile::tempdir().unwrap();
        let run = stored_run(dir.path());
        let out = dir.path().join("issues");
        // Found by its folder's number; `write` refuses a matrix that does not expand to the case (checked here
        // across every kind of setting the rich matrix has).
        let w = write(&dir.path().join("results.json"), "000", &out).unwrap();
        assert_eq!(w.issue.case, run.cases[0].name);
        assert_eq!(
            w.issue.title,
            "connections: rust-libp2p 0.57.1 peers keep duplicate connections to go-libp2p v0.51.0 peers when one \
             dials the other 2 times, each time a new connection after partition rust-1,go-1 | rust-2,go-2 \
             (tcp+offer+offer)",
        );
        let body = std::fs::read_to_string(&w.body_file).unwrap();
        assert_eq!(body, w.issue.body);
        assert!(body.starts_with(&format!("# {}\n", w.issue.title)), "{body}");
        assert!(body.contains("| rust-1, rust-2 | rust-libp2p 0.57.1 | `libp2p` 0.57.1, `libp2p-gossipsub` 0.50.1, `libp2p-yamux` 0.48.0 |"), "{body}");
        // The check's own evidence, without the context appended to it (told from the record instead).
        assert!(body.contains("  connection 1 outbound opened 00:00:01.500\n```"), "{body}");
        assert!(!body.contains("  noise"), "{body}");
        let timeline = body.split("## Time line around the first failure (00:00:01.600)").nth(1).unwrap();
        let dial = timeline.find("rust-1 <- {\"cmd\":\"dial\"").unwrap();
        let opened = timeline.find("00:00:01.600 rust-1 connection 2 to go-1 opened").unwrap();
        let mark = timeline.find(">>> connections fails here").unwrap();
        assert!(dial < opened && opened < mark, "{timeline}");
        assert!(body.contains("00:00:01.000 go-1 | WARN swarm: a second connection"), "{body}");
        assert!(!body.contains("long after"), "outside the window: {body}");

        let yaml = std::fs::read_to_string(&w.matrix_file).unwrap();
        assert!(body.contains(yaml.trim_end()), "{body}");
        let m: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(m["implementations"][0]["version"], "=0.57.1");
        assert_eq!(m["implementations"][0]["pins"], json!({"libp2p-gossipsub": "0.50.1", "libp2p-yamux": "0.48.0"}));
        assert_eq!(m["implementations"][1]["version"], "v0.51.0");
        assert_eq!(m["implementations"][1]["pins"], json!({"go-libp2p-pubsub": "v0.17.0", "go-yamux": "v5.1.0"}));
        assert_eq!(m["networks"][0]["dial"], "new");
        assert!(m.get("known_issues").is_none(), "known issues are left out, so that it fails: {yaml}");
        let (_, cases) = crate::cases::load(&w.matrix_file).unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "rust-0.57.1 x go-v0.51.0 / tcp+offer+offer / mixed");
    }

    #[test]
    fn a_case_that_did_not_fail_or_a_query_that_names_none_or_many_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        stored_run(dir.path());
        let results = dir.path().join("results.json");
        let out = dir.path().join("issues");
        let e = format!("{:#}", write(&results, "rust-0.56", &out).err().unwrap());
        assert!(e.contains("case `rust-0.56 x go / tcp+noise+yamux / mixed` has no failed check (it is passed)"), "{e}");
        let e = format!("{:#}", write(&results, "mixed", &out).err().unwrap());
        assert!(e.starts_with("2 cases of this run match `mixed`: expected one"), "{e}");
        let e = format!("{:#}", write(&results, "ring", &out).err().unwrap());
        assert!(e.contains("no case of this run is named `ring`") && e.contains("rust-0.57 x go"), "{e}");
        assert!(!e.contains("rust-0.56"), "only failed cases are suggested: {e}");
        assert!(!out.exists(), "nothing written");
    }
}
