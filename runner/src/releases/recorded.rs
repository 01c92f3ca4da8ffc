//! Registry answers as crates.io and proxy.golang.org gave them (trimmed), served from a cache directory as fresh
//! answers: resolution tested without the network.

use super::Registries;

/// go-libp2p's `@v/list` (the tail; the proxy lists in no order) and its newest go.mod's retractions.
pub const GO_LIBP2P_LIST: &str = "v0.36.0\nv0.38.2\nv0.41.1\nv0.45.0\nv0.48.0\nv0.49.0\nv0.50.0\nv0.51.0\nv0.52.0\nv0.36.1\nv0.52.0-rc1\n";
pub const GO_LIBP2P_MOD: &str = "module github.com/libp2p/go-libp2p\n\ngo 1.25.0\n\nretract v0.26.1 // Tag was applied incorrectly due to a bug in the release workflow.\n\nretract v0.36.0 // Accidentally modified the tag.\n";
pub const PUBSUB_LIST: &str = "v0.15.0\nv0.17.0\nv0.18.0\nv0.19.0\n";
pub const PUBSUB_MODS: &[(&str, &str)] = &[
    ("v0.17.0", "module github.com/libp2p/go-libp2p-pubsub\n\ngo 1.25\n\nrequire (\n\tgithub.com/libp2p/go-libp2p v0.47.0\n)\n"),
    ("v0.19.0", "module github.com/libp2p/go-libp2p-pubsub\n\ngo 1.26.6\n\nrequire (\n\tgithub.com/libp2p/go-libp2p v0.51.0\n)\n"),
];

/// A cache holding the recorded answers, fresh, and registries whose addresses they are the answers of.
pub fn registries() -> (tempfile::TempDir, Registries) {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registries {
        crates_index: "https://index.crates.io".into(),
        goproxy: "https://proxy.golang.org".into(),
        cache: dir.path().to_owned(),
    };
    let go = "https://proxy.golang.org/github.com/libp2p";
    let mut files = vec![
        ("crates/libp2p".to_owned(), "https://index.crates.io/li/bp/libp2p".to_owned(), super::crates::tests::LIBP2P),
        ("crates/libp2p-stream".to_owned(), "https://index.crates.io/li/bp/libp2p-stream".to_owned(), super::crates::tests::STREAM),
        ("go/github.com/libp2p/go-libp2p@list".to_owned(), format!("{go}/go-libp2p/@v/list"), GO_LIBP2P_LIST),
        ("go/github.com/libp2p/go-libp2p@v0.52.0.mod".to_owned(), format!("{go}/go-libp2p/@v/v0.52.0.mod"), GO_LIBP2P_MOD),
        ("go/github.com/libp2p/go-libp2p-pubsub@list".to_owned(), format!("{go}/go-libp2p-pubsub/@v/list"), PUBSUB_LIST),
    ];
    for (v, text) in PUBSUB_MODS {
        files.push((format!("go/github.com/libp2p/go-libp2p-pubsub@{v}.mod"), format!("{go}/go-libp2p-pubsub/@v/{v}.mod"), text));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for (key, url, text) in files {
        let stored = serde_json::json!({"source": url, "fetched_at": now, "text": text});
        std::fs::write(dir.path().join(format!("{}.json", key.replace('/', "%"))), stored.to_string()).unwrap();
    }
    (dir, reg)
}
