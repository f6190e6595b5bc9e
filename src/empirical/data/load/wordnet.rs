//! ImageNet-style folders named by WordNet ids ([`super::imagenet`]), with the label hierarchy
//! built from WordNet 3.0's hypernym links and cut at chosen depths, as the paper's
//! ImageNet-21k levels were.
//!
//! # WordNet
//!
//! The noun database `data.noun` of WordNet 3.0 is read from a path the user gives (Debian's
//! and Ubuntu's `wordnet-base` package installs it as `/usr/share/wordnet/data.noun`); nothing
//! is downloaded. A folder `nXXXXXXXX` is the synset at byte offset `XXXXXXXX` of that file.
//! Hypernym (`@`) and instance-hypernym (`@i`) pointers to nouns are the parent links.
//!
//! # Depth and the parent of a synset with several hypernyms
//!
//! WordNet is not a tree: some synsets have two or more hypernyms (`dog` is both a `canine` and
//! a `domestic_animal`). The depth of a synset is the length of its *longest* hypernym path to
//! a root (`entity` is the only root of WordNet 3.0's nouns, at depth 0), and its parent is the
//! hypernym on that path, i.e. the deepest of its hypernyms; when several are equally deep, the
//! one listed first in `data.noun`. Every synset thus has one parent and the leaves' ancestor
//! chains form a tree. [`IndexedSplits::notes`] lists every synset on the leaves' chains that
//! has several hypernyms, with the depths and the parent chosen. (The same longest-path rule
//! defines the levels of the BREEDS hierarchy.)
//!
//! # Levels
//!
//! With `depths = [d1, d2, ...]` (strictly increasing), level `j` holds each leaf's ancestor at
//! depth `dj` (named `depth{dj}`), and the last level (`leaf`) the folders' synsets. A leaf
//! shallower than `dj` is its own ancestor there. Classes are named `wnid lemma`
//! (e.g. `n02084071 dog`).
//!
//! # Checks
//!
//! Errors name the file and entry: a malformed `data.noun` line (with its line number), a
//! folder that is not a WordNet id, a WordNet id not in `data.noun`, a hypernym pointer to a
//! missing synset, a cycle of hypernym links, bad depths (naming `data.wordnet.depths`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::imagenet;
use crate::empirical::data::indexed::IndexedSplits;
use crate::empirical::data::DataError;
use crate::hierarchy::Hierarchy;

/// Where Debian's and Ubuntu's `wordnet-base` package puts WordNet 3.0's noun database.
pub const DEBIAN_DATA_NOUN: &str = "/usr/share/wordnet/data.noun";

/// The WordNet-specific settings of a study (`data.wordnet`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WordnetConfig {
    /// Path of WordNet 3.0's `data.noun` (e.g. /usr/share/wordnet/data.noun).
    pub noun: String,
    /// Depths at which the WordNet tree is cut, strictly increasing (0 = `entity`); one level
    /// per depth, then the leaves.
    pub depths: Vec<usize>,
}

/// One noun synset: its first lemma and its hypernyms, in file order.
#[derive(Clone, Debug)]
struct Synset {
    lemma: Box<str>,
    hypernyms: Vec<u32>,
}

/// WordNet's noun synsets and hypernym links, as read from `data.noun`.
#[derive(Clone, Debug)]
pub struct WordNet {
    path: PathBuf,
    synsets: HashMap<u32, Synset>,
}

/// `n` and the 8-digit offset.
fn wnid(offset: u32) -> String {
    format!("n{offset:08}")
}

