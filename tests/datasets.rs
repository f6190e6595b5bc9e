//! The paper's datasets in their published formats (iNaturalist 2021, ImageNet-style WordNet
//! folders, BREEDS), on fixtures the tests generate: every malformed case the loaders promise to
//! name, `empirical inspect` for each source, a short study on each from the CLI (and on the
//! image-folder example), selection before decoding, and the bounded-cache batch fetcher.
//! Memory (the guard, the index at iNaturalist's size) and users' folders: `data_memory.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use granularity::empirical::data::decode::{materialize, DecodeOptions, MemoryBudget};
use granularity::empirical::data::fetch::BatchFetcher;
use granularity::empirical::data::fixtures::{write_imagenet, write_inat2021};
use granularity::empirical::data::indexed::Selection;
use granularity::empirical::data::load::breeds::{
    index_breeds, BreedsConfig, BreedsSubclasses, BreedsTask,
};
use granularity::empirical::data::load::inat::{index_inat2021, InatConfig};
use granularity::empirical::data::load::wordnet::{index_wordnet, WordnetConfig};
use granularity::empirical::data::DataError;
use serde_json::Value;

mod common;
use common::{fails_with, run, text};

fn inat_fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write_inat2021(t.path(), 4, 2, 8).unwrap();
    t
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_vec(v).unwrap()).unwrap();
}

