//! Change points in a history of runs: E-divisive means (Matteson & James 2014, "A
//! nonparametric approach for multiple change point analysis of multivariate data", with the
//! moment index α = 1), as MongoDB and Hunter (Apache Otava) use it on nightly results.
//!
//! Method, for one series of values in run order:
//! 1. For a segment `x[0..n]` and every split `τ` leaving at least `min_size` values on each
//!    side, the energy statistic is
//!    `Q(τ) = τ(n−τ)/n · (2/(τ(n−τ)) Σ|xᵢ−yⱼ| − 1/C(τ,2) Σ|xᵢ−xₖ| − 1/C(n−τ,2) Σ|yⱼ−yₗ|)`
//!    (between-side distances against within-side distances); the split with the largest `Q`
//!    is the candidate. Like Hunter, the segment's end is fixed (no search over κ).
//! 2. Recursive bisection: the candidate of all current segments with the largest `Q` is
//!    tested by a permutation test, values shuffled within each segment (`permutations`
//!    shuffles from a seeded ChaCha8 stream); `p = (1 + #{Q_perm ≥ Q}) / (1 + permutations)`.
//!    Significant at `alpha`: it becomes a change point and the search goes on in the two new
//!    segments; otherwise the search stops. Under no change the first test is exact, so a
//!    stationary series shows a change point with probability at most `alpha`.
//! 3. A change point is reported when its relative magnitude, the median of the segment after
//!    over the median of the segment before, minus 1, is at least `min_magnitude` in absolute
//!    value: a statistically clear but tiny shift is not worth anyone's time.
//!
//! Every distance sum is updated incrementally over `τ`, so one segment costs `O(n²)`.

use super::StatsError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Settings of [`change_points`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangePointConfig {
    /// Significance level of each permutation test.
    pub alpha: f64,
    /// Shuffles per permutation test.
    pub permutations: usize,
    /// Fewest values on either side of a change point.
    pub min_size: usize,
    /// Smallest |relative change| of the medians around a change point that is reported.
    pub min_magnitude: f64,
    pub seed: u64,
}

impl Default for ChangePointConfig {
    fn default() -> Self {
        ChangePointConfig {
            alpha: 0.05,
            permutations: 199,
            min_size: 3,
            min_magnitude: 0.05,
            seed: 0,
        }
    }
}

/// One reported change point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangePoint {
    /// Index of the first value after the change.
    pub index: usize,
    /// Median of the segment before and of the segment after (segments bounded by the
    /// neighbouring change points, reported or not).
    pub before: f64,
    pub after: f64,
    /// `after / before − 1`.
    pub relative_change: f64,
    /// Permutation p-value of the test that accepted it.
    pub p_value: f64,
}

/// The change points of `values` (in series order) that are significant and at least
/// `min_magnitude` large, sorted by index. Non-finite values are an error.
pub fn change_points(
    values: &[f64],
    config: &ChangePointConfig,
) -> Result<Vec<ChangePoint>, StatsError> {
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StatsError::NonFinite { index, value });
    }
    let min_size = config.min_size.max(2);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    // Segment boundaries, and the p-value of each accepted split.
    let mut cuts: Vec<(usize, f64)> = Vec::new();
    loop {
        let bounds = boundaries(values.len(), &cuts);
        let best = bounds
            .windows(2)
            .filter_map(|w| best_split(&values[w[0]..w[1]], min_size).map(|(t, q)| (w[0] + t, q)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((at, observed)) = best else { break };
        let mut shuffled = values.to_vec();
        let mut at_least = 0usize;
        for _ in 0..config.permutations {
            for w in bounds.windows(2) {
                shuffled[w[0]..w[1]].shuffle(&mut rng);
            }
            let q = bounds
                .windows(2)
                .filter_map(|w| best_split(&shuffled[w[0]..w[1]], min_size).map(|(_, q)| q))
                .fold(f64::NEG_INFINITY, f64::max);
            // A relative tolerance keeps ties (equal statistics up to rounding) counted.
            if q >= observed - 1e-12 * observed.abs() {
                at_least += 1;
            }
        }
        let p = (1 + at_least) as f64 / (1 + config.permutations) as f64;
        if p > config.alpha {
            break;
        }
        cuts.push((at, p));
    }
    cuts.sort_by_key(|c| c.0);
    let bounds = boundaries(values.len(), &cuts);
    let mut out = Vec::new();
    for (i, &(index, p_value)) in cuts.iter().enumerate() {
        let before = median(&values[bounds[i]..index]);
        let after = median(&values[index..bounds[i + 2]]);
        let relative_change = after / before - 1.0;
        if relative_change.abs() >= config.min_magnitude {
            out.push(ChangePoint {
                index,
                before,
                after,
                relative_change,
                p_value,
            });
        }
    }
    Ok(out)
}

/// `0`, the cut indices in order, `len`.
fn boundaries(len: usize, cuts: &[(usize, f64)]) -> Vec<usize> {
    let mut b: Vec<usize> = cuts.iter().map(|c| c.0).collect();
    b.push(0);
    b.push(len);
    b.sort_unstable();
    b
}

/// The split `τ` of `x` with the largest energy statistic `Q(τ)`, if `x` can be split.
fn best_split(x: &[f64], min_size: usize) -> Option<(usize, f64)> {
    let n = x.len();
    if n < 2 * min_size {
        return None;
    }
    // within[k]: Σ_{i<j<k} |x_i − x_j| (left sums); total within-right follows by difference.
    let mut prefix = vec![0.0; n + 1];
    for k in 1..=n {
        let added: f64 = x[..k - 1].iter().map(|v| (x[k - 1] - v).abs()).sum();
        prefix[k] = prefix[k - 1] + added;
    }
    let total = prefix[n];
    // suffix[k]: Σ_{k≤i<j<n} |x_i − x_j|
    let mut suffix = vec![0.0; n + 1];
    for k in (0..n).rev() {
        let added: f64 = x[k + 1..].iter().map(|v| (x[k] - v).abs()).sum();
        suffix[k] = suffix[k + 1] + added;
    }
    let mut best: Option<(usize, f64)> = None;
    for t in min_size..=n - min_size {
        let (left, right) = (prefix[t], suffix[t]);
        let between = total - left - right;
        let (m, r) = (t as f64, (n - t) as f64);
        let q = m * r / n as f64
            * (2.0 * between / (m * r)
                - left / (m * (m - 1.0) / 2.0)
                - right / (r * (r - 1.0) / 2.0));
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((t, q));
        }
    }
    best
}

