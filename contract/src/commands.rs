//! What the runner tells a peer on stdin, one JSON object per line (contract section 2).
//!
//! Every command carries a `cmd_id`, unique in the case, which every `error` or `unsupported` answering it names.
//! Unknown fields are ignored; an unknown command is answered with an `error` naming it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Connect to `addr` (a multiaddr ending in `/p2p/<peer id>`).
    Dial {
        addr: String,
        #[serde(default)]
        mode: DialMode,
    },
    /// Join a gossipsub topic.
    Subscribe { topic: String },
    /// Leave a gossipsub topic.
    Unsubscribe { topic: String },
    /// Publish one message of `size` payload bytes, then emit `published`.
    Publish { topic: String, id: String, size: u64 },
    /// Close every connection to `peer`, or every connection when absent.
    Disconnect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
    /// Open `count` streams on the hold protocol to a connected peer and keep them open.
    OpenStreams { peer: String, count: u32 },
    /// Stop supporting a protocol mid-run (a staged downgrade).
    DropProtocol { protocol: String },
    /// Send one request on the request-response protocol to `peer` (contract revision 2): `request_sent` at once,
    /// then `response_received` or `request_failed` naming `id`. With `addr`, the peer is dialed at that address
    /// when not connected (the library's own dial, as an application that knows the peer only by address).
    Request {
        peer: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        id: String,
        /// Payload bytes.
        size: u64,
    },
    /// Ask an AutoNAT server to dial this peer back now (contract revision 2), on a connection to `server`
    /// (dialed at `addr` when not connected). The conclusion comes as `reachability`, a failure as `error`.
    AutonatProbe {
        server: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        version: AutonatVersion,
        /// v1 only: send the dial request and drop the connection at once, without waiting for the answer.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        vanish: bool,
    },
    /// Close the host gracefully, emit `stopped`, exit 0.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutonatVersion {
    V1,
    V2,
}

impl AutonatVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            AutonatVersion::V1 => "v1",
            AutonatVersion::V2 => "v2",
        }
    }
}

/// What a request and a response carry on the wire (`config::REQUEST_RESPONSE_PROTOCOL`), as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Request {
    /// The `request` command's id.
    pub id: String,
    /// `size` bytes of ASCII filler.
    pub payload: String,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Response {
    /// The request's id.
    pub id: String,
    pub payload: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DialMode {
    /// Connect unless already connected to or dialing the peer.
    #[default]
    Dedup,
    /// Open another connection even when one exists.
    New,
}

impl Command {
    /// Every command's name, as on the wire.
    pub const NAMES: &[&str] = &[
        "dial",
        "subscribe",
        "unsubscribe",
        "publish",
        "disconnect",
        "open_streams",
        "drop_protocol",
        "request",
        "autonat_probe",
        "stop",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Command::Dial { .. } => "dial",
            Command::Subscribe { .. } => "subscribe",
            Command::Unsubscribe { .. } => "unsubscribe",
            Command::Publish { .. } => "publish",
            Command::Disconnect { .. } => "disconnect",
            Command::OpenStreams { .. } => "open_streams",
            Command::DropProtocol { .. } => "drop_protocol",
            Command::Request { .. } => "request",
            Command::AutonatProbe { .. } => "autonat_probe",
            Command::Stop => "stop",
        }
    }
}

/// One command line: the command and its `cmd_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandLine {
    #[serde(flatten)]
    pub command: Command,
    /// Unique within the case; absent only in lines written by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_id: Option<String>,
}

impl CommandLine {
    /// The line as sent, without its newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a command is strings and integers")
    }
}

/// Why a line is not a command; `cmd` is the command's name and `cmd_id` its id when the line
/// got that far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub cmd: Option<String>,
    pub cmd_id: Option<String>,
    pub message: String,
}

