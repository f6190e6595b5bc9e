//! iNaturalist 2021 in its official layout, with every taxonomic level a hierarchy level.
//!
//! # Layout
//!
//! ```text
//! inat2021/
//!   train.json        train_mini.json        val.json
//!   train/            train_mini/            val/
//!     00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris/
//!       0a1b....jpg ...
//! ```
//!
//! Each JSON file follows the competition's COCO-style format: `images` (`id`, `file_name`
//! relative to the dataset folder, ...), `annotations` (`image_id`, `category_id`) and
//! `categories` (`id`, `name` = the species, `kingdom`, `phylum`, `class`, `order`, `family`,
//! `genus`, ...). Other keys and fields are ignored; the keys may come in any order. The training
//! split is `train` (2.7 M images) or `train_mini` (50 per species, 500 K images); the test split
//! is `val` (10 per species).
//!
//! # Hierarchy
//!
//! Seven levels, coarsest first: `kingdom`, `phylum`, `class`, `order`, `family`, `genus`,
//! `species` (the category's `name`). Leaf `i` is the category with the `i`-th smallest id. A
//! class is its whole path of ancestors, so a name used at one level under two different
//! parents (a homonym, such as a plant and an animal genus of the same name) is two classes;
//! both are then named `name (parent)` and [`IndexedSplits::notes`] lists them. The categories of
//! `val.json` must agree with those of the training file.
//!
//! # Checks
//!
//! Errors name the file and the entry (`images[3] (id 17, ...)`, `annotations[5] (id 9)`,
//! `categories[2] (id 2, ...)`): an image with no annotation or with two, an annotation naming
//! a missing image or category, a category missing a level, two categories with the same
//! taxonomy, a category with no training image, a val category that differs from the training
//! one; a JSON file that is missing or malformed (with its line and column). An image file that
//! does not exist is reported, with the JSON entry naming it, when it is decoded (or checked by
//! `empirical inspect`). Leaves with no val image give one warning.
//!
//! The JSON files are read as a stream: images go straight into a compact [`ImageIndex`]
//! (file names, not whole entries, are kept), so the training file of 2.7 M images does not
//! need to fit in memory as JSON values.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::empirical::data::index::{ImageIndex, IndexBuilder};
use crate::empirical::data::indexed::IndexedSplits;
use crate::empirical::data::DataError;
use crate::hierarchy::{Hierarchy, HierarchyError};

/// The taxonomic levels, coarsest first; the last is read from the category's `name`.
pub const LEVELS: [&str; 7] = [
    "kingdom", "phylum", "class", "order", "family", "genus", "species",
];

/// Which training split of iNaturalist 2021 to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum InatTrainSplit {
    /// `train.json`: 2,686,843 images.
    #[default]
    Train,
    /// `train_mini.json`: 50 images per species, 500,000 images.
    TrainMini,
}

impl InatTrainSplit {
    /// The split's name (its folder and JSON file stem).
    pub fn name(self) -> &'static str {
        match self {
            InatTrainSplit::Train => "train",
            InatTrainSplit::TrainMini => "train_mini",
        }
    }
}

/// The iNaturalist-specific settings of a study (`data.inat`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InatConfig {
    /// The training split: "train" (default) or "train_mini". The test split is "val".
    pub train_split: InatTrainSplit,
}

/// One category as read from the JSON (levels in [`LEVELS`] order, `None` when missing).
#[derive(Clone, Debug)]
struct Category {
    id: u64,
    names: Vec<Option<String>>,
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map: HashMap<String, serde_json::Value> = HashMap::deserialize(d)?;
        let id = map
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| {
                serde::de::Error::custom("category without a non-negative integer `id`")
            })?;
        let names = LEVELS
            .iter()
            .map(|&level| {
                let key = if level == "species" { "name" } else { level };
                match map.remove(key) {
                    // A NaN read as a string of DEL characters (see `NonFinite`) names nothing.
                    Some(serde_json::Value::String(s))
                        if !s.trim().is_empty() && !s.chars().all(|c| c == '\x7f') =>
                    {
                        Some(s.trim().to_string())
                    }
                    _ => None,
                }
            })
            .collect();
        Ok(Category { id, names })
    }
}

