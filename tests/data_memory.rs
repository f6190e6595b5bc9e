//! Memory and users' own folders: the guard that rejects a load before allocating, what
//! `inspect --folder` says about converted images and bad hierarchy rows, and (ignored, run by
//! hand with `--release --nocapture`) the index's bytes per image and the JSON reading at
//! iNaturalist 2021's 2.7 M images, the numbers in docs/data.md.

use std::path::Path;
use std::sync::Arc;

use granularity::empirical::data::index::IndexBuilder;
use granularity::empirical::data::load::inat::{index_inat2021, InatConfig};
use granularity::hierarchy::Hierarchy;

mod common;
use common::{fails_with, run, text};

#[test]
fn memory_guard_rejects_before_allocating() {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_folder");
    let o = run(&[
        "inspect",
        "--folder",
        tiny.to_str().unwrap(),
        "--size",
        "100000",
    ]);
    fails_with(&o, &["need 360.0 GB (30.0 GB each)", "lower --size"]);
    // A study config: the field is named, and an explicit budget is honoured.
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/empirical/folder.toml");
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&[
        "--set",
        "data.size=100000",
        "study",
        folder.to_str().unwrap(),
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    fails_with(&o, &["lower data.size"]);
    let o = run(&[
        "--set",
        "data.memory_budget_gb=0.00001",
        "study",
        folder.to_str().unwrap(),
        "--out",
        tmp.path().join("y").to_str().unwrap(),
    ]);
    fails_with(
        &o,
        &[
            "16 images of 3x16x16 pixels need 12.3 KB",
            "data.memory_budget_gb = 0.00001",
        ],
    );
}

#[test]
fn folder_inspect_prints_the_tree_and_the_conversions() {
    // Fashion-MNIST-like: 28x28 grayscale images, a leaf name with a slash.
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("hierarchy.csv"),
        "group,item,folder\ntops,T-shirt/top,T-shirt_top\ntops,Pullover,\nshoes,Sneaker,\n",
    )
    .unwrap();
    for (i, leaf) in ["T-shirt_top", "Pullover", "Sneaker"].iter().enumerate() {
        for split in ["train", "test"] {
            let dir = d.join(split).join(leaf);
            std::fs::create_dir_all(&dir).unwrap();
            for k in 0..2 {
                image::GrayImage::from_pixel(28, 28, image::Luma([40 * i as u8 + k]))
                    .save(dir.join(format!("{k}.png")))
                    .unwrap();
            }
        }
    }
    let o = run(&["inspect", "--folder", d.to_str().unwrap()]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    for want in [
        "level 0 `group`: 2 classes; children per class: min 1",
        "  group tops: 2 children, 2 leaves, 4 / 4",
        "    item T-shirt/top: 2 / 2",
        "train: decoded 6 of 6 images to 32x32 RGB: 6 images stored as 28x28 (6); 6 of them resized to 32x32 (bilinear); 6 of them converted from grayscale (L8) to 8-bit RGB",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    // A hierarchy error names the CSV line and the leaf, once.
    std::fs::write(
        d.join("hierarchy.csv"),
        "group,item,folder\ntops,T-shirt/top,T-shirt_top\ntops,Pullover,\nshoes,Pullover,Sneaker\n",
    )
    .unwrap();
    let o = run(&["inspect", "--folder", d.to_str().unwrap()]);
    fails_with(
        &o,
        &["hierarchy.csv: line 4: leaf `Pullover` is already listed on line 3"],
    );
    assert!(!text(&o).contains("from_leaf_paths"), "{}", text(&o));
}

/// iNaturalist-like relative paths: `train/NNNNN_Kingdom_..._Genus_species/UUID.jpg`.
fn inat_like_path(leaf: usize, k: usize) -> (String, String) {
    let dir = format!(
        "train/{leaf:05}_Animalia_Arthropoda_Insecta_Lepidoptera_Nymphalidae_Genus{leaf}_species{leaf}"
    );
    let h = (leaf as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (k as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    let name = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}.jpg",
        h as u32,
        (h >> 32) as u16,
        (h >> 48) as u16,
        k as u16,
        h & 0xffff_ffff_ffff
    );
    (dir, name)
}

#[test]
#[ignore = "measures the index of 2.7 M iNaturalist-like entries (about 1 GB of work); run by hand with --nocapture"]
fn index_bytes_per_image_at_inaturalist_scale() {
    // iNaturalist 2021 train: 2,686,843 images of 10,000 species (268.7 per species on average).
    let n = 2_686_843usize;
    let leaves = 10_000usize;
    let h = Arc::new(Hierarchy::two_level(&vec![leaves / 100; 100]).unwrap());
    let t = std::time::Instant::now();
    let mut b = IndexBuilder::new(
        Path::new("/data/inat2021"),
        Some(Path::new("/data/inat2021/train.json")),
    );
    let mut name_bytes = 0usize;
    let mut path_bytes = 0usize;
    for i in 0..n {
        let leaf = i * leaves / n;
        let (dir, name) = inat_like_path(leaf, i);
        name_bytes += name.len();
        path_bytes += dir.len() + 1 + name.len();
        b.push(&format!("{dir}/{name}"), leaf).unwrap();
    }
    let ix = b.finish(h).unwrap();
    let built = t.elapsed().as_secs_f64();
    let bytes = ix.heap_bytes();
    assert_eq!(ix.len(), n);
    assert_eq!(ix.rel_path(n - 1), {
        let (d, f) = inat_like_path(leaves - 1, n - 1);
        format!("{d}/{f}")
    });
    println!(
        "index of {n} images, {leaves} leaves: {bytes} bytes = {:.1} bytes per image \
         (file names {:.1} bytes per image; full relative paths would be {:.1}); built in {built:.1} s",
        bytes as f64 / n as f64,
        name_bytes as f64 / n as f64,
        path_bytes as f64 / n as f64,
    );
}

/// Peak resident memory of this process so far (VmHWM of /proc/self/status), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[test]
#[ignore = "writes and reads a 2.7 M-image train.json (about 1 GB on disk); run by hand with --release --nocapture"]
fn inat_json_of_inaturalist_size_streams_into_the_index() {
    use std::io::Write;
    let n = 2_686_843usize;
    let species = 10_000usize;
    let t = tempfile::tempdir().unwrap();
    let write = |name: &str, images: usize| {
        let f = std::fs::File::create(t.path().join(name)).unwrap();
        let mut w = std::io::BufWriter::new(f);
        write!(w, "{{\"info\": {{\"year\": 2021}}, \"images\": [").unwrap();
        for i in 0..images {
            let leaf = i * species / images;
            let (dir, file) = inat_like_path(leaf, i);
            let sep = if i == 0 { "" } else { ", " };
            write!(
                w,
                "{sep}{{\"id\": {i}, \"width\": 500, \"height\": 375, \"file_name\": \"{dir}/{file}\", \
                 \"license\": 1, \"rights_holder\": \"someone\", \"date\": \"2016-05-28 07:05:00+00:00\", \
                 \"latitude\": 45.5, \"longitude\": -122.6, \"location_uncertainty\": 17}}"
            )
            .unwrap();
        }
        write!(w, "], \"categories\": [").unwrap();
        for c in 0..species {
            let sep = if c == 0 { "" } else { ", " };
            write!(
                w,
                "{sep}{{\"id\": {c}, \"name\": \"Genus{c} species{c}\", \"common_name\": \"x\", \
                 \"supercategory\": \"Insects\", \"kingdom\": \"Animalia\", \"phylum\": \"Arthropoda\", \
                 \"class\": \"Insecta\", \"order\": \"Order{}\", \"family\": \"Family{}\", \
                 \"genus\": \"Genus{c}\", \"specific_epithet\": \"species{c}\", \"image_dir_name\": \"d\"}}",
                c / 500,
                c / 50
            )
            .unwrap();
        }
        write!(w, "], \"annotations\": [").unwrap();
        for i in 0..images {
            let sep = if i == 0 { "" } else { ", " };
            write!(
                w,
                "{sep}{{\"id\": {i}, \"image_id\": {i}, \"category_id\": {}}}",
                i * species / images
            )
            .unwrap();
        }
        write!(w, "], \"licenses\": []}}").unwrap();
    };
    write("train.json", n);
    write("val.json", 2 * species);
    let json_bytes = std::fs::metadata(t.path().join("train.json"))
        .unwrap()
        .len();
    let before = peak_rss().unwrap_or(0);
    let start = std::time::Instant::now();
    let ix = index_inat2021(t.path(), &InatConfig::default()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let after = peak_rss().unwrap_or(0);
    assert_eq!(ix.train.len(), n);
    assert_eq!(ix.hierarchy().num_leaves(), species);
    println!(
        "train.json of {n} images ({:.0} MB): indexed in {secs:.1} s; index {:.1} bytes per image; \
         peak resident memory {:.0} MB before, {:.0} MB after",
        json_bytes as f64 / 1e6,
        ix.train.heap_bytes() as f64 / n as f64,
        before as f64 / 1e6,
        after as f64 / 1e6
    );
}