/// Edits `train.json` of a fresh iNaturalist fixture and returns the loader's error message.
fn inat_error(edit: impl FnOnce(&mut Value)) -> (DataError, String) {
    let t = inat_fixture();
    let p = t.path().join("train.json");
    let mut v = read_json(&p);
    edit(&mut v);
    write_json(&p, &v);
    let e = index_inat2021(t.path(), &InatConfig::default()).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn inat_malformed_entries_are_named() {
    // An image with no annotation.
    let (_, msg) = inat_error(|v| {
        v["annotations"].as_array_mut().unwrap().remove(5);
    });
    assert!(
        msg.contains("train.json: images[5] (id 1005): no annotation gives this image a category"),
        "{msg}"
    );
    // An annotation naming a missing category.
    let (_, msg) = inat_error(|v| v["annotations"][3]["category_id"] = 999.into());
    assert!(
        msg.contains(
            "annotations[3] (id 1010): category_id 999 is not the id of any of the 6 categories"
        ),
        "{msg}"
    );
    // An annotation naming a missing image.
    let (_, msg) = inat_error(|v| v["annotations"][0]["image_id"] = 42.into());
    assert!(
        msg.contains("annotations[0] (id 1007): image_id 42 is not the id of any entry"),
        "{msg}"
    );
    // Two annotations for one image.
    let (_, msg) = inat_error(|v| v["annotations"][1]["image_id"] = 1000.into());
    assert!(
        msg.contains("annotations[1]") && msg.contains("one annotation per image"),
        "{msg}"
    );
    // A category missing a level (absent, or empty).
    let (_, msg) = inat_error(|v| {
        v["categories"][2].as_object_mut().unwrap().remove("family");
    });
    assert!(
        msg.contains("categories[2] (id 12, \"Tyto alba\"): missing `family`"),
        "{msg}"
    );
    let (_, msg) = inat_error(|v| v["categories"][4]["name"] = "".into());
    assert!(
        msg.contains("categories[4] (id 14): missing `name`"),
        "{msg}"
    );
    // Two categories with one taxonomy.
    let (_, msg) = inat_error(|v| {
        let c = v["categories"][0].clone();
        v["categories"][1] = c;
        v["categories"][1]["id"] = 11.into();
    });
    assert!(
        msg.contains("categories[1] (id 11") && msg.contains("the same taxonomy as categories[0]"),
        "{msg}"
    );
    // A file that is not JSON all the way.
    let t = inat_fixture();
    let p = t.path().join("val.json");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = index_inat2021(t.path(), &InatConfig::default()).unwrap_err();
    assert!(matches!(e, DataError::Json { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("val.json: line 1, column"), "{e}");
    // A missing listing.
    std::fs::remove_file(&p).unwrap();
    let e = index_inat2021(t.path(), &InatConfig::default()).unwrap_err();
    assert!(
        e.to_string().contains("missing file: looked for val.json"),
        "{e}"
    );
    // val.json whose category disagrees with train.json.
    let t = inat_fixture();
    let p = t.path().join("val.json");
    let mut v = read_json(&p);
    v["categories"][0]["genus"] = "Pyrgilauda".into();
    write_json(&p, &v);
    let e = index_inat2021(t.path(), &InatConfig::default()).unwrap_err();
    assert!(
        e.to_string().contains(
            "val.json: categories[0] (id 10, \"Passer domesticus\"): its taxonomy differs"
        ),
        "{e}"
    );
}

/// An image `file_name` outside the dataset folder is refused, naming it.
#[test]
fn inat_file_names_outside_the_folder_are_refused() {
    for bad in ["../elsewhere/a.jpg", "/etc/a.jpg", "train/../../a.jpg", ""] {
        let (_, msg) = inat_error(|v| v["images"][2]["file_name"] = bad.into());
        assert!(
            msg.contains("train.json: line 1, column")
                && msg.contains("image id 1002: `file_name`")
                && (msg.contains("points outside the dataset folder") || bad.is_empty()),
            "{bad}: {msg}"
        );
    }
}

/// `NaN`, `Infinity` and `-Infinity` (Python's `json.dump` for missing floats) are read in the
/// fields the toolkit ignores; in a field it reads, the error names the token at its column.
#[test]
fn inat_nan_in_ignored_fields_is_accepted() {
    let t = inat_fixture();
    let p = t.path().join("train.json");
    let text = std::fs::read_to_string(&p).unwrap();
    let nan = text
        .replacen("\"latitude\":0.0", "\"latitude\":NaN", 3)
        .replacen("\"longitude\":0.0", "\"longitude\":-Infinity", 2)
        .replacen(
            "\"location_uncertainty\":1",
            "\"location_uncertainty\":Infinity",
            2,
        );
    assert_ne!(nan, text);
    std::fs::write(&p, &nan).unwrap();
    let ix = index_inat2021(t.path(), &InatConfig::default()).unwrap();
    assert_eq!(ix.train.len(), 24);
    let bad = nan.replacen("\"category_id\":10", "\"category_id\":NaN", 1);
    std::fs::write(&p, &bad).unwrap();
    let e = index_inat2021(t.path(), &InatConfig::default()).unwrap_err();
    let at = bad.find("\"category_id\":NaN").unwrap() + "\"category_id\":NaN".len();
    assert!(
        matches!(e, DataError::Json { line: 1, column, .. } if column == at),
        "{e} (expected column {at})"
    );
    assert!(
        e.to_string()
            .contains("NaN (accepted only in the fields the toolkit ignores)"),
        "{e}"
    );
}

/// Only the mini split on disk: the default split's error says which setting reads it.
#[test]
fn inat_missing_train_split_names_the_setting() {
    let t = inat_fixture();
    std::fs::remove_file(t.path().join("train.json")).unwrap();
    let e = index_inat2021(t.path(), &InatConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing file: looked for train.json")
            && e.contains(
                "set data.inat.train_split = \"train_mini\" (inspect: --inat-split train_mini)"
            )
            && e.contains("only the chosen training split and val.json"),
        "{e}"
    );
}

#[test]
fn inat_missing_image_file_is_named_with_its_listing() {
    let t = inat_fixture();
    let v = read_json(&t.path().join("val.json"));
    let rel = v["images"][3]["file_name"].as_str().unwrap().to_string();
    std::fs::remove_file(t.path().join(&rel)).unwrap();
    let ix = index_inat2021(t.path(), &InatConfig::default()).unwrap();
    let e = ix.decode(&DecodeOptions::new(8, "data.size")).unwrap_err();
    assert!(matches!(e, DataError::MissingImage { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("image file not found (listed as {rel:?} in "))
            && msg.contains("val.json"),
        "{msg}"
    );
    // The CLI's inspect checks (decodes) the images and stops there too.
    let o = run(&[
        "inspect",
        "--inat",
        t.path().to_str().unwrap(),
        "--check",
        "0",
        "--size",
        "8",
    ]);
    fails_with(&o, &["image file not found", &rel]);
}

#[test]
fn inat_inspect_prints_every_level_and_the_homonym() {
    let t = inat_fixture();
    let o = run(&[
        "inspect",
        "--inat",
        t.path().to_str().unwrap(),
        "--size",
        "8",
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    for want in [
        "iNaturalist 2021 at",
        "train split `train`: 24 images; test split `val`: 12 images; 6 leaves",
        "level 0 `kingdom`: 2 classes",
        "level 5 `genus`: 5 classes",
        "level 6 `species`: 6 classes (the leaves)",
        "train images per leaf: min 4 / p10 4 / median 4 / p90 4 / max 4",
        "genus `Morus` appears under 2 classes of level family (Moraceae, Sulidae)",
        "genus Morus (Sulidae): 1 child, 1 leaf, 4 / 2",
        "species Rosa canina: 4 / 2",
        "decoded 24 of 24 images to 8x8 RGB",
        "bytes per image",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    let o = run(&[
        "inspect",
        "--inat",
        t.path().to_str().unwrap(),
        "--inat-split",
        "train_mini",
    ]);
    assert!(
        text(&o).contains("train split `train_mini`: 12 images"),
        "{}",
        text(&o)
    );
}

fn imagenet_fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write_imagenet(t.path(), 2, 1, 8).unwrap();
    t
}

fn wordnet_cfg(t: &Path, depths: Vec<usize>) -> WordnetConfig {
    WordnetConfig {
        noun: t.join("data.noun").display().to_string(),
        depths,
    }
}

#[test]
fn wordnet_errors_name_the_file_and_entry() {
    let t = imagenet_fixture();
    let root = t.path().join("imagenet");
    // A folder whose WordNet id is not in data.noun.
    std::fs::create_dir_all(root.join("train/n01234567")).unwrap();
    std::fs::write(root.join("train/n01234567/a.png"), b"").unwrap();
    let e = index_wordnet(&root, &wordnet_cfg(t.path(), vec![2])).unwrap_err();
    assert!(matches!(e, DataError::UnknownWnid { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("train/n01234567: `n01234567` is not a noun synset of")
            && e.to_string().contains("data.noun"),
        "{e}"
    );
    std::fs::remove_dir_all(root.join("train/n01234567")).unwrap();
    // A folder that is not a WordNet id.
    std::fs::create_dir_all(root.join("val/cats")).unwrap();
    let e = index_wordnet(&root, &wordnet_cfg(t.path(), vec![2])).unwrap_err();
    assert!(
        e.to_string()
            .contains("`cats` is not named by a WordNet id"),
        "{e}"
    );
    std::fs::remove_dir_all(root.join("val/cats")).unwrap();
    // A cycle: entity made a hyponym of one of its descendants.
    let noun = t.path().join("data.noun");
    let text = std::fs::read_to_string(&noun).unwrap();
    let cyclic = text.replacen(
        "00001740 05 n 01 entity 0 002",
        "00001740 05 n 01 entity 0 003 @ 01466257 n 0000",
        1,
    );
    assert_ne!(cyclic, text);
    std::fs::write(&noun, cyclic).unwrap();
    let e = index_wordnet(&root, &wordnet_cfg(t.path(), vec![2])).unwrap_err();
    assert!(matches!(e, DataError::Cycle { .. }), "{e}");
    assert!(
        e.to_string().contains("n00001740 entity")
            && e.to_string().contains("n01466257 vertebrate"),
        "{e}"
    );
    // A malformed line.
    std::fs::write(&noun, format!("{text}00000042 05 n zz bad 0 000 | x\n")).unwrap();
    let e = index_wordnet(&root, &wordnet_cfg(t.path(), vec![2])).unwrap_err();
    assert!(
        e.to_string()
            .contains("word count `zz` is not a hexadecimal number"),
        "{e}"
    );
    assert!(matches!(e, DataError::Format { .. }), "{e}");
    // Depths and a missing data.noun.
    std::fs::write(&noun, &text).unwrap();
    let e = index_wordnet(&root, &wordnet_cfg(t.path(), vec![3, 2])).unwrap_err();
    assert!(e.to_string().starts_with("data.wordnet.depths:"), "{e}");
    let e = index_wordnet(&root, &wordnet_cfg(&t.path().join("nope"), vec![2])).unwrap_err();
    assert!(e.to_string().contains("looked for data.noun"), "{e}");
}

#[test]
fn wordnet_inspect_names_the_parent_chosen() {
    let t = imagenet_fixture();
    let o = run(&[
        "inspect",
        "--imagenet",
        t.path().join("imagenet").to_str().unwrap(),
        "--wordnet",
        t.path().join("data.noun").to_str().unwrap(),
        "--depths",
        "1,3,5",
        "--tree-lines",
        "6",
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    for want in [
        "level 0 `depth1`: 2 classes",
        "level 2 `depth5`: 8 classes",
        "level 3 `leaf`: 48 classes (the leaves)",
        "notes (1):",
        "n02084071 dog has 2 hypernyms: n01861778 mammal (depth 4), n01317541 domestic_animal (depth 3); parent: n01861778 mammal (the deepest)",
        "  depth1 n00004258 living_thing: 1 child, 24 leaves, 48 / 24",
        "... ",
        "train images per leaf: min 2 / p10 2 / median 2 / p90 2 / max 2",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
}

/// A cut at or below every leaf and a folder that is an ancestor of other folders are said, in
/// the index's warnings (the study log) and by inspect.
#[test]
fn wordnet_warns_of_a_cut_below_the_leaves_and_of_ancestor_folders() {
    let t = imagenet_fixture();
    let root = t.path().join("imagenet");
    let ix = index_wordnet(&root, &wordnet_cfg(t.path(), vec![1, 40])).unwrap();
    assert!(
        ix.warnings.iter().any(|w| w.contains(
            "depth 40 is at or below every leaf (the deepest is at depth 6), so level depth40 is the leaves themselves"
        )),
        "{:?}",
        ix.warnings
    );
    // `dog` (n02084071) beside its breeds
    for split in ["train", "val"] {
        let from = root.join(split).join("n09000000");
        let to = root.join(split).join("n02084071");
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&from).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let ix = index_wordnet(&root, &wordnet_cfg(t.path(), vec![1, 3])).unwrap();
    assert_eq!(ix.hierarchy().num_leaves(), 49);
    assert!(
        ix.warnings.iter().any(|w| w.contains(
            "folder n02084071 dog is an ancestor of 6 other folders (e.g. n09000000 dog_kind_0): its images are a leaf of their own"
        )),
        "{:?}",
        ix.warnings
    );
    let o = run(&[
        "inspect",
        "--imagenet",
        root.to_str().unwrap(),
        "--wordnet",
        t.path().join("data.noun").to_str().unwrap(),
        "--depths",
        "1,40",
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("warning: data.wordnet.depths: depth 40"), "{s}");
    assert!(
        s.contains("warning: folder n02084071 dog is an ancestor"),
        "{s}"
    );
}

#[test]
fn breeds_tasks_and_errors() {
    let t = imagenet_fixture();
    let root = t.path().join("imagenet");
    let info = t.path().join("breeds");
    let cfg = |task| BreedsConfig {
        info_dir: info.display().to_string(),
        task: Some(task),
        subclasses: BreedsSubclasses::All,
    };
    let ix = index_breeds(&root, &cfg(BreedsTask::Entity13)).unwrap();
    assert_eq!(ix.hierarchy().num_classes(0), 2);
    assert_eq!(ix.hierarchy().num_leaves(), 40);
    assert_eq!(ix.train.len(), 80);
    // Source and target halves are disjoint and together the whole task.
    let half = |s| {
        let c = BreedsConfig {
            subclasses: s,
            ..cfg(BreedsTask::Nonliving26)
        };
        let ix = index_breeds(&root, &c).unwrap();
        ix.hierarchy().level(1).class_names.clone()
    };
    let (src, tgt, all) = (
        half(BreedsSubclasses::Source),
        half(BreedsSubclasses::Target),
        half(BreedsSubclasses::All),
    );
    assert_eq!((src.len(), tgt.len(), all.len()), (8, 8, 16));
    let mut both: Vec<String> = src.iter().chain(&tgt).cloned().collect();
    both.sort();
    let mut all_sorted = all.clone();
    all_sorted.sort();
    assert_eq!(both, all_sorted);
    // No task chosen.
    let e = index_breeds(
        &root,
        &BreedsConfig {
            task: None,
            ..cfg(BreedsTask::Living17)
        },
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("data.breeds.task:"), "{e}");
    // A malformed hierarchy line, then a cycle.
    let h = info.join("class_hierarchy.txt");
    let good = std::fs::read_to_string(&h).unwrap();
    std::fs::write(&h, format!("{good}n00001740\n")).unwrap();
    let e = index_breeds(&root, &cfg(BreedsTask::Living17)).unwrap_err();
    let line = good.lines().count() + 1;
    assert!(
        e.to_string().contains(&format!(
            "class_hierarchy.txt: line {line}: expected \"PARENT CHILD\""
        )),
        "{e}"
    );
    std::fs::write(&h, format!("{good}n01466257 n00004258\n")).unwrap();
    let e = index_breeds(&root, &cfg(BreedsTask::Living17)).unwrap_err();
    assert!(matches!(e, DataError::Cycle { .. }), "{e}");
    // A class entry that is not [number, id, name].
    std::fs::write(&h, &good).unwrap();
    let ci = info.join("dataset_class_info.json");
    let mut v = read_json(&ci);
    v[3] = serde_json::json!(["3", "n09000003", "x"]);
    write_json(&ci, &v);
    let e = index_breeds(&root, &cfg(BreedsTask::Living17)).unwrap_err();
    assert!(
        e.to_string()
            .contains("dataset_class_info.json: entry 3: the first element (class number)"),
        "{e}"
    );
    // A chosen class without a training folder.
    std::fs::remove_file(&ci).unwrap();
    write_imagenet(t.path(), 2, 1, 8).unwrap();
    for k in 0..6 {
        std::fs::remove_dir_all(root.join(format!("train/n0900004{k}"))).unwrap();
    }
    let e = index_breeds(&root, &cfg(BreedsTask::Nonliving26)).unwrap_err();
    assert!(
        e.to_string().contains("train/n0900004") && e.to_string().contains("no training images"),
        "{e}"
    );
    // The CLI reports BREEDS tasks.
    write_imagenet(t.path(), 2, 1, 8).unwrap();
    let o = run(&[
        "inspect",
        "--imagenet",
        root.to_str().unwrap(),
        "--breeds",
        info.to_str().unwrap(),
        "--task",
        "living17",
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("BREEDS living17") && s.contains("level 0 `superclass`: 4 classes"),
        "{s}"
    );
    assert!(s.contains("nodes per level (longest path from n00001740): 0: 1, 1: 2, 2: 2, 3: 2, 4: 4, 5: 8, 6: 43, 7: 6"), "{s}");
}

/// A tiny study config on `source` at `path`; `data` adds lines to [data].
fn study_config(
    dir: &Path,
    name: &str,
    source: &str,
    path: &Path,
    data: &str,
    granularities: &[(&str, usize)],
) -> PathBuf {
    let mut s = format!(
        "name = \"{name}\"\nseeds = [0]\n\n[data]\nsource = \"{source}\"\npath = {:?}\nsize = 8\ntarget_level = 0\n{data}\n\n\
         [model]\narch = \"resnet8\"\nwidth = 4\n\n\
         [train]\nbatch_size = 8\npretrain_epochs = 1\nfinetune_epochs = 1\n\
         pretrain_lr = {{ kind = \"cosine\", lr = 0.05 }}\nfinetune_lr = {{ kind = \"cosine\", lr = 0.01 }}\n\
         probe = {{ epochs = 2, lr = 0.1, batch_size = 8, weight_decay = 1e-4 }}\n\
         readouts = [\"finetune\", \"linear_probe\"]\n",
        path.display().to_string()
    );
    for (g, level) in granularities {
        s += &format!(
            "\n[[granularity]]\nname = \"{g}\"\nlabels = {{ kind = \"level\", level = {level} }}\n"
        );
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, s).unwrap();
    p
}

fn study_runs(config: &Path, out: &Path, wants: &[&str]) {
    let o = run(&[
        "study",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    for w in wants {
        assert!(s.contains(w), "missing {w:?} in:\n{s}");
    }
    assert!(out.join("results.md").exists());
}

#[test]
fn short_studies_run_on_every_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let inat = inat_fixture();
    let c = study_config(
        tmp.path(),
        "inat",
        "inat2021",
        inat.path(),
        "inat = { train_split = \"train_mini\" }",
        &[("species-6", 6), ("order-4", 3)],
    );
    study_runs(
        &c,
        &tmp.path().join("inat"),
        &[
            "| balanced | species-6 | 6 | yes | finetune |",
            "data (train): 12 images stored as 8x8 (12)",
        ],
    );

    let inet = imagenet_fixture();
    let root = inet.path().join("imagenet");
    let wn = format!(
        "wordnet = {{ noun = {:?}, depths = [1, 3] }}",
        inet.path().join("data.noun").display().to_string()
    );
    let c = study_config(
        tmp.path(),
        "wordnet",
        "wordnet",
        &root,
        &wn,
        &[("leaf-48", 2)],
    );
    study_runs(
        &c,
        &tmp.path().join("wordnet"),
        &["| balanced | leaf-48 | 48 | yes | finetune |"],
    );

    let br = format!(
        "breeds = {{ info_dir = {:?}, task = \"living17\" }}",
        inet.path().join("breeds").display().to_string()
    );
    let c = study_config(
        tmp.path(),
        "breeds",
        "breeds",
        &root,
        &br,
        &[("subclass-16", 1)],
    );
    study_runs(
        &c,
        &tmp.path().join("breeds"),
        &["| balanced | subclass-16 | 16 | yes | finetune |"],
    );

    // The folder example of experiments/, as the README runs it.
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/empirical/folder.toml");
    let o = run(&[
        "study",
        folder.to_str().unwrap(),
        "--out",
        tmp.path().join("folder").to_str().unwrap(),
    ]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("| balanced | fine-4 | 4 | yes | finetune |"),
        "{s}"
    );
    assert!(s.contains("12 of them resized to 16x16"), "{s}");
}

#[test]
fn selection_before_decoding() {
    let t = inat_fixture();
    let ix = index_inat2021(t.path(), &InatConfig::default()).unwrap();
    let sel = |leaves_under: &str, max_leaves, per| Selection {
        leaves_under: leaves_under.into(),
        max_leaves,
        train_per_leaf: per,
        test_per_leaf: 1,
        seed: 3,
        ..Selection::default()
    };
    let birds = ix.clone().select(&sel("class=Aves", 0, 2)).unwrap();
    let h = birds.hierarchy();
    assert_eq!(h.level(0).class_names, vec!["Animalia"]);
    assert_eq!(h.num_leaves(), 4);
    assert_eq!(birds.train.leaf_counts(), vec![2; 4]);
    assert_eq!(birds.test.leaf_counts(), vec![1; 4]);
    let three = ix.clone().select(&sel("", 3, 0)).unwrap();
    assert_eq!(three.hierarchy().num_leaves(), 3);
    assert_eq!(three.train.len(), 12);
    assert_eq!(
        ix.clone()
            .select(&sel("", 3, 0))
            .unwrap()
            .hierarchy()
            .level(6)
            .class_names,
        three.hierarchy().level(6).class_names,
        "same seed, same leaves"
    );
    for (bad, want) in [
        ("Aves", "is not LEVEL=CLASS"),
        (
            "tribe=Aves",
            "no level \"tribe\"; the levels are kingdom, phylum",
        ),
        (
            "class=Mammalia",
            "level \"class\" has no class \"Mammalia\"",
        ),
    ] {
        let e = ix.clone().select(&sel(bad, 0, 0)).unwrap_err();
        assert!(
            e.to_string().starts_with("data.leaves_under:") && e.to_string().contains(want),
            "{e}"
        );
    }
}

#[test]
fn decoding_is_the_same_for_any_thread_count_and_the_fetcher_is_bounded() {
    let t = imagenet_fixture();
    let root = t.path().join("imagenet");
    let ix = index_wordnet(&root, &wordnet_cfg(t.path(), vec![2])).unwrap();
    let opts = |threads| DecodeOptions {
        threads,
        ..DecodeOptions::new(12, "data.size")
    };
    let (one, s1) = materialize(&ix.train, &opts(1), "train").unwrap();
    let (four, s4) = materialize(&ix.train, &opts(4), "train").unwrap();
    assert_eq!(one.images, four.images);
    assert_eq!(s1, s4);
    assert_eq!(one.len, 96);
    // A cache of 10 images of 3x12x12.
    let index = Arc::new(ix.train.clone());
    let mut f = BatchFetcher::new(Arc::clone(&index), &opts(2), 10 * 432).unwrap();
    assert_eq!(f.capacity(), 10);
    let (px, leaves) = f.fetch(&[5, 0, 5, 90]).unwrap();
    assert_eq!(px.len(), 4 * 432);
    assert_eq!(&px[..432], one.image(5));
    assert_eq!(&px[3 * 432..], one.image(90));
    assert_eq!(
        leaves,
        vec![one.leaves[5], one.leaves[0], one.leaves[5], one.leaves[90]]
    );
    assert_eq!((f.stats().misses, f.stats().hits), (3, 0));
    let _ = f.fetch(&[0, 5]).unwrap();
    assert_eq!(f.stats().hits, 2);
    let ids: Vec<usize> = (20..40).collect();
    let (px, _) = f.fetch(&ids).unwrap();
    assert_eq!(&px[19 * 432..], one.image(39));
    let st = f.stats();
    assert_eq!(st.cached, 10);
    assert_eq!(st.cached_bytes, 4320);
    assert_eq!(st.evictions, 13);
    // The most recently used 10 (30..40) are cached: fetching them decodes nothing.
    let misses = st.misses;
    let _ = f.fetch(&(30..40).collect::<Vec<_>>()).unwrap();
    assert_eq!(f.stats().misses, misses);
    assert!(f.fetch(&[96]).is_err());
    // A cache larger than the budget is refused.
    let small = DecodeOptions {
        budget: MemoryBudget {
            bytes: 1000,
            source: "test".into(),
        },
        ..opts(1)
    };
    assert!(BatchFetcher::new(index, &small, 10_000).is_err());
}