/// An annotation: (its id, the image id, the category id).
type Annotation = (u64, u64, u64);

/// What one JSON file holds, images already in an index builder.
struct Listing {
    path: PathBuf,
    image_ids: Vec<u64>,
    builder: IndexBuilder,
    annotations: Vec<Annotation>,
    categories: Vec<Category>,
    saw_images: bool,
    saw_annotations: bool,
    saw_categories: bool,
}

#[derive(Deserialize)]
struct RawImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct RawAnnotation {
    #[serde(default)]
    id: u64,
    image_id: u64,
    category_id: u64,
}

/// Streams the top-level object into a [`Listing`].
struct ListingSeed<'a>(&'a mut Listing);

impl<'de> DeserializeSeed<'de> for ListingSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListingSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with `images`, `annotations` and `categories`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let l = self.0;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "images" => {
                    l.saw_images = true;
                    map.next_value_seed(elements(|img: RawImage| -> Result<(), String> {
                        check_file_name(&img)?;
                        l.builder
                            .push(&img.file_name, 0)
                            .map_err(|e| e.to_string())?;
                        l.image_ids.push(img.id);
                        Ok(())
                    }))?
                }
                "annotations" => {
                    l.saw_annotations = true;
                    map.next_value_seed(elements(|a: RawAnnotation| -> Result<(), String> {
                        l.annotations.push((a.id, a.image_id, a.category_id));
                        Ok(())
                    }))?
                }
                "categories" => {
                    l.saw_categories = true;
                    l.categories = map.next_value()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Refuses an image `file_name` that is empty, absolute or climbs out of the dataset folder
/// (a `..` component): every image must lie inside the folder the study was pointed at.
fn check_file_name(img: &RawImage) -> Result<(), String> {
    let f = &img.file_name;
    let outside = f.starts_with('/')
        || f.starts_with('\\')
        || f.as_bytes().get(1) == Some(&b':')
        || f.split(['/', '\\']).any(|c| c == "..");
    if f.trim().is_empty() {
        return Err(format!("image id {}: `file_name` is empty", img.id));
    }
    if outside {
        return Err(format!(
            "image id {}: `file_name` {f:?} points outside the dataset folder (absolute or with \
             `..`); file names are relative to the folder that holds the JSON files",
            img.id
        ));
    }
    Ok(())
}

/// Streams a JSON array of `T`, handing each element to a closure.
struct Elements<T, F>(F, std::marker::PhantomData<T>);

/// An [`Elements`] seed calling `f`.
fn elements<T, F>(f: F) -> Elements<T, F> {
    Elements(f, std::marker::PhantomData)
}

impl<'de, T: Deserialize<'de>, F: FnMut(T) -> Result<(), String>> DeserializeSeed<'de>
    for Elements<T, F>
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(ElementsVisitor(self.0, std::marker::PhantomData))
    }
}