/// Parses one line. Unknown fields are ignored; unknown commands are errors naming them.
pub fn parse(line: &str) -> Result<CommandLine, CommandError> {
    let value: Value = serde_json::from_str(line).map_err(|e| CommandError {
        cmd: None,
        cmd_id: None,
        message: format!("not a JSON command: {e}"),
    })?;
    let cmd_id = value
        .get("cmd_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(name) = value.get("cmd").and_then(Value::as_str).map(str::to_owned) else {
        return Err(CommandError {
            cmd: None,
            cmd_id,
            message: "command without a string `cmd` field".into(),
        });
    };
    if !Command::NAMES.contains(&name.as_str()) {
        return Err(CommandError {
            message: format!("unknown command `{name}`"),
            cmd: Some(name),
            cmd_id,
        });
    }
    match serde_json::from_value(value) {
        Ok(command) => Ok(CommandLine { cmd_id, command }),
        Err(e) => Err(CommandError {
            message: e.to_string(),
            cmd: Some(name),
            cmd_id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command of a line, without its id.
    fn parse(line: &str) -> Result<Command, CommandError> {
        super::parse(line).map(|request| request.command)
    }

    #[test]
    fn carries_the_cmd_id() {
        let request = super::parse(r#"{"cmd":"subscribe","cmd_id":"c17","topic":"t"}"#);
        assert_eq!(
            request,
            Ok(CommandLine {
                cmd_id: Some("c17".into()),
                command: Command::Subscribe { topic: "t".into() },
            })
        );
        assert_eq!(super::parse(r#"{"cmd":"stop"}"#).unwrap().cmd_id, None);
        // Errors answering a command carry its id, unknown commands included.
        let unknown = super::parse(r#"{"cmd":"reboot","cmd_id":"c3"}"#).expect_err("unknown");
        assert_eq!(
            (unknown.cmd.as_deref(), unknown.cmd_id.as_deref()),
            (Some("reboot"), Some("c3"))
        );
        let bad =
            super::parse(r#"{"cmd":"publish","cmd_id":"c4","topic":"t","id":"x","size":"big"}"#)
                .expect_err("bad size");
        assert_eq!(bad.cmd_id.as_deref(), Some("c4"));
        let nameless = super::parse(r#"{"cmd_id":"c5"}"#).expect_err("no cmd");
        assert_eq!(
            (nameless.cmd, nameless.cmd_id.as_deref()),
            (None, Some("c5"))
        );
    }

    #[test]
    fn parses_the_contract_examples() {
        assert_eq!(
            parse(r#"{"cmd":"dial","addr":"/ip4/10.88.0.3/tcp/4001/p2p/12D3KooWX","mode":"new"}"#),
            Ok(Command::Dial {
                addr: "/ip4/10.88.0.3/tcp/4001/p2p/12D3KooWX".into(),
                mode: DialMode::New,
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"subscribe","topic":"meshgate","extra":[1,2]}"#),
            Ok(Command::Subscribe {
                topic: "meshgate".into()
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"publish","topic":"meshgate","id":"go-1/3","size":256}"#),
            Ok(Command::Publish {
                topic: "meshgate".into(),
                id: "go-1/3".into(),
                size: 256,
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"disconnect"}"#),
            Ok(Command::Disconnect { peer: None })
        );
        assert_eq!(parse(r#"{"cmd":"stop"}"#), Ok(Command::Stop));
    }

    #[test]
    fn parses_open_streams() {
        let command = parse(r#"{"cmd":"open_streams","peer":"12D3KooWX","count":20,"x":1}"#);
        assert_eq!(
            command,
            Ok(Command::OpenStreams {
                peer: "12D3KooWX".into(),
                count: 20,
            })
        );
        assert_eq!(command.map(|c| c.name()), Ok("open_streams"));
        for bad in [
            r#"{"cmd":"open_streams","peer":"12D3KooWX"}"#,
            r#"{"cmd":"open_streams","count":3}"#,
            r#"{"cmd":"open_streams","peer":"12D3KooWX","count":-1}"#,
            r#"{"cmd":"open_streams","peer":"12D3KooWX","count":"3"}"#,
        ] {
            let error = parse(bad).expect_err(bad);
            assert_eq!(error.cmd.as_deref(), Some("open_streams"), "{bad}");
        }
    }

    #[test]
    fn parses_drop_protocol() {
        let command = parse(r#"{"cmd":"drop_protocol","protocol":"/meshsub/1.1.0","x":1}"#);
        assert_eq!(
            command,
            Ok(Command::DropProtocol {
                protocol: "/meshsub/1.1.0".into(),
            })
        );
        assert_eq!(command.map(|c| c.name()), Ok("drop_protocol"));
        for bad in [
            r#"{"cmd":"drop_protocol"}"#,
            r#"{"cmd":"drop_protocol","protocol":3}"#,
        ] {
            let error = parse(bad).expect_err(bad);
            assert_eq!(error.cmd.as_deref(), Some("drop_protocol"), "{bad}");
        }
    }

    #[test]
    fn parses_the_revision_2_roles() {
        assert_eq!(
            parse(r#"{"cmd":"request","peer":"12D3KooWX","addr":"/ip4/10.216.0.3/tcp/4001","id":"r1","size":64}"#),
            Ok(Command::Request {
                peer: "12D3KooWX".into(),
                addr: Some("/ip4/10.216.0.3/tcp/4001".into()),
                id: "r1".into(),
                size: 64,
            })
        );
        assert_eq!(
            parse(r#"{"cmd":"autonat_probe","server":"12D3KooWX","version":"v1","vanish":true}"#),
            Ok(Command::AutonatProbe {
                server: "12D3KooWX".into(),
                addr: None,
                version: AutonatVersion::V1,
                vanish: true,
            })
        );
        let bad = parse(r#"{"cmd":"autonat_probe","server":"12D3KooWX","version":"v3"}"#).expect_err("v3");
        assert_eq!(bad.cmd.as_deref(), Some("autonat_probe"));
    }

    #[test]
    fn errors_name_the_command() {
        let unknown = parse(r#"{"cmd":"reboot"}"#).expect_err("unknown command");
        assert_eq!(unknown.cmd.as_deref(), Some("reboot"));
        assert!(unknown.message.contains("unknown command"));

        let bad_mode = parse(r#"{"cmd":"dial","addr":"/ip4/1.2.3.4/tcp/1","mode":"twice"}"#)
            .expect_err("bad mode");
        assert_eq!(bad_mode.cmd.as_deref(), Some("dial"));

        let missing = parse(r#"{"cmd":"publish","topic":"t","id":"x"}"#).expect_err("no size");
        assert_eq!(missing.cmd.as_deref(), Some("publish"));

        assert_eq!(parse("garbage").expect_err("not JSON").cmd, None);
        assert_eq!(parse(r#"{"topic":"t"}"#).expect_err("no cmd").cmd, None);
    }
}
