//! The checked-in JSON Schemas are exactly what the contract types generate, the way cargo-nextest keeps its
//! schemas honest: a change to a type that is not carried into docs/contract/ fails here.

use std::path::PathBuf;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/contract")
}

#[test]
fn checked_in_schemas_are_the_generated_ones() {
    let bless = std::env::var_os("MESHGATE_BLESS").is_some();
    for (name, schema) in contract::schema::all() {
        let path = docs().join(name);
        let generated = contract::schema::render(&schema);
        if bless {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let checked_in = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            checked_in == generated,
            "docs/contract/{name} is not what the contract types generate: run \
             `MESHGATE_BLESS=1 cargo test -p meshgate-contract --test schema` and review the diff"
        );
    }
}
