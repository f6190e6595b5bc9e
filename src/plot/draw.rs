//! Pixel-space drawing primitives shared by all figure kinds: clipped lines and polygons, dashes,
//! markers, hatching, text, the legend box and its placement.

use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, DrawingAreaErrorKind};
use plotters::element::{Circle, PathElement, Polygon, Rectangle, Text};
use plotters::prelude::SVGBackend;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, FontDesc, FontFamily, FontStyle, FontTransform, RGBColor, TextStyle};

use super::style::{self, Marker};

/// The whole figure, in pixel coordinates.
pub(crate) type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A drawing failure, turned into [`super::PlotError::Draw`] by the figure functions.
#[derive(Debug)]
pub(crate) struct Fail(pub String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for Fail {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Fail(e.to_string())
    }
}

pub(crate) type DrawResult<T = ()> = Result<T, Fail>;

pub(crate) type Pt = (f64, f64);

fn ip(p: Pt) -> (i32, i32) {
    (p.0.round() as i32, p.1.round() as i32)
}

/// Axis-aligned rectangle in pixels (`y` grows downwards).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PixRect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl PixRect {
    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        PixRect {
            x0: x0.min(x1),
            y0: y0.min(y1),
            x1: x0.max(x1),
            y1: y0.max(y1),
        }
    }
    pub fn width(&self) -> f64 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> f64 {
        self.y1 - self.y0
    }
    pub fn contains(&self, p: Pt, tol: f64) -> bool {
        p.0 >= self.x0 - tol && p.0 <= self.x1 + tol && p.1 >= self.y0 - tol && p.1 <= self.y1 + tol
    }
}

// ---------------------------------------------------------------------------------------------
// Clipping
// ---------------------------------------------------------------------------------------------

/// Liang-Barsky clipping of segment `a`-`b` to `r`.
pub(crate) fn clip_segment(a: Pt, b: Pt, r: &PixRect) -> Option<(Pt, Pt)> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let mut t0: f64 = 0.0;
    let mut t1: f64 = 1.0;
    for (p, q) in [
        (-dx, a.0 - r.x0),
        (dx, r.x1 - a.0),
        (-dy, a.1 - r.y0),
        (dy, r.y1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    Some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
    ))
}

