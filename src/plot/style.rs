//! The one house style of every figure: sizes, fonts, colours, colour maps, tick placement and
//! number formatting. Change the look of all figures here and only here.

use plotters::style::{RGBAColor, RGBColor};

/// Default figure size in px (line charts and bar charts).
pub(crate) const WIDTH: u32 = 800;
pub(crate) const HEIGHT: u32 = 560;

/// Font sizes as they appear in the SVG (`font-size` attribute), in px.
pub(crate) const TITLE_PX: f64 = 22.0;
pub(crate) const LABEL_PX: f64 = 18.0;
pub(crate) const TICK_PX: f64 = 14.0;
pub(crate) const LEGEND_PX: f64 = 15.0;
pub(crate) const ANNOT_PX: f64 = 12.0;

/// plotters' SVG backend writes `font-size = size / 1.24`; multiply by this to get the size we
/// want to see in the document.
pub(crate) const PLOTTERS_FONT_SCALE: f64 = 1.24;

pub(crate) const TEXT: RGBColor = RGBColor(0x1a, 0x1a, 0x1a);
pub(crate) const AXIS: RGBColor = RGBColor(0x33, 0x33, 0x33);
pub(crate) const GRID: RGBColor = RGBColor(0xdc, 0xdc, 0xdc);
pub(crate) const GRID_MINOR: RGBColor = RGBColor(0xef, 0xef, 0xef);
pub(crate) const WHITE: RGBColor = RGBColor(0xff, 0xff, 0xff);
pub(crate) const BLACK: RGBColor = RGBColor(0, 0, 0);
/// Cells without a value (NaN): light grey with darker hatching.
pub(crate) const MISSING_FILL: RGBColor = RGBColor(0xd9, 0xd9, 0xd9);
pub(crate) const MISSING_HATCH: RGBColor = RGBColor(0x96, 0x96, 0x96);
/// Legend box: white, slightly transparent, thin grey border.
pub(crate) const LEGEND_ALPHA: f64 = 0.88;
pub(crate) const LEGEND_BORDER: RGBColor = RGBColor(0xa0, 0xa0, 0xa0);

/// Line widths (px).
pub(crate) const LINE_W: u32 = 2;
pub(crate) const ERRBAR_W: u32 = 2;
/// Opacity of the +-sd band of a series.
pub(crate) const BAND_ALPHA: f64 = 0.18;
/// Marker "radius" (px).
pub(crate) const MARKER_R: f64 = 5.0;

/// Okabe & Ito (2008) colour-blind-safe palette, ordered so that the first colours are the most
/// distinct on white; yellow (weak on white) comes last.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0xF0, 0xE4, 0x42), // yellow
];

/// Colour of series number `i` (the same index always gets the same colour, in every figure).
pub(crate) fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Reference lines (baselines) are neutral greys with their own dash patterns.
pub(crate) fn reference_style(i: usize) -> (RGBColor, &'static [f64]) {
    const STYLES: [(RGBColor, &[f64]); 4] = [
        (RGBColor(0x30, 0x30, 0x30), &[9.0, 5.0]),
        (RGBColor(0x70, 0x70, 0x70), &[3.0, 4.0]),
        (RGBColor(0x30, 0x30, 0x30), &[12.0, 4.0, 3.0, 4.0]),
        (RGBColor(0x90, 0x90, 0x90), &[6.0, 3.0]),
    ];
    STYLES[i % STYLES.len()]
}

/// Marker shapes, one per series index (cycle length 7, coprime with the 8 colours, so the
/// (colour, marker) pair stays unique for 56 series).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    Cross,
    Star,
}

pub(crate) fn series_marker(i: usize) -> Marker {
    const M: [Marker; 7] = [
        Marker::Circle,
        Marker::Square,
        Marker::TriangleUp,
        Marker::Diamond,
        Marker::TriangleDown,
        Marker::Cross,
        Marker::Star,
    ];
    M[i % M.len()]
}

