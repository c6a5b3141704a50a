#!/usr/bin/env python3
"""Generate tests/data/stats-reference.json: SciPy reference values for harness/stats.

Usage (from the repository root):

    python3 -m venv /tmp/scipy-venv && /tmp/scipy-venv/bin/pip install numpy scipy
    /tmp/scipy-venv/bin/python tests/reference/stats_reference.py

Needs SciPy >= 1.15 (`bootstrap(rng=...)`, `ttest_ind(...).df`); the committed file was made
with the versions recorded under "meta". The Rust tests read the JSON only; Python is needed just to regenerate it. Fixed samples are
drawn once from seeded NumPy generators, rounded (which creates ties where wanted) and stored
verbatim, so the Rust side sees exactly the same numbers.

Fixtures and what they exercise:
  small_ties        6 vs 7 with ties          -> MWU auto = asymptotic (tie-corrected)
  small_exact       5 vs 7 without ties       -> MWU auto = exact; asymptotic too
  exact_unbalanced  6 vs 20 without ties      -> exact because min(n) <= 8
  medium_ties       30 vs 40, integer-rounded -> asymptotic with many ties
  skewed            lognormal 25 vs 35        -> asymptotic; exact also (no ties)
  timing_like       12 vs 15 times, 0.1 ms    -> ties, positive, HL ratio
  large_shift       60 vs 80 without ties     -> HL with the normal-approximation interval
                                              (no exact MWU: C(140, 60) exceeds 128 bits)

Bootstrap: SciPy and Rust use different random streams, so endpoints can only agree up to
Monte-Carlo error. The fixtures are therefore larger (n = 400 and 300 per side), where the
median's bootstrap distribution is nearly continuous, and SciPy is run with 20 seeds to
measure that error (`mc_sd_*`); the Rust test compares its single run with the mean of those
20 runs against a tolerance derived from `mc_sd_*` and also within 1e-3 relative.

Holm is written out by hand (SciPy has no Holm); statsmodels, if installed, cross-checks it.
The Hodges-Lehmann estimate and interval are computed here independently: all pairwise
differences in NumPy, exact critical values by enumerating the null distribution of U.
"""

import functools
import json
import math
import pathlib
import sys

import numpy as np
import scipy
from scipy import stats

OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / "stats-reference.json"
CONFIDENCE = 0.95


def rounded(values, decimals):
    return [round(float(v), decimals) for v in values]


def has_ties(x, y):
    pooled = list(x) + list(y)
    return len(set(pooled)) != len(pooled)


def make_pairs():
    pairs = {}
    pairs["small_ties"] = ([1.2, 3.4, 3.4, 5.0, 2.2, 1.2], [3.4, 4.1, 6.0, 5.0, 7.2, 3.4, 4.4])
    rng = np.random.default_rng(20240501)
    pairs["small_exact"] = (
        rounded(rng.normal(10.0, 1.0, 5), 3),
        rounded(rng.normal(11.0, 1.0, 7), 3),
    )
    pairs["exact_unbalanced"] = (
        rounded(rng.normal(50.0, 2.0, 6), 4),
        rounded(rng.normal(52.0, 2.0, 20), 4),
    )
    pairs["medium_ties"] = (
        rounded(np.round(rng.normal(100.0, 5.0, 30)), 0),
        rounded(np.round(rng.normal(103.0, 5.0, 40)), 0),
    )
    pairs["skewed"] = (
        rounded(10.0 * rng.lognormal(0.0, 0.6, 25), 5),
        rounded(10.0 * rng.lognormal(0.3, 0.6, 35), 5),
    )
    pairs["timing_like"] = (
        rounded(np.round(rng.normal(48.0, 0.8, 12) * 10) / 10, 1),
        rounded(np.round(rng.normal(49.5, 0.8, 15) * 10) / 10, 1),
    )
    pairs["large_shift"] = (
        rounded(rng.normal(20.0, 1.0, 60), 6),
        rounded(rng.normal(20.6, 1.0, 80), 6),
    )
    assert not has_ties(*pairs["small_exact"])
    assert not has_ties(*pairs["exact_unbalanced"])
    assert not has_ties(*pairs["skewed"])
    assert not has_ties(*pairs["large_shift"])
    assert has_ties(*pairs["small_ties"]) and has_ties(*pairs["medium_ties"])
    return pairs


