//! Claims a manifest makes about its variants (`[[claim]]` tables): what is measured and the
//! range the source note states. Pure data, carried in [`crate::plan::Plan`] and judged by
//! [`crate::verdict::claims`]. Parsing with file positions lives in [`crate::manifest`]; the
//! range grammar lives here so that reports print ranges the way manifests write them.
//!
//! Range grammar (one syntax for every kind of claim):
//!
//! | form | meaning |
//! |---|---|
//! | `LOW..HIGH` | between the two, inclusive (`-40%..-30%`, `7GiB..8GiB`) |
//! | `..HIGH`, `LOW..` | at most, at least |
//! | `VALUE ± TOL` or `VALUE +- TOL` | `VALUE - TOL..VALUE + TOL` (`-1GiB ± 0.25GiB`) |
//! | `VALUE` | exactly (`67` evaluations) |
//!
//! Units depend on what the range measures: `%` for a relative change; `B`, `KiB`, `MiB`,
//! `GiB`, `TiB` (powers of 1024) or `kB`, `MB`, `GB`, `TB` (powers of 1000) for bytes; `ms`,
//! `s`, `min` for times; none for counts.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A claim after validation, with variant names resolved against the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimSpec {
    /// Catalogue id, e.g. `H0-01` (several claims may share one: a note's claim can have
    /// several measurable parts).
    pub id: String,
    /// Where the claim comes from (a note and section), free text.
    pub source: String,
    /// The claim in words.
    pub summary: String,
    /// 1-based line of the claim's `id` in the manifest, for reports.
    pub line: usize,
    pub check: ClaimCheck,
}

/// What a claim measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ClaimCheck {
    /// `candidate / baseline − 1` of `metric` lies in `expected` (fractions: −0.3 is 30 % less).
    Change {
        metric: String,
        baseline: String,
        candidate: String,
        expected: ClaimRange,
    },
    /// `candidate − baseline` of `metric` lies in `expected`, in the metric's base unit
    /// (bytes, milliseconds or a count).
    Difference {
        metric: String,
        baseline: String,
        candidate: String,
        expected: ClaimRange,
    },
    /// `variant` runs within its VRAM budget (`fits`), or runs out of memory (`!fits`).
    Fit {
        variant: String,
        fits: bool,
        /// The variant's `knobs.vram_budget_gib` in bytes under the planned profile.
        budget_bytes: Option<u64>,
    },
    /// `metric(variants[0]) relations[0] metric(variants[1]) relations[1] …`.
    Order {
        metric: String,
        variants: Vec<String>,
        relations: Vec<Relation>,
    },
    /// `metric` of `variant` lies in `expected` (base unit of the metric).
    Bound {
        metric: String,
        variant: String,
        expected: ClaimRange,
    },
    /// The claim cannot be checked with this harness, and why.
    NotApplicable { reason: String },
}

