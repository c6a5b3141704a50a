//! SVG plots for the HTML report, drawn with plotters' SVG backend: plain `<svg>` markup that
//! needs no script or font files, so the report is one self-contained file.
//!
//! Each function returns the SVG text; variant names (validated manifest identifiers) are the
//! only manifest text drawn, and plotters escapes text it writes.

use super::model::{SuiteSummary, TrendSeries};
use crate::claim::Dimension;
use crate::verdict::claims::{ClaimVerdict, ClaimVerdictKind};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
type Drawn = Result<(), String>;

const WIDTH: u32 = 900;
const ROW: u32 = 34;
const FONT: &str = "sans-serif";
/// Longest variant name drawn in full.
const LABEL_CHARS: usize = 44;
/// Width kept free right of a plot for its legend, so the legend never covers data.
const LEGEND_SPACE: u32 = 210;
/// Longest series label drawn in full in that space (15 px font).
const LEGEND_CHARS: usize = 18;

/// Colour of a claim verdict, shared with the HTML table.
pub fn verdict_colour(v: ClaimVerdictKind) -> RGBColor {
    match v {
        ClaimVerdictKind::Confirmed => RGBColor(46, 125, 50),
        ClaimVerdictKind::Refuted => RGBColor(198, 40, 40),
        ClaimVerdictKind::Inconclusive => RGBColor(230, 140, 0),
        ClaimVerdictKind::InsufficientReplication => RGBColor(96, 125, 139),
        ClaimVerdictKind::NotApplicable => RGBColor(117, 117, 117),
    }
}

fn error<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// `name` cut to `max` characters, the last one an ellipsis when it was longer.
fn shortened(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let head: String = name.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

fn label(name: &str) -> String {
    shortened(name, LABEL_CHARS)
}

/// A series label shortened to fit [`LEGEND_SPACE`].
fn legend_label(name: &str) -> String {
    shortened(name, LEGEND_CHARS)
}

/// How a series is marked in a legend.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Bar(RGBColor),
    Line(RGBColor),
}

/// One legend row: the mark and the series label.
type LegendEntry = (Mark, String);

/// Draws `entries` as a legend box in the space kept right of the plotting area
/// ([`LEGEND_SPACE`]; plotters' own series labels are clipped to the plotting area, where they
/// would cover data).
fn legend_beside_plot<'a, 'b: 'a>(
    root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    chart: &Chart<'a, 'b>,
    entries: &[LegendEntry],
) -> Drawn {
    if entries.is_empty() {
        return Ok(());
    }
    let (x_range, y_range) = chart.plotting_area().get_pixel_range();
    let (x, y) = (x_range.end + 14, y_range.start);
    let (w, h) = (LEGEND_SPACE as i32 - 24, 10 + 22 * entries.len() as i32);
    root.draw(&Rectangle::new([(x, y), (x + w, y + h)], WHITE.filled()))
        .map_err(error)?;
    root.draw(&Rectangle::new([(x, y), (x + w, y + h)], BLACK))
        .map_err(error)?;
    let style = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (mark, text)) in entries.iter().enumerate() {
        let row = y + 16 + 22 * i as i32;
        match *mark {
            Mark::Bar(c) => root.draw(&Rectangle::new(
                [(x + 8, row - 5), (x + 18, row + 5)],
                c.filled(),
            )),
            Mark::Line(c) => root.draw(&PathElement::new(
                vec![(x + 6, row), (x + 20, row)],
                c.stroke_width(2),
            )),
        }
        .map_err(error)?;
        root.draw(&Text::new(legend_label(text), (x + 28, row), &style))
            .map_err(error)?;
    }
    Ok(())
}

/// `[lo, hi]` widened by `fraction` of its span (or of its magnitude when it is a point).
fn padded(lo: f64, hi: f64, fraction: f64) -> Range<f64> {
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * fraction
    } else {
        (hi.abs() * fraction).max(1e-9)
    };
    (lo - pad)..(hi + pad)
}

