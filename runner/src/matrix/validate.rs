//! The checks serde cannot make: names that must refer to something (implementations, peers, topics, checks,
//! axes), counts that must make sense, and a matrix that leaves at least one case. Each error names the file,
//! and the line and column of the entry at fault.

use std::path::Path;

use serde_saphyr::Spanned;

use super::{
    check_version, peer_names, Language, Matrix, MatrixError, Rule, Topology, GO_PINNABLE,
    RULE_AXES,
};

impl Matrix {
    pub(super) fn validate(&self, path: &Path) -> Result<(), MatrixError> {
        let err = |loc: &serde_saphyr::Location, message: String| MatrixError {
            file: path.to_owned(),
            location: Some((loc.line(), loc.column())),
            message,
        };
        if self.implementations.is_empty() {
            return Err(MatrixError {
                file: path.into(),
                location: None,
                message: "`implementations` is empty: expected at least one".into(),
            });
        }
        let mut names = Vec::new();
        for imp in &self.implementations {
            if names.contains(&imp.value.name.as_str()) {
                return Err(err(
                    &imp.referenced,
                    format!("implementation `{}` is defined twice", imp.value.name),
                ));
            }
            names.push(imp.value.name.as_str());
            let is_image = imp.value.language == Language::Image;
            if is_image != imp.value.image.is_some() {
                let m = if is_image {
                    "`language: image` needs `image`, the name of a local image"
                } else {
                    "`image` goes with `language: image` only"
                };
                return Err(err(
                    &imp.referenced,
                    format!("implementation `{}`: {m}", imp.value.name),
                ));
            }
            if !is_image && !imp.value.probe {
                return Err(err(
                    &imp.referenced,
                    format!(
                        "implementation `{}`: `probe` goes with `language: image` only (only images are probed)",
                        imp.value.name
                    ),
                ));
            }
            if is_image && (imp.value.path.is_some() || !imp.value.pins.is_empty()) {
                return Err(err(
                    &imp.referenced,
                    format!(
                        "implementation `{}`: an image is prebuilt: `path` and `pins` do not apply",
                        imp.value.name
                    ),
                ));
            }
            if let Some(p) = &imp.value.path {
                if !p.is_dir() {
                    return Err(err(&imp.referenced, format!("implementation `{}`: path {} is not a directory, expected a local checkout", imp.value.name, p.display())));
                }
            }
            for (name, version) in &imp.value.pins {
                let known = match imp.value.language {
                    Language::Image => false,
                    Language::Go => GO_PINNABLE.contains(&name.as_str()),
                    Language::Rust => {
                        name.starts_with("libp2p")
                            && name
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    }
                };
                if !known {
                    let expected = match imp.value.language {
                        Language::Image => "nothing".to_owned(),
                        Language::Go => "go-libp2p-pubsub or go-yamux".to_owned(),
                        Language::Rust => {
                            "a libp2p crate name (libp2p-gossipsub, libp2p-yamux, ...)".to_owned()
                        }
                    };
                    return Err(err(
                        &imp.referenced,
                        format!(
                            "implementation `{}` pins `{name}`, expected {expected}",
                            imp.value.name
                        ),
                    ));
                }
                let axis = imp.value.language == Language::Go && name == super::resolve::PUBSUB_PIN;
                let super::Axis(values) = version;
                if !axis && (values.len() > 1 || values[0].exact().is_none()) {
                    return Err(err(&imp.referenced, format!("implementation `{}` pins `{name}` to more than one exact version: only go-libp2p-pubsub may be an axis, `latest` or `{{newest: N}}`", imp.value.name)));
                }
                for version in values.iter().filter_map(|v| v.exact()) {
                    if version.is_empty() || version.contains(char::is_whitespace) {
                        return Err(err(&imp.referenced, format!("implementation `{}` pins `{name}` to `{version}`, expected an exact version", imp.value.name)));
                    }
                }
            }
            if let Some(offer) = &imp.value.offer {
                let dup = |l: &[String]| l.iter().enumerate().any(|(i, x)| l[..i].contains(x));
                let sec: Vec<String> = offer.security.iter().flatten().map(super::label).collect();
                let mux: Vec<String> = offer.muxer.iter().flatten().map(super::label).collect();
                if offer.security.as_ref().is_some_and(|l| l.is_empty())
                    || offer.muxer.as_ref().is_some_and(|l| l.is_empty())
                    || dup(&sec)
                    || dup(&mux)
                {
                    return Err(err(
                        &imp.referenced,
                        format!("implementation `{}`: `offer` lists must be non-empty and name each protocol once", imp.value.name),
                    ));
                }
            }
            for v in imp.value.versions().into_iter().flatten() {
                check_version(imp.value.language, &v).map_err(|m| {
                    err(
                        &imp.referenced,
                        format!("implementation `{}`: {m}", imp.value.name),
                    )
                })?;
            }
        }
        if self.networks.is_empty() {
            return Err(MatrixError {
                file: path.into(),
                location: None,
                message: "`networks` is empty: expected at least one network".into(),
            });
        }
        for net in &self.networks {
            let n = &net.value;
            let mut total = 0;
            for (imp, count) in &n.peers.value {
                if !names.contains(&imp.as_str()) {
                    return Err(err(
                        &n.peers.referenced,
                        format!(
                            "network `{}` uses implementation `{imp}`, expected one of: {}",
                            n.name,
                            names.join(", ")
                        ),
                    ));
                }
                total += count;
            }
            if total < 2 {
                return Err(err(
                    &n.peers.referenced,
                    format!(
                        "network `{}` has {total} peer(s), expected at least 2",
                        n.name
                    ),
                ));
            }
            if n.gossipsub.topics.is_empty() {
                return Err(err(
                    &net.referenced,
                    format!(
                        "network `{}`: `gossipsub.topics` is empty, expected at least one topic",
                        n.name
                    ),
                ));
            }
            let peer_names = peer_names(n);
            match &n.topology {
                Topology::Edges(edges) => {
                    for (a, b) in edges {
                        for p in [a, b] {
                            if !peer_names.contains(p) {
                                return Err(err(
                                    &net.referenced,
                                    format!(
                                        "network `{}`: edge names peer `{p}`, expected one of: {}",
                                        n.name,
                                        peer_names.join(", ")
                                    ),
                                ));
                            }
                        }
                        if a == b {
                            return Err(err(
                                &net.referenced,
                                format!("network `{}`: edge from `{a}` to itself", n.name),
                            ));
                        }
                    }
                }
                Topology::Random { degree, .. } if *degree == 0 || *degree >= peer_names.len() => {
                    return Err(err(
                        &net.referenced,
                        format!(
                            "network `{}`: random degree {degree}, expected 1 to {}",
                            n.name,
                            peer_names.len() - 1
                        ),
                    ));
                }
                _ => {}
            }
            for p in n.publish.value.publishers.iter().flatten() {
                if !peer_names.contains(p) {
                    return Err(err(
                        &net.referenced,
                        format!(
                            "network `{}`: publisher `{p}` is not a peer, expected one of: {}",
                            n.name,
                            peer_names.join(", ")
                        ),
                    ));
                }
            }
            // `roles:` keys name an implementation of the network or one of its peers.
            let implementations: Vec<&String> = n.peers.value.keys().collect();
            for (key, roles) in &n.roles {
                if !implementations.contains(&key) && !peer_names.contains(key) {
                    return Err(err(
                        &roles.referenced,
                        format!(
                            "network `{}`: `roles` names `{key}`, expected an implementation of the network ({}) or one of its peers ({})",
                            n.name,
                            implementations.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                            peer_names.join(", ")
                        ),
                    ));
                }
            }
            let mut private: Vec<&String> = Vec::new();
            for p in &n.private.value {
                if !peer_names.contains(p) {
                    return Err(err(
                        &n.private.referenced,
                        format!("network `{}`: private peer `{p}` is not a peer, expected one of: {}", n.name, peer_names.join(", ")),
                    ));
                }
                if private.contains(&p) {
                    return Err(err(&n.private.referenced, format!("network `{}`: `{p}` is listed twice in `private`", n.name)));
                }
                private.push(p);
            }
            let roles = super::roles::resolved(n);
            // Incidents are time line steps written the older way: one set of rules for both.
            let mut named: Vec<String> = Vec::new();
            let steps = n
                .incidents
                .iter()
                .map(|i| (i.value.as_step(), &i.referenced, "incident"))
                .chain(n.timeline.iter().map(|s| (s.value.clone(), &s.referenced, "time line step")));
            for (step, at, what) in steps {
                step.check(&peer_names, &n.gossipsub.topics, &named)
                    .and_then(|()| step.check_roles(&roles))
                    .map_err(|m| err(at, format!("{what}: {m}")))?;
                named.extend(step.name);
            }
        }
        // A pinned go-libp2p-pubsub is an axis too: `<implementation>.go-libp2p-pubsub`.
        let pin_axes: Vec<String> = self
            .implementations
            .iter()
            .filter(|i| i.value.pins.contains_key(super::resolve::PUBSUB_PIN))
            .map(|i| format!("{}.{}", i.value.name, super::resolve::PUBSUB_PIN))
            .collect();
        let axes: Vec<&str> = RULE_AXES
            .iter()
            .copied()
            .chain(names.iter().copied())
            .chain(pin_axes.iter().map(String::as_str))
            .collect();
        let check_rule = |rule: &Spanned<Rule>, what: &str| match rule
            .value
            .keys()
            .find(|k| !axes.contains(&k.as_str()))
        {
            Some(k) => Err(err(
                &rule.referenced,
                format!(
                    "{what} names axis `{k}`, expected one of: {}",
                    axes.join(", ")
                ),
            )),
            None => Ok(()),
        };
        for rule in self.include.iter().chain(&self.exclude) {
            check_rule(rule, "rule")?;
        }
        let check_names = super::checks::Settings::NAMES;
        for k in &self.known_issues {
            if !check_names.contains(&k.value.check.as_str()) {
                return Err(err(
                    &k.referenced,
                    format!(
                        "known issue {} names check `{}`, expected one of: {}",
                        k.value.reference,
                        k.value.check,
                        check_names.join(", ")
                    ),
                ));
            }
            for cause in &k.value.follows {
                let named = self
                    .known_issues
                    .iter()
                    .any(|c| &c.value.check == cause && c.value.follows.is_empty());
                if !named {
                    return Err(err(
                        &k.referenced,
                        format!(
                            "known issue {} follows check `{cause}`, expected a check that a known issue of its own \
                             (without `follows`) names",
                            k.value.reference
                        ),
                    ));
                }
            }
            if let Some(cases) = &k.value.cases {
                if let Some(key) = cases.keys().find(|key| !axes.contains(&key.as_str())) {
                    return Err(err(
                        &k.referenced,
                        format!(
                            "known issue {} names axis `{key}`, expected one of: {}",
                            k.value.reference,
                            axes.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::matrix::tests::{parse, GOOD};

    #[test]
    fn unknown_implementation_names_the_peers_line() {
        let e = parse(&GOOD.replace("{rust: 1, go: 1}", "{rust: 1, java: 1}")).unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(7), "{e}");
        assert!(
            e.to_string().contains("`java`, expected one of: rust, go"),
            "{e}"
        );
    }

    #[test]
    fn too_few_peers_and_bad_incident_targets() {
        let e = parse(&GOOD.replace("{rust: 1, go: 1}", "{rust: 1}")).unwrap_err();
        assert!(e.to_string().contains("expected at least 2"), "{e}");
        let e = parse(&format!(
            "{GOOD}    incidents:\n      - {{at: 1s, peer: go-7, action: {{unsubscribe: meshgate}}}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.location.map(|l| l.0), Some(9), "{e}");
        assert!(e.to_string().contains("go-7"), "{e}");
    }

    /// Every file in tests/matrices/bad/ says on its first line the error it must get: `# expect: L:C: text`.
    #[test]
    fn bad_matrix_files_get_their_expected_errors() {
        let dir = crate::images::project_root().join("runner/tests/matrices/bad");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .expect("an expect line");
            // The whole load, expansion included (`cases::load`): some mistakes show only there.
            let err = crate::cases::load(&path)
                .map(|_| ())
                .expect_err(&path.display().to_string())
                .to_string();
            let want = format!("{}:{expect}", path.display());
            assert!(err.starts_with(&want), "\n got: {err}\nwant: {want}");
            seen += 1;
        }
        assert!(seen >= 10, "only {seen} bad matrices");
    }

    #[test]
    fn image_implementations_need_an_image_and_nothing_to_build() {
        let with = |imp: &str| GOOD.replace("{name: go, language: go}", imp);
        let m = parse(&with("{name: go, language: image, image: \"my-peer:dev\"}")).unwrap();
        assert_eq!(
            m.implementation("go").unwrap().image.as_deref(),
            Some("my-peer:dev")
        );
        let e = parse(&with("{name: go, language: image}")).unwrap_err();
        assert!(
            e.to_string().contains("`language: image` needs `image`"),
            "{e}"
        );
        let e = parse(&with("{name: go, language: go, image: x}")).unwrap_err();
        assert!(
            e.to_string()
                .contains("`image` goes with `language: image` only"),
            "{e}"
        );
        let e = parse(&with(
            "{name: go, language: image, image: x, version: v0.41.1}",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("has no version"), "{e}");
        assert!(
            m.implementation("go").unwrap().probe,
            "images are probed unless told"
        );
        let m = parse(&with("{name: go, language: image, image: x, probe: false}")).unwrap();
        assert!(!m.implementation("go").unwrap().probe);
        let e = parse(&with("{name: go, language: go, probe: false}")).unwrap_err();
        assert!(
            e.to_string()
                .contains("`probe` goes with `language: image` only"),
            "{e}"
        );
    }
}
