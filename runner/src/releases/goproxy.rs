//! The Go module proxy protocol (`GOPROXY`): `<module>/@v/list` lists a module's versions, `<module>/@v/<v>.mod`
//! is a version's go.mod (its requirements, and the retractions of earlier versions).

use semver::Version;

/// A module path as the proxy spells it: each capital letter as `!` and its lower case.
pub fn escape(module: &str) -> String {
    let mut out = String::with_capacity(module.len());
    for c in module.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `v0.52.0` as a semantic version; `None` for what is not one (a pseudo-version is, but the list has none).
pub fn parse_version(v: &str) -> Option<Version> {
    Version::parse(v.trim().strip_prefix('v')?).ok()
}

/// The versions of an `@v/list` answer, one a line.
pub fn parse_list(text: &str) -> Vec<Version> {
    text.lines().filter_map(parse_version).collect()
}

/// The version of `module` that a go.mod requires (`require M v` alone or in a block).
pub fn requirement(gomod: &str, module: &str) -> Option<String> {
    let mut in_block = false;
    for line in gomod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["require", "("] => in_block = true,
            [")"] => in_block = false,
            ["require", m, v] if *m == module => return Some((*v).to_owned()),
            [m, v] if in_block && *m == module => return Some((*v).to_owned()),
            _ => {}
        }
    }
    None
}

/// Whether a go.mod retracts `version` (`retract v1.0.0`, `retract [v1.0.0, v1.0.5]`, alone or in a block).
/// Retractions live in the go.mod of later versions: the newest release's is what counts.
pub fn retracts(gomod: &str, version: &Version) -> bool {
    let mut in_block = false;
    for raw in gomod.lines() {
        let line = raw.split("//").next().unwrap_or_default().trim();
        let spec = if let Some(rest) = line.strip_prefix("retract") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            rest
        } else if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else {
            continue;
        };
        let hit = match spec.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(range) => {
                let mut ends = range.split(',').map(parse_version);
                match (ends.next().flatten(), ends.next().flatten()) {
                    (Some(lo), Some(hi)) => lo <= *version && *version <= hi,
                    _ => false,
                }
            }
            None => parse_version(spec).as_ref() == Some(version),
        };
        if hit {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_escape_capitals() {
        assert_eq!(escape("github.com/libp2p/go-libp2p"), "github.com/libp2p/go-libp2p");
        assert_eq!(escape("github.com/BurntSushi/toml"), "github.com/!burnt!sushi/toml");
    }

    /// The head of go-libp2p-pubsub v0.19.0's go.mod and go-libp2p v0.52.0's retractions, as the proxy served them.
    const PUBSUB: &str = "module github.com/libp2p/go-libp2p-pubsub\n\ngo 1.26.6\n\nrequire (\n\tgithub.com/benbjohnson/clock v1.3.5\n\tgithub.com/libp2p/go-libp2p v0.51.0 // a comment\n)\n";
    const LIBP2P: &str = "module github.com/libp2p/go-libp2p\n\ngo 1.25.0\n\nretract v0.26.1 // Tag was applied incorrectly due to a bug in the release workflow.\n\nretract v0.36.0 // Accidentally modified the tag.\n\nretract (\n\t[v0.9.0, v0.9.2]\n\tv0.7.1\n)\nrequire github.com/x/y v1.0.0\n";

    #[test]
    fn requirements_and_retractions_are_read_from_go_mod() {
        assert_eq!(requirement(PUBSUB, "github.com/libp2p/go-libp2p").as_deref(), Some("v0.51.0"));
        assert_eq!(requirement(LIBP2P, "github.com/x/y").as_deref(), Some("v1.0.0"));
        assert_eq!(requirement(PUBSUB, "github.com/libp2p/go-yamux/v5"), None);
        let v = |s| parse_version(s).unwrap();
        for yes in ["v0.26.1", "v0.36.0", "v0.9.1", "v0.7.1"] {
            assert!(retracts(LIBP2P, &v(yes)), "{yes}");
        }
        for no in ["v0.36.1", "v0.52.0", "v0.9.3"] {
            assert!(!retracts(LIBP2P, &v(no)), "{no}");
        }
        assert_eq!(parse_list("v0.51.0\nv0.52.0-rc1\nv0.52.0\n").len(), 3);
    }
}