impl ClaimCheck {
    /// `change`, `difference`, `fit`, `order`, `bound` or `not-applicable`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ClaimCheck::Change { .. } => "change",
            ClaimCheck::Difference { .. } => "difference",
            ClaimCheck::Fit { .. } => "fit",
            ClaimCheck::Order { .. } => "order",
            ClaimCheck::Bound { .. } => "bound",
            ClaimCheck::NotApplicable { .. } => "not-applicable",
        }
    }

    /// The metric judged, if any (a fit judges outcomes and peak reserved memory together).
    pub fn metric(&self) -> Option<&str> {
        match self {
            ClaimCheck::Change { metric, .. }
            | ClaimCheck::Difference { metric, .. }
            | ClaimCheck::Order { metric, .. }
            | ClaimCheck::Bound { metric, .. } => Some(metric),
            ClaimCheck::Fit { .. } | ClaimCheck::NotApplicable { .. } => None,
        }
    }

    /// Variants the claim involves, in the order the claim names them.
    pub fn variants(&self) -> Vec<&str> {
        match self {
            ClaimCheck::Change {
                baseline,
                candidate,
                ..
            }
            | ClaimCheck::Difference {
                baseline,
                candidate,
                ..
            } => vec![baseline, candidate],
            ClaimCheck::Fit { variant, .. } | ClaimCheck::Bound { variant, .. } => vec![variant],
            ClaimCheck::Order { variants, .. } => variants.iter().map(String::as_str).collect(),
            ClaimCheck::NotApplicable { .. } => Vec::new(),
        }
    }

    /// What the claim states, in words and units (`-40%..-30%`, `fits 8 GiB`, `a < b`).
    pub fn claimed(&self) -> String {
        match self {
            ClaimCheck::Change { expected, .. }
            | ClaimCheck::Difference { expected, .. }
            | ClaimCheck::Bound { expected, .. } => expected.text.clone(),
            ClaimCheck::Fit {
                fits, budget_bytes, ..
            } => {
                let budget = budget_bytes
                    .map(|b| format!(" {}", format_gib(b as f64)))
                    .unwrap_or_default();
                if *fits {
                    format!("fits{budget}")
                } else {
                    format!("out of memory{}", budget.replacen(' ', " at ", 1))
                }
            }
            ClaimCheck::Order {
                variants,
                relations,
                ..
            } => {
                let mut text = variants.first().cloned().unwrap_or_default();
                for (relation, variant) in relations.iter().zip(variants.iter().skip(1)) {
                    text.push_str(&format!(" {} {variant}", relation.symbol()));
                }
                text
            }
            ClaimCheck::NotApplicable { .. } => "–".into(),
        }
    }
}

/// A step of an ordering claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// Strictly lower.
    Less,
    /// Equal within the suite's tolerance (`[compare]` time threshold or memory tolerance).
    Equal,
}

impl Relation {
    pub fn symbol(self) -> &'static str {
        match self {
            Relation::Less => "<",
            Relation::Equal => "=",
        }
    }
}

/// What a metric measures, which decides units and how it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dimension {
    /// A relative change, written in `%`, stored as a fraction.
    Relative,
    /// Milliseconds (`wall_ms`, `gpu_ms`, `stage_<name>_ms`).
    Time,
    /// Bytes (`peak_allocated_bytes`, `peak_reserved_bytes`).
    Bytes,
    /// A count (`count_<name>`).
    Count,
}

impl Dimension {
    /// The dimension of a metric's values; `None` for a name that is no claim metric.
    pub fn of_metric(metric: &str) -> Option<Dimension> {
        if metric == "wall_ms" || metric == "gpu_ms" {
            return Some(Dimension::Time);
        }
        if metric == "peak_allocated_bytes" || metric == "peak_reserved_bytes" {
            return Some(Dimension::Bytes);
        }
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if metric
            .strip_prefix("stage_")
            .and_then(|r| r.strip_suffix("_ms"))
            .is_some_and(word)
        {
            return Some(Dimension::Time);
        }
        if metric.strip_prefix("count_").is_some_and(word) {
            return Some(Dimension::Count);
        }
        None
    }

    /// Units accepted in ranges of this dimension, with their factor to the base unit.
    pub fn units(self) -> &'static [(&'static str, f64)] {
        match self {
            Dimension::Relative => &[("%", 0.01)],
            Dimension::Time => &[("ms", 1.0), ("s", 1e3), ("min", 60e3)],
            Dimension::Bytes => &[
                ("B", 1.0),
                ("KiB", 1024.0),
                ("MiB", 1024.0 * 1024.0),
                ("GiB", 1024.0 * 1024.0 * 1024.0),
                ("TiB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
                ("kB", 1e3),
                ("MB", 1e6),
                ("GB", 1e9),
                ("TB", 1e12),
            ],
            Dimension::Count => &[],
        }
    }

    /// Formats a value of this dimension (base unit) for people.
    pub fn format(self, value: f64) -> String {
        match self {
            Dimension::Relative => format!("{:+.1} %", 100.0 * value),
            Dimension::Time => format_ms(value),
            Dimension::Bytes => format_gib(value),
            Dimension::Count => format_count(value),
        }
    }

    /// Like [`Dimension::format`] with an explicit sign (for differences).
    pub fn format_signed(self, value: f64) -> String {
        let text = self.format(value.abs());
        match self {
            Dimension::Relative => self.format(value),
            _ if value < 0.0 => format!("−{text}"),
            _ => format!("+{text}"),
        }
    }
}

