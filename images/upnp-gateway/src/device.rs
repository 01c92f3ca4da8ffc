//! The emulated device: an InternetGatewayDevice:2 whose WANConnectionDevice:2 offers WANIPConnection:1 and
//! WANIPConnection:2 on one mapping table. Both services are there because the clients differ in what they
//! accept: go-nat v0.2.0 (go-libp2p <= 0.40) takes only WANIPConnection:1 from its IGDv1 search, go-libp2p's own
//! visitor (>= 0.41) and igd-next take either, and goupnp's IGDv2 clients (AddAnyPortMapping) need :2. The
//! device types answer searches for version 1 and 2 alike, as UDA requires of a version-2 device.
//!
//! One source for the device tree: the description, the SCPDs, the SSDP answers and the control URLs all come
//! from the tables here.

use std::net::Ipv4Addr;

const URN_DEVICE: &str = "urn:schemas-upnp-org:device:";
const URN_SERVICE: &str = "urn:schemas-upnp-org:service:";

/// The devices, root first, each with its highest version; each is the parent of the next.
const DEVICES: &[(&str, u32)] = &[
    ("InternetGatewayDevice", 2),
    ("WANDevice", 2),
    ("WANConnectionDevice", 2),
];

/// A service of the WANConnectionDevice.
pub struct Service {
    pub version: u32,
    pub service_id: &'static str,
    pub scpd_path: &'static str,
    pub control_path: &'static str,
    pub event_path: &'static str,
}

pub const SERVICES: &[Service] = &[
    Service {
        version: 1,
        service_id: "urn:upnp-org:serviceId:WANIPConn1",
        scpd_path: "/WANIPCn1.xml",
        control_path: "/ctl/IPConn1",
        event_path: "/evt/IPConn1",
    },
    Service {
        version: 2,
        service_id: "urn:upnp-org:serviceId:WANIPConn2",
        scpd_path: "/WANIPCn2.xml",
        control_path: "/ctl/IPConn2",
        event_path: "/evt/IPConn2",
    },
];

impl Service {
    pub fn service_type(&self) -> String {
        format!("{URN_SERVICE}WANIPConnection:{}", self.version)
    }
}

pub const DESCRIPTION_PATH: &str = "/rootDesc.xml";

