//! The shape of the code, checked: modules inside `api/src` depend on each other in one
//! direction only, and the domain stays pure (no HTTP, Lambda, SDK, database or runtime).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules a source text names through `crate::…`, including `crate::{a, b}`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inside = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(
                inside
                    .split(',')
                    .map(|item| ident(item.trim()))
                    .filter(|name| !name.is_empty()),
            );
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// Module name of a file directly under `src` (`routes/ops.rs` belongs to `routes`).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let module = top_module(src, &file);
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(crate_references(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

/// A cycle in the graph, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert!(find_cycle(&graph).is_some());
    assert_eq!(
        crate_references("use crate::{auth::Shop, error::ApiError};\nuse crate::state::X;"),
        BTreeSet::from(["auth".to_owned(), "error".to_owned(), "state".to_owned()])
    );
}

#[test]
fn modules_in_api_src_depend_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.len() >= 8, "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("module cycle in api/src: {}", cycle.join(" -> "));
    }
}

/// The domain crate cannot name an I/O crate (its Cargo.toml has none, so such an import does
/// not compile). What the compiler cannot see is the standard library's I/O and the clock: those
/// are checked here, in the domain's code outside its tests.
#[test]
fn the_domain_reads_no_clock_and_does_no_io_of_the_standard_library() {
    let domain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../domain/src");
    let forbidden = [
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "std::thread",
        "std::io::stdin",
        "println!",
        "Utc::now",
        "SystemTime::now",
        "Instant::now",
    ];
    let files = rust_files(&domain);
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for name in forbidden {
            assert!(
                !code.contains(name),
                "{} mentions {name}: the domain must stay pure",
                file.display()
            );
        }
    }
}

/// Every setting (`env = "NAME"` in a clap declaration) is declared once in the workspace and
/// documented in the README's settings tables.
#[test]
fn every_setting_is_declared_once_and_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let mut declared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in ["api", "processor", "infra", "domain", "client"] {
        let src = root.join(package).join("src");
        if !src.exists() {
            continue;
        }
        for file in rust_files(&src) {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (at, _) in text.match_indices("env = \"") {
                let rest = &text[at + "env = \"".len()..];
                let name: String = rest.chars().take_while(|c| *c != '"').collect();
                declared
                    .entry(name)
                    .or_default()
                    .push(file.display().to_string());
            }
        }
    }
    assert!(declared.len() >= 20, "{declared:?}");
    for (name, places) in &declared {
        assert_eq!(places.len(), 1, "{name} is declared in {places:?}");
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not documented in README.md"
        );
    }
}
