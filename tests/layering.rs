//! The library's import graph, checked: no import cycle between its modules, and no module
//! importing from a layer above its own.
//!
//! Every file of `src/` (but `src/bin/` and the test-only modules, `#[cfg(test)] mod x;`) is a
//! module, and so is every inline `mod x { ... }`; `#[cfg(test)]` items are left out. A module
//! depends on every module it names: in a `use` declaration (`use crate::..`, `use super::..`,
//! `use self::..`, or a child module's name) or in a path in its code (`crate::a::f(..)`,
//! `super::b::C`). A path to an item that a module re-exports (`pub use x::Item`) is followed to
//! the module that defines it; a module's re-exports of its own descendants are its interface,
//! not dependencies. The edges are checked for cycles (Tarjan's strongly connected components)
//! and against [`LAYERS`], the declared order of the library's layers, bottom first.
//!
//! The parser is deliberately small (comments, strings and character literals are blanked
//! first, so nothing in them counts); its tests are below, with a synthetic cycle and an upward
//! import that the check must refuse. It needs nothing but the toolchain (no cargo subcommand to
//! install), so it runs with every `cargo test`; `.ci/run` also runs it on its own to print what
//! it checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The library's layers, bottom first: a module may import from its own layer and the layers
/// below it. A module belongs to the layer of the longest entry that is the module itself or
/// one of its ancestors (`crate` is the root alone); a module that no entry covers is an error
/// (place it).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundations",
        &[
            "seed",
            "runtime",
            "readout",
            "hierarchy",
            "config",
            "report",
            "plot",
            "cluster",
        ],
    ),
    (
        "theory: model and data",
        &[
            "theory",
            "theory::config",
            "theory::net",
            "theory::data",
            "theory::normals",
            "theory::responses",
            "theory::readout",
            "theory::margin",
            "theory::train",
        ],
    ),
    (
        "theory: runs and sweeps",
        &["theory::run", "theory::sweep", "theory::claims"],
    ),
    ("theory: reports", &["theory::figures"]),
    (
        "theory: commands",
        &[
            "theory::commands",
            "theory::sharding",
            "theory::bench",
            "theory::product_candidates",
        ],
    ),
    ("empirical: data", &["empirical::data"]),
    (
        "empirical: networks",
        &["empirical::model", "empirical::kmeans", "empirical::device"],
    ),
    (
        "empirical: training",
        &[
            "empirical::train_error",
            "empirical::optim",
            "empirical::train",
            "empirical::checkpoint",
            "empirical::probe",
        ],
    ),
    ("empirical: error", &["empirical::error"]),
    (
        "study: values",
        &[
            "empirical::study::config",
            "empirical::study::results",
            "empirical::study::plan",
        ],
    ),
    ("study: reports", &["empirical::study::reports"]),
    (
        "study: procedures",
        &[
            "empirical::study::memory",
            "empirical::study::designs",
            "empirical::study::runner",
            "empirical::study::hard",
            "empirical::study::labels",
            "empirical::study::readouts",
        ],
    ),
    (
        "study: experiments",
        &[
            "empirical::study",
            "empirical::study::sharding",
            "empirical::study::protocol",
            "empirical::study::single",
            "empirical::study::sweep",
        ],
    ),
    (
        "empirical: commands",
        &[
            "empirical",
            "empirical::bench",
            "empirical::gpucheck",
            "empirical::commands",
        ],
    ),
    ("the crate", &["crate"]),
];

#[test]
fn library_modules_import_only_downward_and_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_sources(&src);
    let graph = Graph::build(&files);
    let report = graph.check(LAYERS);
    assert!(report.ok(), "{}", report.text);
    println!("{}", report.text);
    assert!(
        graph.modules.len() > 50,
        "only {} modules found under {}",
        graph.modules.len(),
        src.display()
    );
}

/// Every `.rs` file under `src` but `src/bin/`, as (path relative to `src`, text).
fn read_sources(src: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            if p.is_dir() {
                if rel != "bin" {
                    stack.push(p);
                }
            } else if rel.ends_with(".rs") {
                let text =
                    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((rel, text));
            }
        }
    }
    out.sort();
    out
}

