//! Tiny datasets in the published formats, written from code: iNaturalist 2021 (JSON files and
//! image folders), ImageNet-style WordNet-id folders with a WordNet `data.noun` and the BREEDS
//! files over them. The tests generate them (no download, nothing committed), and they let a
//! newcomer try each loader and `empirical inspect` in seconds.
//!
//! Images are small solid-colour PNG or JPEG files with a stripe pattern; the colour depends on
//! the classes above the leaf, so a network can learn the coarse levels.

use std::io;
use std::path::Path;

use image::{Rgb, RgbImage};
use serde_json::json;

/// The species of the iNaturalist fixture: kingdom, phylum, class, order, family, genus and
/// species. The genus `Morus` is a homonym (a plant and a bird genus), as in the real data.
pub const INAT_SPECIES: [[&str; 7]; 6] = [
    [
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Passeridae",
        "Passer",
        "Passer domesticus",
    ],
    [
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Passeridae",
        "Passer",
        "Passer montanus",
    ],
    [
        "Animalia",
        "Chordata",
        "Aves",
        "Strigiformes",
        "Tytonidae",
        "Tyto",
        "Tyto alba",
    ],
    [
        "Animalia",
        "Chordata",
        "Aves",
        "Suliformes",
        "Sulidae",
        "Morus",
        "Morus bassanus",
    ],
    [
        "Plantae",
        "Tracheophyta",
        "Magnoliopsida",
        "Rosales",
        "Moraceae",
        "Morus",
        "Morus alba",
    ],
    [
        "Plantae",
        "Tracheophyta",
        "Magnoliopsida",
        "Rosales",
        "Rosaceae",
        "Rosa",
        "Rosa canina",
    ],
];

/// A `side` x `side` image: base colour `c` with every `k`-th column darker (`k` = 2 + variant
/// % 3), so images of one class differ a little.
fn fixture_image(c: [u8; 3], variant: usize, side: u32) -> RgbImage {
    let k = 2 + (variant % 3) as u32;
    RgbImage::from_fn(side, side, |x, y| {
        if (x + y * (variant as u32 % 2)).is_multiple_of(k) {
            Rgb(c.map(|v| v / 2))
        } else {
            Rgb(c)
        }
    })
}

fn save(img: &RgbImage, path: &Path) -> io::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    img.save(path).map_err(io::Error::other)
}

/// Colour of a class from the indices of its ancestors: a hue per top class, shaded below.
fn colour(top: usize, mid: usize, leaf: usize) -> [u8; 3] {
    const BASE: [[u8; 3]; 4] = [[200, 60, 40], [40, 160, 60], [50, 70, 200], [200, 190, 40]];
    let b = BASE[top % 4];
    let shade = (mid * 25 + leaf * 9) as u8;
    b.map(|v| v.saturating_sub(shade / 2).saturating_add(shade / 3))
}