/// A chart with one horizontal row per name (first name on top) over a numeric x axis.
fn rows_chart(
    title: &str,
    names: &[String],
    x: Range<f64>,
    x_desc: &str,
    legend: &[LegendEntry],
    draw: impl FnOnce(&mut Chart<'_, '_>, &dyn Fn(usize) -> f64) -> Drawn,
) -> Result<String, String> {
    let n = names.len();
    let height = 80 + ROW * n as u32 + 50;
    let widest = names.iter().map(|s| label(s).chars().count()).max();
    let left = (widest.unwrap_or(4) as u32 * 8 + 24).clamp(60, 380);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let x_lo = x.start;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .margin_right(12 + if legend.is_empty() { 0 } else { LEGEND_SPACE })
            .x_label_area_size(44)
            .y_label_area_size(left)
            .build_cartesian_2d(x, -0.5..(n as f64 - 0.5))
            .map_err(error)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(x_desc)
            .label_style((FONT, 15))
            .draw()
            .map_err(error)?;
        let row = |i: usize| (n - 1 - i) as f64;
        let style =
            TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        for (i, name) in names.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(x_lo, row(i)));
            root.draw(&Text::new(label(name), (px - 8, py), &style))
                .map_err(error)?;
        }
        draw(&mut chart, &row)?;
        legend_beside_plot(&root, &chart, legend)?;
        root.present().map_err(error)?;
    }
    Ok(svg)
}

/// Sorted copy; `q` in [0, 1] by linear interpolation.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + frac * (next - sorted[i]),
        None => sorted[i],
    }
}

/// Box plot of every measured call's wall time per variant (box: quartiles; whiskers: the
/// furthest calls within 1.5 IQR), with each process's median as a dot.
pub fn distributions(suite: &SuiteSummary) -> Option<Result<String, String>> {
    let variants: Vec<_> = suite
        .variants
        .iter()
        .filter(|v| !v.wall_ms_by_process.is_empty())
        .collect();
    if variants.is_empty() {
        return None;
    }
    let all = variants
        .iter()
        .flat_map(|v| v.wall_ms_by_process.iter().flatten().copied());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let names: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
    let fill = RGBColor(144, 202, 249);
    let edge = RGBColor(21, 101, 192);
    Some(rows_chart(
        &format!("{}: wall time per call", suite.suite),
        &names,
        padded(lo, hi, 0.05),
        "wall time (ms)",
        &[],
        |chart, row| {
            for (i, v) in variants.iter().enumerate() {
                let y = row(i);
                let mut calls: Vec<f64> = v.wall_ms_by_process.iter().flatten().copied().collect();
                calls.sort_by(f64::total_cmp);
                let (q1, q2, q3) = (
                    quantile(&calls, 0.25),
                    quantile(&calls, 0.5),
                    quantile(&calls, 0.75),
                );
                let iqr = q3 - q1;
                let low = calls
                    .iter()
                    .copied()
                    .find(|&c| c >= q1 - 1.5 * iqr)
                    .unwrap_or(q1);
                let high = calls
                    .iter()
                    .rev()
                    .copied()
                    .find(|&c| c <= q3 + 1.5 * iqr)
                    .unwrap_or(q3);
                let h = 0.28;
                chart
                    .draw_series([
                        Rectangle::new([(q1, y - h), (q3, y + h)], fill.filled()),
                        Rectangle::new([(q1, y - h), (q3, y + h)], edge.stroke_width(1)),
                    ])
                    .map_err(error)?;
                chart
                    .draw_series([
                        PathElement::new(vec![(q2, y - h), (q2, y + h)], edge.stroke_width(3)),
                        PathElement::new(vec![(low, y), (q1, y)], edge.stroke_width(1)),
                        PathElement::new(vec![(q3, y), (high, y)], edge.stroke_width(1)),
                        PathElement::new(vec![(low, y - h / 2.0), (low, y + h / 2.0)], edge),
                        PathElement::new(vec![(high, y - h / 2.0), (high, y + h / 2.0)], edge),
                    ])
                    .map_err(error)?;
                let outliers = calls.iter().filter(|&&c| c < low || c > high);
                chart
                    .draw_series(outliers.map(|&c| Circle::new((c, y), 2, edge.stroke_width(1))))
                    .map_err(error)?;
                let medians = v.wall_ms_by_process.iter().enumerate().map(|(p, calls)| {
                    let mut sorted = calls.clone();
                    sorted.sort_by(f64::total_cmp);
                    // Spread the dots a little so that equal medians stay visible.
                    let jitter = ((p * 7) % 5) as f64 / 5.0 * 0.3 - 0.15;
                    Circle::new((quantile(&sorted, 0.5), y + jitter), 3, BLACK.filled())
                });
                chart.draw_series(medians).map_err(error)?;
            }
            Ok(())
        },
    ))
}

