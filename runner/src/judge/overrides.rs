//! `--set CHECK.FIELD=VALUE`: a change to the check settings a case was recorded with, to judge it again another
//! way. The value is read as YAML, the way the matrix reads it (`2s`, `0.5`, `true`); `--set CHECK=VALUE` replaces
//! the whole entry (`streams=off`, `streams=on` for the defaults), as a matrix's `checks:` entry would.

use serde_json::{Map, Value};

use crate::matrix::checks::Settings;

#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    check: String,
    /// `None`: the whole entry.
    field: Option<String>,
    value: Value,
    /// As written, for messages.
    text: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    /// Parses one `--set` and checks it against the checks' settings, so that a typo fails before anything is
    /// judged, naming what was expected.
    fn from_str(text: &str) -> Result<Self, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(
                "expected CHECK.FIELD=VALUE (like delivery.deadline=2s) or CHECK=off".to_owned(),
            );
        };
        let (check, field) = match key.trim().split_once('.') {
            Some((c, f)) => (c, Some(f.to_owned())),
            None => (key.trim(), None),
        };
        let names = Settings::NAMES;
        if !names.contains(&check) {
            return Err(format!(
                "there is no check `{check}`, expected one of: {}",
                names.join(", ")
            ));
        }
        if let Some(field) = &field {
            let fields = fields_of(check);
            if !fields.contains(field) {
                return Err(match fields.is_empty() {
                    true => {
                        format!("`{check}` has no settings: expected {check}=off or {check}=on")
                    }
                    false => format!(
                        "`{check}` has no setting `{field}`, expected one of: {}",
                        fields.join(", ")
                    ),
                });
            }
        }
        let value = serde_saphyr::from_str::<Value>(value).map_err(|e| {
            let e = e.to_string();
            format!(
                "the value is not YAML: {}",
                e.lines().next().unwrap_or_default()
            )
        })?;
        let set = Override {
            check: check.to_owned(),
            field,
            value,
            text: text.to_owned(),
        };
        set.apply(&Settings::default())?;
        Ok(set)
    }
}

impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Override {
    /// `settings` with this change. A field of a check that was off turns it on, with the defaults for the rest.
    pub fn apply(&self, settings: &Settings) -> Result<Settings, String> {
        let Value::Object(mut all) = serde_json::to_value(settings).map_err(|e| e.to_string())?
        else {
            unreachable!("check settings serialise as a map");
        };
        match &self.field {
            None => {
                all.insert(self.check.clone(), self.value.clone());
            }
            Some(field) => {
                let entry = all
                    .entry(self.check.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(fields) = entry {
                    fields.insert(field.clone(), self.value.clone());
                }
            }
        }
        serde_json::from_value(Value::Object(all)).map_err(|e| {
            let what = match &self.field {
                Some(f) => format!("{}.{f}", self.check),
                None => self.check.clone(),
            };
            format!("not a value for {what}: {e}")
        })
    }
}

/// Every override in order, on `settings`.
pub fn apply_all(overrides: &[Override], settings: &Settings) -> Result<Settings, String> {
    overrides.iter().try_fold(settings.clone(), |s, o| {
        o.apply(&s).map_err(|e| format!("--set {o}: {e}"))
    })
}

/// The names of a check's settings.
fn fields_of(check: &str) -> Vec<String> {
    let on: Settings =
        serde_json::from_value(serde_json::json!({ check: {} })).expect("every check has defaults");
    match serde_json::to_value(on) {
        Ok(Value::Object(all)) => match all.get(check) {
            Some(Value::Object(fields)) => fields.keys().cloned().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::checks::Toggle;
    use std::time::Duration;

    fn set(text: &str) -> Result<Override, String> {
        text.parse()
    }

    fn matrix(yaml: &str) -> Settings {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_field_changes_that_setting_alone() {
        let base = matrix("{delivery: {deadline: 5s, gap: 2s}, streams: off}");
        let s = set("delivery.deadline=2s").unwrap().apply(&base).unwrap();
        assert_eq!(
            s,
            matrix("{delivery: {deadline: 2s, gap: 2s}, streams: off}")
        );
        // A check the matrix did not name gets its defaults for the rest.
        let s = set("connections.max_per_pair=2")
            .unwrap()
            .apply(&base)
            .unwrap();
        assert_eq!(
            s.connections,
            matrix("{connections: {max_per_pair: 2}}").connections
        );
        // A check that was off is on again with that setting.
        let s = set("streams.max_per_connection=300")
            .unwrap()
            .apply(&base)
            .unwrap();
        assert_eq!(
            s.streams,
            matrix("{streams: {max_per_connection: 300}}").streams
        );
        assert!(s.is_on("streams"));
    }

    #[test]
    fn values_are_read_as_the_matrix_reads_them() {
        let s = set("delivery.deadline=1ms")
            .unwrap()
            .apply(&Settings::default())
            .unwrap();
        match s.delivery {
            Some(Toggle::On(d)) => assert_eq!(d.deadline, Duration::from_millis(1)),
            other => panic!("{other:?}"),
        }
        for off in ["streams=off", "streams=false"] {
            let s = set(off).unwrap().apply(&Settings::default()).unwrap();
            assert_eq!(s.streams, Some(Toggle::Off), "{off}");
        }
        let s = set("streams=on")
            .unwrap()
            .apply(&matrix("{streams: off}"))
            .unwrap();
        assert!(s.is_on("streams"));
        let s = set("no-protocol-downgrade.protocols=[\"/meshsub/1.1.0\", \"/ipfs/id/*\"]")
            .unwrap()
            .apply(&Settings::default())
            .unwrap();
        assert_eq!(
            s.no_protocol_downgrade,
            matrix("{no-protocol-downgrade: {protocols: [/meshsub/1.1.0, /ipfs/id/*]}}")
                .no_protocol_downgrade
        );
        let all = [
            set("delivery.gap=3s").unwrap(),
            set("delivery.deadline=1s").unwrap(),
        ];
        let s = apply_all(&all, &Settings::default()).unwrap();
        assert_eq!(
            s.delivery,
            matrix("{delivery: {deadline: 1s, gap: 3s}}").delivery
        );
    }

    #[test]
    fn mistakes_name_what_was_expected() {
        let e = set("delivery.deadline").unwrap_err();
        assert!(e.contains("expected CHECK.FIELD=VALUE"), "{e}");
        let e = set("delivry.deadline=2s").unwrap_err();
        assert!(e.contains("no check `delivry`, expected one of: connectivity, no-protocol-downgrade, delivery"), "{e}");
        let e = set("delivery.deadlin=2s").unwrap_err();
        assert!(
            e.contains("`delivery` has no setting `deadlin`, expected one of: deadline, gap"),
            "{e}"
        );
        let e = set("commands.x=1").unwrap_err();
        assert!(
            e.contains("`commands` has no settings: expected commands=off or commands=on"),
            "{e}"
        );
        let e = set("delivery.deadline=soon").unwrap_err();
        assert!(
            e.starts_with("not a value for delivery.deadline: ")
                && e.contains("expected a duration"),
            "{e}"
        );
        let e = set("streams.max_per_connection=0.5").unwrap_err();
        assert!(
            e.contains("not a value for streams.max_per_connection"),
            "{e}"
        );
        let e = set("delivery.deadline=[2s").unwrap_err();
        assert!(
            e.starts_with("the value is not YAML: ") && !e.contains('\n'),
            "{e}"
        );
        let e = set("streams=sometimes").unwrap_err();
        assert!(
            e.contains("not a value for streams: ") && e.contains("or `off`"),
            "{e}"
        );
    }
}