fn format_ms(ms: f64) -> String {
    if ms.abs() >= 10_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else {
        format!("{ms:.3} ms")
    }
}

/// Bytes as GiB, or MiB when below 1 GiB, so that small test allocations stay readable.
pub fn format_gib(bytes: f64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    if bytes.abs() >= GIB {
        format!("{:.2} GiB", bytes / GIB)
    } else {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    }
}

fn format_count(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// An inclusive range in a metric's base unit (a fraction for relative changes); either end
/// may be open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRange {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// As written in the manifest.
    pub text: String,
}

impl ClaimRange {
    pub fn contains(&self, x: f64) -> bool {
        self.min.is_none_or(|m| x >= m) && self.max.is_none_or(|m| x <= m)
    }
}

/// Why a range string was rejected; the manifest adds the file position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError {
    pub message: String,
    pub hint: Option<String>,
}

impl RangeError {
    fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        RangeError {
            message: message.into(),
            hint,
        }
    }
}

/// Parses a range in the grammar of the module documentation, for values of `dimension`.
pub fn parse_range(text: &str, dimension: Dimension) -> Result<ClaimRange, RangeError> {
    let trimmed = text.trim();
    if trimmed.contains(['–', '—']) {
        return Err(RangeError::new(
            format!("`{trimmed}` separates its ends with a dash"),
            Some("write a range with `..`, e.g. `-40%..-30%`, not with a dash".into()),
        ));
    }
    let (min, max) = if let Some((value, tolerance)) = split_tolerance(trimmed) {
        let value = parse_value(value, dimension)?;
        let tolerance = parse_value(tolerance, dimension)?;
        if tolerance < 0.0 {
            return Err(RangeError::new(
                format!("the tolerance in `{trimmed}` is negative"),
                Some("write the tolerance as a positive number, e.g. `-1GiB ± 0.25GiB`".into()),
            ));
        }
        (Some(value - tolerance), Some(value + tolerance))
    } else if let Some((low, high)) = trimmed.split_once("..") {
        let (low, high) = (low.trim(), high.trim());
        if low.is_empty() && high.is_empty() {
            return Err(RangeError::new(
                "a range needs at least one bound",
                Some(example(dimension)),
            ));
        }
        let bound = |s: &str| -> Result<Option<f64>, RangeError> {
            if s.is_empty() {
                Ok(None)
            } else {
                parse_value(s, dimension).map(Some)
            }
        };
        (bound(low)?, bound(high)?)
    } else if trimmed.is_empty() {
        return Err(RangeError::new(
            "the range is empty",
            Some(example(dimension)),
        ));
    } else {
        let value = parse_value(trimmed, dimension)?;
        (Some(value), Some(value))
    };
    // Each number is finite (see `parse_value`), but `X ± T` can still overflow.
    if [min, max].into_iter().flatten().any(|end| !end.is_finite()) {
        return Err(RangeError::new(
            format!("`{trimmed}` has an end too large to be a number"),
            Some(example(dimension)),
        ));
    }
    if let (Some(low), Some(high)) = (min, max) {
        if low > high {
            return Err(RangeError::new(
                format!("the range `{trimmed}` is empty: its lower end exceeds its upper end"),
                Some("write the lower end first, e.g. `-40%..-30%` for \"30 to 40 % less\"".into()),
            ));
        }
    }
    if dimension == Dimension::Relative && max.is_some_and(|m| m < -1.0) {
        return Err(RangeError::new(
            format!("`{trimmed}` is below -100 %, which no positive metric can reach"),
            Some(
                "a change is `candidate / baseline − 1`: \"2× faster\" is `-50%`, not `-200%`"
                    .into(),
            ),
        ));
    }
    Ok(ClaimRange {
        min,
        max,
        text: trimmed.to_string(),
    })
}

