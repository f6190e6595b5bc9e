//! What a study keeps of an indexed source (image folder, iNaturalist 2021, WordNet folders,
//! BREEDS), on fixtures the tests generate: the data-size axis means the same number of images
//! per leaf as on CIFAR-100, sizes and rare-subclass counts the data cannot give are refused
//! before any training, and `data.target_classes` is applied before decoding, the same way by
//! `inspect --config` and by the study.

use std::path::{Path, PathBuf};

use granularity::config::load_str;
use granularity::empirical::data::decode::DecodeOptions;
use granularity::empirical::data::fixtures::{write_imagenet, write_inat2021};
use granularity::empirical::data::inspect::{inspect_data, InspectOptions};
use granularity::empirical::data::{open, Opened};
use granularity::empirical::study::config::StudyConfig;
use granularity::empirical::study::designs::designs;
use granularity::empirical::study::load_data;
use granularity::empirical::study::results::DesignInfo;
use image::{Rgb, RgbImage};

/// An image folder of 2 superclasses x 2 leaves with `per_leaf` training images per leaf
/// (and 2 test images), 8x8 PNGs.
fn write_folder(dir: &Path, per_leaf: usize) {
    let leaves = [
        ("warm", "red", [200u8, 30, 30]),
        ("warm", "yellow", [220, 200, 40]),
        ("cool", "blue", [30, 60, 200]),
        ("cool", "green", [40, 170, 60]),
    ];
    let mut csv = String::from("superclass,leaf\n");
    for (sup, leaf, c) in leaves {
        csv += &format!("{sup},{leaf}\n");
        for (split, n) in [("train", per_leaf), ("test", 2)] {
            let d = dir.join(split).join(leaf);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                RgbImage::from_fn(8, 8, |x, _| {
                    if x as usize == i % 8 {
                        Rgb([0; 3])
                    } else {
                        Rgb(c)
                    }
                })
                .save(d.join(format!("{leaf}_{i}.png")))
                .unwrap();
            }
        }
    }
    std::fs::write(dir.join("hierarchy.csv"), csv).unwrap();
}

/// One indexed source on a fixture: its name, `[data]` lines, a class of level 0 and the
/// number of leaves under that class.
struct Source {
    name: &'static str,
    data: String,
    _dir: tempfile::TempDir,
    target: String,
    leaves_under_target: usize,
    leaves: usize,
}

/// Every indexed source with `per_leaf` training images per leaf.
fn sources(per_leaf: usize) -> Vec<Source> {
    let folder = tempfile::tempdir().unwrap();
    write_folder(folder.path(), per_leaf);
    let inat = tempfile::tempdir().unwrap();
    write_inat2021(inat.path(), per_leaf, 2, 8).unwrap();
    let inet = tempfile::tempdir().unwrap();
    write_imagenet(inet.path(), per_leaf, 1, 8).unwrap();
    let inet2 = tempfile::tempdir().unwrap();
    write_imagenet(inet2.path(), per_leaf, 1, 8).unwrap();
    let path = |p: PathBuf| format!("{:?}", p.display().to_string());
    vec![
        Source {
            name: "folder",
            data: format!("source = \"folder\"\npath = {}", path(folder.path().into())),
            _dir: folder,
            target: "warm".into(),
            leaves_under_target: 2,
            leaves: 4,
        },
        Source {
            name: "inat2021",
            data: format!("source = \"inat2021\"\npath = {}", path(inat.path().into())),
            _dir: inat,
            target: "Plantae".into(),
            leaves_under_target: 2,
            leaves: 6,
        },
        Source {
            name: "wordnet",
            data: format!(
                "source = \"wordnet\"\npath = {}\nwordnet = {{ noun = {}, depths = [1, 3] }}",
                path(inet.path().join("imagenet")),
                path(inet.path().join("data.noun"))
            ),
            _dir: inet,
            target: "n00004258 living_thing".into(),
            leaves_under_target: 24,
            leaves: 48,
        },
        Source {
            name: "breeds",
            data: format!(
                "source = \"breeds\"\npath = {}\nbreeds = {{ info_dir = {}, task = \"living17\" }}",
                path(inet2.path().join("imagenet")),
                path(inet2.path().join("breeds"))
            ),
            _dir: inet2,
            target: "owl (n01621127)".into(),
            leaves_under_target: 4,
            leaves: 16,
        },
    ]
}

/// A study config on `source` with `data` added to its `[data]` section and `extra` at the end.
fn config(source: &Source, data: &str, extra: &str) -> StudyConfig {
    let text = format!(
        "name = \"{}\"\nseeds = [0]\n\n[data]\n{}\nsize = 8\ntarget_level = 0\n{data}\n\n\
         [model]\narch = \"resnet8\"\nwidth = 4\n\n\
         [train]\nbatch_size = 8\npretrain_epochs = 4\nfinetune_epochs = 4\n\
         pretrain_lr = {{ kind = \"cosine\", lr = 0.05 }}\nfinetune_lr = {{ kind = \"cosine\", lr = 0.01 }}\n\
         readouts = [\"finetune\"]\n\n\
         [[granularity]]\nname = \"leaf\"\nlabels = {{ kind = \"level\", level = 1 }}\n{extra}",
        source.name, source.data
    );
    load_str(&text, source.name, &[]).unwrap_or_else(|e| panic!("{}: {e}", source.name))
}

