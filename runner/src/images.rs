//! How an implementation becomes a runnable peer binary, and the content hash that names it.
//!
//! Each language has a recipe under `images/<language>/`: `build` (builds a static binary; `--fingerprint`
//! prints the toolchain), `inputs` (source paths that decide the binary) and `Dockerfile`. The hash covers all of
//! them, so an unchanged peer is never rebuilt: not the binary, not the image.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};

use crate::cases::BuildSpec;
use crate::matrix::Language;

// The build scripts' variables (images/*/build), named here and nowhere else in the runner.
/// The version to build (unset: the version in the tree).
const VERSION_ENV: &str = "MESHGATE_VERSION";
/// A local rust-libp2p checkout, and `crate@version` pins.
const RUST_PATH_ENV: &str = "MESHGATE_RUST_PATH";
const RUST_PINS_ENV: &str = "MESHGATE_RUST_PINS";
/// The libp2p-stream release that goes with the libp2p version, derived from the registry (`BuildSpec::companions`).
const RUST_STREAM_ENV: &str = "MESHGATE_RUST_STREAM";
/// A local go-libp2p checkout, and the version of each pinnable sub-library (`matrix::GO_PINNABLE`).
const GO_PATH_ENV: &str = "MESHGATE_GO_PATH";
const GO_PIN_ENV: &[(&str, &str)] = &[
    ("go-libp2p-pubsub", "MESHGATE_GO_PUBSUB"),
    ("go-yamux", "MESHGATE_GO_YAMUX"),
];

/// Every variable the build scripts read besides the cache, cleared before each build so that the caller's
/// environment cannot change what is built.
fn build_vars() -> impl Iterator<Item = &'static str> {
    [VERSION_ENV, RUST_PATH_ENV, RUST_PINS_ENV, RUST_STREAM_ENV, GO_PATH_ENV]
        .into_iter()
        .chain(GO_PIN_ENV.iter().map(|(_, var)| *var))
}

/// The build script's variables for a build besides the version: the local checkout and the pins.
pub fn build_env(spec: &BuildSpec) -> std::collections::BTreeMap<String, String> {
    let mut env = std::collections::BTreeMap::new();
    let path = spec.path.as_ref().map(|p| p.display().to_string());
    match spec.language {
        Language::Rust => {
            if let Some(p) = path {
                env.insert(RUST_PATH_ENV.to_owned(), p);
            }
            if !spec.pins.is_empty() {
                let pins: Vec<String> = spec.pins.iter().map(|(c, v)| format!("{c}@{v}")).collect();
                env.insert(RUST_PINS_ENV.to_owned(), pins.join(" "));
            }
            if let Some(stream) = spec.companions.get(crate::matrix::resolve::STREAM_CRATE) {
                env.insert(RUST_STREAM_ENV.to_owned(), stream.clone());
            }
        }
        Language::Go => {
            if let Some(p) = path {
                env.insert(GO_PATH_ENV.to_owned(), p);
            }
            for (name, var) in GO_PIN_ENV {
                if let Some(v) = spec.pins.get(*name) {
                    env.insert((*var).to_owned(), v.clone());
                }
            }
        }
        Language::Image => {}
    }
    env
}

/// Where the project lives: `MESHGATE_ROOT`, else the checkout meshgate was built from.
pub fn project_root() -> PathBuf {
    match std::env::var_os("MESHGATE_ROOT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("runner/ has a parent")
            .to_owned(),
    }
}

pub use crate::cache::cache_dir;

/// The recipe of every build a run's cases need.
pub type Recipes = std::collections::BTreeMap<BuildSpec, Recipe>;

/// A peer implementation's recipe, identified by the hash of everything that goes into it.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub language: Language,
    pub version: Option<String>,
    /// Variables for the build script: local checkout, pinned sub-libraries.
    pub env: std::collections::BTreeMap<String, String>,
    pub dir: PathBuf,
    /// Hex SHA-256 of the recipe, its inputs and the toolchain fingerprint.
    pub hash: String,
    /// A prebuilt image (`language: image`): run as it is, never built.
    pub image: Option<String>,
    /// A participant of cases that is not a peer (`upnp-gateway`): its recipe is `images/<name>/`.
    pub participant: Option<&'static str>,
}

