//! Tests of the image-folder loader on `tests/data/tiny_folder` and edited copies of it.

use super::*;
use crate::empirical::data::ImageSet;
use image::{Rgb, RgbImage};

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_folder")
}

/// (superclass, leaf, RGB colour) of the tiny example, in CSV order.
const TINY: [(&str, &str, [u8; 3]); 4] = [
    ("warm", "red", [200, 30, 30]),
    ("warm", "yellow", [220, 200, 40]),
    ("cool", "blue", [30, 60, 200]),
    ("cool", "green", [40, 170, 60]),
];

/// Train image `i` of a leaf with colour `c`: 0 solid, 1 vertical stripes (odd columns at
/// half intensity), 2 left half `c`, right half white.
fn tiny_train_image(c: [u8; 3], i: usize) -> RgbImage {
    RgbImage::from_fn(8, 8, |x, _| match i {
        0 => Rgb(c),
        1 if x % 2 == 1 => Rgb(c.map(|v| v / 2)),
        1 => Rgb(c),
        _ if x < 4 => Rgb(c),
        _ => Rgb([255; 3]),
    })
}

/// Regenerates `tests/data/tiny_folder` after a change here: run
/// `GRANULARITY_REGENERATE_TINY_FOLDER=1 cargo test regenerate_tiny_folder -- --ignored`.
/// Test images: `blue` gets a 12x8 image (2 black columns each side, solid colour in the
/// middle 8x8), `green` a solid 8x8 JPEG, the others a solid 8x8 PNG.
#[test]
#[ignore = "writes tests/data/tiny_folder; needs GRANULARITY_REGENERATE_TINY_FOLDER=1"]
fn regenerate_tiny_folder() {
    if std::env::var_os("GRANULARITY_REGENERATE_TINY_FOLDER").is_none() {
        println!("skipped: GRANULARITY_REGENERATE_TINY_FOLDER not set");
        return;
    }
    let dir = tiny_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from(
        "# Tiny example dataset for granularity's image-folder loader (see folder.rs).\n\
         superclass,leaf\n",
    );
    for (sup, leaf, _) in TINY {
        csv += &format!("{sup},{leaf}\n");
    }
    std::fs::write(dir.join(HIERARCHY_FILE), csv).unwrap();
    for (_, leaf, c) in TINY {
        let train = dir.join("train").join(leaf);
        let test = dir.join("test").join(leaf);
        std::fs::create_dir_all(&train).unwrap();
        std::fs::create_dir_all(&test).unwrap();
        for i in 0..3 {
            tiny_train_image(c, i)
                .save(train.join(format!("{leaf}_{i}.png")))
                .unwrap();
        }
        match leaf {
            "blue" => RgbImage::from_fn(12, 8, |x, _| {
                if (2..10).contains(&x) {
                    Rgb(c)
                } else {
                    Rgb([0; 3])
                }
            })
            .save(test.join("blue_wide.png"))
            .unwrap(),
            "green" => RgbImage::from_pixel(8, 8, Rgb(c))
                .save(test.join("green_0.jpg"))
                .unwrap(),
            _ => RgbImage::from_pixel(8, 8, Rgb(c))
                .save(test.join(format!("{leaf}_0.png")))
                .unwrap(),
        }
    }
}

fn plane_values(set: &ImageSet, i: usize, ch: usize) -> Vec<u8> {
    let hw = set.height * set.width;
    set.image(i)[ch * hw..(ch + 1) * hw].to_vec()
}