/// Writes an iNaturalist 2021 layout to `dir`: `train.json`, `train_mini.json`, `val.json` and
/// the image folders, with `train_per_species` training images per species (the mini split
/// keeps the first half), `val_per_species` validation images, `side`-pixel JPEG files.
/// Category ids are 10, 11, ... (not 0-based, to catch index/id mix-ups); image ids are unique
/// across files.
pub fn write_inat2021(
    dir: &Path,
    train_per_species: usize,
    val_per_species: usize,
    side: u32,
) -> io::Result<()> {
    let categories: Vec<serde_json::Value> = INAT_SPECIES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let epithet = t[6].split(' ').nth(1).unwrap_or("");
            json!({
                "id": 10 + i, "name": t[6], "common_name": format!("species {i}"),
                "supercategory": t[2], "kingdom": t[0], "phylum": t[1], "class": t[2],
                "order": t[3], "family": t[4], "genus": t[5], "specific_epithet": epithet,
                "image_dir_name": dir_name(i),
            })
        })
        .collect();
    let mut next_id = 1000;
    let mut split = |name: &str, per: usize, first: usize| -> io::Result<serde_json::Value> {
        let mut images = Vec::new();
        let mut annotations = Vec::new();
        for (i, t) in INAT_SPECIES.iter().enumerate() {
            let top = usize::from(t[0] == "Plantae");
            let c = colour(top, i / 2, i);
            for j in first..first + per {
                let file_name = format!("{name}/{}/{:08x}-{j:04}.jpg", dir_name(i), 0x5eed + i);
                save(&fixture_image(c, j, side), &dir.join(&file_name))?;
                images.push(json!({
                    "id": next_id, "width": side, "height": side, "file_name": file_name,
                    "license": 0, "rights_holder": "fixture", "date": "2021-01-01",
                    "latitude": 0.0, "longitude": 0.0, "location_uncertainty": 1,
                }));
                annotations
                    .push(json!({"id": next_id + 7, "image_id": next_id, "category_id": 10 + i}));
                next_id += 1;
            }
        }
        Ok(json!({
            "info": {"year": 2021, "version": "fixture", "description": "granularity fixture"},
            "images": images,
            "categories": categories,
            "annotations": annotations,
            "licenses": [{"id": 0, "name": "fixture", "url": ""}],
        }))
    };
    let train = split("train", train_per_species, 0)?;
    let mini = split("train_mini", train_per_species.div_ceil(2), 0)?;
    let val = split("val", val_per_species, train_per_species)?;
    std::fs::create_dir_all(dir)?;
    for (f, v) in [
        ("train.json", train),
        ("train_mini.json", mini),
        ("val.json", val),
    ] {
        std::fs::write(dir.join(f), serde_json::to_vec(&v)?)?;
    }
    Ok(())
}

/// The image folder of species `i`, as in the real data (`00000_Animalia_..._Passer_domesticus`).
fn dir_name(i: usize) -> String {
    format!("{i:05}_{}", INAT_SPECIES[i].join("_").replace(' ', "_"))
}

/// One node of the ImageNet fixture: (WordNet offset, lemma, parent offsets).
type Node = (u32, &'static str, &'static [u32]);

/// The fixture's WordNet-like tree, BREEDS-shaped: entity -> living thing / non-living thing ->
/// 2 -> 3 -> 4 -> 5 levels, each level-5 node with 6 leaf synsets (48 leaves), so that all four
/// BREEDS tasks have at least two superclasses. `domestic_animal` is a second, shallower
/// hypernym of `dog` (as in WordNet), so the parent choice is exercised.
const NODES: &[Node] = &[
    (1740, "entity", &[]),
    (4258, "living_thing", &[1740]),
    (21939, "non-living_thing", &[1740]),
    (15388, "animal", &[4258]),
    (3575, "instrumentality", &[21939]),
    (1466257, "vertebrate", &[15388]),
    (3183080, "device", &[3575]),
    (1861778, "mammal", &[1466257]),
    (1503061, "bird", &[1466257]),
    (3699975, "machine", &[3183080]),
    (3800933, "instrument", &[3183080]),
    (1317541, "domestic_animal", &[15388]),
    (2084071, "dog", &[1861778, 1317541]),
    (2121620, "cat", &[1861778]),
    (1816887, "parrot", &[1503061]),
    (1621127, "owl", &[1503061]),
    (3082979, "computer", &[3699975]),
    (3287733, "engine", &[3699975]),
    (3249569, "drum", &[3800933]),
    (3467517, "guitar", &[3800933]),
];

/// The level-5 nodes; each gets 6 leaves `n0{9000000 + 10 * node_index + k}`.
const LEVEL5: [u32; 8] = [
    2084071, 2121620, 1816887, 1621127, 3082979, 3287733, 3249569, 3467517,
];

/// Leaves per level-5 node.
pub const LEAVES_PER_GROUP: usize = 6;