/// Clip a polyline to `r`; returns the visible pieces.
pub(crate) fn clip_polyline(pts: &[Pt], r: &PixRect) -> Vec<Vec<Pt>> {
    let mut out: Vec<Vec<Pt>> = Vec::new();
    if pts.len() == 1 {
        if r.contains(pts[0], 1e-6) {
            out.push(vec![pts[0]]);
        }
        return out;
    }
    let mut cur: Vec<Pt> = Vec::new();
    for w in pts.windows(2) {
        match clip_segment(w[0], w[1], r) {
            Some((a, b)) => {
                let continues = cur
                    .last()
                    .is_some_and(|l| (l.0 - a.0).abs() < 1e-9 && (l.1 - a.1).abs() < 1e-9);
                if !continues {
                    if cur.len() > 1 {
                        out.push(std::mem::take(&mut cur));
                    }
                    cur.clear();
                    cur.push(a);
                }
                cur.push(b);
            }
            None => {
                if cur.len() > 1 {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
        }
    }
    if cur.len() > 1 {
        out.push(cur);
    }
    out
}

/// Sutherland-Hodgman clipping of a polygon to `r`.
pub(crate) fn clip_polygon(pts: &[Pt], r: &PixRect) -> Vec<Pt> {
    type Inside = fn(Pt, &PixRect) -> bool;
    type Cut = fn(Pt, Pt, &PixRect) -> Pt;
    let edges: [(Inside, Cut); 4] = [
        (|p, r| p.0 >= r.x0, |a, b, r| lerp_x(a, b, r.x0)),
        (|p, r| p.0 <= r.x1, |a, b, r| lerp_x(a, b, r.x1)),
        (|p, r| p.1 >= r.y0, |a, b, r| lerp_y(a, b, r.y0)),
        (|p, r| p.1 <= r.y1, |a, b, r| lerp_y(a, b, r.y1)),
    ];
    let mut poly = pts.to_vec();
    for (inside, cut) in edges {
        if poly.is_empty() {
            break;
        }
        let input = std::mem::take(&mut poly);
        let mut prev = input[input.len() - 1];
        for &cur in &input {
            match (inside(cur, r), inside(prev, r)) {
                (true, true) => poly.push(cur),
                (true, false) => {
                    poly.push(cut(prev, cur, r));
                    poly.push(cur);
                }
                (false, true) => poly.push(cut(prev, cur, r)),
                (false, false) => {}
            }
            prev = cur;
        }
    }
    poly
}

fn lerp_x(a: Pt, b: Pt, x: f64) -> Pt {
    let t = if b.0 == a.0 {
        0.0
    } else {
        (x - a.0) / (b.0 - a.0)
    };
    (x, a.1 + t * (b.1 - a.1))
}

fn lerp_y(a: Pt, b: Pt, y: f64) -> Pt {
    let t = if b.1 == a.1 {
        0.0
    } else {
        (y - a.1) / (b.1 - a.1)
    };
    (a.0 + t * (b.0 - a.0), y)
}

/// Points every `step` px along a polyline (obstacles for legend placement).
pub(crate) fn sample_polyline(pts: &[Pt], step: f64, out: &mut Vec<Pt>) {
    if let Some(&first) = pts.first() {
        out.push(first);
    }
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let n = (len / step).ceil().max(1.0) as usize;
        for i in 1..=n {
            let t = i as f64 / n as f64;
            out.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
        }
    }
}

/// Grid of points every `step` px covering a rectangle (obstacles for legend placement).
pub(crate) fn sample_rect(r: &PixRect, step: f64, out: &mut Vec<Pt>) {
    let nx = (r.width() / step).ceil().max(1.0) as usize;
    let ny = (r.height() / step).ceil().max(1.0) as usize;
    for i in 0..=nx {
        for j in 0..=ny {
            out.push((
                r.x0 + r.width() * i as f64 / nx as f64,
                r.y0 + r.height() * j as f64 / ny as f64,
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------

pub(crate) fn fill_rect<C: Color>(root: &Root, r: PixRect, color: &C) -> DrawResult {
    let (a, b) = (ip((r.x0, r.y0)), ip((r.x1, r.y1)));
    if a.0 == b.0 || a.1 == b.1 {
        return Ok(());
    }
    root.draw(&Rectangle::new([a, b], color.filled()))?;
    Ok(())
}

/// Rectangle outline of `width` px centred on the rectangle's edges (square corners).
pub(crate) fn stroke_rect<C: Color>(root: &Root, r: PixRect, color: &C, width: f64) -> DrawResult {
    if width <= 1.0 {
        let (a, b) = (ip((r.x0, r.y0)), ip((r.x1, r.y1)));
        root.draw(&Rectangle::new([a, b], color.stroke_width(1)))?;
        return Ok(());
    }
    let h = width / 2.0;
    for e in [
        PixRect::new(r.x0 - h, r.y0 - h, r.x1 + h, r.y0 + h),
        PixRect::new(r.x0 - h, r.y1 - h, r.x1 + h, r.y1 + h),
        PixRect::new(r.x0 - h, r.y0 - h, r.x0 + h, r.y1 + h),
        PixRect::new(r.x1 - h, r.y0 - h, r.x1 + h, r.y1 + h),
    ] {
        fill_rect(root, e, color)?;
    }
    Ok(())
}

pub(crate) fn polyline<C: Color>(root: &Root, pts: &[Pt], color: &C, width: u32) -> DrawResult {
    if pts.len() < 2 {
        return Ok(());
    }
    let v: Vec<(i32, i32)> = pts.iter().map(|&p| ip(p)).collect();
    root.draw(&PathElement::new(v, color.stroke_width(width)))?;
    Ok(())
}

pub(crate) fn polygon<C: Color>(root: &Root, pts: &[Pt], color: &C) -> DrawResult {
    if pts.len() < 3 {
        return Ok(());
    }
    let v: Vec<(i32, i32)> = pts.iter().map(|&p| ip(p)).collect();
    root.draw(&Polygon::new(v, color.filled()))?;
    Ok(())
}

/// A dashed polyline; `pattern` alternates on/off lengths in px.
pub(crate) fn dashed<C: Color>(
    root: &Root,
    pts: &[Pt],
    color: &C,
    width: u32,
    pattern: &[f64],
) -> DrawResult {
    if pattern.is_empty() || pattern.iter().any(|d| *d <= 0.0) {
        return polyline(root, pts, color, width);
    }
    let mut idx = 0usize;
    let mut left = pattern[0];
    let mut cur: Vec<Pt> = Vec::new();
    if let Some(&p) = pts.first() {
        cur.push(p);
    }
    for w in pts.windows(2) {
        let (mut a, b) = (w[0], w[1]);
        let mut seg = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        while seg > 1e-9 {
            let take = left.min(seg);
            let t = take / seg;
            let p = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            if idx.is_multiple_of(2) {
                cur.push(p);
            }
            seg -= take;
            left -= take;
            a = p;
            if left <= 1e-9 {
                if idx.is_multiple_of(2) {
                    polyline(root, &cur, color, width)?;
                }
                cur.clear();
                idx = (idx + 1) % pattern.len();
                left = pattern[idx];
                if idx.is_multiple_of(2) {
                    cur.push(a);
                }
            }
        }
    }
    if idx.is_multiple_of(2) {
        polyline(root, &cur, color, width)?;
    }
    Ok(())
}

fn regular(c: Pt, r: f64, n: usize, phase_deg: f64) -> Vec<Pt> {
    (0..n)
        .map(|i| {
            let a = (phase_deg + 360.0 * i as f64 / n as f64).to_radians();
            (c.0 + r * a.cos(), c.1 + r * a.sin())
        })
        .collect()
}

/// A filled marker of the given shape centred at `c`.
pub(crate) fn marker(root: &Root, shape: Marker, c: Pt, r: f64, color: &RGBColor) -> DrawResult {
    let pts: Vec<Pt> = match shape {
        Marker::Circle => {
            root.draw(&Circle::new(ip(c), r.round() as u32, color.filled()))?;
            return Ok(());
        }
        Marker::Square => {
            let h = r * 0.85;
            vec![
                (c.0 - h, c.1 - h),
                (c.0 + h, c.1 - h),
                (c.0 + h, c.1 + h),
                (c.0 - h, c.1 + h),
            ]
        }
        Marker::TriangleUp => regular((c.0, c.1 + r * 0.15), r * 1.25, 3, -90.0),
        Marker::TriangleDown => regular((c.0, c.1 - r * 0.15), r * 1.25, 3, 90.0),
        Marker::Diamond => regular(c, r * 1.25, 4, -90.0),
        Marker::Cross => {
            let (a, l) = (r * 0.36, r * 1.2);
            let plus = [
                (a, l),
                (a, a),
                (l, a),
                (l, -a),
                (a, -a),
                (a, -l),
                (-a, -l),
                (-a, -a),
                (-l, -a),
                (-l, a),
                (-a, a),
                (-a, l),
            ];
            let s = std::f64::consts::FRAC_1_SQRT_2;
            plus.iter()
                .map(|&(x, y)| (c.0 + s * (x - y), c.1 + s * (x + y)))
                .collect()
        }
        Marker::Star => {
            let outer = regular(c, r * 1.35, 5, -90.0);
            let inner = regular(c, r * 0.58, 5, -54.0);
            outer
                .into_iter()
                .zip(inner)
                .flat_map(|(o, i)| [o, i])
                .collect()
        }
    };
    polygon(root, &pts, color)
}

/// Light grey cell with diagonal hatching: "no value here".
pub(crate) fn hatched(root: &Root, r: PixRect) -> DrawResult {
    fill_rect(root, r, &style::MISSING_FILL)?;
    let (w, h) = (r.width(), r.height());
    if w < 4.0 || h < 4.0 {
        return Ok(());
    }
    let spacing = 7.0;
    let mut c = spacing / 2.0;
    while c < w + h {
        // Line (x - x0) + (y1 - y) = c, i.e. running from lower left to upper right.
        let a = (r.x0 + c.min(w), r.y1 - (c - c.min(w)));
        let b = (r.x0 + (c - c.min(h)), r.y1 - c.min(h));
        polyline(root, &[a, b], &style::MISSING_HATCH, 1)?;
        c += spacing;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

/// Text anchored at `at`; `rotate` turns it to read bottom-to-top (y-axis label style).
#[allow(clippy::too_many_arguments)]
pub(crate) fn text(
    root: &Root,
    s: &str,
    at: Pt,
    px: f64,
    h: HPos,
    v: VPos,
    rotate: bool,
    color: &RGBColor,
) -> DrawResult {
    if s.is_empty() {
        return Ok(());
    }
    let font = FontDesc::new(
        FontFamily::SansSerif,
        px * style::PLOTTERS_FONT_SCALE,
        FontStyle::Normal,
    );
    let font = if rotate {
        font.transform(FontTransform::Rotate270)
    } else {
        font
    };
    let ts = TextStyle {
        font,
        color: color.to_backend_color(),
        pos: Pos::new(h, v),
    };
    root.draw(&Text::new(s.to_string(), ip(at), ts))?;
    Ok(())
}

/// Font of the given visible size, for plotters' own text (mesh labels).
pub(crate) fn font(px: f64) -> TextStyle<'static> {
    TextStyle {
        font: FontDesc::new(
            FontFamily::SansSerif,
            px * style::PLOTTERS_FONT_SCALE,
            FontStyle::Normal,
        ),
        color: style::TEXT.to_backend_color(),
        pos: Pos::new(HPos::Left, VPos::Top),
    }
}

/// Split `s` into at most `max_lines` lines no wider than `width` px (at `px`), at spaces.
pub(crate) fn wrap(s: &str, px: f64, width: f64, max_lines: usize) -> Option<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split_whitespace() {
        if style::text_width(word, px) > width {
            return None;
        }
        match lines.last_mut() {
            Some(last) if style::text_width(&format!("{last} {word}"), px) <= width => {
                last.push(' ');
                last.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    if lines.len() > max_lines {
        None
    } else {
        Some(lines)
    }
}

// ---------------------------------------------------------------------------------------------
// Legend
// ---------------------------------------------------------------------------------------------

/// What a legend entry shows left of its label.
#[derive(Clone, Debug)]
pub(crate) enum Swatch {
    /// A data series: line with marker, optional shaded band and error bar.
    Series {
        color: RGBColor,
        marker: Marker,
        band: bool,
        errbar: bool,
    },
    /// A horizontal reference line (dashed) with its band.
    Reference {
        color: RGBColor,
        dash: &'static [f64],
        band: bool,
    },
    /// A filled bar.
    Bar { color: RGBColor },
    /// Hatched grey cell (missing value).
    Missing,
    /// Thick two-tone outline (cells above a threshold).
    Outline,
}

#[derive(Clone, Debug)]
pub(crate) struct LegendEntry {
    pub label: String,
    pub swatch: Swatch,
}

const LEG_PAD: f64 = 8.0;
const LEG_SAMPLE: f64 = 40.0;
const LEG_GAP: f64 = 8.0;

fn legend_row() -> f64 {
    (style::LEGEND_PX * 1.5).round()
}

/// Width and height of the legend box.
pub(crate) fn legend_size(entries: &[LegendEntry]) -> (f64, f64) {
    let tw = entries
        .iter()
        .map(|e| style::text_width(&e.label, style::LEGEND_PX))
        .fold(0.0, f64::max);
    (
        (LEG_PAD + LEG_SAMPLE + LEG_GAP + tw + LEG_PAD).ceil(),
        (LEG_PAD * 2.0 + legend_row() * entries.len() as f64 - 4.0).ceil(),
    )
}

/// Draw the swatch of a legend entry in the box `r`.
pub(crate) fn draw_swatch(root: &Root, swatch: &Swatch, r: PixRect) -> DrawResult {
    let cy = (r.y0 + r.y1) / 2.0;
    let band = PixRect::new(r.x0, cy - 6.0, r.x1, cy + 6.0);
    match swatch {
        Swatch::Series {
            color,
            marker: m,
            band: has_band,
            errbar,
        } => {
            if *has_band {
                fill_rect(root, band, &style::alpha(*color, style::BAND_ALPHA))?;
            }
            polyline(root, &[(r.x0, cy), (r.x1, cy)], color, style::LINE_W)?;
            let cx = (r.x0 + r.x1) / 2.0;
            if *errbar {
                polyline(root, &[(cx, cy - 8.0), (cx, cy + 8.0)], color, 1)?;
            }
            marker(root, *m, (cx, cy), style::MARKER_R, color)?;
        }
        Swatch::Reference {
            color,
            dash,
            band: has_band,
        } => {
            if *has_band {
                fill_rect(root, band, &style::alpha(*color, style::BAND_ALPHA * 0.8))?;
            }
            dashed(root, &[(r.x0, cy), (r.x1, cy)], color, style::LINE_W, dash)?;
        }
        Swatch::Bar { color } => {
            let b = PixRect::new(r.x0 + 8.0, cy - 7.0, r.x1 - 8.0, cy + 7.0);
            fill_rect(root, b, color)?;
            stroke_rect(root, b, &style::darken(*color, 0.6), 1.0)?;
        }
        Swatch::Missing => {
            let b = PixRect::new(r.x0 + 10.0, cy - 8.0, r.x1 - 10.0, cy + 8.0);
            hatched(root, b)?;
            stroke_rect(root, b, &style::AXIS, 1.0)?;
        }
        Swatch::Outline => {
            let b = PixRect::new(r.x0 + 10.0, cy - 8.0, r.x1 - 10.0, cy + 8.0);
            fill_rect(root, b, &style::MISSING_FILL)?;
            stroke_rect(root, b, &style::WHITE, 5.0)?;
            stroke_rect(root, b, &style::BLACK, 3.0)?;
        }
    }
    Ok(())
}

/// Draw the legend box with its top-left corner at `at`.
pub(crate) fn draw_legend(root: &Root, entries: &[LegendEntry], at: Pt) -> DrawResult {
    if entries.is_empty() {
        return Ok(());
    }
    let (w, h) = legend_size(entries);
    let bx = PixRect::new(at.0, at.1, at.0 + w, at.1 + h);
    fill_rect(root, bx, &style::alpha(style::WHITE, style::LEGEND_ALPHA))?;
    stroke_rect(root, bx, &style::LEGEND_BORDER, 1.0)?;
    let row = legend_row();
    for (i, e) in entries.iter().enumerate() {
        let cy = at.1 + LEG_PAD - 2.0 + row * (i as f64 + 0.5);
        let sw = PixRect::new(
            at.0 + LEG_PAD,
            cy - row / 2.0,
            at.0 + LEG_PAD + LEG_SAMPLE,
            cy + row / 2.0,
        );
        draw_swatch(root, &e.swatch, sw)?;
        text(
            root,
            &e.label,
            (at.0 + LEG_PAD + LEG_SAMPLE + LEG_GAP, cy),
            style::LEGEND_PX,
            HPos::Left,
            VPos::Center,
            false,
            &style::TEXT,
        )?;
    }
    Ok(())
}

/// Inset of the legend box from the plot frame.
const LEG_INSET: f64 = 10.0;

/// Pick the position (top-left corner) of a `size` legend inside `plot` that covers the fewest
/// `obstacles`; ties go to the earlier candidate (upper right first). Returns the corner and the
/// number of covered obstacle points.
pub(crate) fn place_legend(plot: &PixRect, size: (f64, f64), obstacles: &[Pt]) -> (Pt, usize) {
    let (w, h) = size;
    let left = plot.x0 + LEG_INSET;
    let right = plot.x1 - LEG_INSET - w;
    let top = plot.y0 + LEG_INSET;
    let bottom = plot.y1 - LEG_INSET - h;
    let cx = (plot.x0 + plot.x1 - w) / 2.0;
    let cy = (plot.y0 + plot.y1 - h) / 2.0;
    let candidates = [
        (right, top),
        (left, top),
        (right, bottom),
        (left, bottom),
        (cx, top),
        (cx, bottom),
        (right, cy),
        (left, cy),
    ];
    let mut best = (candidates[0], usize::MAX);
    for c in candidates {
        let r = PixRect::new(c.0 - 4.0, c.1 - 4.0, c.0 + w + 4.0, c.1 + h + 4.0);
        let cost = obstacles.iter().filter(|p| r.contains(**p, 0.0)).count();
        if cost < best.1 {
            best = (c, cost);
        }
    }
    best
}