impl WordNet {
    /// Reads `data.noun` (errors name the line of a malformed entry).
    pub fn read(path: &Path) -> Result<WordNet, DataError> {
        if !path.is_file() {
            return Err(DataError::MissingFile {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                looked_for: vec![super::folder::file_name(path)],
            });
        }
        let text = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = String::from_utf8_lossy(&text);
        let mut synsets = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with(' ') || line.trim().is_empty() {
                continue; // the license header
            }
            let (offset, synset) = parse_line(line).map_err(|message| DataError::Format {
                path: path.to_path_buf(),
                line: i as u64 + 1,
                message,
            })?;
            synsets.insert(offset, synset);
        }
        if synsets.is_empty() {
            return Err(DataError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        Ok(WordNet {
            path: path.to_path_buf(),
            synsets,
        })
    }

    /// Number of noun synsets.
    pub fn len(&self) -> usize {
        self.synsets.len()
    }

    /// True when there is no synset.
    pub fn is_empty(&self) -> bool {
        self.synsets.is_empty()
    }

    /// `wnid lemma` of a synset.
    fn label(&self, s: u32) -> String {
        match self.synsets.get(&s) {
            Some(syn) => format!("{} {}", wnid(s), syn.lemma),
            None => wnid(s),
        }
    }

    /// The offset of a WordNet id `nXXXXXXXX`, if it is one of the file's synsets.
    fn lookup(&self, id: &str) -> Option<u32> {
        let off: u32 = id.strip_prefix('n')?.parse().ok()?;
        self.synsets.contains_key(&off).then_some(off)
    }
}

/// One data line: its offset and synset, or what is wrong.
fn parse_line(line: &str) -> Result<(u32, Synset), String> {
    let fields = line.split('|').next().unwrap_or("");
    let mut tok = fields.split_whitespace();
    let mut next = |what: &str| {
        tok.next()
            .ok_or_else(|| format!("the line ends before its {what}"))
    };
    let offset_s = next("synset offset")?;
    let offset: u32 = offset_s
        .parse()
        .map_err(|_| format!("synset offset `{offset_s}` is not a number"))?;
    next("lexicographer file number")?;
    let ss_type = next("synset type")?;
    if ss_type != "n" {
        return Err(format!(
            "synset type `{ss_type}` is not `n`: this is not a noun database (data.noun)"
        ));
    }
    let w_cnt_s = next("word count")?;
    let w_cnt = usize::from_str_radix(w_cnt_s, 16)
        .map_err(|_| format!("word count `{w_cnt_s}` is not a hexadecimal number"))?;
    if w_cnt == 0 {
        return Err("word count is 0".into());
    }
    let mut lemma = String::new();
    for w in 0..w_cnt {
        let word = next("words")?;
        next("lex ids")?;
        if w == 0 {
            lemma = word.to_string();
        }
    }
    let p_cnt_s = next("pointer count")?;
    let p_cnt: usize = p_cnt_s
        .parse()
        .map_err(|_| format!("pointer count `{p_cnt_s}` is not a number"))?;
    let mut hypernyms = Vec::new();
    for _ in 0..p_cnt {
        let symbol = next("pointers")?;
        let target = next("pointers")?;
        let pos = next("pointers")?;
        next("pointers")?;
        if (symbol == "@" || symbol == "@i") && pos == "n" {
            let t: u32 = target
                .parse()
                .map_err(|_| format!("pointer target `{target}` is not a number"))?;
            hypernyms.push(t);
        }
    }
    Ok((
        offset,
        Synset {
            lemma: lemma.into(),
            hypernyms,
        },
    ))
}

/// Depths and chosen parents of synsets, computed on demand.
struct Chains<'a> {
    wn: &'a WordNet,
    /// synset -> (depth, chosen parent)
    memo: HashMap<u32, (usize, Option<u32>)>,
    /// synsets with several hypernyms met on the way: synset -> hypernyms with their own depths
    multi: BTreeMap<u32, Vec<(u32, usize)>>,
}

impl<'a> Chains<'a> {
    fn new(wn: &'a WordNet) -> Self {
        Chains {
            wn,
            memo: HashMap::new(),
            multi: BTreeMap::new(),
        }
    }

    /// Depth of `s` (longest hypernym path to a root), filling the memo.
    fn depth(&mut self, s: u32, visiting: &mut Vec<u32>) -> Result<usize, DataError> {
        if let Some(&(d, _)) = self.memo.get(&s) {
            return Ok(d);
        }
        if let Some(pos) = visiting.iter().position(|&v| v == s) {
            let mut nodes: Vec<String> =
                visiting[pos..].iter().map(|&v| self.wn.label(v)).collect();
            nodes.push(self.wn.label(s));
            return Err(DataError::Cycle {
                path: self.wn.path.clone(),
                nodes,
            });
        }
        let hypernyms = match self.wn.synsets.get(&s) {
            Some(syn) => syn.hypernyms.clone(),
            None => {
                let child = visiting.last().copied().unwrap_or(s);
                return Err(DataError::Entry {
                    path: self.wn.path.clone(),
                    entry: format!("synset {}", self.wn.label(child)),
                    message: format!("hypernym {} is not a synset of this file", wnid(s)),
                });
            }
        };
        visiting.push(s);
        let mut best: Option<(usize, u32)> = None;
        let mut all = Vec::with_capacity(hypernyms.len());
        for &h in &hypernyms {
            let dh = self.depth(h, visiting)?;
            all.push((h, dh));
            if best.is_none_or(|(bd, _)| dh + 1 > bd) {
                best = Some((dh + 1, h));
            }
        }
        visiting.pop();
        if all.len() > 1 {
            self.multi.insert(s, all);
        }
        let entry = best.map_or((0, None), |(d, h)| (d, Some(h)));
        self.memo.insert(s, entry);
        Ok(entry.0)
    }