/// The fixture's leaf synsets: (offset, lemma, parent offset), 48 of them.
pub fn imagenet_leaves() -> Vec<(u32, String, u32)> {
    let mut out = Vec::new();
    for (g, &p) in LEVEL5.iter().enumerate() {
        let lemma = NODES.iter().find(|n| n.0 == p).map_or("x", |n| n.1);
        for k in 0..LEAVES_PER_GROUP {
            out.push((
                9_000_000 + 10 * g as u32 + k as u32,
                format!("{lemma}_kind_{k}"),
                p,
            ));
        }
    }
    out
}

fn data_noun_line(offset: u32, lemma: &str, parents: &[u32], children: &[u32]) -> String {
    let mut s = format!(
        "{offset:08} 05 n 01 {lemma} 0 {:03}",
        parents.len() + children.len()
    );
    for p in parents {
        s += &format!(" @ {p:08} n 0000");
    }
    for c in children {
        s += &format!(" ~ {c:08} n 0000");
    }
    s + &format!(" | fixture synset {lemma}  ")
}

/// Writes to `dir`: `imagenet/{train,val}/nXXXXXXXX/*.JPEG` for the 48 leaves of
/// [`imagenet_leaves`] (`train_per_leaf` and `val_per_leaf` images, `side` pixels), a WordNet
/// `data.noun` describing them, and a BREEDS information folder `breeds/` over them.
pub fn write_imagenet(
    dir: &Path,
    train_per_leaf: usize,
    val_per_leaf: usize,
    side: u32,
) -> io::Result<()> {
    let leaves = imagenet_leaves();
    for (li, (off, _, parent)) in leaves.iter().enumerate() {
        let g = LEVEL5.iter().position(|p| p == parent).unwrap_or(0);
        let c = colour(g / 4, g, li % LEAVES_PER_GROUP);
        for (split, n, first) in [("train", train_per_leaf, 0), ("val", val_per_leaf, 100)] {
            for j in first..first + n {
                let p = dir.join(format!("imagenet/{split}/n{off:08}/n{off:08}_{j}.JPEG"));
                save(&fixture_image(c, j + li, side), &p)?;
            }
        }
    }
    // data.noun: license header, then the synsets (children as hyponym pointers).
    let mut noun = String::from(
        "  1 This is a generated fixture in the format of WordNet 3.0's data.noun\n  2 \n",
    );
    let children_of = |o: u32| -> Vec<u32> {
        let mut c: Vec<u32> = NODES
            .iter()
            .filter(|n| n.2.contains(&o))
            .map(|n| n.0)
            .collect();
        c.extend(leaves.iter().filter(|l| l.2 == o).map(|l| l.0));
        c
    };
    for &(o, lemma, parents) in NODES {
        noun += &data_noun_line(o, lemma, parents, &children_of(o));
        noun += "\n";
    }
    for (o, lemma, p) in &leaves {
        noun += &data_noun_line(*o, lemma, &[*p], &[]);
        noun += "\n";
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("data.noun"), noun)?;
    // BREEDS: the same tree without the second hypernym of `dog`, plus a dummy node between
    // `instrument` and `drum` as BREEDS's modified hierarchy has (so drum's leaves sit one level
    // deeper, and drum itself at level 6).
    let b = dir.join("breeds");
    std::fs::create_dir_all(&b)?;
    let id = |o: u32| format!("n{o:08}");
    let mut edges = String::new();
    let mut names = String::new();
    for &(o, lemma, parents) in NODES {
        names += &format!("{}\t{}\n", id(o), lemma.replace('_', " "));
        if o == 1317541 {
            continue;
        }
        if let Some(&p) = parents.first() {
            if o == 3249569 {
                edges += &format!("{} dummy1\ndummy1 {}\n", id(p), id(o));
            } else {
                edges += &format!("{} {}\n", id(p), id(o));
            }
        }
    }
    names += "dummy1\tdummy1\n";
    let mut info = Vec::new();
    for (i, (o, lemma, p)) in leaves.iter().enumerate() {
        edges += &format!("{} {}\n", id(*p), id(*o));
        info.push(json!([i, id(*o), lemma.replace('_', " ")]));
    }
    std::fs::write(b.join("class_hierarchy.txt"), edges)?;
    std::fs::write(b.join("node_names.txt"), names)?;
    std::fs::write(
        b.join("dataset_class_info.json"),
        serde_json::to_vec(&info)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::empirical::data::load::breeds::{
        index_breeds, BreedsConfig, BreedsInfo, BreedsSubclasses, BreedsTask,
    };
    use crate::empirical::data::load::inat::{index_inat2021, InatConfig, InatTrainSplit};
    use crate::empirical::data::load::wordnet::{index_wordnet, WordnetConfig};

    #[test]
    fn inat_fixture_indexes_with_seven_levels_and_a_homonym() {
        let t = tempfile::tempdir().unwrap();
        write_inat2021(t.path(), 4, 2, 8).unwrap();
        let ix = index_inat2021(t.path(), &InatConfig::default()).unwrap();
        let h = ix.hierarchy();
        assert_eq!(h.num_levels(), 7);
        assert_eq!(h.level(0).class_names, vec!["Animalia", "Plantae"]);
        assert_eq!(
            h.level(5).class_names,
            vec![
                "Passer",
                "Tyto",
                "Morus (Sulidae)",
                "Morus (Moraceae)",
                "Rosa"
            ]
        );
        assert_eq!(ix.notes.len(), 1);
        assert!(
            ix.notes[0].contains(
                "genus `Morus` appears under 2 classes of level family (Moraceae, Sulidae)"
            ),
            "{:?}",
            ix.notes
        );
        assert_eq!((ix.train.len(), ix.test.len()), (24, 12));
        assert_eq!(ix.train.leaf_counts(), vec![4; 6]);
        let mini = index_inat2021(
            t.path(),
            &InatConfig {
                train_split: InatTrainSplit::TrainMini,
            },
        )
        .unwrap();
        assert_eq!(mini.train.len(), 12);
        assert_eq!(mini.split_names.0, "train_mini");
    }

    #[test]
    fn imagenet_fixture_serves_wordnet_and_all_breeds_tasks() {
        let t = tempfile::tempdir().unwrap();
        write_imagenet(t.path(), 1, 1, 8).unwrap();
        let root = t.path().join("imagenet");
        let wn = index_wordnet(
            &root,
            &WordnetConfig {
                noun: t.path().join("data.noun").display().to_string(),
                depths: vec![1, 3],
            },
        )
        .unwrap();
        let h = wn.hierarchy();
        assert_eq!(
            h.level(0).class_names,
            vec!["n00004258 living_thing", "n00021939 non-living_thing"]
        );
        assert_eq!(h.num_leaves(), 48);
        assert_eq!(wn.notes.len(), 1, "{:?}", wn.notes);
        assert!(wn.notes[0].starts_with("n02084071 dog has 2 hypernyms"));
        let info = BreedsInfo::read(&t.path().join("breeds")).unwrap();
        for (task, supers, subs) in [
            (BreedsTask::Entity13, 2, 20),
            (BreedsTask::Entity30, 4, 8),
            (BreedsTask::Living17, 4, 4),
            (BreedsTask::Nonliving26, 4, 4),
        ] {
            let c = info.task(task, BreedsSubclasses::All).unwrap();
            assert_eq!(c.superclasses.len(), supers, "{task:?}");
            assert!(c.subclasses.iter().all(|s| s.len() == subs), "{task:?}");
        }
        let b = index_breeds(
            &root,
            &BreedsConfig {
                info_dir: t.path().join("breeds").display().to_string(),
                task: Some(BreedsTask::Living17),
                subclasses: BreedsSubclasses::Source,
            },
        )
        .unwrap();
        assert_eq!(b.hierarchy().num_leaves(), 8);
        assert_eq!(b.hierarchy().level(0).class_names[0], "owl (n01621127)");
    }
}
