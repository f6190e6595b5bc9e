//! What `empirical inspect` prints about a dataset: the source, the hierarchy (levels, classes
//! and children per class, the tree with images per leaf), images per class and the
//! distribution of images per leaf, the loader's notes (parents chosen where WordNet is not a
//! tree, renamed homonyms) and warnings, what decoding does to the images (resizing, cropping,
//! colour conversion, checked on a sample or on all of them), and the memory of the index and of
//! the decoded pixels.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use super::config::DataConfig;
use super::decode::{materialize, DecodeOptions, DecodeStats};
use super::index::ImageIndex;
use super::indexed::IndexedSplits;
use super::load::{dataset_dir, open, Opened};
use super::{human_bytes, DataError, Splits};
use crate::hierarchy::Hierarchy;
use crate::report::count;

/// What to check and how much to print.
#[derive(Clone, Debug)]
pub struct InspectOptions {
    /// Decoding settings (size, threads, budget) used for the image check and the memory
    /// estimate.
    pub decode: DecodeOptions,
    /// Images per split decoded to check them (evenly spread); 0 = all.
    pub check: usize,
    /// Most lines of the tree to print; 0 = all.
    pub tree_lines: usize,
}

/// min / 10th percentile / median / 90th percentile / max of `v` (nearest rank), `-` if empty.
fn quantiles(v: &[usize]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let q = |p: f64| s[((p * (s.len() - 1) as f64).round()) as usize];
    format!(
        "min {} / p10 {} / median {} / p90 {} / max {}",
        s[0],
        q(0.1),
        q(0.5),
        q(0.9),
        s[s.len() - 1]
    )
}