#[test]
fn sizes_mean_images_per_leaf_on_every_indexed_source() {
    for s in sources(10) {
        let cfg = config(&s, "train_per_leaf = 2\nsizes = [2, 8]", "");
        let mut cfg = cfg;
        cfg.train.equal_steps = true;
        let data = load_data(&cfg, None).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        let leaf = data.train.hierarchy.leaf_level();
        assert_eq!(
            data.train.class_counts(leaf),
            vec![2; s.leaves],
            "{}",
            s.name
        );
        let infos: Vec<DesignInfo> = designs(&cfg, &data)
            .iter()
            .map(|d| {
                assert_eq!(
                    d.train.class_counts(leaf),
                    vec![d.per_leaf.unwrap(); s.leaves],
                    "{} {}",
                    s.name,
                    d.name
                );
                d.info(&cfg)
            })
            .collect();
        assert_eq!(infos[0].design, "n2");
        assert_eq!(infos[1].design, "n8");
        assert_eq!(infos[1].train_images, 8 * s.leaves, "{}", s.name);
        // Equal steps: 4 epochs at 2 per leaf are 1 epoch at 8 per leaf.
        assert_eq!(
            (infos[0].pretrain_epochs, infos[1].pretrain_epochs),
            (4, 1),
            "{}",
            s.name
        );
        // The smaller set is nested in the larger one.
        let ds = designs(&cfg, &data);
        let images = |set: &granularity::empirical::data::ImageSet| -> Vec<Vec<u8>> {
            (0..set.len).map(|i| set.image(i).to_vec()).collect()
        };
        let big = images(&ds[1].train);
        assert!(
            images(&ds[0].train).iter().all(|i| big.contains(i)),
            "{}",
            s.name
        );
    }
}

#[test]
fn sizes_and_rare_counts_the_data_cannot_give_are_refused() {
    for s in sources(4) {
        let cfg = config(&s, "sizes = [2, 1000]", "");
        let e = load_data(&cfg, None).err().unwrap().to_string();
        assert!(
            e.starts_with("data.sizes:")
                && e.contains("size 1000 per leaf")
                && e.contains("has 4 training images"),
            "{}: {e}",
            s.name
        );
        let cfg = config(
            &s,
            "",
            "\n[hard.rare_subclass]\nrare_per_leaf = 4\ngranularities = [\"leaf\"]\n",
        );
        let e = load_data(&cfg, None).err().unwrap().to_string();
        assert!(
            e.starts_with("hard.rare_subclass.rare_per_leaf:")
                && e.contains("has 4")
                && e.contains("give at most 3"),
            "{}: {e}",
            s.name
        );
        let cfg = config(
            &s,
            "",
            "\n[hard.rare_subclass]\nrare_per_leaf = 3\ngranularities = [\"leaf\"]\n",
        );
        assert!(load_data(&cfg, None).is_ok(), "{}", s.name);
    }
}

#[test]
fn target_classes_are_applied_before_decoding_by_inspect_and_study() {
    for s in sources(3) {
        let cfg = config(
            &s,
            &format!("target_classes = [{:?}]\ntrain_per_leaf = 2", s.target),
            "",
        );
        let dir = PathBuf::from(&cfg.data.path);
        let Opened::Indexed(ix) = open(&cfg.data, Some(&dir)).unwrap() else {
            panic!("{}: an indexed source", s.name)
        };
        assert_eq!(
            ix.hierarchy().num_leaves(),
            s.leaves_under_target,
            "{}",
            s.name
        );
        assert_eq!(ix.train.len(), 2 * s.leaves_under_target, "{}", s.name);
        let opts = InspectOptions {
            decode: DecodeOptions::new(8, "data.size"),
            check: 0,
            tree_lines: 0,
        };
        let report = inspect_data(&cfg.data, Some(&dir), &opts).unwrap();
        assert!(
            report.contains("target level 0 `") && report.contains("(1 class); levels (index"),
            "{}: {report}",
            s.name
        );
        assert!(
            report.contains(&format!("{} leaves", s.leaves_under_target)),
            "{}: {report}",
            s.name
        );
        let data = load_data(&cfg, None).unwrap();
        assert_eq!(data.train.len, ix.train.len(), "{}", s.name);
        assert_eq!(
            data.train.hierarchy.level(0).class_names,
            vec![s.target.clone()],
            "{}",
            s.name
        );
        let mut bad = cfg.clone();
        bad.data.target_classes = vec!["no such class".into()];
        let Err(e) = open(&bad.data, Some(&dir)) else {
            panic!("{}: an unknown class is refused", s.name)
        };
        let e = e.to_string();
        assert!(
            e.starts_with("data.target_classes:") && e.contains("no such class"),
            "{e}"
        );
    }
}
