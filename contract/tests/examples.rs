//! docs/contract/examples.jsonl holds every event and every command at least once, and a configuration; each line
//! must pass the checked-in schema and parse into the contract types with no field left over. The go peer's tests
//! validate the same file against the same schemas.

use std::collections::BTreeSet;
use std::path::PathBuf;

use contract::participant::{GatewayConfig, ParticipantEvent, ParticipantLine};
use contract::{commands::Command, commands::CommandLine, config::PeerConfig, events::Event, events::EventLine};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn docs(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/contract").join(file)
}

/// What a line of examples.jsonl is, by its tell-tale field.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Event,
    Command,
    Config,
    /// A non-peer participant's line (the UPnP gateway's).
    Participant,
    GatewayConfig,
}

impl Kind {
    fn of(line: &Value) -> Option<Kind> {
        if line.get("participant").is_some() {
            Some(Kind::Participant)
        } else if line.get("event").is_some() {
            Some(Kind::Event)
        } else if line.get("cmd").is_some() {
            Some(Kind::Command)
        } else if line.get("seed").is_some() {
            Some(Kind::Config)
        } else if line.get("external_ip").is_some() {
            Some(Kind::GatewayConfig)
        } else {
            None
        }
    }

    fn schema_file(self) -> &'static str {
        match self {
            Kind::Event => "events.schema.json",
            Kind::Command => "commands.schema.json",
            Kind::Config => "config.schema.json",
            Kind::Participant => "participant-events.schema.json",
            Kind::GatewayConfig => "gateway-config.schema.json",
        }
    }
}

struct Schemas(Vec<(Kind, jsonschema::Validator)>);

impl Schemas {
    fn load() -> Self {
        Schemas(
            [Kind::Event, Kind::Command, Kind::Config, Kind::Participant, Kind::GatewayConfig]
                .into_iter()
                .map(|kind| {
                    let text = std::fs::read_to_string(docs(kind.schema_file())).unwrap();
                    let schema: Value = serde_json::from_str(&text).unwrap();
                    (kind, jsonschema::validator_for(&schema).unwrap())
                })
                .collect(),
        )
    }

    /// Why a line breaks the contract: the schema's reasons, or fields the types do not know.
    fn violations(&self, line: &str) -> Vec<String> {
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return vec![format!("not JSON: {e}")],
        };
        let Some(kind) = Kind::of(&value) else {
            return vec!["neither an event, a command nor a configuration".into()];
        };
        let validator = &self.0.iter().find(|(k, _)| *k == kind).unwrap().1;
        let mut why: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        let generated = contract::schema::all();
        let schema = &generated.iter().find(|(f, _)| *f == kind.schema_file()).unwrap().1;
        why.extend(
            contract::schema::unknown_fields(schema, &value)
                .into_iter()
                .map(|f| format!("unknown field {f}")),
        );
        let parsed = match kind {
            Kind::Event => parses::<EventLine>(&value),
            Kind::Command => parses::<CommandLine>(&value),
            Kind::Config => parses::<PeerConfig>(&value),
            Kind::Participant => parses::<ParticipantLine>(&value),
            Kind::GatewayConfig => parses::<GatewayConfig>(&value),
        };
        why.extend(parsed);
        why
    }
}

/// Whether the types read the line (the schema and the types come from one source, but say so).
fn parses<T: DeserializeOwned>(value: &Value) -> Option<String> {
    serde_json::from_value::<T>(value.clone()).err().map(|e| format!("does not parse: {e}"))
}