/// The UPnP gateway emulator, a participant of the cases that have a `gateway:` (images/upnp-gateway/).
pub const GATEWAY: &str = "upnp-gateway";

/// The gateway's recipe, loaded (hashed) once per process: every case with a gateway runs the same image.
pub fn gateway_recipe() -> Result<Recipe, String> {
    static RECIPE: std::sync::OnceLock<Result<Recipe, String>> = std::sync::OnceLock::new();
    RECIPE
        .get_or_init(|| Recipe::participant(&project_root(), GATEWAY).map_err(|e| format!("{e:#}")))
        .clone()
}

impl Recipe {
    pub fn name(&self) -> &'static str {
        if let Some(p) = self.participant {
            return p;
        }
        match self.language {
            Language::Rust => "rust",
            Language::Go => "go",
            Language::Image => "image",
        }
    }

    /// `rust`, or `rust 0.56` for a version other than the tree's.
    pub fn label(&self) -> String {
        if let Some(image) = &self.image {
            return format!("image {image}");
        }
        match &self.version {
            Some(v) => format!("{} {v}", self.name()),
            None => self.name().to_owned(),
        }
    }

    /// `the rust 0.56 peer`, `the upnp-gateway`: for progress lines and errors.
    pub fn what(&self) -> String {
        match self.participant {
            Some(p) => p.to_owned(),
            None => format!("{} peer", self.label()),
        }
    }

    fn build_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(self.dir.join("build"));
        // The fingerprint may depend on what the cache holds (a kept lock file): always the same cache.
        c.env("MESHGATE_CACHE", cache_dir());
        // Only what the recipe says reaches the script: a variable left in the caller's environment would build
        // something other than what the hash names.
        for var in build_vars() {
            c.env_remove(var);
        }
        if let Some(v) = &self.version {
            c.env(VERSION_ENV, v);
        }
        c.envs(&self.env);
        c
    }

    /// Image tag: `meshgate-peer-rust:<first 16 hex digits of the hash>`.
    pub fn image_tag(&self) -> String {
        match &self.image {
            Some(image) => image.clone(),
            None if self.participant.is_some() => format!("meshgate-{}:{}", self.name(), &self.hash[..16]),
            None => format!("meshgate-peer-{}:{}", self.name(), &self.hash[..16]),
        }
    }

    pub fn dockerfile(&self) -> PathBuf {
        self.dir.join("Dockerfile")
    }

    /// Finds and hashes the recipe for a build. Cheap: reads sources and asks the toolchain its version.
    pub fn load(root: &Path, spec: &BuildSpec) -> anyhow::Result<Self> {
        let language = spec.language;
        if let Some(image) = &spec.image {
            // Prebuilt: named by itself, nothing to build or hash.
            return Ok(Recipe {
                language,
                version: None,
                env: Default::default(),
                dir: PathBuf::new(),
                hash: String::new(),
                image: Some(image.clone()),
                participant: None,
            });
        }
        let name = match language {
            Language::Rust => "rust",
            Language::Go => "go",
            Language::Image => anyhow::bail!("an image implementation names no image"),
        };
        let recipe = Recipe {
            language,
            version: spec.version.clone(),
            env: build_env(spec),
            dir: root.join("images").join(name),
            hash: String::new(),
            image: None,
            participant: None,
        };
        recipe.hashed(root)
    }

    /// The recipe of a participant that is not a peer (`images/<name>/`, a static Rust binary like the rust
    /// peer's), hashed like the peers'.
    pub fn participant(root: &Path, name: &'static str) -> anyhow::Result<Self> {
        Recipe {
            language: Language::Rust,
            version: None,
            env: Default::default(),
            dir: root.join("images").join(name),
            hash: String::new(),
            image: None,
            participant: Some(name),
        }
        .hashed(root)
    }

    /// The recipe with its hash: of the toolchain fingerprint, the version, the variables, the recipe's files and
    /// every input it names.
    fn hashed(self, root: &Path) -> anyhow::Result<Self> {
        let recipe = self;
        let (dir, name) = (recipe.dir.clone(), recipe.name());
        let spec_version = recipe.version.clone();
        let fingerprint = recipe
            .build_command()
            .arg("--fingerprint")
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {}", dir.join("build").display()))?;
        if !fingerprint.status.success() {
            bail!(
                "{} --fingerprint failed: is the {name} toolchain installed?",
                dir.join("build").display()
            );
        }
        let inputs = std::fs::read_to_string(dir.join("inputs"))
            .with_context(|| format!("cannot read {}", dir.join("inputs").display()))?;
        let mut hasher = Sha256::new();
        hasher.update(&fingerprint.stdout);
        hasher.update(spec_version.as_deref().unwrap_or("tree").as_bytes());
        // The fingerprint names the companions the script builds with (`libp2p-stream=`), whether derived or from
        // its own table: an image built before they were derived keeps its hash.
        for (k, v) in recipe.env.iter().filter(|(k, _)| *k != RUST_STREAM_ENV) {
            hasher.update(format!("\0{k}={v}").as_bytes());
        }
        for file in ["build", "inputs", "Dockerfile"] {
            hash_path(&mut hasher, &dir, &dir.join(file))?;
        }
        for input in inputs
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            hash_path(&mut hasher, root, &root.join(input))?;
        }
        let hash = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Recipe { hash, ..recipe })
    }

    /// The static binary, built once per hash and kept in the cache. Build output goes to `log`.
    pub async fn binary(&self, cache: &Path, log: &Path) -> anyhow::Result<PathBuf> {
        if let Some(image) = &self.image {
            anyhow::bail!("image `{image}` is not on the Docker engine (nothing is pulled: build or load it first), and only the Docker backend runs images");
        }
        let bin_dir = cache.join("bin");
        std::fs::create_dir_all(&bin_dir)?;
        let out = match self.participant {
            Some(p) => bin_dir.join(format!("{p}-{}", &self.hash[..16])),
            None => bin_dir.join(format!("{}-peer-{}", self.name(), &self.hash[..16])),
        };
        if out.exists() {
            return Ok(out);
        }
        // Another run may be building the same binary: each writes its own partial file, the rename is atomic.
        let partial = out.with_extension(format!("partial-{}", std::process::id()));
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        let status = tokio::process::Command::from(self.build_command())
            .arg(&partial)
            .env("MESHGATE_CACHE", cache)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .status()
            .await
            .with_context(|| format!("cannot run {}", self.dir.join("build").display()))?;
        if !status.success() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            bail!(
                "building the {} failed ({status}); last lines of {}:\n{}",
                self.what(),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::fs::rename(&partial, &out)?;
        Ok(out)
    }
}