#[test]
fn tiny_folder_loads() {
    let (s, warnings) = load_image_folder_with_warnings(&tiny_dir(), 8).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let h = &s.train.hierarchy;
    assert_eq!(h.num_levels(), 2);
    assert_eq!(h.level(0).name, "superclass");
    assert_eq!(h.level(1).name, "leaf");
    assert_eq!(h.level(0).class_names, vec!["warm", "cool"]);
    assert_eq!(
        h.level(1).class_names,
        vec!["red", "yellow", "blue", "green"]
    );
    assert_eq!(h.children(0, 1), vec![2, 3]);
    assert_eq!((s.train.len, s.test.len), (12, 4));
    assert_eq!((s.train.channels, s.train.height, s.train.width), (3, 8, 8));
    assert_eq!(s.train.class_counts(1), vec![3; 4]);
    assert_eq!(s.train.class_counts(0), vec![6, 6]);
    assert_eq!(s.test.class_counts(1), vec![1; 4]);
    assert_eq!(s.train.leaves, vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    assert_eq!(s.test.labels_at_level(0), vec![0, 0, 1, 1]);
    assert!(s.train.source.ends_with("train"));

    // Pixels are exact for PNGs already at the target size.
    for (leaf, &(_, _, c)) in TINY.iter().enumerate() {
        for i in 0..3 {
            let img = tiny_train_image(c, i);
            for ch in 0..3 {
                let want: Vec<u8> = img.pixels().map(|p| p.0[ch]).collect();
                assert_eq!(plane_values(&s.train, 3 * leaf + i, ch), want);
            }
        }
    }
    // The 12x8 blue test image is center-cropped to its solid middle.
    for ch in 0..3 {
        assert_eq!(plane_values(&s.test, 2, ch), vec![TINY[2].2[ch]; 64]);
    }
    // The green JPEG decodes close to its colour.
    for ch in 0..3 {
        for v in plane_values(&s.test, 3, ch) {
            assert!(v.abs_diff(TINY[3].2[ch]) <= 4, "{v}");
        }
    }
}

#[test]
fn tiny_folder_resizes() {
    let s = load_image_folder(&tiny_dir(), 4).unwrap();
    assert_eq!(
        (s.train.height, s.train.width, s.train.images.len()),
        (4, 4, 12 * 48)
    );
    // A solid image stays solid after resizing; the wide one after crop and resize too.
    assert_eq!(plane_values(&s.train, 0, 0), vec![200; 16]);
    assert_eq!(plane_values(&s.test, 2, 2), vec![200; 16]);
    let s = load_image_folder(&tiny_dir(), 16).unwrap();
    assert_eq!(plane_values(&s.test, 0, 1), vec![30; 256]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

fn tiny_copy() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_dir(&tiny_dir(), t.path());
    t
}

fn err(dir: &Path) -> (DataError, String) {
    let e = load_image_folder_with_warnings(dir, 8).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn missing_hierarchy_and_splits() {
    let t = tiny_copy();
    std::fs::remove_file(t.path().join(HIERARCHY_FILE)).unwrap();
    let (e, msg) = err(t.path());
    assert!(matches!(e, DataError::MissingFile { .. }));
    assert!(msg.contains("hierarchy.csv"), "{msg}");

    let t = tiny_copy();
    std::fs::remove_dir_all(t.path().join("test")).unwrap();
    let (_, msg) = err(t.path());
    assert!(msg.contains("looked for test/"), "{msg}");
}

#[test]
fn bad_csv() {
    let t = tiny_copy();
    let csv = t.path().join(HIERARCHY_FILE);
    std::fs::write(
        &csv,
        "# c\nsuperclass,leaf\n\nwarm,red\nwarm,yellow,extra\n",
    )
    .unwrap();
    let (e, msg) = err(t.path());
    assert!(matches!(
        e,
        DataError::RaggedRow {
            line: 5,
            expected: 2,
            found: 3,
            ..
        }
    ));
    assert!(msg.contains("hierarchy.csv: line 5: ragged row"), "{msg}");

    std::fs::write(&csv, "superclass,leaf\nwarm, \n").unwrap();
    let (_, msg) = err(t.path());
    assert!(
        msg.contains("line 2") && msg.contains("empty name"),
        "{msg}"
    );

    std::fs::write(&csv, "superclass,leaf\n").unwrap();
    let (_, msg) = err(t.path());
    assert!(msg.contains("no leaf rows"), "{msg}");

    std::fs::write(&csv, "").unwrap();
    let (e, _) = err(t.path());
    assert!(matches!(e, DataError::EmptyFile { .. }), "{e}");

    std::fs::write(&csv, "a,a\nwarm,red\n").unwrap();
    let (_, msg) = err(t.path());
    assert!(msg.contains("appears twice"), "{msg}");

    // `red` listed under two superclasses.
    std::fs::write(
        &csv,
        "superclass,leaf\nwarm,red\nwarm,yellow\ncool,blue\ncool,green\ncool,red\n",
    )
    .unwrap();
    let (e, msg) = err(t.path());
    assert!(matches!(e, DataError::Format { line: 6, .. }), "{msg}");
    assert!(
        msg.contains("hierarchy.csv: line 6: leaf `red` is already listed on line 2"),
        "{msg}"
    );

    // A family under two orders: the line, the leaf, both parents and the first line.
    std::fs::write(
        &csv,
        "order,family,leaf\nA,f,red\nA,f,yellow\nA,g,blue\nB,f,green\n",
    )
    .unwrap();
    let (_, msg) = err(t.path());
    assert_eq!(
        msg,
        format!(
            "{}: line 5: leaf `green`: family `f` is under `B` here but under `A` on line 2; \
             a class has one parent",
            csv.display()
        )
    );
}

#[test]
fn folder_column_maps_leaf_names_that_cannot_be_folders() {
    let t = tiny_copy();
    let csv = t.path().join(HIERARCHY_FILE);
    std::fs::write(
        &csv,
        "superclass,leaf\nwarm,red/ish\nwarm,yellow\ncool,blue\ncool,green\n",
    )
    .unwrap();
    let (_, msg) = err(t.path());
    assert!(
        msg.contains("line 2: leaf `red/ish` contains a slash")
            && msg.contains("`folder`")
            && msg.contains("red_ish"),
        "{msg}"
    );
    std::fs::write(
        &csv,
        "superclass,leaf,folder\nwarm,red/ish,red\nwarm,yellow,\ncool,blue,blue\ncool,green,green\n",
    )
    .unwrap();
    let s = load_image_folder(t.path(), 8).unwrap();
    let h = &s.train.hierarchy;
    assert_eq!(h.num_levels(), 2);
    assert_eq!(h.level(1).class_names[0], "red/ish");
    assert_eq!(s.train.class_counts(1), vec![3; 4]);
    // Two leaves in one folder.
    std::fs::write(
        &csv,
        "superclass,leaf,folder\nwarm,red/ish,red\nwarm,yellow,red\ncool,blue,\ncool,green,\n",
    )
    .unwrap();
    let (_, msg) = err(t.path());
    assert!(
        msg.contains("line 3: leaf `yellow`: folder `red` is already the folder of line 2"),
        "{msg}"
    );
    // The reserved name elsewhere in the header.
    std::fs::write(&csv, "folder,leaf\nwarm,red\n").unwrap();
    let (_, msg) = err(t.path());
    assert!(msg.contains("reserved"), "{msg}");
}

#[test]
fn three_levels_and_quoting() {
    let t = tiny_copy();
    std::fs::write(
        t.path().join(HIERARCHY_FILE),
        "kingdom,family,species\n\"K, one\",warmish,red\nK2,warmish2,yellow\n\
         K2,coolish,blue\nK2,coolish,green\n",
    )
    .unwrap();
    let s = load_image_folder(t.path(), 8).unwrap();
    let h = &s.train.hierarchy;
    assert_eq!(h.num_levels(), 3);
    assert_eq!(h.level(0).class_names, vec!["K, one", "K2"]);
    assert_eq!(s.train.class_counts(0), vec![3, 9]);
    assert_eq!(s.train.class_counts(1), vec![3, 3, 6]);
}

#[test]
fn folder_problems() {
    let t = tiny_copy();
    std::fs::create_dir_all(t.path().join("train/purple")).unwrap();
    let (e, msg) = err(t.path());
    assert!(matches!(e, DataError::UnknownLeafFolder { .. }));
    assert!(
        msg.contains("train/purple") && msg.contains("hierarchy.csv"),
        "{msg}"
    );

    let t = tiny_copy();
    std::fs::remove_dir_all(t.path().join("train/yellow")).unwrap();
    let (e, msg) = err(t.path());
    assert!(matches!(e, DataError::LeafWithoutTrainImages { .. }));
    assert!(
        msg.contains("train/yellow") && msg.contains("no training images"),
        "{msg}"
    );

    // A leaf folder holding only non-images counts as empty.
    let t = tiny_copy();
    let yellow = t.path().join("train/yellow");
    std::fs::remove_dir_all(&yellow).unwrap();
    std::fs::create_dir_all(&yellow).unwrap();
    std::fs::write(yellow.join("notes.txt"), "hi").unwrap();
    let (e, _) = err(t.path());
    assert!(matches!(e, DataError::LeafWithoutTrainImages { .. }), "{e}");

    // Missing test images for one leaf: a warning; for all leaves: an error.
    let t = tiny_copy();
    std::fs::remove_dir_all(t.path().join("test/red")).unwrap();
    std::fs::write(t.path().join("test/README"), "stray file, ignored").unwrap();
    let (s, w) = load_image_folder_with_warnings(t.path(), 8).unwrap();
    assert_eq!(s.test.len, 3);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("test/red") && w[0].contains("no test images"),
        "{w:?}"
    );
    for leaf in ["yellow", "blue", "green"] {
        std::fs::remove_dir_all(t.path().join("test").join(leaf)).unwrap();
    }
    let (e, msg) = err(t.path());
    assert!(matches!(e, DataError::EmptySplit { .. }));
    assert!(msg.contains("test: split has no images"), "{msg}");
}

#[test]
fn undecodable_image() {
    let t = tiny_copy();
    let bad = t.path().join("train/blue/blue_9.PNG");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let (e, msg) = err(t.path());
    assert!(matches!(e, DataError::UndecodableImage { .. }));
    assert!(msg.contains("blue_9.PNG: cannot decode image"), "{msg}");

    std::fs::write(&bad, b"plain text").unwrap();
    let (e, _) = err(t.path());
    assert!(matches!(e, DataError::UndecodableImage { .. }), "{e}");
}

#[test]
fn zero_size_and_missing_dir_rejected() {
    assert!(load_image_folder(&tiny_dir(), 0).is_err());
    let msg = load_image_folder(&tiny_dir().join("nope"), 8)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tiny_folder/nope: not a folder"), "{msg}");
}
