//! The versions of rust-libp2p and go-libp2p the peers can be built at: what a matrix may ask for.

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::Language;
use crate::releases::Request;

/// A version as a matrix writes it: an exact one (`0.56`, `v0.41.1`), or a request resolved from the registry
/// when the matrix is loaded (`latest`, `{newest: 3}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionValue {
    Exact(String),
    Resolve(Request),
}

impl VersionValue {
    pub fn exact(&self) -> Option<&str> {
        match self {
            VersionValue::Exact(v) => Some(v),
            VersionValue::Resolve(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for VersionValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VersionValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a version, `latest`, or `{newest: N}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(match v {
                    "latest" => VersionValue::Resolve(Request::Latest),
                    _ => VersionValue::Exact(v.to_owned()),
                })
            }
            // YAML reads `0.55` as a number: taken as its text.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let key: String = map.next_key()?.ok_or_else(|| de::Error::custom("an empty map: expected `{newest: N}`"))?;
                if key != "newest" {
                    return Err(de::Error::custom(format!("unknown key `{key}`: expected `{{newest: N}}`")));
                }
                let n: u32 = map.next_value()?;
                if n == 0 {
                    return Err(de::Error::custom("`newest: 0` names no release: expected N of 1 or more"));
                }
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("expected `{newest: N}` alone"));
                }
                Ok(VersionValue::Resolve(Request::Newest(n)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The oldest release line each language's peer builds at (major, minor): `newest: N` stops there.
pub fn oldest_line(language: Language) -> (u64, u64) {
    match language {
        Language::Go => (0, 38),
        _ => (0, 54),
    }
}

/// Versions the peers can be built at (docs/matrix.md). A version outside is an error of the matrix.
pub fn check_version(language: Language, version: &str) -> Result<(), String> {
    let ok = match language {
        Language::Image => false,
        Language::Rust => {
            let v = version.strip_prefix('=').unwrap_or(version);
            let mut parts = v.split('.');
            parts.next() == Some("0")
                && parts
                    .next()
                    .and_then(|m| m.parse::<u32>().ok())
                    .is_some_and(|m| (54..=57).contains(&m))
                && parts.all(|p| p.parse::<u32>().is_ok())
                && (version.starts_with('=') == (v.split('.').count() == 3))
        }
        Language::Go => {
            let parts: Vec<&str> = version
                .strip_prefix('v')
                .unwrap_or("x")
                .split('.')
                .collect();
            parts.len() == 3
                && parts[0] == "0"
                && parts[1]
                    .parse::<u32>()
                    .is_ok_and(|m| (38..=52).contains(&m))
                && parts[2].parse::<u32>().is_ok()
        }
    };
    if ok {
        return Ok(());
    }
    Err(match language {
        Language::Rust => format!("libp2p version `{version}` is not supported: expected 0.54, 0.55, 0.56 or 0.57, or an exact =0.5x.y"),
        Language::Go => format!("go-libp2p version `{version}` is not supported: expected a module version from v0.38.0 to v0.52.0, like v0.41.1"),
        Language::Image => "an image implementation has no version: its image is what runs".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::tests::{parse, GOOD};

    #[test]
    fn versions_outside_the_supported_range_name_the_implementation() {
        let e = parse(&GOOD.replace(
            "{name: rust, language: rust}",
            "{name: rust, language: rust, version: [0.57, 0.53]}",
        ))
        .unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(3), "{e}");
        assert!(
            e.to_string()
                .contains("libp2p version `0.53` is not supported"),
            "{e}"
        );
        let e = parse(&GOOD.replace(
            "{name: go, language: go}",
            "{name: go, language: go, version: 0.41.1}",
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("go-libp2p version `0.41.1` is not supported"),
            "{e}"
        );
        for ok in ["0.54", "0.57", "=0.55.0"] {
            assert!(check_version(Language::Rust, ok).is_ok(), "{ok}");
        }
        for bad in ["0.55.0", "=0.55", "1.0", "0.58", "latest"] {
            assert!(check_version(Language::Rust, bad).is_err(), "{bad}");
        }
        assert!(check_version(Language::Go, "v0.38.2").is_ok());
        assert!(check_version(Language::Go, "v0.52.0").is_ok());
        assert!(check_version(Language::Go, "v0.53.0").is_err());
    }
}