const STAGE_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Median time of each stage, stacked per variant.
pub fn stages(suite: &SuiteSummary) -> Option<Result<String, String>> {
    let variants: Vec<_> = suite
        .variants
        .iter()
        .filter(|v| !v.stages.is_empty())
        .collect();
    let mut names: Vec<String> = Vec::new();
    for v in &variants {
        for (stage, _) in &v.stages {
            if !names.contains(stage) {
                names.push(stage.clone());
            }
        }
    }
    // One stage everywhere says nothing a box plot does not.
    if variants.is_empty() || names.len() < 2 {
        return None;
    }
    let total = variants
        .iter()
        .map(|v| v.stages.iter().map(|(_, ms)| ms).sum::<f64>())
        .fold(0.0, f64::max);
    let rows: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
    let legend: Vec<LegendEntry> = names
        .iter()
        .enumerate()
        .map(|(s, stage)| {
            (
                Mark::Bar(STAGE_COLOURS[s % STAGE_COLOURS.len()]),
                stage.clone(),
            )
        })
        .collect();
    Some(rows_chart(
        &format!("{}: median time per stage", suite.suite),
        &rows,
        0.0..(total * 1.05).max(1e-6),
        "time (ms), stages stacked in workload order",
        &legend,
        |chart, row| {
            for (s, stage) in names.iter().enumerate() {
                let colour = STAGE_COLOURS[s % STAGE_COLOURS.len()];
                let bars = variants.iter().enumerate().filter_map(|(i, v)| {
                    let at = v.stages.iter().position(|(n, _)| n == stage)?;
                    let start: f64 = v.stages[..at].iter().map(|(_, ms)| ms).sum();
                    let y = row(i);
                    Some(Rectangle::new(
                        [(start, y - 0.3), (start + v.stages[at].1, y + 0.3)],
                        colour.filled(),
                    ))
                });
                chart.draw_series(bars).map_err(error)?;
            }
            Ok(())
        },
    ))
}

/// Peak allocated and reserved memory per variant against the emulated card budgets.
pub fn memory(suite: &SuiteSummary) -> Option<Result<String, String>> {
    let variants: Vec<_> = suite
        .variants
        .iter()
        .filter(|v| v.peak_reserved_bytes.is_some() || v.peak_allocated_bytes.is_some())
        .collect();
    if variants.is_empty() {
        return None;
    }
    let mut budgets: Vec<f64> = variants.iter().filter_map(|v| v.budget_bytes).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let top = variants
        .iter()
        .flat_map(|v| [v.peak_reserved_bytes, v.peak_allocated_bytes])
        .flatten()
        .chain(budgets.iter().copied())
        .fold(0.0, f64::max);
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let (scale, unit) = if top >= GIB {
        (GIB, "GiB")
    } else {
        (1024.0 * 1024.0, "MiB")
    };
    let rows: Vec<String> = variants.iter().map(|v| v.name.clone()).collect();
    let reserved = RGBColor(179, 157, 219);
    let allocated = RGBColor(94, 53, 177);
    let budget_colour = RGBColor(198, 40, 40);
    Some(rows_chart(
        &format!("{}: peak memory and VRAM budgets", suite.suite),
        &rows,
        0.0..(top / scale * 1.08).max(1e-6),
        &format!("peak memory ({unit}); red lines: emulated card budgets"),
        &[
            (Mark::Bar(reserved), "peak reserved".to_string()),
            (Mark::Bar(allocated), "peak allocated".to_string()),
        ],
        |chart, row| {
            let bar = |value: Option<f64>, i: usize, h: f64, colour: RGBColor| {
                value.map(|b| {
                    let y = row(i);
                    Rectangle::new([(0.0, y - h), (b / scale, y + h)], colour.filled())
                })
            };
            chart
                .draw_series(
                    variants
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| bar(v.peak_reserved_bytes, i, 0.32, reserved)),
                )
                .map_err(error)?;
            chart
                .draw_series(
                    variants
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| bar(v.peak_allocated_bytes, i, 0.16, allocated)),
                )
                .map_err(error)?;
            let n = variants.len() as f64;
            for b in &budgets {
                let x = b / scale;
                chart
                    .draw_series([PathElement::new(
                        vec![(x, -0.5), (x, n - 0.5)],
                        budget_colour.stroke_width(2),
                    )])
                    .map_err(error)?;
                chart
                    .draw_series([Text::new(
                        format!("{x:.1} {unit}"),
                        (x, n - 0.5),
                        TextStyle::from((FONT, 14).into_font())
                            .color(&budget_colour)
                            .pos(Pos::new(HPos::Left, VPos::Top)),
                    )])
                    .map_err(error)?;
            }
            Ok(())
        },
    ))
}

