//! SOAP control: the request body read with quick-xml, the WANIPConnection actions on one mapping table, and the
//! response or UPnP fault envelopes (UPnP Device Architecture 1.0, section 3.2; IGD WANIPConnection:1 and :2).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::device;

/// A control request as it came in.
#[derive(Debug, PartialEq, Eq)]
pub struct Call {
    pub action: String,
    pub args: BTreeMap<String, String>,
}

/// Reads `Envelope/Body/<action>/<arg>text</arg>...`, by local names (clients differ in prefixes).
pub fn parse_call(body: &str) -> Result<Call, String> {
    let mut reader = Reader::from_str(body);
    // The path of local names from the root to where the reader is.
    let mut path: Vec<String> = Vec::new();
    let mut action: Option<String> = None;
    let mut args = BTreeMap::new();
    let mut arg: Option<(String, String)> = None;
    loop {
        let event = reader.read_event().map_err(|e| format!("bad XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                on_start(&path, &name, &mut action, &mut arg)?;
                path.push(name);
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                on_start(&path, &name, &mut action, &mut arg)?;
                if let Some((n, v)) = arg.take() {
                    args.insert(n, v);
                }
            }
            Event::Text(t) => {
                if let Some((_, value)) = arg.as_mut() {
                    value.push_str(&t.xml10_content().map_err(|e| format!("bad text: {e}"))?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, value)) = arg.as_mut() {
                    let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                    let resolved = match r
                        .resolve_char_ref()
                        .map_err(|e| format!("bad reference: {e}"))?
                    {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned(),
                    };
                    value.push_str(&resolved);
                }
            }
            Event::CData(t) => {
                if let Some((_, value)) = arg.as_mut() {
                    value.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(_) => {
                path.pop();
                if path.len() == 3 {
                    if let Some((n, v)) = arg.take() {
                        // Whitespace around a value is layout, not the value.
                        args.insert(n, v.trim().to_owned());
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let action = action.ok_or("no action element in the SOAP body")?;
    Ok(Call { action, args })
}

fn on_start(
    path: &[String],
    name: &str,
    action: &mut Option<String>,
    arg: &mut Option<(String, String)>,
) -> Result<(), String> {
    match path.len() {
        0 if name != "Envelope" => {
            return Err(format!("the root is <{name}>, not a SOAP Envelope"))
        }
        2 if path[1] == "Body" && action.is_none() => *action = Some(name.to_owned()),
        3 if path[1] == "Body" => *arg = Some((name.to_owned(), String::new())),
        _ => {}
    }
    Ok(())
}

/// A UPnP error: code and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault(pub u16, pub &'static str);

impl Fault {
    pub const INVALID_ACTION: Fault = Fault(401, "Invalid Action");
    pub const INVALID_ARGS: Fault = Fault(402, "Invalid Args");
    pub const ARRAY_INDEX_INVALID: Fault = Fault(713, "SpecifiedArrayIndexInvalid");
    pub const NO_SUCH_ENTRY: Fault = Fault(714, "NoSuchEntryInArray");
    pub const WILDCARD_EXTERNAL_PORT: Fault = Fault(716, "WildCardNotPermittedInExtPort");
    pub const CONFLICT: Fault = Fault(718, "ConflictInMappingEntry");
    pub const NO_PORT_MAPS_AVAILABLE: Fault = Fault(728, "NoPortMapsAvailable");

    /// As the event line shows it: `718 ConflictInMappingEntry`.
    pub fn label(&self) -> String {
        format!("{} {}", self.0, self.1)
    }
}

/// A port mapping, keyed by remote host, external port and protocol.
#[derive(Debug, Clone)]
struct Mapping {
    remote_host: String,
    external_port: u16,
    protocol: String,
    internal_port: u16,
    internal_client: String,
    enabled: bool,
    description: String,
    lease_secs: u32,
    /// Absent for a mapping without lease (0: until deleted).
    expires: Option<Instant>,
}

impl Mapping {
    fn lease_left(&self, now: Instant) -> u32 {
        match self.expires {
            Some(at) => at.saturating_duration_since(now).as_secs() as u32,
            None => 0,
        }
    }
}

/// The gateway's state: what GetExternalIPAddress says and the mapping table, in the order mappings were made
/// (GetGenericPortMappingEntry's index).
pub struct Gateway {
    external_ip: Ipv4Addr,
    started: Instant,
    mappings: Vec<Mapping>,
}

pub type Outputs = BTreeMap<String, String>;

impl Gateway {
    pub fn new(external_ip: Ipv4Addr) -> Self {
        Gateway {
            external_ip,
            started: Instant::now(),
            mappings: Vec::new(),
        }
    }

    /// Runs an action of the WANIPConnection service `version`.
    pub fn call(&mut self, version: u32, call: &Call) -> Result<Outputs, Fault> {
        if !device::has_action(version, &call.action) {
            return Err(Fault::INVALID_ACTION);
        }
        let now = Instant::now();
        self.mappings
            .retain(|m| m.expires.is_none_or(|at| at > now));
        let a = Args(&call.args);
        let out = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        match call.action.as_str() {
            "GetExternalIPAddress" => Ok(out(&[(
                "NewExternalIPAddress",
                self.external_ip.to_string(),
            )])),
            "GetNATRSIPStatus" => Ok(out(&[
                ("NewRSIPAvailable", "0".into()),
                ("NewNATEnabled", "1".into()),
            ])),
            "GetStatusInfo" => Ok(out(&[
                ("NewConnectionStatus", "Connected".into()),
                ("NewLastConnectionError", "ERROR_NONE".into()),
                ("NewUptime", self.started.elapsed().as_secs().to_string()),
            ])),
            "AddPortMapping" | "AddAnyPortMapping" => {
                let any = call.action == "AddAnyPortMapping";
                let mut m = Mapping {
                    remote_host: a.text("NewRemoteHost")?,
                    external_port: a.port("NewExternalPort")?,
                    protocol: a.protocol()?,
                    internal_port: a.port("NewInternalPort")?,
                    internal_client: a.client()?,
                    enabled: a.boolean("NewEnabled")?,
                    description: a.text("NewPortMappingDescription")?,
                    lease_secs: a.parse("NewLeaseDuration")?,
                    expires: None,
                };
                if m.internal_port == 0 {
                    return Err(Fault::INVALID_ARGS);
                }
                // IGDv2 (and AddAnyPortMapping) do not allow the v1 wildcard port 0.
                if m.external_port == 0 && (version >= 2 || any) {
                    return Err(Fault::WILDCARD_EXTERNAL_PORT);
                }
                if m.external_port == 0 {
                    return Err(Fault::INVALID_ARGS);
                }
                if any {
                    m.external_port = self.free_port(&m).ok_or(Fault::NO_PORT_MAPS_AVAILABLE)?;
                }
                m.expires =
                    (m.lease_secs > 0).then(|| now + Duration::from_secs(m.lease_secs.into()));
                match self.position(&m.remote_host, m.external_port, &m.protocol) {
                    // The same client may renew or change its own mapping; another one may not take it.
                    Some(i) if self.mappings[i].internal_client != m.internal_client => {
                        Err(Fault::CONFLICT)
                    }
                    Some(i) => {
                        let port = m.external_port;
                        self.mappings[i] = m;
                        Ok(if any {
                            out(&[("NewReservedPort", port.to_string())])
                        } else {
                            Outputs::new()
                        })
                    }
                    None => {
                        let port = m.external_port;
                        self.mappings.push(m);
                        Ok(if any {
                            out(&[("NewReservedPort", port.to_string())])
                        } else {
                            Outputs::new()
                        })
                    }
                }
            }
            "DeletePortMapping" => {
                let i = self.find(&a)?;
                self.mappings.remove(i);
                Ok(Outputs::new())
            }
            "GetSpecificPortMappingEntry" => {
                let m = &self.mappings[self.find(&a)?];
                Ok(out(&[
                    ("NewInternalPort", m.internal_port.to_string()),
                    ("NewInternalClient", m.internal_client.clone()),
                    ("NewEnabled", u8::from(m.enabled).to_string()),
                    ("NewPortMappingDescription", m.description.clone()),
                    ("NewLeaseDuration", m.lease_left(now).to_string()),
                ]))
            }
            "GetGenericPortMappingEntry" => {
                let index: usize = a.parse("NewPortMappingIndex")?;
                let m = self.mappings.get(index).ok_or(Fault::ARRAY_INDEX_INVALID)?;
                Ok(out(&[
                    ("NewRemoteHost", m.remote_host.clone()),
                    ("NewExternalPort", m.external_port.to_string()),
                    ("NewProtocol", m.protocol.clone()),
                    ("NewInternalPort", m.internal_port.to_string()),
                    ("NewInternalClient", m.internal_client.clone()),
                    ("NewEnabled", u8::from(m.enabled).to_string()),
                    ("NewPortMappingDescription", m.description.clone()),
                    ("NewLeaseDuration", m.lease_left(now).to_string()),
                ]))
            }
            _ => Err(Fault::INVALID_ACTION),
        }
    }

    fn position(&self, remote_host: &str, port: u16, protocol: &str) -> Option<usize> {
        self.mappings.iter().position(|m| {
            m.remote_host == remote_host && m.external_port == port && m.protocol == protocol
        })
    }

    fn find(&self, a: &Args) -> Result<usize, Fault> {
        let (host, port, protocol) = (
            a.text("NewRemoteHost")?,
            a.port("NewExternalPort")?,
            a.protocol()?,
        );
        self.position(&host, port, &protocol)
            .ok_or(Fault::NO_SUCH_ENTRY)
    }

    /// AddAnyPortMapping: the requested port if it is free (or the client's own), else the next free one.
    fn free_port(&self, m: &Mapping) -> Option<u16> {
        let wanted = m.external_port;
        (wanted..=u16::MAX).chain(1024..wanted).find(|p| {
            match self.position(&m.remote_host, *p, &m.protocol) {
                Some(i) => self.mappings[i].internal_client == m.internal_client && *p == wanted,
                None => true,
            }
        })
    }
}

/// Input arguments, each missing or malformed one a 402.
struct Args<'a>(&'a BTreeMap<String, String>);

impl Args<'_> {
    fn text(&self, name: &str) -> Result<String, Fault> {
        self.0
            .get(name)
            .map(|v| v.trim().to_owned())
            .ok_or(Fault::INVALID_ARGS)
    }

    fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<T, Fault> {
        self.text(name)?.parse().map_err(|_| Fault::INVALID_ARGS)
    }

    fn port(&self, name: &str) -> Result<u16, Fault> {
        self.parse(name)
    }

    fn protocol(&self) -> Result<String, Fault> {
        match self.text("NewProtocol")?.as_str() {
            p @ ("TCP" | "UDP") => Ok(p.to_owned()),
            _ => Err(Fault::INVALID_ARGS),
        }
    }

    fn client(&self) -> Result<String, Fault> {
        let c: Ipv4Addr = self.parse("NewInternalClient")?;
        Ok(c.to_string())
    }

    fn boolean(&self, name: &str) -> Result<bool, Fault> {
        match self.text(name)?.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(Fault::INVALID_ARGS),
        }
    }
}

const ENVELOPE_START: &str =
    "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
     s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>";
const ENVELOPE_END: &str = "</s:Body></s:Envelope>\n";

/// The envelope of a success: `<u:ActionResponse xmlns:u="service">` with the output arguments.
pub fn response(service: &str, action: &str, outputs: &Outputs) -> String {
    let args: String = outputs
        .iter()
        .map(|(k, v)| format!("<{k}>{}</{k}>", escape(v.as_str())))
        .collect();
    format!("{ENVELOPE_START}<u:{action}Response xmlns:u=\"{service}\">{args}</u:{action}Response>{ENVELOPE_END}")
}

/// The envelope of a UPnP error (sent with HTTP 500).
pub fn fault(f: &Fault) -> String {
    format!(
        "{ENVELOPE_START}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>\
         <UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>{}</errorCode>\
         <errorDescription>{}</errorDescription></UPnPError></detail></s:Fault>{ENVELOPE_END}",
        f.0, f.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(action: &str, args: &[(&str, &str)]) -> Call {
        Call {
            action: action.into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn add(port: &str, client: &str) -> Call {
        call(
            "AddPortMapping",
            &[
                ("NewRemoteHost", ""),
                ("NewExternalPort", port),
                ("NewProtocol", "TCP"),
                ("NewInternalPort", "4001"),
                ("NewInternalClient", client),
                ("NewEnabled", "1"),
                ("NewPortMappingDescription", "libp2p"),
                ("NewLeaseDuration", "60"),
            ],
        )
    }

    #[test]
    fn a_call_is_read_whatever_the_prefixes() {
        let body = r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewRemoteHost></NewRemoteHost><NewExternalPort>41234</NewExternalPort><NewPortMappingDescription>a &amp; b&#33;</NewPortMappingDescription><NewEnabled/></u:AddPortMapping></s:Body></s:Envelope>"#;
        let c = parse_call(body).unwrap();
        assert_eq!(c.action, "AddPortMapping");
        assert_eq!(c.args["NewExternalPort"], "41234");
        assert_eq!(c.args["NewRemoteHost"], "");
        assert_eq!(c.args["NewEnabled"], "");
        assert_eq!(c.args["NewPortMappingDescription"], "a & b!");
        assert!(parse_call("<html/>")
            .unwrap_err()
            .contains("not a SOAP Envelope"));
        assert!(parse_call("<Envelope><Body></Body></Envelope>")
            .unwrap_err()
            .contains("no action"));
        assert!(parse_call("<Envelope><Body><a></b></Body></Envelope>").is_err());
    }

    #[test]
    fn the_mapping_table_keeps_state() {
        let mut g = Gateway::new("10.217.0.1".parse().unwrap());
        assert_eq!(g.call(1, &add("41234", "10.0.0.4")), Ok(Outputs::new()));
        // A renewal by its owner is fine; another client's is a conflict.
        assert_eq!(g.call(1, &add("41234", "10.0.0.4")), Ok(Outputs::new()));
        assert_eq!(g.call(1, &add("41234", "10.0.0.5")), Err(Fault::CONFLICT));
        let key = [
            ("NewRemoteHost", ""),
            ("NewExternalPort", "41234"),
            ("NewProtocol", "TCP"),
        ];
        let entry = g
            .call(1, &call("GetSpecificPortMappingEntry", &key))
            .unwrap();
        assert_eq!(entry["NewInternalClient"], "10.0.0.4");
        assert_eq!(entry["NewInternalPort"], "4001");
        let generic = g
            .call(
                1,
                &call(
                    "GetGenericPortMappingEntry",
                    &[("NewPortMappingIndex", "0")],
                ),
            )
            .unwrap();
        assert_eq!(generic["NewExternalPort"], "41234");
        assert_eq!(
            g.call(
                1,
                &call(
                    "GetGenericPortMappingEntry",
                    &[("NewPortMappingIndex", "1")]
                )
            ),
            Err(Fault::ARRAY_INDEX_INVALID)
        );
        // AddAnyPortMapping is IGDv2's, and moves off a taken port.
        let mut any = add("41234", "10.0.0.5");
        any.action = "AddAnyPortMapping".into();
        assert_eq!(g.call(1, &any), Err(Fault::INVALID_ACTION));
        assert_eq!(g.call(2, &any).unwrap()["NewReservedPort"], "41235");
        assert_eq!(
            g.call(1, &call("DeletePortMapping", &key)),
            Ok(Outputs::new())
        );
        assert_eq!(
            g.call(1, &call("DeletePortMapping", &key)),
            Err(Fault::NO_SUCH_ENTRY)
        );
        assert_eq!(
            g.call(1, &call("GetSpecificPortMappingEntry", &key)),
            Err(Fault::NO_SUCH_ENTRY)
        );
        assert_eq!(g.call(1, &add("x", "10.0.0.4")), Err(Fault::INVALID_ARGS));
        assert_eq!(
            g.call(2, &add("0", "10.0.0.4")),
            Err(Fault::WILDCARD_EXTERNAL_PORT)
        );
        assert_eq!(g.call(1, &call("Reboot", &[])), Err(Fault::INVALID_ACTION));
    }
}