/// Darker shade of a colour (for bar outlines).
pub(crate) fn darken(c: RGBColor, f: f64) -> RGBColor {
    let s = |v: u8| (f64::from(v) * f).round().clamp(0.0, 255.0) as u8;
    RGBColor(s(c.0), s(c.1), s(c.2))
}

pub(crate) fn alpha(c: RGBColor, a: f64) -> RGBAColor {
    RGBAColor(c.0, c.1, c.2, a)
}

fn lerp_table(table: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let n = table.len() - 1;
    let pos = t * n as f64;
    let i = (pos.floor() as usize).min(n - 1);
    let f = pos - i as f64;
    let (a, b) = (table[i], table[i + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Sequential map (matplotlib's viridis, sampled at 11 points), `t` in [0, 1].
pub(crate) fn viridis(t: f64) -> RGBColor {
    const V: [(u8, u8, u8); 11] = [
        (0x44, 0x01, 0x54),
        (0x48, 0x24, 0x75),
        (0x41, 0x44, 0x87),
        (0x35, 0x5f, 0x8d),
        (0x2a, 0x78, 0x8e),
        (0x21, 0x91, 0x8c),
        (0x22, 0xa8, 0x84),
        (0x44, 0xbf, 0x70),
        (0x7a, 0xd1, 0x51),
        (0xbd, 0xdf, 0x26),
        (0xfd, 0xe7, 0x25),
    ];
    lerp_table(&V, t)
}

/// Diverging map (ColorBrewer RdBu, blue = low, white = middle, red = high), `t` in [0, 1].
pub(crate) fn diverging(t: f64) -> RGBColor {
    const D: [(u8, u8, u8); 11] = [
        (0x05, 0x30, 0x61),
        (0x21, 0x66, 0xac),
        (0x43, 0x93, 0xc3),
        (0x92, 0xc5, 0xde),
        (0xd1, 0xe5, 0xf0),
        (0xf7, 0xf7, 0xf7),
        (0xfd, 0xdb, 0xc7),
        (0xf4, 0xa5, 0x82),
        (0xd6, 0x60, 0x4d),
        (0xb2, 0x18, 0x2b),
        (0x67, 0x00, 0x1f),
    ];
    lerp_table(&D, t)
}

/// Text colour readable on top of `bg`.
pub(crate) fn text_on(bg: RGBColor) -> RGBColor {
    let lin = |v: u8| {
        let c = f64::from(v) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(bg.0) + 0.7152 * lin(bg.1) + 0.0722 * lin(bg.2);
    if l < 0.25 {
        WHITE
    } else {
        BLACK
    }
}

/// Width of `s` in px at font size `px`, estimated for a wide sans-serif (DejaVu Sans), so that
/// layouts leave room for text in any common viewer font.
pub(crate) fn text_width(s: &str, px: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            ' ' => 0.32,
            'i' | 'l' | 'I' | 'j' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 0.3,
            'f' | 'r' | 't' | '(' | ')' | '[' | ']' | '{' | '}' | '-' | '/' => 0.42,
            'm' | 'w' | 'M' | 'W' => 0.92,
            '0'..='9' => 0.64,
            'A'..='Z' => 0.72,
            'a'..='z' => 0.61,
            '⁰'..='⁹' | '¹' | '²' | '³' | '⁻' => 0.42,
            _ => 0.75,
        })
        .sum();
    em * px
}

/// Line height used for stacking text, px.
pub(crate) fn line_height(px: f64) -> f64 {
    px * 1.25
}

// ---------------------------------------------------------------------------------------------
// Ticks and number formatting
// ---------------------------------------------------------------------------------------------

/// A "nice" step (1, 2, 5 x 10^k) giving about `target` intervals over `span`.
pub(crate) fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Ticks at multiples of a nice step inside `[lo, hi]`, and that step.
pub(crate) fn linear_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let step = nice_step(hi - lo, target);
    let k0 = (lo / step - 1e-9).ceil() as i64;
    let k1 = (hi / step + 1e-9).floor() as i64;
    let ticks = (k0..=k1)
        .map(|k| {
            let v = k as f64 * step;
            // Snap away floating-point noise (0.30000000000000004 -> 0.3).
            let snapped: f64 = format!("{:.12e}", v).parse().unwrap_or(v);
            if snapped == 0.0 {
                0.0
            } else {
                snapped
            }
        })
        .collect();
    (ticks, step)
}

/// Typographic minus sign (U+2212) instead of the hyphen Rust prints.
pub(crate) fn minus(s: String) -> String {
    if s.contains('-') {
        s.replace('-', "\u{2212}")
    } else {
        s
    }
}

/// Label of a linear tick: the same number of decimals for all ticks of an axis.
pub(crate) fn fmt_tick(v: f64, step: f64) -> String {
    minus(fmt_tick_ascii(v, step))
}

fn fmt_tick_ascii(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e5 || step < 1e-4 {
        return fmt_sci(v, 3);
    }
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let s = format!("{:.*}", decimals, v);
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        "0".into()
    } else {
        s
    }
}

/// `1.5×10⁻⁵` style scientific notation with at most `sig` significant digits.
pub(crate) fn fmt_sci(v: f64, sig: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{:.*e}", sig.saturating_sub(1), v);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mant = if mant.contains('.') {
        mant.trim_end_matches('0').trim_end_matches('.')
    } else {
        mant
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if mant == "1" {
        format!("10{}", superscript(exp))
    } else if mant == "-1" {
        format!("-10{}", superscript(exp))
    } else {
        format!("{mant}×10{}", superscript(exp))
    }
}

fn superscript(e: i32) -> String {
    e.to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            '9' => '⁹',
            c => c,
        })
        .collect()
}