/// A claim's measured interval (line, estimate as a dot, in the verdict's colour) over its
/// claimed range (green band; open ends reach the edge). `None` when the verdict has no
/// interval (out-of-memory outcomes, orderings, claims not applicable).
pub fn claim_interval(claim: &ClaimVerdict) -> Option<Result<String, String>> {
    let effect = claim.effect.as_ref()?;
    let (scale, unit) = match effect.dimension {
        Dimension::Relative => (0.01, "%"),
        Dimension::Time => (1.0, "ms"),
        Dimension::Count => (1.0, ""),
        Dimension::Bytes => {
            let top = [effect.upper.abs(), effect.lower.abs()]
                .into_iter()
                .chain(claim.claimed_min.map(f64::abs))
                .chain(claim.claimed_max.map(f64::abs))
                .fold(0.0, f64::max);
            if top >= 1024.0 * 1024.0 * 1024.0 {
                (1024.0 * 1024.0 * 1024.0, "GiB")
            } else {
                (1024.0 * 1024.0, "MiB")
            }
        }
    };
    let points: Vec<f64> = [effect.lower, effect.upper, effect.estimate]
        .into_iter()
        .chain(claim.claimed_min)
        .chain(claim.claimed_max)
        .map(|v| v / scale)
        .collect();
    let lo = points.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = points.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let x = padded(lo, hi, 0.15);
    let colour = verdict_colour(claim.verdict);
    let mut svg = String::new();
    let drawn = (|| -> Drawn {
        let root = SVGBackend::with_string(&mut svg, (720, 84)).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let (x_lo, x_hi) = (x.start, x.end);
        let mut chart = ChartBuilder::on(&root)
            .margin(6)
            .x_label_area_size(26)
            .y_label_area_size(8)
            .build_cartesian_2d(x, 0.0..1.0)
            .map_err(error)?;
        let formatter = |v: &f64| format!("{v:.1}{unit}");
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(6)
            .x_label_formatter(&formatter)
            .label_style((FONT, 14))
            .draw()
            .map_err(error)?;
        let band_lo = claim.claimed_min.map_or(x_lo, |v| v / scale);
        let band_hi = claim.claimed_max.map_or(x_hi, |v| v / scale);
        // A point claim (an exact count) gets a visible sliver.
        let sliver = (x_hi - x_lo) * 0.004;
        chart
            .draw_series([Rectangle::new(
                [(band_lo - sliver, 0.1), (band_hi + sliver, 0.9)],
                RGBColor(200, 230, 201).filled(),
            )])
            .map_err(error)?;
        let (l, u, e) = (
            effect.lower / scale,
            effect.upper / scale,
            effect.estimate / scale,
        );
        chart
            .draw_series([
                PathElement::new(vec![(l, 0.5), (u, 0.5)], colour.stroke_width(3)),
                PathElement::new(vec![(l, 0.3), (l, 0.7)], colour.stroke_width(2)),
                PathElement::new(vec![(u, 0.3), (u, 0.7)], colour.stroke_width(2)),
            ])
            .map_err(error)?;
        chart
            .draw_series([Circle::new((e, 0.5), 5, colour.filled())])
            .map_err(error)?;
        root.present().map_err(error)
    })();
    Some(drawn.map(|()| svg))
}

/// Median wall time of each variant over the stored runs of a suite, oldest first.
pub fn trend(suite: &str, series: &[&TrendSeries]) -> Option<Result<String, String>> {
    let runs: Vec<&str> = {
        let mut runs: Vec<&str> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.run.as_str()))
            .collect();
        runs.sort_unstable();
        runs.dedup();
        runs
    };
    if runs.len() < 2 {
        return None;
    }
    let values = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.wall_ms));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let mut svg = String::new();
    let drawn = (|| -> Drawn {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{suite}: median wall time by run"), (FONT, 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .margin_right(12 + LEGEND_SPACE)
            .build_cartesian_2d(-0.3..(runs.len() as f64 - 0.7), padded(lo, hi, 0.1))
            .map_err(error)?;
        // Run ids start with their UTC start time; the date and time are label enough.
        let run_label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            runs.get(i as usize)
                .map(|r| r.chars().take(16).collect())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(runs.len().min(8))
            .x_label_formatter(&run_label)
            .y_desc("median wall time (ms)")
            .x_desc("run")
            .label_style((FONT, 14))
            .draw()
            .map_err(error)?;
        for (k, s) in series.iter().enumerate() {
            let colour = STAGE_COLOURS[k % STAGE_COLOURS.len()];
            let points: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter_map(|p| {
                    let i = runs.iter().position(|r| *r == p.run)?;
                    Some((i as f64, p.wall_ms))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(error)?;
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )
                .map_err(error)?;
        }
        let legend: Vec<LegendEntry> = series
            .iter()
            .enumerate()
            .map(|(k, s)| {
                (
                    Mark::Line(STAGE_COLOURS[k % STAGE_COLOURS.len()]),
                    s.variant.clone(),
                )
            })
            .collect();
        legend_beside_plot(&root, &chart, &legend)?;
        root.present().map_err(error)
    })();
    Some(drawn.map(|()| svg))
}