/// Hashes a file, or a directory's files in sorted order, with their paths relative to `base`.
fn hash_path(hasher: &mut Sha256, base: &Path, path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("recipe input {} is missing", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            // Editor and VCS litter does not change a build.
            if name.to_string_lossy().starts_with('.') || name == "target" {
                continue;
            }
            hash_path(hasher, base, &e.path())?;
        }
    } else {
        let rel = path.strip_prefix(base).unwrap_or(path);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(path)?);
        hasher.update([0]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(dir: &Path) -> String {
        let mut h = Sha256::new();
        hash_path(&mut h, dir, dir).unwrap();
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hash_follows_content_and_names_but_not_litter() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("src")).unwrap();
        std::fs::write(d.path().join("src/main.rs"), "fn main() {}").unwrap();
        let a = digest(d.path());
        assert_eq!(a, digest(d.path()), "stable");
        std::fs::write(d.path().join(".main.rs.swp"), "junk").unwrap();
        std::fs::create_dir(d.path().join("target")).unwrap();
        std::fs::write(d.path().join("target/x"), "junk").unwrap();
        assert_eq!(a, digest(d.path()), "hidden files and target/ do not count");
        std::fs::write(d.path().join("src/main.rs"), "fn main() { }").unwrap();
        let b = digest(d.path());
        assert_ne!(a, b, "content counts");
        std::fs::rename(d.path().join("src/main.rs"), d.path().join("src/lib.rs")).unwrap();
        assert_ne!(b, digest(d.path()), "names count");
    }

    #[test]
    fn every_pinnable_go_library_has_its_variable() {
        for name in crate::matrix::GO_PINNABLE {
            assert!(GO_PIN_ENV.iter().any(|(n, _)| n == name), "{name}");
        }
        assert_eq!(GO_PIN_ENV.len(), crate::matrix::GO_PINNABLE.len());
    }

    #[test]
    fn recipes_of_this_project_hash_and_differ() {
        let root = project_root();
        let spec = |language, version: Option<&str>| BuildSpec {
            path: None,
            pins: Default::default(),
            image: None,
            companions: Default::default(),
            language,
            version: version.map(str::to_owned),
        };
        let rust = Recipe::load(&root, &spec(Language::Rust, None)).unwrap();
        let go = Recipe::load(&root, &spec(Language::Go, None)).unwrap();
        assert_eq!(rust.hash.len(), 64);
        assert_ne!(rust.hash, go.hash);
        assert_eq!(
            rust.hash,
            Recipe::load(&root, &spec(Language::Rust, None))
                .unwrap()
                .hash
        );
        let older = Recipe::load(&root, &spec(Language::Rust, Some("0.56"))).unwrap();
        assert_ne!(rust.hash, older.hash, "each version is its own image");
        assert_eq!(older.label(), "rust 0.56");
        assert!(rust.image_tag().starts_with("meshgate-peer-rust:"));
    }

    /// Runs `git` in `dir`, quietly, as a test fixture.
    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .current_dir(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// The edits that must change a local checkout's hash, and those that must not, for `hash` (the recipe
    /// hash of a checkout): an untracked file of a git checkout, any file of a checkout outside git; not an
    /// ignored file, nor anything under target/.
    fn a_checkout_is_hashed_by_content(manifest: &str, hash: impl Fn(&Path) -> String) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("in-git");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(repo.join(manifest), "tracked\n").unwrap();
        std::fs::write(repo.join(".gitignore"), "ignored.txt\n").unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-qm", "first"]);
        std::fs::write(repo.join("untracked.src"), "one").unwrap();
        let a = hash(&repo);
        assert_eq!(a, hash(&repo), "stable");
        std::fs::write(repo.join("untracked.src"), "two").unwrap();
        let b = hash(&repo);
        assert_ne!(a, b, "an edit of an untracked file rebuilds");
        std::fs::write(repo.join("ignored.txt"), "litter").unwrap();
        assert_eq!(b, hash(&repo), "ignored files do not count");
        std::fs::write(repo.join(manifest), "tracked, edited\n").unwrap();
        assert_ne!(b, hash(&repo), "an uncommitted edit rebuilds");

        let plain = tmp.path().join("no-git");
        std::fs::create_dir_all(plain.join("src")).unwrap();
        std::fs::create_dir_all(plain.join("target")).unwrap();
        std::fs::write(plain.join(manifest), "plain\n").unwrap();
        std::fs::write(plain.join("src/lib.src"), "one").unwrap();
        let c = hash(&plain);
        std::fs::write(plain.join("target/out"), "build output").unwrap();
        assert_eq!(c, hash(&plain), "target/ does not count");
        std::fs::write(plain.join("src/lib.src"), "two").unwrap();
        assert_ne!(c, hash(&plain), "an edit of a file outside git rebuilds");
    }

    #[test]
    fn a_local_go_checkout_is_hashed_by_content() {
        let root = project_root();
        a_checkout_is_hashed_by_content("go.mod", |dir| {
            let spec = BuildSpec {
                language: Language::Go,
                version: None,
                path: Some(dir.to_owned()),
                pins: Default::default(),
                image: None,
                companions: Default::default(),
            };
            Recipe::load(&root, &spec).unwrap().hash
        });
    }

    #[test]
    fn a_local_rust_checkout_is_hashed_by_content() {
        // The script's fingerprint, as Recipe::load hashes it, in a cache of its own; a stand-in cargo keeps
        // the standalone workspace it prepares there from resolving anything.
        let cache = tempfile::tempdir().unwrap();
        let bin = cache.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let cargo = bin.join("cargo");
        std::fs::write(
            &cargo,
            "#!/bin/sh\ncase $1 in -V) echo 'cargo 0.0.0-test';; metadata) ;; *) exit 1;; esac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let script = project_root().join("images/rust/build");
        a_checkout_is_hashed_by_content("Cargo.toml", |dir| {
            let out = std::process::Command::new(&script)
                .arg("--fingerprint")
                .env("PATH", &path)
                .env("MESHGATE_CACHE", cache.path())
                .env("MESHGATE_RUST_PATH", dir)
                .env_remove("MESHGATE_VERSION")
                .env_remove("MESHGATE_RUST_PINS")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        });
    }
}