    /// The chain of `s` from its root down to `s`.
    fn chain(&mut self, s: u32) -> Result<Vec<u32>, DataError> {
        self.depth(s, &mut Vec::new())?;
        let mut chain = vec![s];
        let mut cur = s;
        while let Some(p) = self.memo[&cur].1 {
            chain.push(p);
            cur = p;
        }
        chain.reverse();
        Ok(chain)
    }

    /// One note per synset with several hypernyms: the depths and the parent chosen.
    fn notes(&self) -> Vec<String> {
        self.multi
            .iter()
            .map(|(&s, hs)| {
                let chosen = self.memo[&s]
                    .1
                    .map(|p| self.wn.label(p))
                    .unwrap_or_default();
                let list: Vec<String> = hs
                    .iter()
                    .map(|&(h, d)| format!("{} (depth {d})", self.wn.label(h)))
                    .collect();
                format!(
                    "{} has {} hypernyms: {}; parent: {chosen} (the deepest{})",
                    self.wn.label(s),
                    hs.len(),
                    list.join(", "),
                    if hs.iter().filter(|(_, d)| d + 1 == self.memo[&s].0).count() > 1 {
                        ", first listed of the equally deep"
                    } else {
                        ""
                    }
                )
            })
            .collect()
    }
}

/// The hierarchy of leaves `leaves` (WordNet offsets) cut at `depths`, with notes on synsets
/// with several hypernyms. `folder_of` names where each leaf came from, for errors.
fn wordnet_hierarchy(
    wn: &WordNet,
    leaves: &[u32],
    depths: &[usize],
) -> Result<(Hierarchy, Vec<String>, Vec<String>), DataError> {
    let mut chains = Chains::new(wn);
    let mut level_names: Vec<String> = depths.iter().map(|d| format!("depth{d}")).collect();
    level_names.push("leaf".into());
    let mut paths = Vec::with_capacity(leaves.len());
    let mut leaf_chains = Vec::with_capacity(leaves.len());
    for &leaf in leaves {
        let chain = chains.chain(leaf)?;
        let mut path: Vec<String> = depths
            .iter()
            .map(|&d| wn.label(chain[d.min(chain.len() - 1)]))
            .collect();
        path.push(wn.label(leaf));
        paths.push(path);
        leaf_chains.push(chain);
    }
    let h = Hierarchy::from_leaf_paths(&level_names, &paths).map_err(|e| DataError::Hierarchy {
        path: wn.path.clone(),
        error: Box::new(e),
    })?;
    let mut notes = chains.notes();
    let warnings = shallow_and_ancestor_leaves(wn, leaves, &leaf_chains, depths, &mut notes);
    Ok((h, notes, warnings))
}

/// What the cut does that a user may not expect: notes on leaves at or above a cut depth
/// (each is its own class there), and warnings for a depth at or below every leaf (that level
/// is the leaves again) and for a folder whose synset is an ancestor of other folders' (its
/// images become a leaf beside theirs, not their parent).
fn shallow_and_ancestor_leaves(
    wn: &WordNet,
    leaves: &[u32],
    chains: &[Vec<u32>],
    depths: &[usize],
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let deepest = chains.iter().map(|c| c.len() - 1).max().unwrap_or(0);
    for &d in depths {
        let own: Vec<usize> = (0..leaves.len())
            .filter(|&i| chains[i].len() - 1 <= d)
            .collect();
        if own.len() == leaves.len() {
            warnings.push(format!(
                "data.wordnet.depths: depth {d} is at or below every leaf (the deepest is at \
                 depth {deepest}), so level depth{d} is the leaves themselves; cut above depth \
                 {deepest}"
            ));
        } else if let Some(&first) = own.first() {
            notes.push(format!(
                "{} of {} leaves are at depth {d} or above (e.g. {}, at depth {}): each is its \
                 own class at level depth{d}",
                own.len(),
                leaves.len(),
                wn.label(leaves[first]),
                chains[first].len() - 1
            ));
        }
    }
    let is_leaf: std::collections::HashSet<u32> = leaves.iter().copied().collect();
    let mut below: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (i, chain) in chains.iter().enumerate() {
        for a in &chain[..chain.len() - 1] {
            if is_leaf.contains(a) {
                below.entry(*a).or_default().push(leaves[i]);
            }
        }
    }
    for (a, under) in below {
        warnings.push(format!(
            "folder {} is an ancestor of {} other folder{} (e.g. {}): its images are a leaf of \
             their own beside them, not their parent; move them into the finer folders or \
             remove the folder if that is not meant",
            wn.label(a),
            under.len(),
            if under.len() == 1 { "" } else { "s" },
            wn.label(under[0])
        ));
    }
    warnings
}