/// Short label of an arbitrary value (axis values of a phase diagram, thresholds).
pub(crate) fn fmt_compact(v: f64) -> String {
    minus(fmt_compact_ascii(v))
}

fn fmt_compact_ascii(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return fmt_sci(v, 3);
    }
    // At most 4 significant digits, no trailing zeros.
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{:.*}", decimals, v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Number of decimals for writing the values of a matrix in its cells (3 significant digits of
/// the largest magnitude; 0 when all values are integers).
pub(crate) fn cell_decimals(values: impl Iterator<Item = f64>) -> Option<usize> {
    let mut max_abs: f64 = 0.0;
    let mut all_int = true;
    for v in values.filter(|v| v.is_finite()) {
        max_abs = max_abs.max(v.abs());
        all_int &= v.fract() == 0.0;
    }
    if all_int {
        return Some(0);
    }
    if max_abs == 0.0 {
        return Some(1);
    }
    if !(1e-3..1e5).contains(&max_abs) {
        return None; // scientific
    }
    Some((2 - max_abs.log10().floor() as i32).clamp(0, 4) as usize)
}

pub(crate) fn fmt_cell(v: f64, decimals: Option<usize>) -> String {
    minus(fmt_cell_ascii(v, decimals))
}

fn fmt_cell_ascii(v: f64, decimals: Option<usize>) -> String {
    match decimals {
        Some(d) => {
            let s = format!("{:.*}", d, v);
            if s.trim_start_matches('-')
                .chars()
                .all(|c| c == '0' || c == '.')
            {
                format!("{:.*}", d, 0.0)
            } else {
                s
            }
        }
        None => fmt_sci(v, 2),
    }
}

/// Exact decimal `m × 10^k` (parsing avoids 3 * 0.1 = 0.30000000000000004).
fn dec(m: u32, k: i32) -> f64 {
    format!("{m}e{k}").parse().unwrap_or(f64::NAN)
}

