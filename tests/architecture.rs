//! Structure rules for `harness/` that reviews check by hand otherwise: no import cycle between
//! source files (a parent module and its children excepted), and no source file above the size
//! at which one file stops holding one concern.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("harness")
}

/// Every `.rs` file under `dir`, relative to it.
fn sources(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = rel.join(path.file_name().unwrap());
        if path.is_dir() {
            sources(&path, &name, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(name);
        }
    }
}

/// The module path of a file: `manifest/schema/mod.rs` → `[manifest, schema]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Module paths named in `text` (`crate::a::b`, `super::c`, `self::d`), resolved against the
/// module `me`; comments are ignored.
fn referenced_paths(text: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (start, head) in ["crate::", "super::", "self::"]
            .iter()
            .flat_map(|h| code.match_indices(h).map(move |(i, _)| (i, *h)))
        {
            let preceded_by_ident = code[..start]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded_by_ident {
                continue;
            }
            let rest: Vec<String> = code[start + head.len()..]
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty())
                .collect();
            let mut path: Vec<String> = match head {
                "crate::" => Vec::new(),
                "self::" => me.to_vec(),
                _ => me[..me.len().saturating_sub(1)].to_vec(),
            };
            path.extend(rest);
            out.push(path);
        }
    }
    out
}

/// The files of the source tree at `root` that lie on an import cycle.
fn files_on_cycles(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(root, Path::new(""), &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let targets = edges.entry(file.clone()).or_default();
        for path in referenced_paths(&text, &me) {
            // The longest prefix of the path that is a module with a file of its own.
            let Some(target) = (1..=path.len()).rev().find_map(|n| modules.get(&path[..n])) else {
                continue;
            };
            let them = module_of(target);
            // A module and its ancestors are one unit (a parent declares its children and
            // children use the parent's types).
            let related = me.starts_with(&them) || them.starts_with(&me);
            if !related {
                targets.insert(target.clone());
            }
        }
    }
    // A file is on a cycle when it reaches itself.
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&PathBuf> = edges[start].iter().collect();
        while let Some(next) = stack.pop() {
            if next == start {
                cycles.push(start.display().to_string());
                break;
            }
            if seen.insert(next) {
                stack.extend(edges.get(next).into_iter().flatten());
            }
        }
    }
    cycles
}

#[test]
fn no_import_cycle_between_source_files() {
    let cycles = files_on_cycles(&harness());
    assert!(cycles.is_empty(), "files on an import cycle: {cycles:?}");
}

#[test]
fn the_cycle_check_finds_a_cycle_between_siblings_but_not_parent_and_child() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod m;\n");
    write("m/mod.rs", "mod a;\nmod b;\npub use a::A;\n");
    write(
        "m/a.rs",
        "use super::b::B; // crate::m::c is a comment\npub struct A;\n",
    );
    write("m/b.rs", "use crate::m::A;\npub struct B;\n");
    // b uses the parent's re-export only: no cycle.
    assert!(files_on_cycles(dir.path()).is_empty());
    write("m/b.rs", "use crate::m::a::A;\npub struct B;\n");
    assert_eq!(files_on_cycles(dir.path()), ["m/a.rs", "m/b.rs"]);
}

#[test]
fn no_source_file_is_too_long() {
    let mut files = Vec::new();
    sources(&harness(), Path::new(""), &mut files);
    let too_long: Vec<String> = files
        .iter()
        // Test modules may be long: one file of cases per module.
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(harness().join(f))
                .unwrap()
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "files above {MAX_LINES} lines: {too_long:?}"
    );
}
