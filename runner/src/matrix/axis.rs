//! A setting that may be one value or a list of values; a list makes the setting an axis of the matrix, and the
//! cases are the cross product of all axes.

use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::Serialize;

use super::{DialMode, Muxer, Security, Transport};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Axis<T>(pub Vec<T>);

impl Axis<Transport> {
    pub fn tcp() -> Self {
        Axis(vec![Transport::Tcp])
    }
}
impl Axis<Security> {
    pub fn noise() -> Self {
        Axis(vec![Security::Noise])
    }
}
impl Axis<Muxer> {
    pub fn yamux() -> Self {
        Axis(vec![Muxer::Yamux])
    }
}
impl Axis<DialMode> {
    pub fn dedup() -> Self {
        Axis(vec![DialMode::Dedup])
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Axis<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AxisVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for AxisVisitor<T> {
            type Value = Axis<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value or a non-empty list of values")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|t| Axis(vec![t]))
            }

            // YAML reads `0.55` as a number; versions are written that way, so numbers are taken as their text.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }

            // `{newest: 3}`: one value written as a map.
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Axis(vec![t]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element()? {
                    values.push(v);
                }
                if values.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list: expected at least one value",
                    ));
                }
                Ok(Axis(values))
            }
        }

        d.deserialize_any(AxisVisitor(std::marker::PhantomData))
    }
}