fn examples() -> Vec<(usize, String)> {
    std::fs::read_to_string(docs("examples.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

#[test]
fn every_example_keeps_the_contract() {
    let schemas = Schemas::load();
    for (n, line) in examples() {
        let why = schemas.violations(&line);
        assert!(why.is_empty(), "docs/contract/examples.jsonl:{n}: {}\n{line}", why.join("; "));
    }
}

#[test]
fn the_examples_of_the_contract_page_keep_it_too() {
    // docs/peer-contract.md shows examples for readers; they are held to the schemas like examples.jsonl.
    let page = std::fs::read_to_string(docs("../peer-contract.md")).unwrap();
    let schemas = Schemas::load();
    let mut checked = 0;
    for block in page.split("```json\n").skip(1) {
        let block = block.split("```").next().unwrap();
        // A block is one pretty-printed object, or one object a line.
        let objects: Vec<String> = match serde_json::from_str::<Value>(block) {
            Ok(v) => vec![v.to_string()],
            Err(_) => block.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect(),
        };
        for line in objects {
            let why = schemas.violations(&line);
            assert!(why.is_empty(), "docs/peer-contract.md example: {}\n{line}", why.join("; "));
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} examples found on the page");
}

#[test]
fn every_event_and_command_has_an_example() {
    let (mut events, mut commands, mut configs) = (BTreeSet::new(), BTreeSet::new(), 0);
    let mut participant_events = BTreeSet::new();
    for (_, line) in examples() {
        let value: Value = serde_json::from_str(&line).unwrap();
        match Kind::of(&value) {
            Some(Kind::Event) => events.insert(value["event"].as_str().unwrap().to_owned()),
            Some(Kind::Command) => commands.insert(value["cmd"].as_str().unwrap().to_owned()),
            Some(Kind::Config) | Some(Kind::GatewayConfig) => {
                configs += 1;
                true
            }
            Some(Kind::Participant) => participant_events.insert(value["event"].as_str().unwrap().to_owned()),
            None => false,
        };
    }
    let missing: Vec<&str> = Event::NAMES
        .iter()
        .chain(Command::NAMES)
        .filter(|n| !events.contains(**n) && !commands.contains(**n))
        .copied()
        .collect();
    assert!(missing.is_empty(), "examples.jsonl has no line for {missing:?}");
    let missing: Vec<&str> =
        ParticipantEvent::NAMES.iter().filter(|n| !participant_events.contains(**n)).copied().collect();
    assert!(missing.is_empty(), "examples.jsonl has no participant line for {missing:?}");
    assert!(configs > 0, "examples.jsonl has no configuration");
}

#[test]
fn the_names_are_the_schemas() {
    // Event::NAMES and Command::NAMES decide what the runner calls an unknown event or command.
    let consts = |file: &str, tag: &str| -> BTreeSet<String> {
        let text = std::fs::read_to_string(docs(file)).unwrap();
        let mut found = BTreeSet::new();
        collect_consts(&serde_json::from_str(&text).unwrap(), tag, &mut found);
        found
    };
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(consts("events.schema.json", "event"), names(Event::NAMES));
    assert_eq!(consts("commands.schema.json", "cmd"), names(Command::NAMES));
    assert_eq!(consts("participant-events.schema.json", "event"), names(ParticipantEvent::NAMES));
}

fn collect_consts(schema: &Value, tag: &str, found: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                if let Some(c) = props.get(tag).and_then(|p| p.get("const")).and_then(Value::as_str) {
                    found.insert(c.to_owned());
                }
            }
            map.values().for_each(|v| collect_consts(v, tag, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_consts(v, tag, found)),
        _ => {}
    }
}

#[test]
fn a_drifted_line_is_caught() {
    let schemas = Schemas::load();
    for (drifted, why) in [
        // A required field renamed.
        (r#"{"ts":1,"peer":"A","event":"message","topic":"t","id":"x","src":"B","from":null,"size":1,"sent_us":1}"#, "source"),
        // A wrong type.
        (r#"{"ts":"now","peer":"A","event":"stopped"}"#, "ts"),
        // A value the contract does not know.
        (r#"{"ts":1,"peer":"A","event":"connection_opened","remote":"B","conn_id":"1","direction":"unknown","remote_addr":"/ip4/1.2.3.4/tcp/1"}"#, "direction"),
        // An optional field misspelt: the schema allows extra fields, the strict parse does not.
        (r#"{"cmd":"dial","cmd_id":"c1","addr":"/ip4/1.2.3.4/tcp/1/p2p/A","mod":"new"}"#, "mod"),
        (r#"{"seed":1,"listen_port":4001,"transport":"udp"}"#, "transport"),
    ] {
        let found = schemas.violations(drifted);
        assert!(
            found.iter().any(|w| w.contains(why)),
            "{drifted}: expected a violation naming {why}, got {found:?}"
        );
    }
}