def modified_z_outliers(x):
    """Iglewicz-Hoaglin |M| > 3.5, with the mean-absolute-deviation fallback when MAD = 0."""
    x = np.asarray(x)
    med = np.median(x)
    dev = np.abs(x - med)
    mad = np.median(dev)
    if mad > 0:
        scale = mad / stats.norm.ppf(0.75)
    else:
        mean_ad = dev.mean()
        if mean_ad == 0:
            return []
        scale = mean_ad * math.sqrt(math.pi / 2)
    return [int(i) for i in np.nonzero(dev / scale > 3.5)[0]]


def describe(x):
    x = np.asarray(x)
    std = float(np.std(x, ddof=1)) if len(x) > 1 else None
    return {
        "n": int(len(x)),
        "median": float(np.median(x)),
        "mean": float(np.mean(x)),
        "std": std,
        "cv": std / abs(float(np.mean(x))) if std is not None else None,
        "mad_raw": float(stats.median_abs_deviation(x)),
        "mad_normal": float(stats.median_abs_deviation(x, scale="normal")),
        "min": float(np.min(x)),
        "max": float(np.max(x)),
        "outliers": modified_z_outliers(x),
    }


@functools.lru_cache(maxsize=None)
def u_counts(m, n):
    """Counts of U = 0..m*n for sizes (m, n) by the recursion of Mann & Whitney (1947)."""
    if m == 0 or n == 0:
        return (1,)
    a = u_counts(m - 1, n)  # largest value in sample 1: contributes n to U
    b = u_counts(m, n - 1)
    out = [0] * (m * n + 1)
    for u, c in enumerate(a):
        out[u + n] += c
    for u, c in enumerate(b):
        out[u] += c
    return tuple(out)


def hl_critical_rank(m, n, confidence):
    half_alpha = (1 - confidence) / 2
    if min(m, n) <= 8:
        counts = u_counts(min(m, n), max(m, n))
        total = sum(counts)
        acc = 0
        qu = None
        for u, c in enumerate(counts):
            acc += c
            if acc / total >= half_alpha:
                qu = u
                break
        k = max(qu, 1)
        achieved = 1 - 2 * sum(counts[:k]) / total
        return k, achieved, "exact"
    mean = m * n / 2
    sd = math.sqrt(m * n * (m + n + 1) / 12)
    z = stats.norm.ppf(1 - half_alpha)
    k = max(int(math.floor(mean - z * sd + 0.5)), 1)
    achieved = 1 - 2 * stats.norm.cdf((k - 0.5 - mean) / sd)
    return k, achieved, "normal"


def hodges_lehmann(x, y, confidence, log=False):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if log:
        x, y = np.log(x), np.log(y)
    diffs = np.sort((y[None, :] - x[:, None]).ravel())
    k, achieved, method = hl_critical_rank(len(x), len(y), confidence)
    est, lo, hi = float(np.median(diffs)), float(diffs[k - 1]), float(diffs[len(diffs) - k])
    if log:
        est, lo, hi = math.exp(est), math.exp(lo), math.exp(hi)
    return {"estimate": est, "lower": lo, "upper": hi, "k": k,
            "achieved_confidence": achieved, "method": method}


def holm(p):
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def bootstrap_runs(data, statistic, seeds=20, n_resamples=10_000):
    lows, highs = [], []
    for seed in range(seeds):
        res = stats.bootstrap(data, statistic, n_resamples=n_resamples, method="percentile",
                              confidence_level=CONFIDENCE, vectorized=True,
                              rng=np.random.default_rng(1000 + seed))
        lows.append(float(res.confidence_interval.low))
        highs.append(float(res.confidence_interval.high))
    return {
        "lower": float(np.mean(lows)), "upper": float(np.mean(highs)),
        "mc_sd_lower": float(np.std(lows, ddof=1)), "mc_sd_upper": float(np.std(highs, ddof=1)),
        "lower_seed0": lows[0], "upper_seed0": highs[0],
        "n_resamples": n_resamples, "seeds": seeds, "confidence": CONFIDENCE,
    }


