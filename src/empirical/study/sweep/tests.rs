//! Tests of sweep files: the points an axis makes (the base shared, `with` keys, positions,
//! folders) and the errors of bad files; and the axis figure.

use super::*;
use crate::empirical::study::config::SYNTHETIC_TOML;
use crate::empirical::study::reports::stats::Verdict;
use crate::report::MeanSd;

/// The embedded default study with `axes` appended.
fn sweep_text(axes: &str) -> String {
    format!("{SYNTHETIC_TOML}\n{axes}")
}

fn parse(axes: &str) -> Result<Sweep, ConfigError> {
    Sweep::from_toml(&sweep_text(axes), "sweep.toml", &[])
}

const AXES: &str = r#"
[[axis]]
name = "size"
label = "training images per subclass"
key = "data.synthetic.train_per_leaf"
values = [50, 200]
with = { "train.pretrain_epochs" = [24, 6] }
log = true

[[axis]]
name = "strength"
label = "common-feature strength"
key = "data.synthetic.common_strength"
values = [[40.0, 60.0], [80.0, 120.0]]
"#;

#[test]
fn points_share_the_base_and_set_their_keys() {
    let s = parse(AXES).unwrap();
    assert_eq!(s.points.len(), 4);
    let size: Vec<&SweepPoint> = s.points.iter().filter(|p| p.axis == 0).collect();
    assert_eq!(size[0].dir, Path::new("size/50"));
    assert_eq!(size[0].config.data.synthetic.train_per_leaf, 50);
    assert_eq!(size[0].config.train.pretrain_epochs, 24, "the `with` key");
    assert_eq!(size[0].x, 50.0);
    assert_eq!(
        size[0].set,
        [
            "data.synthetic.train_per_leaf=50",
            "train.pretrain_epochs=24"
        ]
    );
    // 200 per leaf and 6 epochs are the base's values: the base study's folder
    assert_eq!(size[1].dir, Path::new("base"));
    assert_eq!(size[1].config, s.base);
    // setting common_strength to the base's strength is another config (the same bits, but
    // the resolved config differs), so it runs in its own folder; an array's x is its mean
    let st: Vec<&SweepPoint> = s.points.iter().filter(|p| p.axis == 1).collect();
    assert_eq!(st[0].dir, Path::new("strength/40.0-60.0"));
    assert_eq!(st[1].x, 100.0);
    assert_eq!(
        st[1].config.data.synthetic.common_strength,
        Some([80.0, 120.0])
    );
    // the command line's overrides apply to the base and to every point
    let t = Sweep::from_toml(&sweep_text(AXES), "sweep.toml", &["seeds=[5]".into()]).unwrap();
    assert_eq!(t.base.seeds, [5]);
    assert!(t.points.iter().all(|p| p.config.seeds == [5]));
    assert_eq!(t.points[1].dir, Path::new("base"));
    assert!(t.record().starts_with("# run with --set 'seeds=[5]'"));
}