/// Median of a non-empty slice.
fn median(x: &[f64]) -> f64 {
    crate::stats::sample::median_in_place(&mut x.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// `n` values around `level` with uniform noise of ±3 % (2 % standard deviation would
    /// need a normal sampler; the test is distribution-free anyway).
    fn noisy(rng: &mut ChaCha8Rng, level: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| level * (1.0 + rng.random_range(-0.03..0.03)))
            .collect()
    }

    #[test]
    fn stationary_series_show_no_change_point_more_often_than_the_level() {
        let tested = ChangePointConfig {
            min_magnitude: 0.0,
            permutations: 99,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let trials = 1000;
        let (mut significant, mut reported) = (0, 0);
        for trial in 0..trials {
            let n = rng.random_range(10..=24);
            let values = noisy(&mut rng, 100.0, n);
            let at = |config: ChangePointConfig| {
                let config = ChangePointConfig {
                    seed: trial,
                    ..config
                };
                usize::from(!change_points(&values, &config).unwrap().is_empty())
            };
            significant += at(tested);
            reported += at(ChangePointConfig::default());
        }
        let rate = |count: usize| count as f64 / trials as f64;
        // The permutation test is exact: its rate is α in expectation, so a finite count lies
        // above α about half the time; allow three binomial standard errors for that alone.
        let alpha = tested.alpha;
        let se = (alpha * (1.0 - alpha) / trials as f64).sqrt();
        assert!(
            rate(significant) <= alpha + 3.0 * se,
            "significant in {}",
            rate(significant)
        );
        // What is reported (at least the minimum magnitude, 5 %) stays within the level.
        assert!(rate(reported) <= alpha, "reported in {}", rate(reported));
    }

    #[test]
    fn finds_a_ten_percent_step_with_five_runs_each_side() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut found_right = 0;
        for seed in 0..50 {
            let mut values = noisy(&mut rng, 100.0, 5);
            values.extend(noisy(&mut rng, 110.0, 5));
            let found = change_points(
                &values,
                &ChangePointConfig {
                    seed,
                    ..Default::default()
                },
            )
            .unwrap();
            if let [cp] = found.as_slice() {
                assert!((0.05..0.15).contains(&cp.relative_change), "{cp:?}");
                found_right += usize::from(cp.index == 5);
            }
        }
        assert!(found_right >= 45, "found at index 5 in {found_right} of 50");
    }

    #[test]
    fn finds_several_change_points_by_bisection() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut values = noisy(&mut rng, 100.0, 8);
        values.extend(noisy(&mut rng, 120.0, 8));
        values.extend(noisy(&mut rng, 95.0, 8));
        let found = change_points(&values, &ChangePointConfig::default()).unwrap();
        let at: Vec<usize> = found.iter().map(|c| c.index).collect();
        assert_eq!(at, [8, 16], "{found:?}");
        assert!(found[0].relative_change > 0.15 && found[1].relative_change < -0.15);
    }

    #[test]
    fn shifts_below_the_minimum_magnitude_are_not_reported() {
        // A clear 2 % step (noise 0.1 %): significant, but below the default 5 %.
        let mut values = vec![100.0, 100.1, 99.9, 100.05, 99.95, 100.0];
        values.extend([102.0, 102.1, 101.9, 102.05, 101.95, 102.0]);
        assert!(change_points(&values, &ChangePointConfig::default())
            .unwrap()
            .is_empty());
        let any = ChangePointConfig {
            min_magnitude: 0.01,
            ..Default::default()
        };
        let found = change_points(&values, &any).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].index, 6);
        assert!((found[0].relative_change - 0.02).abs() < 0.002);
    }

    #[test]
    fn the_same_seed_gives_the_same_answer() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut values = noisy(&mut rng, 50.0, 6);
        values.extend(noisy(&mut rng, 53.0, 6));
        let config = ChangePointConfig {
            min_magnitude: 0.0,
            ..Default::default()
        };
        let a = change_points(&values, &config).unwrap();
        let b = change_points(&values, &config).unwrap();
        assert_eq!(a, b);
        let p = |seed| {
            change_points(&values, &ChangePointConfig { seed, ..config })
                .unwrap()
                .first()
                .map(|c| c.p_value)
        };
        assert_eq!(p(1), p(1));
    }

    #[test]
    fn short_or_bad_series_are_handled() {
        let config = ChangePointConfig::default();
        assert!(change_points(&[], &config).unwrap().is_empty());
        assert!(change_points(&[1.0, 2.0, 3.0], &config).unwrap().is_empty());
        assert!(matches!(
            change_points(&[1.0, f64::NAN], &config),
            Err(StatsError::NonFinite { index: 1, .. })
        ));
    }
}