/// Checks `data.wordnet.depths`: non-empty and strictly increasing.
fn check_depths(depths: &[usize]) -> Result<(), DataError> {
    let invalid = |message: &str| DataError::Invalid {
        context: "data.wordnet.depths".into(),
        message: message.into(),
    };
    if depths.is_empty() {
        return Err(invalid(
            "give at least one depth to cut WordNet at (e.g. [3, 6]; 0 is `entity`)",
        ));
    }
    if depths.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("depths must be strictly increasing"));
    }
    Ok(())
}

/// Indexes the ImageNet-style folders at `dir` with the WordNet hierarchy of `cfg`.
pub fn index_wordnet(dir: &Path, cfg: &WordnetConfig) -> Result<IndexedSplits, DataError> {
    check_depths(&cfg.depths)?;
    if cfg.noun.trim().is_empty() {
        return Err(DataError::Invalid {
            context: "data.wordnet.noun".into(),
            message: format!(
                "give the path of WordNet 3.0's data.noun (Debian's wordnet-base package: {DEBIAN_DATA_NOUN})"
            ),
        });
    }
    let noun = Path::new(&cfg.noun);
    let wn = WordNet::read(noun)?;
    let folders = imagenet::scan(dir, None)?;
    let wnids: Vec<String> = folders.train.keys().cloned().collect();
    if wnids.is_empty() {
        return Err(DataError::EmptySplit {
            path: dir.join("train"),
        });
    }
    let mut offsets = Vec::with_capacity(wnids.len());
    for id in &wnids {
        offsets.push(wn.lookup(id).ok_or_else(|| DataError::UnknownWnid {
            path: dir.join("train").join(id),
            wnid: id.clone(),
            wordnet: noun.to_path_buf(),
        })?);
    }
    if let Some(extra) = folders
        .test
        .keys()
        .find(|k| !folders.train.contains_key(*k))
    {
        return Err(DataError::UnknownLeafFolder {
            path: dir.join(&folders.test_name).join(extra),
            leaf: extra.clone(),
            hierarchy: dir.join("train"),
        });
    }
    let (h, notes, cut_warnings) = wordnet_hierarchy(&wn, &offsets, &cfg.depths)?;
    let h = Arc::new(h);
    let (train, test, no_test) = folders.index(&wnids, &h, noun)?;
    Ok(IndexedSplits {
        train,
        test,
        split_names: ("train".into(), folders.test_name.clone()),
        description: format!(
            "ImageNet-style folders at {} with the WordNet hierarchy of {} cut at depths {:?}",
            dir.display(),
            noun.display(),
            cfg.depths
        ),
        notes,
        warnings: folders
            .no_test_warning(&no_test, &wnids)
            .into_iter()
            .chain(cut_warnings)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(offset: u32, words: &[&str], hypernyms: &[(&str, u32)]) -> String {
        let mut s = format!("{offset:08} 03 n {:02x}", words.len());
        for w in words {
            s += &format!(" {w} 0");
        }
        s += &format!(" {:03}", hypernyms.len());
        for (sym, h) in hypernyms {
            s += &format!(" {sym} {h:08} n 0000");
        }
        s + " | a gloss  "
    }

    fn write(lines: &[String]) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("data.noun");
        let mut text = "  1 This software and database is being provided\n".to_string();
        for l in lines {
            text += l;
            text += "\n";
        }
        std::fs::write(&p, text).unwrap();
        (t, p)
    }

    /// entity(1) <- object(2) <- animal(3) <- canine(4) <- dog(6); dog also <- pet(5) <- entity;
    /// husky(7) @i dog. Depths: entity 0, object 1, animal 2, canine 3, pet 1, dog 4, husky 5.
    fn sample() -> Vec<String> {
        vec![
            line(1, &["entity"], &[]),
            line(2, &["object", "physical_object"], &[("@", 1)]),
            line(3, &["animal"], &[("@", 2)]),
            line(4, &["canine"], &[("@", 3)]),
            line(5, &["pet"], &[("@", 1)]),
            line(6, &["dog"], &[("@", 5), ("@", 4), ("~", 7)]),
            line(7, &["husky"], &[("@i", 6)]),
        ]
    }

    #[test]
    fn parses_and_chooses_the_deepest_hypernym() {
        let (_t, p) = write(&sample());
        let wn = WordNet::read(&p).unwrap();
        assert_eq!(wn.len(), 7);
        assert_eq!(wn.synsets[&2].lemma.as_ref(), "object");
        assert_eq!(wn.synsets[&6].hypernyms, vec![5, 4]);
        let mut c = Chains::new(&wn);
        assert_eq!(c.chain(7).unwrap(), vec![1, 2, 3, 4, 6, 7]);
        let notes = c.notes();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("n00000006 dog has 2 hypernyms")
                && notes[0].contains("n00000005 pet (depth 1)")
                && notes[0].contains("n00000004 canine (depth 3)")
                && notes[0].contains("parent: n00000004 canine (the deepest)"),
            "{notes:?}"
        );
        let (h, _, _) = wordnet_hierarchy(&wn, &[7, 5, 3], &[1, 3]).unwrap();
        assert_eq!(h.level(0).name, "depth1");
        assert_eq!(h.level(1).name, "depth3");
        // husky: depth1 object, depth3 canine; pet (depth 1): itself at both; animal (depth 2):
        // object at depth 1, itself at depth 3.
        assert_eq!(
            h.level(0).class_names,
            vec!["n00000002 object", "n00000005 pet"]
        );
        assert_eq!(
            h.level(1).class_names,
            vec!["n00000004 canine", "n00000005 pet", "n00000003 animal"]
        );
        assert_eq!(h.level(2).parent, vec![0, 1, 2]);
        assert_eq!(h.level(1).parent, vec![0, 1, 0]);
    }

    #[test]
    fn ties_go_to_the_first_listed() {
        let mut lines = sample();
        lines.push(line(8, &["mutt"], &[("@", 5), ("@", 2)]));
        let (_t, p) = write(&lines);
        let wn = WordNet::read(&p).unwrap();
        let mut c = Chains::new(&wn);
        assert_eq!(c.chain(8).unwrap(), vec![1, 5, 8]);
        assert!(c.notes()[0].contains("first listed of the equally deep"));
    }

    #[test]
    fn malformed_files_cycles_and_missing_synsets() {
        let (_t, p) = write(&["00000001 03 n 01 entity 0 0x3 | bad".to_string()]);
        let e = WordNet::read(&p).unwrap_err();
        assert!(
            matches!(e, DataError::Format { line: 2, .. })
                && e.to_string().contains("pointer count"),
            "{e}"
        );
        let (_t, p) = write(&["00000001 03 v 01 run 0 000 | verb".to_string()]);
        assert!(WordNet::read(&p)
            .unwrap_err()
            .to_string()
            .contains("not a noun database"));
        let (_t, p) = write(&[
            line(1, &["a"], &[("@", 3)]),
            line(2, &["b"], &[("@", 1)]),
            line(3, &["c"], &[("@", 2)]),
        ]);
        let wn = WordNet::read(&p).unwrap();
        let e = Chains::new(&wn).chain(1).unwrap_err();
        assert!(matches!(e, DataError::Cycle { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("n00000001 a -> n00000003 c -> n00000002 b -> n00000001 a"),
            "{e}"
        );
        let (_t, p) = write(&[line(1, &["a"], &[("@", 9)])]);
        let wn = WordNet::read(&p).unwrap();
        let e = Chains::new(&wn).chain(1).unwrap_err();
        assert!(
            e.to_string()
                .contains("synset n00000001 a: hypernym n00000009 is not a synset"),
            "{e}"
        );
    }

    #[test]
    fn depths_are_checked() {
        assert!(check_depths(&[]).is_err());
        assert!(check_depths(&[3, 3]).is_err());
        assert!(check_depths(&[2, 5]).is_ok());
    }

    #[test]
    #[ignore = "needs WordNet 3.0 at /usr/share/wordnet/data.noun (Debian package wordnet-base)"]
    fn real_wordnet_dog() {
        let wn = WordNet::read(Path::new(DEBIAN_DATA_NOUN)).unwrap();
        assert_eq!(wn.len(), 82_115);
        let dog = wn.lookup("n02084071").unwrap();
        let mut c = Chains::new(&wn);
        let chain = c.chain(dog).unwrap();
        assert_eq!(wn.label(chain[0]), "n00001740 entity");
        // dog's hypernyms: canine (n02083346) and domestic_animal (n01317541); canine is deeper.
        assert_eq!(wn.label(chain[chain.len() - 2]), "n02083346 canine");
        assert!(c
            .notes()
            .iter()
            .any(|n| n.starts_with("n02084071 dog has 2 hypernyms")));
    }
}