def main():
    pairs = make_pairs()
    out = {
        "meta": {
            "generator": "tests/reference/stats_reference.py",
            "numpy": np.__version__, "scipy": scipy.__version__, "python": sys.version.split()[0],
            "confidence": CONFIDENCE,
        },
        "pairs": {},
        "describe": [],
        "corrections": [],
        "bootstrap": {},
    }
    edge = {"single": [42.0], "all_equal": [3.0] * 7,
            "mad_zero": [10.0] * 7 + [10.1, 100.0], "spiky": [10.0, 9.9, 10.1, 10.0, 30.0,
                                                            9.8, 10.2, 10.4]}
    for name, values in edge.items():
        out["describe"].append({"name": name, "values": values, **describe(values)})

    for name, (x, y) in pairs.items():
        entry = {"x": x, "y": y, "ties": has_ties(x, y), "mannwhitneyu": {}}
        for label, values in (("x", x), ("y", y)):
            out["describe"].append({"name": f"{name}.{label}", "values": values,
                                    **describe(values)})
        # Exact only without ties, and where the Rust side tabulates it exactly
        # (C(n1+n2, n1) < 2^126, i.e. 128-bit integer counts).
        exact_ok = not has_ties(x, y) and math.comb(len(x) + len(y), len(x)) < 2**126
        methods = ["auto", "asymptotic"] + (["exact"] if exact_ok else [])
        for method in methods:
            r = stats.mannwhitneyu(x, y, alternative="two-sided", method=method)
            entry["mannwhitneyu"][method] = {"statistic": float(r.statistic),
                                             "pvalue": float(r.pvalue)}
        entry["auto_method"] = ("asymptotic" if (len(x) > 8 and len(y) > 8) or has_ties(x, y)
                                else "exact")
        t = stats.ttest_ind(x, y, equal_var=False)
        entry["welch"] = {"statistic": float(t.statistic), "df": float(t.df),
                          "pvalue": float(t.pvalue)}
        entry["hodges_lehmann"] = hodges_lehmann(x, y, CONFIDENCE)
        if min(x) > 0 and min(y) > 0:
            entry["hodges_lehmann_ratio"] = hodges_lehmann(x, y, CONFIDENCE, log=True)
        out["pairs"][name] = entry

    rng = np.random.default_rng(77)
    p_sets = [
        [0.01, 0.04, 0.03, 0.005],
        [0.2],
        [0.0, 1.0, 0.5, 0.5, 0.049, 0.051],
        [0.02, 0.02, 0.02, 0.3, 0.9, 0.0001],
        rounded(rng.uniform(0, 0.2, 20), 6),
        rounded(np.concatenate([rng.uniform(0, 0.001, 5), rng.uniform(0, 1, 15)]), 8),
    ]
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        multipletests = None
    for p in p_sets:
        h = holm(p)
        bh = stats.false_discovery_control(p, method="bh")
        if multipletests is not None:
            assert np.allclose(h, multipletests(p, method="holm")[1], rtol=1e-12, atol=0)
            assert np.allclose(bh, multipletests(p, method="fdr_bh")[1], rtol=1e-12, atol=0)
        out["corrections"].append({"p": [float(v) for v in p], "holm": h.tolist(),
                                   "bh": [float(v) for v in bh]})

    brng = np.random.default_rng(99)
    median_sample = rounded(brng.normal(100.0, 3.0, 400), 6)
    skewed_sample = rounded(20.0 * brng.lognormal(0.0, 0.25, 300), 6)
    base = rounded(brng.lognormal(np.log(50.0), 0.03, 300), 6)
    cand = rounded(brng.lognormal(np.log(52.5), 0.03, 300), 6)
    out["bootstrap"]["median"] = {"values": median_sample,
                                  **bootstrap_runs((median_sample,), lambda a, axis: np.median(a, axis=axis))}
    out["bootstrap"]["mean_skewed"] = {"values": skewed_sample,
                                       **bootstrap_runs((skewed_sample,), lambda a, axis: np.mean(a, axis=axis))}
    out["bootstrap"]["ratio_of_medians"] = {
        "baseline": base, "candidate": cand,
        **bootstrap_runs((base, cand), lambda b, c, axis: np.median(c, axis=axis) / np.median(b, axis=axis)),
    }

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
