//! Tests of the figures. This file holds the shared checks (well-formed SVG, texts present,
//! data errors), the sample figures, and the tests that cover every kind; each kind's own tests
//! are in `line.rs`, `grid.rs` (heatmaps and phase diagrams) and `bars.rs`, and the hard and
//! degenerate cases in `examples.rs`.

use super::*;

mod bars;
mod examples;
mod grid;
mod line;

/// XML escaping as the SVG backend writes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Minimal XML well-formedness check: balanced tags, quoted attributes, valid entities.
fn assert_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg"), "does not start with <svg");
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    let b = svg.as_bytes();
    let mut stack: Vec<&str> = Vec::new();
    let mut i = 0;
    let check_text = |t: &str| {
        for (k, _) in t.match_indices('&') {
            let rest = &t[k..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "bad entity in {t:?}"
            );
        }
        assert!(!t.contains('>'), "stray '>' in text {t:?}");
    };
    while let Some(off) = svg[i..].find('<') {
        let start = i + off;
        check_text(&svg[i..start]);
        let mut j = start + 1;
        let mut quote: Option<u8> = None;
        loop {
            assert!(j < b.len(), "unterminated tag at {start}");
            let c = b[j];
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => assert!(c != b'<', "'<' inside attribute at {j}"),
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None if c == b'>' => break,
                None => {}
            }
            j += 1;
        }
        let tag = &svg[start + 1..j];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().unwrap_or("");
            assert!(!name.is_empty(), "empty tag name at {start}");
            // Every attribute is name="value".
            let attrs = tag[name.len()..].trim_end_matches('/');
            let mut in_q = false;
            let mut eq_count = 0;
            let mut q_count = 0;
            for c in attrs.chars() {
                if c == '"' {
                    in_q = !in_q;
                    q_count += 1;
                } else if c == '=' && !in_q {
                    eq_count += 1;
                }
            }
            assert_eq!(q_count, 2 * eq_count, "unquoted attribute in <{tag}>");
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        i = j + 1;
    }
    check_text(&svg[i..]);
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
}

/// The SVG has a `<text>` element whose content is exactly `t`.
fn has_text(svg: &str, t: &str) -> bool {
    svg.contains(&format!(">\n{}\n</text>", esc(t)))
}

fn assert_contains_all(svg: &str, texts: &[&str]) {
    for t in texts {
        assert!(svg.contains(&esc(t)), "SVG lacks text {t:?}");
    }
}

fn assert_data_err<T: std::fmt::Debug>(r: Result<T, PlotError>, needle: &str) {
    match r {
        Err(PlotError::Data { msg, .. }) => {
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}")
        }
        other => panic!("expected PlotError::Data containing {needle:?}, got {other:?}"),
    }
}

fn curve(label: &str, k: f64, with_sd: bool) -> Series {
    let x: Vec<f64> = (0..8).map(|i| 2f64.powi(i + 1)).collect();
    let mean: Vec<f64> = x.iter().map(|x| 0.9 - k / x.sqrt()).collect();
    let sd = with_sd.then(|| x.iter().map(|x| 0.02 + 0.05 / x).collect());
    Series {
        label: label.into(),
        x,
        mean,
        sd,
    }
}

fn sample_line_chart() -> LineChart {
    LineChart {
        title: "Fine-grained pretraining & transfer <ImageNet21k>".into(),
        x_label: "pretraining classes (count)".into(),
        y_label: "top-1 accuracy (fraction)".into(),
        series: vec![
            curve("leaf labels", 0.9, true),
            curve("coarse labels", 0.6, true),
            curve("random labels", 0.3, false),
        ],
        bands: vec![HBand {
            label: "from scratch".into(),
            mean: 0.5,
            sd: 0.03,
        }],
        log_x: true,
        log_y: false,
        y_range: None,
        error_bars: true,
        x_ticks: None,
    }
}

fn sample_heatmap() -> Heatmap {
    let values: Vec<Vec<f64>> = (0..6)
        .map(|r| {
            (0..5)
                .map(|c| {
                    if r == 2 && c == 3 {
                        f64::NAN
                    } else {
                        ((r * 5 + c) as f64 * 0.37).sin()
                    }
                })
                .collect()
        })
        .collect();
    Heatmap {
        title: "Neuron selectivity".into(),
        x_label: "fine class".into(),
        y_label: "neuron".into(),
        col_labels: vec![
            "tabby cat".into(),
            "siamese cat".into(),
            "beagle".into(),
            "golden retriever".into(),
            "pug".into(),
        ],
        row_labels: vec![],
        values,
        color_label: "mean activation (a.u.)".into(),
        diverging: true,
        row_breaks: vec![3],
        col_breaks: vec![2],
        annotate: true,
    }
}

fn sample_bars() -> GroupedBars {
    GroupedBars {
        title: "Transfer accuracy by granularity".into(),
        x_label: "target dataset".into(),
        y_label: "accuracy (%)".into(),
        groups: vec!["CIFAR-10".into(), "CIFAR-100".into(), "Flowers".into()],
        bars: vec![
            BarSeries {
                label: "coarse".into(),
                mean: vec![91.0, 70.5, 88.0],
                sd: vec![0.4, 0.8, 1.1],
            },
            BarSeries {
                label: "fine".into(),
                mean: vec![94.2, f64::NAN, 92.3],
                sd: vec![0.3, f64::NAN, 0.9],
            },
        ],
        y_range: None,
    }
}

fn sample_phase() -> PhaseDiagram {
    let xs: Vec<f64> = vec![0.01, 0.03, 0.1, 0.3, 1.0];
    let ys: Vec<f64> = vec![2.0, 4.0, 8.0, 16.0];
    let values = ys
        .iter()
        .map(|y| {
            xs.iter()
                .map(|x| {
                    if *y == 16.0 && *x == 1.0 {
                        f64::NAN
                    } else {
                        (y.ln() - 1.0) * 0.1 - x * 0.2
                    }
                })
                .collect()
        })
        .collect();
    PhaseDiagram {
        title: "Coarse minus fine hard error".into(),
        x_label: "noise level σ".into(),
        y_label: "subclasses per class".into(),
        color_label: "gap (pp)".into(),
        x_values: xs,
        y_values: ys,
        values,
        diverging: true,
        threshold: Some(0.05),
        annotate: true,
    }
}

#[test]
fn figures_round_trip_through_json() {
    let c = sample_line_chart();
    let back: LineChart = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(line_chart(&back).unwrap(), line_chart(&c).unwrap());
    // (serde_json writes NaN as null and cannot read it back: NaN-free data here.)
    let mut p = sample_bars();
    p.bars[1].mean[1] = 80.0;
    p.bars[1].sd[1] = 1.0;
    let back: GroupedBars = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(grouped_bars(&back).unwrap(), grouped_bars(&p).unwrap());
}

#[test]
fn error_messages_name_the_figure() {
    let e = line_chart(&LineChart {
        title: "Fig 3".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "figure 'Fig 3': no series to plot");
    let e = heatmap(&Heatmap::default()).unwrap_err();
    assert!(e.to_string().starts_with("figure 'heatmap':"));
}

/// A title wider than the figure is wrapped onto more lines instead of running off the page.
#[test]
fn long_titles_wrap() {
    let mut c = sample_line_chart();
    c.title = "balanced design (every leaf keeps all its training images): full fine-tuning, hard test images".into();
    let svg = line_chart(&c).unwrap();
    assert_well_formed(&svg);
    assert!(!svg.contains(&esc(&c.title)), "not wrapped");
    assert!(svg.contains("balanced design"), "first line missing");
    assert!(svg.contains("hard test images"), "last line missing");
}