/// Ticks of a log axis over `[lo, hi]` (`0 < lo < hi`): labelled major ticks and unlabelled minor
/// ones (for the light grid).
pub(crate) fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let k0 = lo.log10().floor() as i32 - 1;
    let k1 = hi.log10().ceil() as i32 + 1;
    let inside = |v: &f64| *v >= lo * (1.0 - 1e-12) && *v <= hi * (1.0 + 1e-12);
    let with = |ms: &[u32]| -> Vec<f64> {
        (k0..=k1)
            .flat_map(|k| ms.iter().map(move |&m| dec(m, k)))
            .filter(inside)
            .collect()
    };
    let all: Vec<f64> = with(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let decades = with(&[1]);
    let one_two_five = with(&[1, 2, 5]);
    if (3..=9).contains(&one_two_five.len()) {
        let minor = all
            .into_iter()
            .filter(|v| !one_two_five.contains(v))
            .collect();
        return (one_two_five, minor);
    }
    if decades.len() >= 2 {
        let stride = decades.len().div_ceil(8);
        let major: Vec<f64> = decades
            .iter()
            .enumerate()
            .filter(|(i, _)| i % stride == 0)
            .map(|(_, v)| *v)
            .collect();
        let minor = if decades.len() <= 10 {
            all.into_iter().filter(|v| !major.contains(v)).collect()
        } else {
            decades.into_iter().filter(|v| !major.contains(v)).collect()
        };
        return (major, minor);
    }
    if all.len() >= 3 {
        return (all, Vec::new());
    }
    // Less than a factor ~3 of range: plain linear ticks read best.
    (linear_ticks(lo, hi, 5).0, Vec::new())
}

/// Label of a log-axis tick.
pub(crate) fn fmt_log_tick(v: f64) -> String {
    if (1e-3..1e5).contains(&v.abs()) {
        fmt_compact(v)
    } else {
        fmt_sci(v, 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_helpers() {
        let (t, s) = linear_ticks(0.0, 1.0, 5);
        assert_eq!(s, 0.2);
        assert_eq!(t, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(fmt_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(fmt_tick(-0.0, 0.1), "0");
        assert_eq!(fmt_tick(-0.5, 0.5), "\u{2212}0.5");
        assert_eq!(fmt_sci(1e-5, 2), "10⁻⁵");
        assert_eq!(fmt_sci(2.5e-7, 2), "2.5×10⁻⁷");
        let (major, minor) = log_ticks(0.9, 11000.0);
        assert_eq!(major, vec![1.0, 10.0, 100.0, 1000.0, 10000.0]);
        assert!(minor.contains(&20.0) && !minor.contains(&0.3));
        let (major, _) = log_ticks(1e-9, 1.0);
        assert_eq!(major.len(), 5);
        let (major, _) = log_ticks(2.0, 64.0);
        assert_eq!(major, vec![2.0, 5.0, 10.0, 20.0, 50.0]);
        let (major, _) = log_ticks(1.1, 1.4);
        assert!(major.len() >= 2 && major.iter().all(|v| (1.1..=1.4).contains(v)));
        assert_eq!(fmt_log_tick(0.01), "0.01");
        assert_eq!(fmt_log_tick(1e-6), "10⁻⁶");
        assert_eq!(fmt_compact(0.1 + 0.2), "0.3");
        assert_eq!(fmt_compact(1234.5678), "1235");
        assert_eq!(cell_decimals([0.91, 0.5].into_iter()), Some(3));
        assert_eq!(cell_decimals([3.0, 12.0].into_iter()), Some(0));
    }

    #[test]
    fn colours() {
        assert_eq!(series_color(0), series_color(8));
        assert_ne!(series_color(0), series_color(1));
        assert_eq!(viridis(0.0), RGBColor(0x44, 0x01, 0x54));
        assert_eq!(viridis(1.0), RGBColor(0xfd, 0xe7, 0x25));
        assert_eq!(diverging(0.5), RGBColor(0xf7, 0xf7, 0xf7));
        assert_eq!(text_on(viridis(0.0)), WHITE);
        assert_eq!(text_on(viridis(1.0)), BLACK);
    }
}