/// The module path of a source file: `lib.rs` is `crate`, `a/mod.rs` and `a.rs` are `a`,
/// `a/b.rs` is `a::b`.
fn module_of_file(rel: &str) -> String {
    let stem = rel.trim_end_matches(".rs");
    if stem == "lib" {
        return "crate".into();
    }
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    stem.replace('/', "::")
}

/// `a::b` with `c` appended (`crate` is the root).
fn join(module: &str, name: &str) -> String {
    if module == "crate" {
        name.to_string()
    } else {
        format!("{module}::{name}")
    }
}

/// Whether `module` is `ancestor` or lies below it.
fn is_within(module: &str, ancestor: &str) -> bool {
    ancestor == "crate" || module == ancestor || module.starts_with(&format!("{ancestor}::"))
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The text with comments, string literals and character literals blanked (spaces; newlines
/// kept, so that line numbers stay), lifetimes kept.
fn blank_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && is_ident_char(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (!prev_ident || (c[i - 1] == 'b' && (i < 2 || !is_ident_char(c[i - 2]))))
            && matches!(c.get(i + 1), Some('"') | Some('#'))
        {
            // a raw string r"..", r#".."#, br".."
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            out.push_str("\"\"");
            for _ in i + 1..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            out.push_str("\"\"");
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            i += 1;
        } else if c[i] == '\'' && !prev_ident {
            // a character literal ('a', '\n', '\u{..}') or a lifetime ('a)
            let literal_end = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len()).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match literal_end {
                Some(end) => {
                    out.push_str("' '");
                    for _ in i + 3..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The index just past the bracket that closes the one at `open` (`{`, `[` or `(`), in text
/// whose literals are blanked; the end of the text if it never closes.
fn matching(c: &[char], open: usize) -> usize {
    let (o, cl) = match c[open] {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        _ => ('(', ')'),
    };
    let mut depth = 0;
    for (j, &ch) in c.iter().enumerate().skip(open) {
        if ch == o {
            depth += 1;
        } else if ch == cl {
            depth -= 1;
            if depth == 0 {
                return j + 1;
            }
        }
    }
    c.len()
}

fn skip_space(c: &[char], mut i: usize) -> usize {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Whether the identifier `word` starts at `i` (not inside a longer identifier).
fn word_at(c: &[char], i: usize, word: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    c.len() >= i + w.len()
        && c[i..i + w.len()] == w[..]
        && (i == 0 || !is_ident_char(c[i - 1]))
        && c.get(i + w.len()).is_none_or(|&x| !is_ident_char(x))
}

/// The identifier starting at `i`, if any, and the index past it.
fn ident_at(c: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    while j < c.len() && is_ident_char(c[j]) {
        j += 1;
    }
    (j > i && !c[i].is_ascii_digit()).then(|| (c[i..j].iter().collect(), j))
}

/// Blanks every `#[cfg(test)]` item of `text` (whose literals are blanked), and every
/// `#[cfg(doc)]` one (imports for documentation links only); returns the names of the test-only
/// modules declared as `#[cfg(test)] mod name;`.
fn drop_test_items(text: &mut [char]) -> Vec<String> {
    let markers: Vec<Vec<char>> = ["#[cfg(test)]", "#[cfg(doc)]"]
        .iter()
        .map(|m| m.chars().collect())
        .collect();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let Some(marker) = markers
            .iter()
            .find(|m| text.len() >= i + m.len() && text[i..i + m.len()] == m[..])
        else {
            i += 1;
            continue;
        };
        let start = i;
        let mut j = skip_space(text, i + marker.len());
        while text.get(j) == Some(&'#') && text.get(j + 1) == Some(&'[') {
            j = skip_space(text, matching(text, j + 1));
        }
        // `mod name;` declares a test-only file
        let mut k = j;
        if word_at(text, k, "pub") {
            k = skip_space(text, k + 3);
            if text.get(k) == Some(&'(') {
                k = skip_space(text, matching(text, k));
            }
        }
        if word_at(text, k, "mod") {
            if let Some((name, after)) = ident_at(text, skip_space(text, k + 3)) {
                if text.get(skip_space(text, after)) == Some(&';') {
                    test_mods.push(name);
                }
            }
        }
        // the item ends at its first `;` outside brackets, or with its first `{ .. }` block
        let mut end = text.len();
        let mut m = j;
        while m < text.len() {
            match text[m] {
                ';' => {
                    end = m + 1;
                    break;
                }
                '{' => {
                    end = matching(text, m);
                    break;
                }
                '(' | '[' => m = matching(text, m),
                _ => m += 1,
            }
        }
        for ch in &mut text[start..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end;
    }
    test_mods
}

/// One path a module names, with the line it is on.
#[derive(Clone, Debug, PartialEq)]
struct Named {
    segments: Vec<String>,
    line: usize,
}

/// One `use` declaration: the paths it names and whether it is a re-export (`pub use`), each
/// with the name it is known by in the module (its last segment, or its `as` name).
#[derive(Clone, Debug, PartialEq)]
struct UseDecl {
    public: bool,
    paths: Vec<(Vec<String>, Option<String>)>,
    line: usize,
}

/// The tokens of a use tree: identifiers, `::`, `{`, `}`, `,`, `*`.
fn use_tokens(tree: &str) -> Vec<String> {
    let c: Vec<char> = tree.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_whitespace() {
            i += 1;
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if let Some((id, j)) = ident_at(&c, i) {
            out.push(id.trim_start_matches("r#").to_string());
            i = j;
        } else if c[i] == 'r' && c.get(i + 1) == Some(&'#') {
            i += 2;
        } else {
            out.push(c[i].to_string());
            i += 1;
        }
    }
    out
}

/// The paths of a use tree (`a::b::{c, d::{e as f, self}, *}`), each with its `as` name;
/// `self` inside braces names the prefix itself, `*` the prefix (as a glob).
fn use_paths(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    fn tree_at(
        t: &[String],
        i: &mut usize,
        prefix: &[String],
        out: &mut Vec<(Vec<String>, Option<String>)>,
    ) {
        let mut path = prefix.to_vec();
        loop {
            match t.get(*i).map(String::as_str) {
                Some("{") => {
                    *i += 1;
                    while t.get(*i).is_some_and(|x| x != "}") {
                        tree_at(t, i, &path, out);
                        if t.get(*i).is_some_and(|x| x == ",") {
                            *i += 1;
                        }
                    }
                    *i += 1;
                    return;
                }
                Some("*") => {
                    *i += 1;
                    out.push((path, None));
                    return;
                }
                Some("self") if !path.is_empty() && t.get(*i + 1).is_none_or(|x| x != "::") => {
                    *i += 1;
                    let alias = alias_at(t, i);
                    out.push((path, alias));
                    return;
                }
                Some(x) if x != "," && x != "}" && x != "::" => {
                    path.push(x.to_string());
                    *i += 1;
                    if t.get(*i).is_some_and(|x| x == "::") {
                        *i += 1;
                        continue;
                    }
                    let alias = alias_at(t, i);
                    out.push((path, alias));
                    return;
                }
                Some("::") => *i += 1,
                _ => return,
            }
        }
    }
    fn alias_at(t: &[String], i: &mut usize) -> Option<String> {
        if t.get(*i).is_some_and(|x| x == "as") {
            *i += 2;
            return t.get(*i - 1).cloned();
        }
        None
    }
    let t = use_tokens(tree);
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let before = i;
        tree_at(&t, &mut i, &[], &mut out);
        if i == before {
            i += 1;
        }
    }
    out
}

/// What one module's text says: its `use` declarations, the paths in its code, its child
/// modules (declared with `mod`) and the inline modules it holds (with their text).
#[derive(Debug, Default)]
struct Parsed {
    uses: Vec<UseDecl>,
    paths: Vec<Named>,
    children: Vec<String>,
    test_children: Vec<String>,
    inline: Vec<(String, Vec<char>, usize)>,
}

fn line_of(c: &[char], i: usize) -> usize {
    1 + c[..i.min(c.len())].iter().filter(|&&x| x == '\n').count()
}

/// Parses one module's text (literals blanked), `first_line` being the file line of its first
/// character.
fn parse_module(text: &[char], first_line: usize) -> Parsed {
    let mut c = text.to_vec();
    let mut p = Parsed {
        test_children: drop_test_items(&mut c),
        ..Parsed::default()
    };
    // inline modules are parsed on their own, and blanked here
    let mut i = 0;
    while i < c.len() {
        if word_at(&c, i, "mod") {
            let j = skip_space(&c, i + 3);
            if let Some((name, after)) = ident_at(&c, j) {
                let k = skip_space(&c, after);
                match c.get(k) {
                    Some(';') => p.children.push(name),
                    Some('{') => {
                        let end = matching(&c, k);
                        let inner: Vec<char> = c[k + 1..end.saturating_sub(1)].to_vec();
                        p.inline
                            .push((name, inner, first_line + line_of(&c, k + 1) - 1));
                        for ch in &mut c[k..end] {
                            if *ch != '\n' {
                                *ch = ' ';
                            }
                        }
                        i = end;
                        continue;
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    // `use` declarations, blanked once read
    let mut i = 0;
    while i < c.len() {
        if word_at(&c, i, "use") {
            let end = (i..c.len()).find(|&j| c[j] == ';').unwrap_or(c.len());
            let tree: String = c[i + 3..end].iter().collect();
            let before: String = c[..i].iter().collect();
            let before = before.trim_end();
            let public = before.ends_with("pub")
                || (before.ends_with(')') && {
                    let open = before.rfind("pub(").unwrap_or(0);
                    before.len() - open < 40 && before[open..].starts_with("pub(")
                });
            p.uses.push(UseDecl {
                public,
                paths: use_paths(&tree),
                line: first_line + line_of(&c, i) - 1,
            });
            for ch in &mut c[i..end] {
                if *ch != '\n' {
                    *ch = ' ';
                }
            }
            i = end;
            continue;
        }
        i += 1;
    }
    // visibilities (`pub(in super::super)`) name no dependency
    let mut i = 0;
    while i < c.len() {
        if word_at(&c, i, "pub") {
            let j = skip_space(&c, i + 3);
            if c.get(j) == Some(&'(') {
                let end = matching(&c, j);
                for ch in &mut c[j..end] {
                    if *ch != '\n' {
                        *ch = ' ';
                    }
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    // paths in the code: `crate::..`, `super::..`, `self::..` and `child::..`
    let mut i = 0;
    while i < c.len() {
        if i > 0 && (is_ident_char(c[i - 1]) || c[i - 1] == ':' || c[i - 1] == '$') {
            i += 1;
            continue;
        }
        let Some((first, mut j)) = ident_at(&c, i) else {
            i += 1;
            continue;
        };
        let root = matches!(first.as_str(), "crate" | "super" | "self")
            || p.children.contains(&first)
            || p.inline.iter().any(|(n, _, _)| *n == first);
        if !root || c.get(j) != Some(&':') || c.get(j + 1) != Some(&':') {
            i = j;
            continue;
        }
        let mut segments = vec![first];
        while c.get(j) == Some(&':') && c.get(j + 1) == Some(&':') {
            match ident_at(&c, j + 2) {
                Some((s, k)) => {
                    segments.push(s);
                    j = k;
                }
                None => break,
            }
        }
        p.paths.push(Named {
            segments,
            line: first_line + line_of(&c, i) - 1,
        });
        i = j;
    }
    p
}

/// One module: its file, and what it names.
#[derive(Debug)]
struct Module {
    file: String,
    parsed: Parsed,
}

/// The module graph of a set of source files.
struct Graph {
    modules: BTreeMap<String, Module>,
    /// (from, to) -> the first place `from` names `to`.
    edges: BTreeMap<(String, String), String>,
}

impl Graph {
    /// The graph of `files` (paths relative to `src`, and their text).
    fn build(files: &[(String, String)]) -> Graph {
        let mut modules = BTreeMap::new();
        let mut test_only: BTreeSet<String> = BTreeSet::new();
        for (rel, text) in files {
            let blanked: Vec<char> = blank_literals(text).chars().collect();
            let mut pending = vec![(module_of_file(rel), blanked, 1usize)];
            while let Some((name, text, first_line)) = pending.pop() {
                let mut parsed = parse_module(&text, first_line);
                for t in &parsed.test_children {
                    test_only.insert(join(&name, t));
                }
                for (child, inner, line) in std::mem::take(&mut parsed.inline) {
                    parsed.children.push(child.clone());
                    pending.push((join(&name, &child), inner, line));
                }
                modules.insert(
                    name,
                    Module {
                        file: rel.clone(),
                        parsed,
                    },
                );
            }
        }
        modules.retain(|name, _| !test_only.iter().any(|t| is_within(name, t)));
        let mut g = Graph {
            modules,
            edges: BTreeMap::new(),
        };
        g.edges = g.collect_edges();
        g
    }

    /// The absolute form of a path named in `module` (segments from the crate root), if it is
    /// a path into the crate.
    fn absolute(&self, module: &str, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        let mut base: Vec<String> = if module == "crate" {
            Vec::new()
        } else {
            module.split("::").map(str::to_string).collect()
        };
        let mut rest = segments;
        match first.as_str() {
            "crate" => {
                base.clear();
                rest = &segments[1..];
            }
            "self" => rest = &segments[1..],
            "super" => {
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            child => {
                let m = self.modules.get(module)?;
                if !m.parsed.children.iter().any(|c| c == child) {
                    return None;
                }
            }
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module that defines what the absolute path `abs` names: its longest prefix that is
    /// a module, then, while the next segment is an item that module re-exports, the module the
    /// re-export names.
    fn resolve(&self, abs: &[String]) -> Option<String> {
        let mut path = abs.to_vec();
        for _ in 0..16 {
            let (module, used) = (0..=path.len())
                .rev()
                .map(|k| {
                    let m = if k == 0 {
                        "crate".to_string()
                    } else {
                        path[..k].join("::")
                    };
                    (m, k)
                })
                .find(|(m, _)| self.modules.contains_key(m))?;
            let Some(item) = path.get(used) else {
                return Some(module);
            };
            let m = &self.modules[&module];
            let reexport = m.parsed.uses.iter().filter(|u| u.public).find_map(|u| {
                u.paths.iter().find_map(|(p, alias)| {
                    let name = alias.as_ref().or(p.last())?;
                    (name == item).then(|| p.clone())
                })
            });
            match reexport.and_then(|p| self.absolute(&module, &p)) {
                Some(mut target) if target != path[..=used] => {
                    target.extend(path[used + 1..].iter().cloned());
                    path = target;
                }
                _ => return Some(module),
            }
        }
        None
    }

    /// Every edge between two different modules, with the first place it is made.
    fn collect_edges(&self) -> BTreeMap<(String, String), String> {
        let mut edges = BTreeMap::new();
        for (name, m) in &self.modules {
            let mut named: Vec<(Vec<String>, usize, bool)> = Vec::new();
            for u in &m.parsed.uses {
                for (p, _) in &u.paths {
                    named.push((p.clone(), u.line, u.public));
                }
            }
            for n in &m.parsed.paths {
                named.push((n.segments.clone(), n.line, false));
            }
            for (segments, line, public) in named {
                let Some(abs) = self.absolute(name, &segments) else {
                    continue;
                };
                let Some(to) = self.resolve(&abs) else {
                    continue;
                };
                // a re-export of a descendant is the module's interface
                if to == *name || (public && is_within(&to, name)) {
                    continue;
                }
                edges
                    .entry((name.clone(), to))
                    .or_insert_with(|| format!("{}:{line}", m.file));
            }
        }
        edges
    }

    /// The strongly connected components with more than one module (Tarjan's algorithm).
    fn cycles(&self) -> Vec<Vec<String>> {
        let names: Vec<&String> = self.modules.keys().collect();
        let index_of: BTreeMap<&String, usize> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut adj = vec![Vec::new(); names.len()];
        for (a, b) in self.edges.keys() {
            if let (Some(&i), Some(&j)) = (index_of.get(a), index_of.get(b)) {
                adj[i].push(j);
            }
        }
        let mut t = Tarjan {
            adj: &adj,
            index: vec![None; names.len()],
            low: vec![0; names.len()],
            on_stack: vec![false; names.len()],
            stack: Vec::new(),
            next: 0,
            components: Vec::new(),
        };
        for v in 0..names.len() {
            if t.index[v].is_none() {
                t.visit(v);
            }
        }
        let mut out: Vec<Vec<String>> = t
            .components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut c: Vec<String> = c.into_iter().map(|i| names[i].clone()).collect();
                c.sort();
                c
            })
            .collect();
        out.sort();
        out
    }

    /// Checks the graph against `layers`: no cycle, every module placed, no upward import.
    fn check(&self, layers: &[(&str, &[&str])]) -> Report {
        let layer_of = |m: &str| -> Option<usize> {
            layers
                .iter()
                .enumerate()
                .flat_map(|(i, (_, entries))| entries.iter().map(move |e| (i, *e)))
                .filter(|(_, e)| m == *e || (*e != "crate" && is_within(m, e)))
                .max_by_key(|(_, e)| e.len())
                .map(|(i, _)| i)
        };
        let mut r = Report::default();
        for c in self.cycles() {
            let inner: Vec<String> = self
                .edges
                .iter()
                .filter(|((a, b), _)| c.contains(a) && c.contains(b))
                .map(|((a, b), at)| format!("    {a} -> {b} ({at})"))
                .collect();
            r.cycles.push(format!(
                "  cycle of {} modules: {}\n{}",
                c.len(),
                c.join(", "),
                inner.join("\n")
            ));
        }
        for name in self.modules.keys() {
            if layer_of(name).is_none() {
                r.unplaced
                    .push(format!("  {name} ({})", self.modules[name].file));
            }
        }
        for ((a, b), at) in &self.edges {
            if let (Some(la), Some(lb)) = (layer_of(a), layer_of(b)) {
                if lb > la {
                    r.upward.push(format!(
                        "  {a} (layer '{}') imports {b} (layer '{}') at {at}",
                        layers[la].0, layers[lb].0
                    ));
                }
            }
        }
        let _ = write!(
            r.text,
            "layering: {} modules, {} edges, {} layers: ",
            self.modules.len(),
            self.edges.len(),
            layers.len()
        );
        if r.ok() {
            r.text
                .push_str("no cycle, no module importing from a layer above its own");
        } else {
            let _ = write!(
                r.text,
                "{} cycles, {} upward imports, {} modules in no layer",
                r.cycles.len(),
                r.upward.len(),
                r.unplaced.len()
            );
            for (title, lines) in [
                ("import cycles", &r.cycles),
                ("imports from a layer above", &r.upward),
                ("modules in no layer (add them to LAYERS)", &r.unplaced),
            ] {
                if !lines.is_empty() {
                    let _ = write!(r.text, "\n{title}:\n{}", lines.join("\n"));
                }
            }
        }
        r
    }
}

/// What [`Graph::check`] found.
#[derive(Debug, Default)]
struct Report {
    cycles: Vec<String>,
    upward: Vec<String>,
    unplaced: Vec<String>,
    text: String,
}

impl Report {
    fn ok(&self) -> bool {
        self.cycles.is_empty() && self.upward.is_empty() && self.unplaced.is_empty()
    }
}

struct Tarjan<'a> {
    adj: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for k in 0..self.adj[v].len() {
            let w = self.adj[v][k];
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

#[test]
fn literals_and_comments_are_blanked_lifetimes_kept() {
    let text = "let a = \"use crate::x;\"; // use crate::y;\n/* crate::z /* nested */ */ let b = 'c'; fn f<'a>(x: &'a str) {} let r = r#\"crate::w\"#; let q = '\\'';";
    let out = blank_literals(text);
    assert!(!out.contains("crate"), "{out}");
    assert!(out.contains("fn f<'a>(x: &'a str)"), "{out}");
    assert!(out.contains("let q = ' '"), "{out}");
    assert_eq!(out.lines().count(), text.lines().count());
}

#[test]
fn use_trees_are_expanded() {
    let paths = use_paths(" crate::a::{b, c::{d as e, self}, f::*}");
    let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        paths,
        vec![
            (p(&["crate", "a", "b"]), None),
            (p(&["crate", "a", "c", "d"]), Some("e".to_string())),
            (p(&["crate", "a", "c"]), None),
            (p(&["crate", "a", "f"]), None),
        ]
    );
    assert_eq!(use_paths(" super::x"), vec![(p(&["super", "x"]), None)]);
}

#[test]
fn test_items_and_test_modules_are_left_out() {
    let g = Graph::build(&files(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "a.rs",
            "pub fn f() {}\n#[cfg(doc)]\nuse crate::b::g;\npub(in crate::a) fn h() {}\n#[cfg(test)]\nmod tests {\n    use crate::b::g;\n}\n#[cfg(test)]\nmod more;\n",
        ),
        ("a/more.rs", "use crate::b::g;\n"),
        ("b.rs", "pub fn g() { crate::a::f(); }\n"),
    ]));
    assert!(!g.modules.contains_key("a::more"));
    let edges: Vec<_> = g.edges.keys().cloned().collect();
    assert_eq!(edges, vec![("b".to_string(), "a".to_string())]);
    assert!(g.check(&[("all", &["crate", "a", "b"])]).ok());
}

#[test]
fn a_cycle_through_a_reexport_and_an_inline_path_is_refused() {
    let g = Graph::build(&files(&[
        ("lib.rs", "pub mod data;\npub mod study;\n"),
        (
            "data/mod.rs",
            "mod error;\npub mod load;\npub use error::DataError;\n",
        ),
        ("data/error.rs", "pub enum DataError {}\n"),
        (
            "data/load.rs",
            "use super::DataError;\npub fn load() -> Result<(), DataError> { crate::study::config::check(); Ok(()) }\n",
        ),
        ("study/mod.rs", "pub mod config;\n"),
        (
            "study/config.rs",
            "use crate::data::load::load;\npub fn check() { let _ = load(); }\n",
        ),
    ]));
    // the re-export is followed to the module that defines the error
    assert!(g
        .edges
        .contains_key(&("data::load".to_string(), "data::error".to_string())));
    assert!(!g
        .edges
        .contains_key(&("data".to_string(), "data::error".to_string())));
    assert_eq!(
        g.cycles(),
        vec![vec!["data::load".to_string(), "study::config".to_string()]]
    );
    let r = g.check(&[("data", &["data"]), ("study", &["study", "crate"])]);
    assert!(!r.ok());
    assert_eq!(r.cycles.len(), 1, "{}", r.text);
    assert!(
        r.text
            .contains("data::load -> study::config (data/load.rs:2)"),
        "{}",
        r.text
    );
    assert_eq!(r.upward.len(), 1, "{}", r.text);
    assert!(
        r.text.contains("imports study::config (layer 'study')"),
        "{}",
        r.text
    );
}

#[test]
fn an_upward_import_without_a_cycle_is_refused_and_unplaced_modules_named() {
    let g = Graph::build(&files(&[
        ("lib.rs", "pub mod low;\npub mod high;\npub mod new;\n"),
        ("low.rs", "use super::high::Thing;\n"),
        ("high.rs", "pub struct Thing;\n"),
        ("new.rs", ""),
    ]));
    assert!(g.cycles().is_empty());
    let r = g.check(&[("low", &["low", "crate", "new"]), ("high", &["high"])]);
    assert_eq!(r.upward.len(), 1, "{}", r.text);
    assert!(r.unplaced.is_empty(), "{}", r.text);
    let r = g.check(&[("high", &["high"]), ("low", &["low", "crate", "new"])]);
    assert!(r.ok(), "{}", r.text);
    let r = g.check(&[("low", &["low"]), ("high", &["high"])]);
    assert_eq!(r.unplaced.len(), 2, "{}", r.text);
}

/// The real source tree with one import added that runs back up (the study's config naming
/// its runner, which imports the config) fails with the cycle and the upward import named.
#[test]
fn one_import_back_up_in_the_real_tree_is_refused() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = read_sources(&src);
    let config = files
        .iter_mut()
        .find(|(p, _)| p == "empirical/study/config.rs")
        .expect("the study's config");
    config
        .1
        .push_str("\nuse crate::empirical::study::runner::Runner;\n");
    let r = Graph::build(&files).check(LAYERS);
    assert!(!r.ok(), "{}", r.text);
    assert!(
        r.cycles
            .iter()
            .any(|c| c.contains("empirical::study::config")
                && c.contains("empirical::study::runner")),
        "{}",
        r.text
    );
    assert!(
        r.upward.iter().any(|u| u.contains(
            "empirical::study::config (layer 'study: values') imports empirical::study::runner"
        )),
        "{}",
        r.text
    );
}