/// Counts of `v` in the buckets 0, 1, 2-4, 5-9, 10-19, 20-49, 50-99, 100-199, 200-499,
/// 500-999, 1000+ (empty buckets left out).
fn histogram(v: &[usize]) -> String {
    const EDGES: [(usize, &str); 11] = [
        (0, "0"),
        (1, "1"),
        (2, "2-4"),
        (5, "5-9"),
        (10, "10-19"),
        (20, "20-49"),
        (50, "50-99"),
        (100, "100-199"),
        (200, "200-499"),
        (500, "500-999"),
        (1000, "1000+"),
    ];
    let mut counts = [0usize; 11];
    for &x in v {
        let b = EDGES.iter().rposition(|&(lo, _)| x >= lo).unwrap_or(0);
        counts[b] += 1;
    }
    EDGES
        .iter()
        .zip(counts)
        .filter(|(_, c)| *c > 0)
        .map(|((_, name), c)| format!("{name}: {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per-class image counts at `level` from per-leaf counts.
fn class_counts(h: &Hierarchy, leaf_counts: &[usize], level: usize) -> Vec<usize> {
    let mut out = vec![0; h.num_classes(level)];
    for (leaf, &n) in leaf_counts.iter().enumerate() {
        out[h.leaf_ancestor(leaf, level)] += n;
    }
    out
}

/// Children of every class of every level (empty for the leaves), in one pass.
fn children_lists(h: &Hierarchy) -> Vec<Vec<Vec<usize>>> {
    (0..h.num_levels())
        .map(|l| {
            let mut kids = vec![Vec::new(); h.num_classes(l)];
            if let Some(below) = h.levels().get(l + 1) {
                for (c, &p) in below.parent.iter().enumerate() {
                    kids[p].push(c);
                }
            }
            kids
        })
        .collect()
}

/// The hierarchy part of the report: levels, classes, children and images per class, the
/// images-per-leaf distribution, and the tree (at most `tree_lines` lines, 0 = all).
pub fn hierarchy_report(
    h: &Hierarchy,
    train_counts: &[usize],
    test_counts: &[usize],
    tree_lines: usize,
) -> String {
    let kids = children_lists(h);
    let ones = vec![1; h.num_leaves()];
    let per_level = |counts: &[usize]| -> Vec<Vec<usize>> {
        (0..h.num_levels())
            .map(|l| class_counts(h, counts, l))
            .collect()
    };
    let (train, test, leaves) = (
        per_level(train_counts),
        per_level(test_counts),
        per_level(&ones),
    );
    let mut out = String::new();
    let _ = writeln!(out, "hierarchy: {} levels, coarsest first", h.num_levels());
    for l in 0..h.num_levels() {
        let level = h.level(l);
        let _ = write!(
            out,
            "  level {l} `{}`: {}",
            level.name,
            count(h.num_classes(l), "class", "classes")
        );
        if l + 1 < h.num_levels() {
            let children: Vec<usize> = kids[l].iter().map(Vec::len).collect();
            let _ = write!(out, "; children per class: {}", quantiles(&children));
        } else {
            out.push_str(" (the leaves)");
        }
        out.push('\n');
        let _ = writeln!(out, "    train images per class: {}", quantiles(&train[l]));
    }
    let _ = writeln!(
        out,
        "train images per leaf: {}\n  histogram (images: leaves): {}",
        quantiles(train_counts),
        histogram(train_counts)
    );
    let _ = writeln!(
        out,
        "test images per leaf: {}\n  histogram (images: leaves): {}",
        quantiles(test_counts),
        histogram(test_counts)
    );
    let _ = writeln!(out, "tree (train / test images):");
    let total: usize = (0..h.num_levels()).map(|l| h.num_classes(l)).sum();
    let limit = if tree_lines == 0 {
        total
    } else {
        tree_lines.min(total)
    };
    let mut lines = Vec::with_capacity(limit);
    let tree = Tree {
        h,
        kids: &kids,
        train: &train,
        test: &test,
        leaves: &leaves,
        limit,
    };
    let top: Vec<usize> = (0..h.num_classes(0)).collect();
    tree.lines(0, &top, &mut lines);
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    if limit < total {
        let _ = writeln!(
            out,
            "  ... {} more lines (--tree-lines 0 prints the whole tree)",
            total - limit
        );
    }
    out
}

/// What the tree printer needs: per level and class, children and counts.
struct Tree<'a> {
    h: &'a Hierarchy,
    kids: &'a [Vec<Vec<usize>>],
    train: &'a [Vec<usize>],
    test: &'a [Vec<usize>],
    leaves: &'a [Vec<usize>],
    limit: usize,
}

impl Tree<'_> {
    /// Lines for `classes` of level `l` and everything below them, depth first, until `limit`.
    fn lines(&self, l: usize, classes: &[usize], out: &mut Vec<String>) {
        let indent = "  ".repeat(l + 1);
        let level = &self.h.level(l).name;
        for &c in classes {
            if out.len() >= self.limit {
                return;
            }
            let name = &self.h.level(l).class_names[c];
            let (tr, te) = (self.train[l][c], self.test[l][c]);
            if l == self.h.leaf_level() {
                out.push(format!("{indent}{level} {name}: {tr} / {te}"));
            } else {
                out.push(format!(
                    "{indent}{level} {name}: {}, {}, {tr} / {te}",
                    count(self.kids[l][c].len(), "child", "children"),
                    count(self.leaves[l][c], "leaf", "leaves")
                ));
                self.lines(l + 1, &self.kids[l][c], out);
            }
        }
    }
}

/// `n` indices spread evenly over `0..len` (all of them when `n` is 0 or at least `len`).
fn spread(len: usize, n: usize) -> Vec<usize> {
    if n == 0 || n >= len {
        return (0..len).collect();
    }
    (0..n).map(|k| k * len / n).collect()
}

/// Decodes a spread sample of `ix` and says what decoding did (an unreadable or missing image
/// is an error naming it).
fn check_images(
    ix: &ImageIndex,
    opts: &InspectOptions,
    split: &str,
) -> Result<(usize, DecodeStats), DataError> {
    let pick = spread(ix.len(), opts.check);
    let identity: Vec<Option<usize>> = (0..ix.hierarchy().num_leaves()).map(Some).collect();
    let sample = ix.subset(&pick, &identity, std::sync::Arc::clone(ix.hierarchy()));
    let what = format!(
        "{} ({split}, check of {} images)",
        ix.root().display(),
        pick.len()
    );
    // Truncated files are counted here (a study refuses them unless allowed).
    let decode = DecodeOptions {
        allow_truncated: true,
        ..opts.decode.clone()
    };
    let (_, stats) = materialize(&sample, &decode, &what)?;
    Ok((pick.len(), stats))
}

/// The whole report for an indexed dataset (see the module doc).
pub fn report_indexed(ix: &IndexedSplits, opts: &InspectOptions) -> Result<String, DataError> {
    let h = ix.hierarchy();
    let mut out = String::new();
    let _ = writeln!(out, "{}", ix.description);
    let (train_name, test_name) = &ix.split_names;
    let _ = writeln!(
        out,
        "train split `{train_name}`: {} images; test split `{test_name}`: {} images; {} leaves",
        ix.train.len(),
        ix.test.len(),
        h.num_leaves()
    );
    out.push_str(&hierarchy_report(
        h,
        &ix.train.leaf_counts(),
        &ix.test.leaf_counts(),
        opts.tree_lines,
    ));
    if ix.notes.is_empty() {
        let _ = writeln!(
            out,
            "every class has one parent in its source: nothing chosen"
        );
    } else {
        let _ = writeln!(out, "notes ({}):", ix.notes.len());
        for n in &ix.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    for w in &ix.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let side = opts.decode.size;
    for (split, index) in [(train_name, &ix.train), (test_name, &ix.test)] {
        let (n, stats) = check_images(index, opts, split)?;
        let _ = writeln!(
            out,
            "{split}: decoded {n} of {} images to {side}x{side} RGB: {}",
            index.len(),
            stats.describe(side).join("; ")
        );
        if stats.truncated > 0 && !opts.decode.allow_truncated {
            let _ = writeln!(
                out,
                "warning: {split}: {} truncated JPEG files: a study stops at the first one, naming \
                 it, unless data.allow_truncated = true",
                stats.truncated
            );
        }
    }
    let n = ix.train.len() + ix.test.len();
    let index_bytes = ix.train.heap_bytes() + ix.test.heap_bytes();
    let pixels = n as u128 * 3 * u128::from(side) * u128::from(side);
    let _ = writeln!(
        out,
        "memory: index {} ({:.1} bytes per image); all {n} images decoded at {side}x{side}: {} \
         (budget {}: {}){}",
        human_bytes(index_bytes as u128),
        index_bytes as f64 / n.max(1) as f64,
        human_bytes(pixels),
        human_bytes(u128::from(opts.decode.budget.bytes)),
        opts.decode.budget.source,
        if pixels > u128::from(opts.decode.budget.bytes) {
            " -- MORE than the budget: a study would stop before allocating; lower the size or \
             select fewer images (data.max_leaves, data.leaves_under, data.train_per_leaf)"
        } else {
            ""
        }
    );
    Ok(out)
}

/// The report for a dataset already in memory (CIFAR-100, synthetic): summary, hierarchy and,
/// when given, what decoding did.
pub fn report_splits(
    description: &str,
    splits: &Splits,
    stats: Option<(&DecodeStats, &DecodeStats)>,
    tree_lines: usize,
) -> String {
    let mut out = format!("{description}\n{}\n", splits.summary());
    let leaf = splits.train.hierarchy.leaf_level();
    out.push_str(&hierarchy_report(
        &splits.train.hierarchy,
        &splits.train.class_counts(leaf),
        &splits.test.class_counts(leaf),
        tree_lines,
    ));
    if let Some((tr, te)) = stats {
        let side = splits.train.height as u32;
        let _ = writeln!(out, "train images: {}", tr.describe(side).join("; "));
        let _ = writeln!(out, "test images: {}", te.describe(side).join("; "));
    }
    out
}

/// One line naming the target level and every level by index, name and class count:
/// `target level 0 `superclass` (20 classes); levels 0 `superclass` 20, 1 `class` 100`.
pub fn level_summary(h: &Hierarchy, target: usize) -> String {
    let levels: Vec<String> = (0..h.num_levels())
        .map(|l| format!("{l} `{}` {}", h.level(l).name, h.num_classes(l)))
        .collect();
    format!(
        "target level {target} `{}` ({}); levels (index, name, classes): {}",
        h.level(target).name,
        count(h.num_classes(target), "class", "classes"),
        levels.join(", ")
    )
}

/// The report for the dataset of a `[data]` section (at `dir`, from `--data`, or where the
/// section says: [`dataset_dir`]), read as the study reads it ([`open`]: the indexed sources
/// with the section's leaf and image selection, the others cut to `data.target_classes`).
pub fn inspect_data(
    data: &DataConfig,
    dir: Option<&Path>,
    opts: &InspectOptions,
) -> Result<String, DataError> {
    let dir = dataset_dir(data, dir)?;
    let (mut out, h) = match open(data, dir.as_deref())? {
        Opened::Indexed(ix) => (report_indexed(&ix, opts)?, Arc::clone(ix.hierarchy())),
        Opened::Loaded(loaded) => (
            report_splits(&loaded.description, &loaded.splits, None, opts.tree_lines),
            Arc::clone(&loaded.splits.train.hierarchy),
        ),
    };
    if data.target_level < h.num_levels() {
        let _ = writeln!(out, "{}", level_summary(&h, data.target_level));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_histogram() {
        assert_eq!(
            quantiles(&[5, 1, 3, 2, 4]),
            "min 1 / p10 1 / median 3 / p90 5 / max 5"
        );
        assert_eq!(quantiles(&[]), "-");
        assert_eq!(
            histogram(&[0, 1, 3, 4, 50, 1200]),
            "0: 1, 1: 1, 2-4: 2, 50-99: 1, 1000+: 1"
        );
        assert_eq!(spread(10, 3), vec![0, 3, 6]);
        assert_eq!(spread(3, 0), vec![0, 1, 2]);
    }

    /// The in-memory sources are cut to `data.target_classes` too, as the study cuts them.
    #[test]
    fn inspect_applies_target_classes_to_in_memory_sources() {
        let mut d = DataConfig::for_source(super::super::DataSource::Synthetic, Path::new(""));
        d.synthetic.subclasses = vec![2, 3];
        let all = super::super::load::synthetic::generate(&d.synthetic)
            .unwrap()
            .splits();
        let first = all.train.hierarchy.level(0).class_names[0].clone();
        d.target_classes = vec![first];
        let opts = InspectOptions {
            decode: DecodeOptions::new(8, "data.size"),
            check: 0,
            tree_lines: 0,
        };
        let r = inspect_data(&d, None, &opts).unwrap();
        assert!(r.contains("level 0 `superclass`: 1 class;"), "{r}");
        assert!(
            r.contains("(1 class); levels (index, name, classes): 0"),
            "{r}"
        );
        d.target_classes = vec!["nope".into()];
        let e = inspect_data(&d, None, &opts).unwrap_err().to_string();
        assert!(
            e.contains("data.target_classes") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn tree_is_printed_with_counts_and_truncated() {
        let h = Hierarchy::two_level(&[2, 1]).unwrap();
        let r = hierarchy_report(&h, &[3, 1, 4], &[1, 0, 2], 0);
        assert!(
            r.contains("level 0 `superclass`: 2 classes; children per class: min 1"),
            "{r}"
        );
        assert!(
            r.contains("  superclass s0: 2 children, 2 leaves, 4 / 1\n"),
            "{r}"
        );
        assert!(r.contains("    subclass s0.1: 1 / 0\n"), "{r}");
        assert!(
            r.contains("  superclass s1: 1 child, 1 leaf, 4 / 2\n"),
            "{r}"
        );
        let one = hierarchy_report(&Hierarchy::two_level(&[1]).unwrap(), &[1], &[1], 0);
        assert!(one.contains("level 0 `superclass`: 1 class;"), "{one}");
        assert!(
            r.contains("train images per leaf: min 1 / p10 1 / median 3"),
            "{r}"
        );
        let short = hierarchy_report(&h, &[3, 1, 4], &[1, 0, 2], 2);
        assert!(short.contains("... 3 more lines"), "{short}");
    }
}