struct ElementsVisitor<T, F>(F, std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>, F: FnMut(T) -> Result<(), String>> Visitor<'de>
    for ElementsVisitor<T, F>
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<S: SeqAccess<'de>>(mut self, mut seq: S) -> Result<(), S::Error> {
        while let Some(x) = seq.next_element::<T>()? {
            (self.0)(x).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}

/// Python's `json.dump` writes a missing float as `NaN` (and infinities as `Infinity`,
/// `-Infinity`), which JSON does not allow; the published iNaturalist files do so in fields
/// such as `latitude`. This reader hands the JSON parser each such bare token (outside strings)
/// as a string of as many bytes, made of DEL characters (`"\x7f"`), so that the fields the
/// toolkit ignores accept it, one it reads refuses it by name ([`NonFinite::explain`]), and
/// the line and column of every error stay those of the file.
struct NonFinite<R> {
    inner: R,
    buf: Vec<u8>,
    /// Next byte to hand out.
    start: usize,
    /// End of the bytes already rewritten (those after are held back: a token may go on).
    ready: usize,
    /// End of the bytes read.
    end: usize,
    eof: bool,
    in_string: bool,
    escape: bool,
}

/// The non-finite tokens and the (same-length) strings they are read as.
const NON_FINITE: [(&[u8], &str); 3] = [
    (b"NaN", "NaN"),
    (b"Infinity", "Infinity"),
    (b"-Infinity", "-Infinity"),
];

impl<R: std::io::Read> NonFinite<R> {
    fn new(inner: R) -> Self {
        NonFinite {
            inner,
            buf: Vec::new(),
            start: 0,
            ready: 0,
            end: 0,
            eof: false,
            in_string: false,
            escape: false,
        }
    }

    /// The parser's message with the stand-in strings named as the tokens of the file.
    fn explain(message: &str) -> String {
        let mut m = message.to_string();
        for (token, _) in NON_FINITE.iter().rev() {
            let stand_in = format!("string {:?}", "\u{7f}".repeat(token.len() - 2));
            m = m.replace(
                &stand_in,
                &format!(
                    "{} (accepted only in the fields the toolkit ignores)",
                    String::from_utf8_lossy(token)
                ),
            );
        }
        m
    }

    /// Rewrites `buf[ready..end]`, stopping before a token that may continue past `end`.
    fn rewrite(&mut self) {
        let mut i = self.ready;
        while i < self.end {
            let b = self.buf[i];
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else if b == b'"' {
                self.in_string = true;
            } else if matches!(b, b'N' | b'I' | b'-') {
                let rest = &self.buf[i..self.end];
                if let Some((token, _)) = NON_FINITE.iter().find(|(t, _)| rest.starts_with(t)) {
                    let n = token.len();
                    self.buf[i] = b'"';
                    self.buf[i + 1..i + n - 1].fill(0x7f);
                    self.buf[i + n - 1] = b'"';
                    i += n;
                    continue;
                }
                if !self.eof && NON_FINITE.iter().any(|(t, _)| t.starts_with(rest)) {
                    break; // hold back: the token may go on in the next read
                }
            }
            i += 1;
        }
        self.ready = i;
    }
}

impl<R: std::io::Read> std::io::Read for NonFinite<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.start == self.ready {
            if self.eof && self.ready == self.end {
                return Ok(0);
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.ready -= self.start;
            self.start = 0;
            self.buf.resize(self.end.max(1 << 16), 0);
            let n = self.inner.read(&mut self.buf[self.end..])?;
            self.eof = n == 0;
            self.end += n;
            self.rewrite();
        }
        let n = out.len().min(self.ready - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

/// Reads one JSON listing of the dataset at `root`.
fn read_listing(root: &Path, path: &Path) -> Result<Listing, DataError> {
    if !path.is_file() {
        return Err(DataError::MissingFile {
            dir: root.to_path_buf(),
            looked_for: vec![file_name(path)],
        });
    }
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut listing = Listing {
        path: path.to_path_buf(),
        image_ids: Vec::new(),
        builder: IndexBuilder::new(root, Some(path)),
        annotations: Vec::new(),
        categories: Vec::new(),
        saw_images: false,
        saw_annotations: false,
        saw_categories: false,
    };
    // An image entry of the official files takes about 300 bytes of JSON.
    let guess = usize::try_from(size / 600).unwrap_or(0);
    listing.builder.reserve(guess, 40);
    let mut de = serde_json::Deserializer::from_reader(NonFinite::new(BufReader::with_capacity(
        1 << 20,
        file,
    )));
    let json_err = |e: serde_json::Error| DataError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: NonFinite::<File>::explain(&e.to_string()),
    };
    ListingSeed(&mut listing)
        .deserialize(&mut de)
        .map_err(json_err)?;
    de.end().map_err(json_err)?;
    for (seen, key) in [
        (listing.saw_images, "images"),
        (listing.saw_annotations, "annotations"),
        (listing.saw_categories, "categories"),
    ] {
        if !seen {
            return Err(DataError::Entry {
                path: path.to_path_buf(),
                entry: "top level".into(),
                message: format!("no `{key}` array"),
            });
        }
    }
    Ok(listing)
}

fn file_name(p: &Path) -> String {
    super::folder::file_name(p)
}

/// `categories[k] (id X, species name)`.
fn category_entry(k: usize, c: &Category) -> String {
    match c.names.last().and_then(Option::as_deref) {
        Some(name) => format!("categories[{k}] (id {}, {name:?})", c.id),
        None => format!("categories[{k}] (id {})", c.id),
    }
}

/// The taxonomy of the training listing: the hierarchy (leaf `i` = `i`-th smallest category
/// id), the category id of each leaf, and notes on renamed homonyms.
fn taxonomy(l: &Listing) -> Result<(Hierarchy, Vec<u64>, Vec<String>), DataError> {
    let entry_err = |entry: String, message: String| DataError::Entry {
        path: l.path.clone(),
        entry,
        message,
    };
    let mut order: Vec<usize> = (0..l.categories.len()).collect();
    order.sort_by_key(|&k| l.categories[k].id);
    if order.is_empty() {
        return Err(entry_err("categories".into(), "the array is empty".into()));
    }
    for w in order.windows(2) {
        if l.categories[w[0]].id == l.categories[w[1]].id {
            let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
            return Err(entry_err(
                category_entry(b, &l.categories[b]),
                format!(
                    "id {} is also the id of categories[{a}]",
                    l.categories[b].id
                ),
            ));
        }
    }
    let mut raw_paths: Vec<Vec<String>> = Vec::with_capacity(order.len());
    for &k in &order {
        let c = &l.categories[k];
        let mut path = Vec::with_capacity(LEVELS.len());
        for (level, name) in LEVELS.iter().zip(&c.names) {
            match name {
                Some(n) => path.push(n.clone()),
                None => {
                    let field = if *level == "species" { "name" } else { level };
                    return Err(entry_err(
                        category_entry(k, c),
                        format!("missing `{field}` (every category needs all of kingdom, phylum, class, order, family, genus and name)"),
                    ));
                }
            }
        }
        raw_paths.push(path);
    }
    let (paths, notes) = disambiguate(&raw_paths);
    let level_names: Vec<String> = LEVELS.iter().map(|s| s.to_string()).collect();
    let h = Hierarchy::from_leaf_paths(&level_names, &paths).map_err(|e| match e {
        HierarchyError::DuplicateLeaf { first, second, .. } => entry_err(
            category_entry(order[second], &l.categories[order[second]]),
            format!(
                "the same taxonomy as {}",
                category_entry(order[first], &l.categories[order[first]])
            ),
        ),
        e => DataError::Hierarchy {
            path: l.path.clone(),
            error: Box::new(e),
        },
    })?;
    let ids = order.iter().map(|&k| l.categories[k].id).collect();
    Ok((h, ids, notes))
}

/// Unique class names: a name used at one level under several different ancestor paths is
/// renamed `name (parent)` (the parent's own, already unique, name). Returns the new paths and
/// one note per renamed name.
fn disambiguate(paths: &[Vec<String>]) -> (Vec<Vec<String>>, Vec<String>) {
    let depth = paths.first().map_or(0, Vec::len);
    let mut out: Vec<Vec<String>> = paths.iter().map(|_| Vec::with_capacity(depth)).collect();
    let mut notes = Vec::new();
    for l in 0..depth {
        // name -> the distinct (unique) parent names it appears under
        let mut parents: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (p, o) in paths.iter().zip(&out) {
            let parent = if l == 0 { "" } else { o[l - 1].as_str() };
            parents.entry(p[l].as_str()).or_default().insert(parent);
        }
        let mut renamed: Vec<(&str, Vec<&str>)> = parents
            .iter()
            .filter(|(_, ps)| ps.len() > 1)
            .map(|(n, ps)| (*n, ps.iter().copied().collect()))
            .collect();
        renamed.sort();
        for (name, ps) in &renamed {
            notes.push(format!(
                "{} `{name}` appears under {} classes of level {} ({}): each is named `{name} (PARENT)`",
                LEVELS.get(l).unwrap_or(&"level"),
                ps.len(),
                LEVELS.get(l.wrapping_sub(1)).unwrap_or(&"parent"),
                ps.join(", ")
            ));
        }
        let homonym: BTreeSet<&str> = renamed.iter().map(|(n, _)| *n).collect();
        let new_names: Vec<String> = paths
            .iter()
            .zip(&out)
            .map(|(p, o)| {
                if homonym.contains(p[l].as_str()) {
                    format!("{} ({})", p[l], o[l - 1])
                } else {
                    p[l].clone()
                }
            })
            .collect();
        for (o, n) in out.iter_mut().zip(new_names) {
            o.push(n);
        }
    }
    (out, notes)
}

/// Gives each image of a listing its leaf from the annotations (errors name the entries).
fn label_images(l: &mut Listing, leaf_of_category: &HashMap<u64, usize>) -> Result<(), DataError> {
    let entry_err = |entry: String, message: String| DataError::Entry {
        path: l.path.clone(),
        entry,
        message,
    };
    let n = l.image_ids.len();
    let mut by_id: Vec<u32> = (0..n as u32).collect();
    by_id.sort_unstable_by_key(|&i| l.image_ids[i as usize]);
    for w in by_id.windows(2) {
        let (a, b) = (w[0].min(w[1]) as usize, w[0].max(w[1]) as usize);
        if l.image_ids[a] == l.image_ids[b] {
            return Err(entry_err(
                format!("images[{b}] (id {})", l.image_ids[b]),
                format!("the same id as images[{a}]"),
            ));
        }
    }
    const NONE: u32 = u32::MAX;
    let mut annotation_of = vec![NONE; n];
    for (j, &(aid, image_id, category_id)) in l.annotations.iter().enumerate() {
        let entry = || format!("annotations[{j}] (id {aid})");
        let Ok(pos) = by_id.binary_search_by_key(&image_id, |&i| l.image_ids[i as usize]) else {
            return Err(entry_err(
                entry(),
                format!("image_id {image_id} is not the id of any entry of `images`"),
            ));
        };
        let i = by_id[pos] as usize;
        let Some(&leaf) = leaf_of_category.get(&category_id) else {
            return Err(entry_err(
                entry(),
                format!(
                    "category_id {category_id} is not the id of any of the {} categories",
                    leaf_of_category.len()
                ),
            ));
        };
        if annotation_of[i] != NONE {
            return Err(entry_err(
                entry(),
                format!(
                    "images[{i}] (id {image_id}) already has a category from annotations[{}]; \
                     one annotation per image is expected",
                    annotation_of[i]
                ),
            ));
        }
        annotation_of[i] = u32::try_from(j).unwrap_or(NONE - 1);
        l.builder.set_leaf(i, leaf);
    }
    if let Some(i) = annotation_of.iter().position(|&a| a == NONE) {
        return Err(entry_err(
            format!("images[{i}] (id {})", l.image_ids[i]),
            "no annotation gives this image a category".into(),
        ));
    }
    Ok(())
}

/// Checks that the categories of `other` (the val listing) agree with the training taxonomy.
fn check_same_categories(
    other: &Listing,
    leaf_of_category: &HashMap<u64, usize>,
    train_paths: &[Vec<Option<String>>],
    train_file: &Path,
) -> Result<(), DataError> {
    for (k, c) in other.categories.iter().enumerate() {
        let entry = category_entry(k, c);
        let err = |message: String| DataError::Entry {
            path: other.path.clone(),
            entry: entry.clone(),
            message,
        };
        let Some(&leaf) = leaf_of_category.get(&c.id) else {
            return Err(err(format!(
                "id {} is not a category of {}",
                c.id,
                train_file.display()
            )));
        };
        if c.names != train_paths[leaf] {
            return Err(err(format!(
                "its taxonomy differs from that of category id {} in {}",
                c.id,
                train_file.display()
            )));
        }
    }
    Ok(())
}

/// Indexes iNaturalist 2021 at `dir` (see the module doc): the chosen training split and `val`.
pub fn index_inat2021(dir: &Path, cfg: &InatConfig) -> Result<IndexedSplits, DataError> {
    crate::empirical::data::require_dir(dir)?;
    let train_name = cfg.train_split.name();
    let train_file = dir.join(format!("{train_name}.json"));
    let val_file = dir.join("val.json");
    if !train_file.is_file() {
        let other = match cfg.train_split {
            InatTrainSplit::Train => InatTrainSplit::TrainMini,
            InatTrainSplit::TrainMini => InatTrainSplit::Train,
        };
        let there = dir.join(format!("{}.json", other.name())).is_file();
        return Err(DataError::Invalid {
            context: dir.display().to_string(),
            message: format!(
                "missing file: looked for {train_name}.json, the training split data.inat.train_split \
                 = \"{train_name}\"{}; only the chosen training split and val.json (with their \
                 image folders) are needed",
                if there {
                    format!(
                        "; {0}.json is there: set data.inat.train_split = \"{0}\" (inspect: \
                         --inat-split {0})",
                        other.name()
                    )
                } else {
                    String::new()
                }
            ),
        });
    }
    let mut train = read_listing(dir, &train_file)?;
    let mut val = read_listing(dir, &val_file)?;
    let (hierarchy, ids, notes) = taxonomy(&train)?;
    let leaf_of_category: HashMap<u64, usize> = ids
        .iter()
        .enumerate()
        .map(|(leaf, &id)| (id, leaf))
        .collect();
    let mut train_paths: Vec<Vec<Option<String>>> = vec![Vec::new(); ids.len()];
    for c in &train.categories {
        train_paths[leaf_of_category[&c.id]] = c.names.clone();
    }
    check_same_categories(&val, &leaf_of_category, &train_paths, &train_file)?;
    label_images(&mut train, &leaf_of_category)?;
    label_images(&mut val, &leaf_of_category)?;
    let hierarchy = Arc::new(hierarchy);
    let finish =
        |l: Listing| -> Result<ImageIndex, DataError> { l.builder.finish(Arc::clone(&hierarchy)) };
    let train_index = finish(train)?;
    let val_index = finish(val)?;
    let counts = train_index.leaf_counts();
    let species = &hierarchy.level(hierarchy.leaf_level()).class_names;
    if let Some(leaf) = counts.iter().position(|&c| c == 0) {
        return Err(DataError::Entry {
            path: train_file.clone(),
            entry: format!("category id {} ({:?})", ids[leaf], species[leaf]),
            message: "no training image is annotated with this category".into(),
        });
    }
    let mut warnings = Vec::new();
    let no_val: Vec<usize> = val_index
        .leaf_counts()
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == 0)
        .map(|(l, _)| l)
        .collect();
    if let Some(&first) = no_val.first() {
        warnings.push(format!(
            "{}: {} of {} categories have no val image (first: id {}, {:?})",
            val_file.display(),
            no_val.len(),
            ids.len(),
            ids[first],
            species[first]
        ));
    }
    Ok(IndexedSplits {
        train: train_index,
        test: val_index,
        split_names: (train_name.into(), "val".into()),
        description: format!(
            "iNaturalist 2021 at {} (train: {train_name}.json, test: val.json)",
            dir.display()
        ),
        notes,
        warnings,
    })
}