fn split_tolerance(text: &str) -> Option<(&str, &str)> {
    text.split_once('±').or_else(|| text.split_once("+-"))
}

fn example(dimension: Dimension) -> String {
    let e = match dimension {
        Dimension::Relative => "`-40%..-30%`, `..-5%`, `-3%..3%` or `-30% ± 5%`",
        Dimension::Time => "`..250ms`, `1s..2s` or `360s ± 20s`",
        Dimension::Bytes => "`..8GiB`, `-1.2GiB..-0.8GiB` or `-1GiB ± 0.25GiB`",
        Dimension::Count => "`67`, `60..70` or `..100`",
    };
    format!("write a range such as {e}")
}

/// A number with the unit its dimension requires, in the base unit.
fn parse_value(text: &str, dimension: Dimension) -> Result<f64, RangeError> {
    let text = text.trim();
    // A typographic minus reads naturally in notes; accept it.
    let normalised = text.replace('−', "-");
    let split = normalised
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0)))
        .map_or(normalised.len(), |(i, _)| i);
    let (number, unit) = normalised.split_at(split);
    let unit = unit.trim();
    let Ok(value) = number.parse::<f64>() else {
        return Err(RangeError::new(
            format!("`{text}` is not a number"),
            Some(example(dimension)),
        ));
    };
    // Digits alone can overflow to infinity; a non-finite end cannot be stored in a record
    // (JSON has no infinity) and would judge differently when read back.
    if !value.is_finite() {
        return Err(RangeError::new(
            format!("`{text}` is too large to be a number"),
            Some(example(dimension)),
        ));
    }
    let units = dimension.units();
    if units.is_empty() {
        return if unit.is_empty() {
            Ok(value)
        } else {
            Err(RangeError::new(
                format!("`{text}`: counts take no unit"),
                Some(example(dimension)),
            ))
        };
    }
    match units.iter().find(|(name, _)| *name == unit) {
        Some((_, factor)) if (value * factor).is_finite() => Ok(value * factor),
        Some(_) => Err(RangeError::new(
            format!("`{text}` is too large to be a number"),
            Some(example(dimension)),
        )),
        None => {
            let names: Vec<String> = units.iter().map(|(n, _)| format!("`{n}`")).collect();
            let message = if unit.is_empty() {
                format!("`{text}` has no unit")
            } else {
                format!("`{text}` has an unknown unit `{unit}`")
            };
            let hint = match dimension {
                Dimension::Relative => {
                    "a change is written in percent, e.g. `-40%..-30%`".to_string()
                }
                _ => format!("units here: {}", names.join(", ")),
            };
            Err(RangeError::new(message, Some(hint)))
        }
    }
}

