//! Tests of grouped bar charts: groups and legend, long names, negative and zero values, and
//! data errors.

use super::*;

#[test]
fn grouped_bars_has_title_axes_groups_and_legend() {
    let b = sample_bars();
    let svg = grouped_bars(&b).unwrap();
    assert_well_formed(&svg);
    assert_contains_all(
        &svg,
        &[
            &b.title, &b.x_label, &b.y_label, "coarse", "fine", "CIFAR-10", "Flowers",
        ],
    );
}

#[test]
fn grouped_bars_long_names_and_negative_values() {
    let mut b = sample_bars();
    b.groups = vec![
        "a rather long dataset name".into(),
        "another very long dataset name here".into(),
        "x".into(),
    ];
    b.bars[0].mean[1] = -12.0;
    let svg = grouped_bars(&b).unwrap();
    assert_well_formed(&svg);
    assert!(svg.contains("dataset"));
}

#[test]
fn grouped_bars_data_errors() {
    assert_data_err(grouped_bars(&GroupedBars::default()), "no groups");
    let mut b = sample_bars();
    b.bars.clear();
    assert_data_err(grouped_bars(&b), "no bar series");
    let mut b = sample_bars();
    b.bars[1].mean.pop();
    assert_data_err(grouped_bars(&b), "2 means for 3 groups");
    let mut b = sample_bars();
    b.bars[0].sd.push(1.0);
    assert_data_err(grouped_bars(&b), "4 sds for 3 groups");
    let mut b = sample_bars();
    b.bars[0].mean = vec![f64::NAN; 3];
    assert_data_err(grouped_bars(&b), "all NaN");
}

/// A bar of height zero is drawn as a mark on the axis with its value, so it does not look
/// missing.
#[test]
fn zero_bars_show_their_value() {
    let zero_texts = |b: &GroupedBars| {
        let svg = grouped_bars(b).unwrap();
        assert_well_formed(&svg);
        svg.matches(">\n0\n</text>").count()
    };
    let mut b = sample_bars();
    b.bars[0].mean = vec![0.5, 0.01, 0.3];
    b.bars[1].mean = vec![0.2, 0.4, 0.02];
    b.bars[1].sd = vec![0.0; 3];
    let base = zero_texts(&b);
    b.bars[0].mean[1] = 0.0;
    b.bars[1].mean[2] = 0.0;
    assert_eq!(zero_texts(&b), base + 2);
}
