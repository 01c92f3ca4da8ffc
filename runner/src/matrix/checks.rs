//! The `checks:` section of a matrix (top level or per network): plain data, one settings type per check.
//!
//! The checks themselves live in `checks/`, which reads these; the matrix, the cases and stored cases hold only
//! this data. A new check adds its settings module here and a line to [`settings!`], then its file and one
//! registry line in `checks/`; a test there holds the two lists equal.

use serde::{Deserialize, Serialize};

/// A check's entry in a matrix: its settings (a map, partial maps take the defaults for the rest) or `off`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Toggle<T> {
    On(T),
    #[serde(serialize_with = "off")]
    Off,
}

fn off<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("off")
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than `untagged`, so that an error inside the settings keeps its own words and place.
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the check's settings (a map, `{}` for the defaults) or `off`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "off" => Ok(Toggle::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            // YAML 1.1 reads an unquoted `off` as false (and `on` as true).
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    self.visit_unit()
                } else {
                    Ok(Toggle::Off)
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                T::deserialize(serde::de::value::MapDeserializer::<
                    std::iter::Empty<((), ())>,
                    E,
                >::new(std::iter::empty()))
                .map(Toggle::On)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

macro_rules! settings {
    ($($field:ident: $module:ident),* $(,)?) => {
        /// Check settings as written in a matrix (top level or per network): each entry changes the check it
        /// names; the checks not named run with their defaults, and a check runs not at all only when its entry
        /// says `off`.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<Toggle<$module::Settings>>,
            )*
        }

        impl Settings {
            /// Every check's name, as matrices spell it, in report order.
            pub const NAMES: &[&str] = &[$(kebab!($field)),*];

            /// `over`'s entries replace `self`'s, check by check; checks `over` does not name keep `self`'s entry.
            pub fn overridden_by(&self, over: &Settings) -> Settings {
                Settings {
                    $($field: over.$field.clone().or_else(|| self.$field.clone()),)*
                }
            }
        }
    };
}

/// A field's name as serde's `kebab-case` writes it.
macro_rules! kebab {
    (no_protocol_downgrade) => {
        "no-protocol-downgrade"
    };
    (nat_mapping) => {
        "nat-mapping"
    };
    (request_response) => {
        "request-response"
    };
    ($field:ident) => {
        stringify!($field)
    };
}

// In report order.
settings! {
    connectivity: connectivity,
    no_protocol_downgrade: downgrade,
    delivery: delivery,
    subscriptions: subscriptions,
    mesh: mesh,
    connections: connections,
    streams: streams,
    request_response: request_response,
    autonat: autonat,
    nat_mapping: nat_mapping,
    commands: commands,
    liveness: liveness,
}

pub mod connectivity {
    //! Settings of the `connectivity` check.

    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// After a time-line dial (or both ends dialing each other at once), how soon the pair must hold a
        /// connection that both ends report.
        #[serde(default = "default_redial", with = "humantime_serde")]
        pub redial_within: Duration,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self { redial_within: default_redial() }
        }
    }

    fn default_redial() -> Duration {
        Duration::from_secs(5)
    }
}

pub mod downgrade {
    //! Settings of the `no-protocol-downgrade` check.

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// Protocols watched, as glob patterns.
        #[serde(default = "default_protocols")]
        pub protocols: Vec<String>,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                protocols: default_protocols(),
            }
        }
    }

    fn default_protocols() -> Vec<String> {
        vec!["/meshsub/*".into()]
    }
}

pub mod delivery {
    //! Settings of the `delivery` check.

    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// A message delivered later than this after its publication counts as missed.
        #[serde(default = "default_deadline", with = "humantime_serde")]
        pub deadline: Duration,
        /// A subscriber that receives nothing for this long while messages for it are published has stopped
        /// receiving (said so, with the moment), rather than missed a few.
        #[serde(default = "default_gap", with = "humantime_serde")]
        pub gap: Duration,
        /// After a fault of the time line ends (a heal, a restart, a resume), how long deliveries across it may
        /// still fail while the peers find each other again; from then on every message is expected again.
        #[serde(default = "default_recovery", with = "humantime_serde")]
        pub recovery: Duration,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                deadline: default_deadline(),
                gap: default_gap(),
                recovery: default_recovery(),
            }
        }
    }

    fn default_recovery() -> Duration {
        Duration::from_secs(10)
    }

    fn default_gap() -> Duration {
        Duration::from_secs(1)
    }

    fn default_deadline() -> Duration {
        Duration::from_secs(10)
    }
}