impl fmt::Display for ClaimRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    fn range(text: &str, d: Dimension) -> (Option<f64>, Option<f64>) {
        let r = parse_range(text, d).unwrap();
        (r.min, r.max)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
    }

    #[test]
    fn every_form_of_the_grammar() {
        let (lo, hi) = range("-40%..-30%", Dimension::Relative);
        assert!(close(lo, -0.4) && close(hi, -0.3));
        assert_eq!(range("..-5%", Dimension::Relative).0, None);
        assert_eq!(range("0%..", Dimension::Relative), (Some(0.0), None));
        let (lo, hi) = range("-1GiB ± 0.25GiB", Dimension::Bytes);
        assert!(close(lo, -1.25 * GIB) && close(hi, -0.75 * GIB));
        let (lo, hi) = range("−30% +- 5%", Dimension::Relative);
        assert!(close(lo, -0.35) && close(hi, -0.25));
        assert_eq!(range("67", Dimension::Count), (Some(67.0), Some(67.0)));
        assert_eq!(range(" 1s .. 2s ", Dimension::Time), (Some(1e3), Some(2e3)));
        assert_eq!(range("..7.8GB", Dimension::Bytes), (None, Some(7.8e9)));
        assert!(parse_range("50%", Dimension::Relative)
            .unwrap()
            .contains(0.5));
    }

    #[test]
    fn non_finite_ends_are_refused() {
        let nines = "9".repeat(400);
        let err = |t: &str, d| parse_range(t, d).unwrap_err().message;
        assert_eq!(
            err(&nines, Dimension::Count),
            format!("`{nines}` is too large to be a number")
        );
        assert!(err(&format!("{nines}% ± {nines}%"), Dimension::Relative).contains("too large"));
        // Finite digits that overflow once scaled by the unit, or once added to a tolerance.
        let big = "9".repeat(306);
        assert!(err(&format!("{big}TiB"), Dimension::Bytes).contains("too large"));
        let big = "9".repeat(308);
        assert!(err(&format!("{big} ± {big}"), Dimension::Count).contains("too large"));
        assert!(err("inf", Dimension::Count).contains("not a number"));
    }

    #[test]
    fn mistakes_get_a_message_and_a_hint() {
        let err = |t: &str, d| parse_range(t, d).unwrap_err();
        assert_eq!(err("-40", Dimension::Relative).message, "`-40` has no unit");
        assert_eq!(
            err("30%–40%", Dimension::Relative).hint.unwrap(),
            "write a range with `..`, e.g. `-40%..-30%`, not with a dash"
        );
        assert_eq!(
            err("-30%..-40%", Dimension::Relative).message,
            "the range `-30%..-40%` is empty: its lower end exceeds its upper end"
        );
        assert!(err("-200%..-150%", Dimension::Relative)
            .message
            .contains("below -100 %"));
        assert_eq!(
            err("8 gb", Dimension::Bytes).message,
            "`8 gb` has an unknown unit `gb`"
        );
        assert_eq!(
            err("67 evals", Dimension::Count).message,
            "`67 evals`: counts take no unit"
        );
        assert_eq!(
            err("..", Dimension::Count).message,
            "a range needs at least one bound"
        );
        assert!(err("1GiB ± -1GiB", Dimension::Bytes)
            .message
            .contains("negative"));
    }

    #[test]
    fn metric_dimensions() {
        assert_eq!(Dimension::of_metric("wall_ms"), Some(Dimension::Time));
        assert_eq!(
            Dimension::of_metric("stage_multiview_ms"),
            Some(Dimension::Time)
        );
        assert_eq!(
            Dimension::of_metric("peak_reserved_bytes"),
            Some(Dimension::Bytes)
        );
        assert_eq!(
            Dimension::of_metric("count_unet_evals"),
            Some(Dimension::Count)
        );
        assert_eq!(Dimension::of_metric("stage__ms"), None);
        assert_eq!(Dimension::of_metric("count_"), None);
        assert_eq!(Dimension::of_metric("rss_bytes"), None);
    }

    #[test]
    fn claimed_text_of_each_kind() {
        let fit = ClaimCheck::Fit {
            variant: "v".into(),
            fits: false,
            budget_bytes: Some(8 << 30),
        };
        assert_eq!(fit.claimed(), "out of memory at 8.00 GiB");
        let order = ClaimCheck::Order {
            metric: "wall_ms".into(),
            variants: vec!["a".into(), "b".into(), "c".into()],
            relations: vec![Relation::Less, Relation::Equal],
        };
        assert_eq!(order.claimed(), "a < b = c");
        assert_eq!(order.variants(), ["a", "b", "c"]);
        assert_eq!(Dimension::Bytes.format_signed(-1.5 * GIB), "−1.50 GiB");
        assert_eq!(Dimension::Relative.format_signed(0.25), "+25.0 %");
    }
}
