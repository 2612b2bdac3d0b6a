//! The dependency rules of the crate map (docs/architecture.md, "Crates"), checked on the resolved
//! dependency graph that `cargo metadata` reports: what each crate links in a normal build (not its
//! tests, not its build scripts).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::LazyLock;

use serde_json::Value;

/// The resolved graph: package name → names of its normal (non-dev, non-build) dependencies.
struct Graph {
    deps: HashMap<String, Vec<String>>,
}

impl Graph {
    /// `cargo metadata` for this workspace, with the given extra arguments (feature selection).
    fn load(extra: &[&str]) -> Graph {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let output = Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--offline",
                "--manifest-path",
            ])
            .arg(&manifest)
            .args(extra)
            .output()
            .expect("running cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let meta: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
        let name_of: HashMap<&str, &str> = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut deps = HashMap::new();
        for node in meta["resolve"]["nodes"].as_array().unwrap() {
            let normal = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
                .collect();
            deps.insert(name_of[node["id"].as_str().unwrap()].to_string(), normal);
        }
        Graph { deps }
    }

    /// Every package `root` links, itself excluded.
    fn closure(&self, root: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.to_string()];
        while let Some(name) = todo.pop() {
            for dep in self.deps.get(&name).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    /// Fails naming every package of `forbidden` that `krate` links, and the reason of the rule.
    fn assert_links_none(&self, krate: &str, forbidden: &[&str], why: &str) {
        assert!(self.deps.contains_key(krate), "{krate} is not in the graph");
        let linked = self.closure(krate);
        let found: Vec<&str> = forbidden
            .iter()
            .copied()
            .filter(|f| linked.contains(*f))
            .collect();
        assert!(found.is_empty(), "{krate} links {found:?}, but {why}");
    }
}

const LIBTORCH: &[&str] = &["tch", "torch-sys"];

/// The default build's graph, read once for all the tests.
static DEFAULT: LazyLock<Graph> = LazyLock::new(|| Graph::load(&[]));

/// Every library crate of the workspace (all but the CLI and the test support).
const LIBRARIES: [&str; 8] = [
    "flipstream-schemas",
    "flipstream-shard",
    "flipstream-imaging",
    "flipstream-loader",
    "flipstream-stats",
    "flipstream-ingest",
    "flipstream-synth",
    "flipstream-train",
];

#[test]
fn the_trainer_links_neither_the_report_nor_the_ingest_machinery() {
    let graph = &*DEFAULT;
    graph.assert_links_none(
        "flipstream-train",
        &[
            "flipstream-stats",
            "plotters",
            "flipstream-ingest",
            "flipstream-synth",
            "flipstream-testkit",
        ],
        "the trainer needs the loader, not the report renderer, ingest or test support",
    );
    // and what it does need comes through the loader
    assert!(
        graph
            .closure("flipstream-train")
            .contains("flipstream-loader")
    );
}

#[test]
fn the_data_crates_never_link_libtorch() {
    let graph = &*DEFAULT;
    let data_crates = LIBRARIES.iter().filter(|k| **k != "flipstream-train");
    for krate in data_crates.chain(&["flipstream-testkit"]) {
        graph.assert_links_none(krate, LIBTORCH, "only flipstream-train links libtorch");
    }
    let data_only = Graph::load(&["--no-default-features"]);
    data_only.assert_links_none(
        "flipstream",
        LIBTORCH,
        "the data tools (--no-default-features) build without libtorch",
    );
    assert!(graph.closure("flipstream").contains("tch"));
}

#[test]
fn each_library_crate_links_only_what_its_job_needs() {
    let graph = &*DEFAULT;
    graph.assert_links_none(
        "flipstream-shard",
        &[
            "image",
            "turbojpeg",
            "plotters",
            "tokenizers",
            "flipstream-imaging",
        ],
        "the storage core handles bytes and Parquet, not pixels, charts or text",
    );
    graph.assert_links_none(
        "flipstream-imaging",
        &["flipstream-shard", "plotters", "tokenizers"],
        "imaging is pure functions on bytes and pixels (it knows the format's reject reasons only)",
    );
    graph.assert_links_none(
        "flipstream-loader",
        &[
            "plotters",
            "flipstream-stats",
            "flipstream-ingest",
            "flipstream-synth",
        ],
        "the loader is what the trainer reads through",
    );
    graph.assert_links_none(
        "flipstream-ingest",
        &[
            "plotters",
            "flipstream-stats",
            "flipstream-loader",
            "flipstream-synth",
        ],
        "ingest writes shards; it neither reports nor loads batches nor generates pairs",
    );
}

#[test]
fn libraries_do_not_draw_progress_bars() {
    let graph = &*DEFAULT;
    for krate in LIBRARIES {
        graph.assert_links_none(
            krate,
            &["indicatif"],
            "libraries report through flipstream_shard::progress::Progress; the CLI draws",
        );
    }
}

#[test]
fn test_support_stays_out_of_the_libraries() {
    let graph = &*DEFAULT;
    for krate in LIBRARIES {
        graph.assert_links_none(
            krate,
            &["flipstream-testkit"],
            "test support is a dev-dependency of the libraries",
        );
    }
}