/// An action argument: name, direction (`in` or `out`), related state variable.
type Arg = (&'static str, &'static str, &'static str);

const MAPPING_KEY: &[Arg] = &[
    ("NewRemoteHost", "in", "RemoteHost"),
    ("NewExternalPort", "in", "ExternalPort"),
    ("NewProtocol", "in", "PortMappingProtocol"),
];
const MAPPING_IN: &[Arg] = &[
    ("NewRemoteHost", "in", "RemoteHost"),
    ("NewExternalPort", "in", "ExternalPort"),
    ("NewProtocol", "in", "PortMappingProtocol"),
    ("NewInternalPort", "in", "InternalPort"),
    ("NewInternalClient", "in", "InternalClient"),
    ("NewEnabled", "in", "PortMappingEnabled"),
    ("NewPortMappingDescription", "in", "PortMappingDescription"),
    ("NewLeaseDuration", "in", "PortMappingLeaseDuration"),
];
const ENTRY_OUT: &[Arg] = &[
    ("NewInternalPort", "out", "InternalPort"),
    ("NewInternalClient", "out", "InternalClient"),
    ("NewEnabled", "out", "PortMappingEnabled"),
    ("NewPortMappingDescription", "out", "PortMappingDescription"),
    ("NewLeaseDuration", "out", "PortMappingLeaseDuration"),
];
const GENERIC_OUT: &[Arg] = &[
    ("NewRemoteHost", "out", "RemoteHost"),
    ("NewExternalPort", "out", "ExternalPort"),
    ("NewProtocol", "out", "PortMappingProtocol"),
    ("NewInternalPort", "out", "InternalPort"),
    ("NewInternalClient", "out", "InternalClient"),
    ("NewEnabled", "out", "PortMappingEnabled"),
    ("NewPortMappingDescription", "out", "PortMappingDescription"),
    ("NewLeaseDuration", "out", "PortMappingLeaseDuration"),
];

/// The actions of WANIPConnection, each with its arguments and the first service version that has it.
pub const ACTIONS: &[(&str, u32, &[&[Arg]])] = &[
    (
        "GetExternalIPAddress",
        1,
        &[&[("NewExternalIPAddress", "out", "ExternalIPAddress")]],
    ),
    (
        "GetNATRSIPStatus",
        1,
        &[&[
            ("NewRSIPAvailable", "out", "RSIPAvailable"),
            ("NewNATEnabled", "out", "NATEnabled"),
        ]],
    ),
    (
        "GetStatusInfo",
        1,
        &[&[
            ("NewConnectionStatus", "out", "ConnectionStatus"),
            ("NewLastConnectionError", "out", "LastConnectionError"),
            ("NewUptime", "out", "Uptime"),
        ]],
    ),
    ("AddPortMapping", 1, &[MAPPING_IN]),
    (
        "AddAnyPortMapping",
        2,
        &[MAPPING_IN, &[("NewReservedPort", "out", "ExternalPort")]],
    ),
    ("DeletePortMapping", 1, &[MAPPING_KEY]),
    ("GetSpecificPortMappingEntry", 1, &[MAPPING_KEY, ENTRY_OUT]),
    (
        "GetGenericPortMappingEntry",
        1,
        &[
            &[("NewPortMappingIndex", "in", "PortMappingNumberOfEntries")],
            GENERIC_OUT,
        ],
    ),
];

/// Whether a service of this version has the action.
pub fn has_action(version: u32, action: &str) -> bool {
    ACTIONS
        .iter()
        .any(|(name, since, _)| *name == action && *since <= version)
}

const STATE_VARIABLES: &[(&str, &str)] = &[
    ("ExternalIPAddress", "string"),
    ("RSIPAvailable", "boolean"),
    ("NATEnabled", "boolean"),
    ("ConnectionStatus", "string"),
    ("LastConnectionError", "string"),
    ("Uptime", "ui4"),
    ("RemoteHost", "string"),
    ("ExternalPort", "ui2"),
    ("InternalPort", "ui2"),
    ("PortMappingProtocol", "string"),
    ("InternalClient", "string"),
    ("PortMappingEnabled", "boolean"),
    ("PortMappingDescription", "string"),
    ("PortMappingLeaseDuration", "ui4"),
    ("PortMappingNumberOfEntries", "ui2"),
];

/// The device as seen from the case network.
pub struct Device {
    pub address: Ipv4Addr,
    pub http_port: u16,
}

impl Device {
    pub fn location(&self) -> String {
        format!(
            "http://{}:{}{DESCRIPTION_PATH}",
            self.address, self.http_port
        )
    }

    /// The UDN of device `index` (0: the root), stable for an address so that reruns look alike.
    pub fn udn(&self, index: usize) -> String {
        let [a, b, c, d] = self.address.octets();
        format!(
            "uuid:6d657368-6761-7465-{:04x}-0000{a:02x}{b:02x}{c:02x}{d:02x}",
            index + 1
        )
    }

    /// The (ST, USN) pairs that answer a search target; empty for a target the device does not have.
    pub fn answers(&self, st: &str) -> Vec<(String, String)> {
        let wcd = self.udn(DEVICES.len() - 1);
        if st == "ssdp:all" {
            // UDA 1.1 section 1.3.2: root device, each device by UDN and by type, each service type.
            let mut all = vec![(
                "upnp:rootdevice".to_owned(),
                format!("{}::upnp:rootdevice", self.udn(0)),
            )];
            for (i, (name, version)) in DEVICES.iter().enumerate() {
                all.push((self.udn(i), self.udn(i)));
                let ty = format!("{URN_DEVICE}{name}:{version}");
                all.push((ty.clone(), format!("{}::{ty}", self.udn(i))));
            }
            for s in SERVICES {
                all.push((s.service_type(), format!("{wcd}::{}", s.service_type())));
            }
            return all;
        }
        if st == "upnp:rootdevice" {
            return vec![(st.to_owned(), format!("{}::{st}", self.udn(0)))];
        }
        if let Some(i) = (0..DEVICES.len()).find(|i| self.udn(*i) == st) {
            return vec![(st.to_owned(), self.udn(i))];
        }
        if let Some((name, version)) = versioned(st, URN_DEVICE) {
            if let Some(i) = DEVICES
                .iter()
                .position(|(n, max)| *n == name && version <= *max)
            {
                return vec![(st.to_owned(), format!("{}::{st}", self.udn(i)))];
            }
        }
        if let Some((name, version)) = versioned(st, URN_SERVICE) {
            if name == "WANIPConnection" && SERVICES.iter().any(|s| s.version == version) {
                return vec![(st.to_owned(), format!("{wcd}::{st}"))];
            }
        }
        Vec::new()
    }

    /// The root device description (UPnP Device Architecture 1.0 schema, as goupnp and igd-next read it).
    pub fn description(&self) -> String {
        let services: String = SERVICES
            .iter()
            .map(|s| {
                format!(
                    "<service><serviceType>{}</serviceType><serviceId>{}</serviceId><SCPDURL>{}</SCPDURL>\
                     <controlURL>{}</controlURL><eventSubURL>{}</eventSubURL></service>",
                    s.service_type(),
                    s.service_id,
                    s.scpd_path,
                    s.control_path,
                    s.event_path
                )
            })
            .collect();
        // Innermost first: the WANConnectionDevice holds the services, each device the next one down.
        let mut inner = format!("<serviceList>{services}</serviceList>");
        for (i, (name, version)) in DEVICES.iter().enumerate().rev() {
            let device = format!(
                "<device><deviceType>{URN_DEVICE}{name}:{version}</deviceType>\
                 <friendlyName>meshgate {name}</friendlyName><manufacturer>meshgate</manufacturer>\
                 <manufacturerURL>https://github.com/libp2p</manufacturerURL>\
                 <modelName>meshgate-upnp-gateway</modelName><modelNumber>{}</modelNumber>\
                 <UDN>{}</UDN>{inner}</device>",
                env!("CARGO_PKG_VERSION"),
                self.udn(i)
            );
            inner = if i == 0 {
                device
            } else {
                format!("<deviceList>{device}</deviceList>")
            };
        }
        format!(
            "<?xml version=\"1.0\"?>\n<root xmlns=\"urn:schemas-upnp-org:device-1-0\">\
             <specVersion><major>1</major><minor>0</minor></specVersion>{inner}</root>\n"
        )
    }
}

/// The service description of a WANIPConnection version.
pub fn scpd(version: u32) -> String {
    let mut actions = String::new();
    for (name, since, groups) in ACTIONS {
        if *since > version {
            continue;
        }
        let args: String = groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|(arg, dir, var)| {
                format!(
                    "<argument><name>{arg}</name><direction>{dir}</direction>\
                     <relatedStateVariable>{var}</relatedStateVariable></argument>"
                )
            })
            .collect();
        actions.push_str(&format!(
            "<action><name>{name}</name><argumentList>{args}</argumentList></action>"
        ));
    }
    let vars: String = STATE_VARIABLES
        .iter()
        .map(|(name, ty)| {
            format!("<stateVariable sendEvents=\"no\"><name>{name}</name><dataType>{ty}</dataType></stateVariable>")
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?>\n<scpd xmlns=\"urn:schemas-upnp-org:service-1-0\">\
         <specVersion><major>1</major><minor>0</minor></specVersion>\
         <actionList>{actions}</actionList><serviceStateTable>{vars}</serviceStateTable></scpd>\n"
    )
}

/// `urn:...:device:NAME:V` split into NAME and V.
fn versioned<'a>(st: &'a str, prefix: &str) -> Option<(&'a str, u32)> {
    let (name, version) = st.strip_prefix(prefix)?.rsplit_once(':')?;
    let version: u32 = version.parse().ok()?;
    (version >= 1).then_some((name, version))
}