#[test]
fn bad_sweep_files_name_the_file_and_field() {
    let one = |extra: &str| {
        format!(
            "[[axis]]\nname = \"a\"\nlabel = \"A\"\nkey = \"data.synthetic.train_per_leaf\"\n{extra}"
        )
    };
    let cases = [
        ("", "axis"),
        (&one("values = [1]\nvals = [2]") as &str, "vals"),
        (&one("values = []"), "axis[0].values"),
        (&one("values = [1, 2]\nx = [1.0]"), "axis[0].x"),
        (
            &one("values = [1, 2]\nwith = { \"train.pretrain_epochs\" = [3] }"),
            "axis[0].with",
        ),
        // a value the study config rejects (0 training images), and a key it does not know
        (&one("values = [10, 0]"), "axis[0].values[1]"),
        (
            "[[axis]]\nname = \"a\"\nlabel = \"A\"\nkey = \"data.synthetic.bogus\"\nvalues = [1]",
            "bogus",
        ),
        // a value of the wrong type: the type error, not the x axis
        (&one("values = [\"many\"]"), "axis[0].values[0]"),
        (
            "[[axis]]\nname = \"b\"\nlabel = \"B\"\nkey = \"train.batch_size\"\nvalues = [\"big\", \"small\"]",
            "invalid type: string \"big\"",
        ),
        // a valid value without a number: the x axis
        (
            "[[axis]]\nname = \"k\"\nlabel = \"K\"\nkey = \"train.batch_keying\"\nvalues = [\"phase\", \"seed\"]",
            "axis[0].x",
        ),
        (&one("values = [1]\nlog = true\nx = [0.0]"), "axis[0].x"),
        (&one("values = [3, 3]"), "axis[0].values"),
        (
            &format!("{}\nvalues = [1]\n{}\nvalues = [2]", one(""), one("")),
            "axis[1].name",
        ),
        (
            "[[axis]]\nname = \"base\"\nlabel = \"A\"\nkey = \"seeds\"\nvalues = [[1]]",
            "axis[0].name",
        ),
    ];
    for (axes, want) in cases {
        let e = parse(axes).unwrap_err().to_string();
        assert!(e.contains("sweep.toml"), "{axes}: {e}");
        assert!(e.contains(want), "{axes}: {e}");
    }
    // the base study itself is checked too
    let e = Sweep::from_toml(
        &sweep_text(&one("values = [1]")),
        "sweep.toml",
        &["train.batch_size=0".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("train.batch_size"), "{e}");
}

fn row(x: f64, condition: &str, readout: Readout, diff: f64) -> SweepRow {
    SweepRow {
        axis: "size".into(),
        key: "k".into(),
        value: x.to_string(),
        x,
        folder: String::new(),
        design: "balanced".into(),
        condition: condition.into(),
        readout,
        seeds: 3,
        error: 0.2,
        error_sd: 0.01,
        hard_error: 0.4,
        hard_error_sd: 0.02,
        easy_error: 0.0,
        diff,
        diff_lo: diff - 0.05,
        diff_hi: diff + 0.05,
        verdict: Verdict::NoDetectableDifference.words().into(),
        hard_diff: 2.0 * diff,
        hard_diff_lo: 2.0 * diff - 0.1,
        hard_diff_hi: 2.0 * diff + 0.1,
        hard_verdict: String::new(),
        baseline_error: 0.2,
        baseline_hard_error: 0.4,
        train_acc: 1.0,
        train_acc_sd: 0.0,
        train_loss: MeanSd::of(&[0.01]).mean,
    }
}

#[test]
fn axis_chart_has_one_line_per_arm_and_the_baseline() {
    let axis = parse(AXES).unwrap().axes[0].clone();
    let mut rows = Vec::new();
    for x in [50.0, 200.0] {
        rows.push(row(x, "baseline", Readout::Scratch, f64::NAN));
        rows.push(row(x, "fine-10", Readout::SummedHead, -0.1));
        rows.push(row(x, "fine-10 direct", Readout::SummedHead, 0.05));
    }
    let c = axis_chart(&axis, &rows, true).unwrap();
    let labels: Vec<&str> = c.series.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "fine-10, summed_head",
            "fine-10 direct, summed_head",
            "baseline's own error (± sd over seeds)"
        ]
    );
    // hard-image differences with their half-intervals; the two arms drawn apart at each x
    assert_eq!(c.series[0].mean, [-0.2, -0.2]);
    assert!((c.series[0].sd.as_ref().unwrap()[0] - 0.1).abs() < 1e-12);
    assert!(c.series[0].x[0] < 50.0 && c.series[1].x[0] > 50.0);
    assert_eq!(c.series[2].x, [50.0, 200.0]);
    assert_eq!(c.series[2].mean, [0.4, 0.4]);
    assert!(c.log_x && c.title.contains("hard test images"));
    let all = axis_chart(&axis, &rows, false).unwrap();
    assert_eq!(all.series[1].mean, [0.05, 0.05]);
    assert!(
        axis_chart(&axis, &rows[..1], true).is_none(),
        "baseline alone"
    );
    // Without a hard subset (real data without [hard.ensemble]) every hard value is NaN: no
    // hard figure, and the figure of all test images as before.
    for r in &mut rows {
        r.hard_diff = f64::NAN;
        r.hard_diff_lo = f64::NAN;
        r.hard_diff_hi = f64::NAN;
        r.hard_error = f64::NAN;
        r.hard_error_sd = f64::NAN;
    }
    assert!(axis_chart(&axis, &rows, true).is_none());
    assert_eq!(axis_chart(&axis, &rows, false).unwrap().series.len(), 3);
}

#[test]
fn shipped_sweep_loads() {
    let s = Sweep::from_toml(
        include_str!("../../../../experiments/empirical/synthetic_sweep.toml"),
        "synthetic_sweep.toml",
        &[],
    )
    .unwrap();
    assert_eq!(s.axes.len(), 3);
    assert_eq!(s.points.len(), 9);
    // every axis passes through the base study, which runs once
    for i in 0..3 {
        assert!(s
            .points
            .iter()
            .any(|p| p.axis == i && p.dir == Path::new("base")));
    }
    let mut dirs: Vec<&Path> = s.points.iter().map(|p| p.dir.as_path()).collect();
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 7);
}
