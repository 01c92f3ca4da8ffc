//! The modules stand where the layout says: plain data at the bottom, then the pipeline's stages, each importing
//! only what comes before it, then the commands that string them together. Read from the `crate::` paths of every
//! source file (test code left out), so a new upward import, and with it any cycle, fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// Every top-level module of the library, bottom first. A module may use only modules listed before it.
const LAYERS: &[&str] = &[
    // Plain data and small utilities (the peer contract's types come from the `contract` crate, below them all).
    "progress",
    "priority",
    "events",
    "timeline",
    "cache",
    // What the registries hold (network, cached): below the matrix, whose `latest` it resolves.
    "releases",
    "results",
    // The pipeline: matrix -> cases -> backend -> peers -> events -> checks -> results -> reports.
    "matrix",
    "cases",
    "scenario",
    "stored",
    "images",
    "backend",
    "peers",
    "checks",
    "judge",
    "reports",
    // Commands over the stages.
    "probe",
    "rejudge",
    "issue",
    "run",
    "bisect",
    "bench",
    "doctor",
];

/// `crate::x` paths of non-test code, as (importing module, imported module, file).
fn imports(files: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for (path, text) in files {
        let file = path.rsplit('/').next().unwrap_or(path);
        if file == "tests.rs" || file == "testkit.rs" {
            continue;
        }
        let module = path.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        // Test modules sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("\n#[cfg(test)]").next().unwrap_or(text);
        for (i, _) in code.match_indices("crate::") {
            let used: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !used.is_empty() && used != module {
                found.push((module.clone(), used, path.clone()));
            }
        }
    }
    found
}

fn violations(files: &[(String, String)], layers: &[&str]) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|l| *l == m);
    let mut bad = BTreeSet::new();
    for (module, used, file) in imports(files) {
        match (rank(&module), rank(&used)) {
            (Some(a), Some(b)) if b < a => {}
            (Some(_), Some(_)) => {
                bad.insert(format!("{file}: `{module}` uses `{used}`, which stands above it"));
            }
            (None, _) => {
                bad.insert(format!("{file}: module `{module}` is not in LAYERS"));
            }
            (_, None) => {
                bad.insert(format!("{file}: `{used}` is not in LAYERS"));
            }
        }
    }
    bad.into_iter().collect()
}

fn sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn each_module_uses_only_those_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let files: Vec<_> = files.into_iter().filter(|(p, _)| p != "lib.rs" && p != "main.rs").collect();
    let bad = violations(&files, LAYERS);
    assert!(bad.is_empty(), "modules out of place:\n{}", bad.join("\n"));

    // Every module of the library is placed.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert_eq!(declared, LAYERS.iter().copied().collect::<BTreeSet<_>>());
}

#[test]
fn an_upward_import_is_caught() {
    let files = vec![
        ("matrix/mod.rs".to_owned(), "use crate::checks::Settings;\n".to_owned()),
        ("checks/mod.rs".to_owned(), "use crate::matrix::Matrix;\n#[cfg(test)]\nuse crate::run;\n".to_owned()),
    ];
    assert_eq!(
        violations(&files, &["matrix", "checks", "run"]),
        ["matrix/mod.rs: `matrix` uses `checks`, which stands above it"]
    );
}