pub mod subscriptions {
    //! Settings of the `subscriptions` check.

    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// How long after a subscriber subscribes (or connects) its connected peers have to announce it.
        #[serde(default = "default_within", with = "humantime_serde")]
        pub within: Duration,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                within: default_within(),
            }
        }
    }

    fn default_within() -> Duration {
        Duration::from_secs(3)
    }
}

pub mod mesh {
    //! Settings of the `mesh` check.

    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// Time after a peer subscribes before its mesh is judged.
        #[serde(default = "default_warmup", with = "humantime_serde")]
        pub warmup: Duration,
        /// How long a mesh may stay too small (heartbeats repair meshes; this spans a few).
        #[serde(default = "default_settle", with = "humantime_serde")]
        pub settle: Duration,
        /// After a fault of the time line involving a peer ends (a heal, a restart, a resume), how long its meshes
        /// may take to form again.
        #[serde(default = "default_recovery", with = "humantime_serde")]
        pub recovery: Duration,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                warmup: default_warmup(),
                settle: default_settle(),
                recovery: default_recovery(),
            }
        }
    }

    fn default_recovery() -> Duration {
        Duration::from_secs(10)
    }

    fn default_warmup() -> Duration {
        Duration::from_secs(3)
    }

    fn default_settle() -> Duration {
        Duration::from_secs(3)
    }
}

pub mod connections {
    //! Settings of the `connections` check.

    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// Most connections a peer may hold to one other peer at once.
        #[serde(default = "default_max")]
        pub max_per_pair: usize,
        /// How long an excess may last before it counts (simultaneous dials resolve themselves within this).
        #[serde(default = "default_settle", with = "humantime_serde")]
        pub settle: Duration,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                max_per_pair: default_max(),
                settle: default_settle(),
            }
        }
    }

    fn default_max() -> usize {
        1
    }

    fn default_settle() -> Duration {
        Duration::from_secs(3)
    }
}

pub mod streams {
    //! Settings of the `streams` check.

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// Most streams (inbound and outbound together) open on one connection at once.
        #[serde(default = "default_max")]
        pub max_per_connection: u32,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                max_per_connection: default_max(),
            }
        }
    }

    fn default_max() -> u32 {
        64
    }
}

pub mod request_response {
    //! Settings of the `request-response` check.

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {}
}

pub mod autonat {
    //! Settings of the `autonat` check.

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// Stderr lines containing any of these are a server's panic (as `liveness` reads them).
        #[serde(default = "super::liveness::default_panic_markers")]
        pub panic_markers: Vec<String>,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                panic_markers: super::liveness::default_panic_markers(),
            }
        }
    }
}

pub mod commands {
    //! Settings of the `commands` check.

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {}
}

pub mod nat_mapping {
    //! Settings of the `nat-mapping` check: none besides `off` (each peer's deadline is its `port_mapping` role's).

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {}
}

pub mod liveness {
    //! Settings of the `liveness` check.

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Settings {
        /// Longest time a running peer may say nothing on stdout (peers sample their streams every second).
        #[serde(default = "default_silence", with = "humantime_serde")]
        pub silence: std::time::Duration,
        /// Stderr lines containing any of these mean the peer panicked.
        #[serde(default = "default_panic_markers")]
        pub panic_markers: Vec<String>,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                silence: default_silence(),
                panic_markers: default_panic_markers(),
            }
        }
    }

    fn default_silence() -> std::time::Duration {
        std::time::Duration::from_secs(10)
    }

    /// Rust's panic message, Go's panic and runtime fatal error.
    pub(super) fn default_panic_markers() -> Vec<String> {
        vec!["panicked at".into(), "panic:".into(), "fatal error:".into()]
    }
}
