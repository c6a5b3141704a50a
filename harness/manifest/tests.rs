use super::*;
use crate::knobs::{DeviceChoice, Dtype, Knobs};
use crate::plan::{CompareSettings, Job, Order, ParamValue, Settle, VariantPlan};
use crate::stats::Correction;
use std::collections::BTreeMap;

const FULL: &str = include_str!("../../tests/manifests/conv-stack.toml");
const SUITE: [&str; 3] = ["[suite]", "name = \"t\"", "workload = \"conv_stack\""];

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::from_str(Path::new("scenarios/x.toml"), text)
}

fn full() -> Manifest {
    Manifest::from_str(Path::new("tests/manifests/conv-stack.toml"), FULL).unwrap()
}

/// The suite preamble followed by `lines`.
fn with_suite(lines: &[&str]) -> String {
    SUITE
        .iter()
        .chain(lines)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

fn plan_with(text: &str, profile: ProfileChoice<'_>) -> Plan {
    build_plan(&parse(text).unwrap(), profile).unwrap()
}

fn variant<'p>(plan: &'p Plan, name: &str) -> &'p VariantPlan {
    plan.variants
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no variant `{name}`"))
}

fn int(plan: &VariantPlan, name: &str) -> i64 {
    match plan.params.get(name) {
        Some(ParamValue::Int(i)) => *i,
        other => panic!("param `{name}` is {other:?}"),
    }
}

fn jobs(pairs: &[(usize, u32)]) -> Vec<Job> {
    pairs
        .iter()
        .map(|&(variant, process)| Job { variant, process })
        .collect()
}

#[test]
fn full_manifest_expands_matrix_in_written_order() {
    let manifest = full();
    assert_eq!(manifest.suite_name(), "conv-stack");
    assert_eq!(manifest.profiles(), ["quick", "cpu", "nightly"]);
    assert_eq!(manifest.source_text(), FULL);

    let plan = build_plan(&manifest, ProfileChoice::Named("quick")).unwrap();
    let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cudnn-on/resolution=128,dtype=fp16",
            "cudnn-on/resolution=128,dtype=bf16",
            "cudnn-on/resolution=256,dtype=fp16",
            "cudnn-on/resolution=256,dtype=bf16",
            "cudnn-off/resolution=128,dtype=fp16",
            "cudnn-off/resolution=128,dtype=bf16",
            "cudnn-off/resolution=256,dtype=fp16",
            "cudnn-off/resolution=256,dtype=bf16",
        ]
    );
    assert_eq!(plan.suite, "conv-stack");
    assert_eq!(
        plan.description.as_deref(),
        Some("cuDNN and dtype sensitivity of a small conv stack")
    );
    assert_eq!(plan.profile, "quick");
    assert_eq!(plan.manifest_path, "tests/manifests/conv-stack.toml");
    assert_eq!(plan.manifest_sha256, sha256_hex(FULL.as_bytes()));
    assert_eq!(plan.order, Order::Interleaved);
    assert_eq!(plan.seed, 0);
    assert_eq!(plan.jobs.len(), 16);
}

#[test]
fn merge_precedence_defaults_suite_profile_variant_matrix() {
    let plan = build_plan(&full(), ProfileChoice::Named("quick")).unwrap();

    let on = variant(&plan, "cudnn-on/resolution=128,dtype=bf16");
    assert_eq!(on.workload, "conv_stack");
    assert_eq!(on.claims, ["H0-01"]);
    assert_eq!(int(on, "batch"), 8, "suite");
    assert_eq!(int(on, "channels"), 128, "catalogue default");
    assert_eq!(int(on, "resolution"), 128, "matrix over profile");
    assert_eq!(on.params.get("attention"), Some(&ParamValue::Bool(true)));
    assert_eq!(on.params.len(), 8, "every catalogue parameter is present");
    assert_eq!((on.warmup, on.repetitions, on.processes), (3, 3, 2));
    assert_eq!(on.timeout_ms, 600_000);
    let mut expected = Knobs {
        dtype: Dtype::Bf16,
        vram_budget_gib: Some(8.0),
        ..Knobs::default()
    };
    expected
        .env
        .insert("CUBLAS_WORKSPACE_CONFIG".into(), ":4096:8".into());
    assert_eq!(on.knobs, expected);

    let off = variant(&plan, "cudnn-off/resolution=256,dtype=fp16");
    assert_eq!(off.claims, ["H0-01", "H0-02"]);
    assert_eq!(int(off, "resolution"), 256, "matrix over variant");
    assert_eq!(off.repetitions, 5, "variant over profile");
    assert_eq!(off.timeout_ms, 90_000);
    assert!(!off.knobs.cudnn_enabled);
    assert_eq!(off.knobs.dtype, Dtype::Fp16);
    assert_eq!(off.knobs.env.len(), 2, "env merges key by key");
    assert_eq!(off.knobs.env["EXTRA"], "1");

    // Without a matrix, the variant's own params win over the profile's.
    let text = with_suite(&[
        "[params]",
        "resolution = 64",
        "blocks = 2",
        "[profiles.quick]",
        "params = { resolution = 32, blocks = 3 }",
        "knobs = { dtype = \"fp16\" }",
        "[[variant]]",
        "name = \"v\"",
        "params = { resolution = 16 }",
    ]);
    let plan = plan_with(&text, ProfileChoice::Named("quick"));
    let v = variant(&plan, "v");
    assert_eq!(int(v, "resolution"), 16);
    assert_eq!(int(v, "blocks"), 3);
    assert_eq!(v.knobs.dtype, Dtype::Fp16);
    let base = build_plan(&parse(&text).unwrap(), ProfileChoice::Named("base")).unwrap();
    assert_eq!(base.profile, "base");
    assert_eq!(int(variant(&base, "v"), "blocks"), 2);
    assert_eq!(variant(&base, "v").knobs.dtype, Dtype::Fp32);
}

#[test]
fn profile_override_params_beat_variants_and_matrix_cells() {
    let text = with_suite(&[
        "[params]",
        "resolution = 64",
        "[profiles.cpu]",
        "params = { blocks = 3 }",
        "override_params = { resolution = 8 }",
        "[[variant]]",
        "name = \"big\"",
        "params = { resolution = 512, blocks = 5 }",
    ]);
    let plan = plan_with(&text, ProfileChoice::Named("cpu"));
    let big = variant(&plan, "big");
    assert_eq!(int(big, "resolution"), 8, "override beats the variant");
    assert_eq!(int(big, "blocks"), 5, "plain profile params do not");
    let base = plan_with(&text, ProfileChoice::Named("base"));
    assert_eq!(int(variant(&base, "big"), "resolution"), 512);
    let with_matrix = format!("{text}\n[matrix]\nparams.resolution = [16, 32]\n");
    let plan = plan_with(&with_matrix, ProfileChoice::Named("cpu"));
    assert!(plan.variants.iter().all(|v| int(v, "resolution") == 8));
    let bad = with_suite(&["[profiles.cpu]", "override_params = { resolutoin = 8 }"]);
    let err = parse(&bad).unwrap_err();
    assert_eq!(
        err.key.as_deref(),
        Some("profiles.cpu.override_params.resolutoin")
    );
    assert!(
        err.to_string().contains("did you mean `resolution`"),
        "{err}"
    );
}

#[test]
fn job_order_interleaved_and_sequential() {
    let plan = build_plan(&full(), ProfileChoice::Named("quick")).unwrap();
    let interleaved: Vec<(usize, u32)> = (0..2).flat_map(|p| (0..8).map(move |v| (v, p))).collect();
    assert_eq!(plan.jobs, jobs(&interleaved));

    let cpu = build_plan(&full(), ProfileChoice::Named("cpu")).unwrap();
    assert_eq!(cpu.order, Order::Sequential);
    assert_eq!(cpu.jobs, jobs(&(0..8).map(|v| (v, 0)).collect::<Vec<_>>()));
    let v = variant(&cpu, "cudnn-on/resolution=128,dtype=fp16");
    assert_eq!((int(v, "batch"), v.knobs.device), (2, DeviceChoice::Cpu));

    let text = with_suite(&[
        "[run]",
        "processes = 2",
        "order = \"sequential\"",
        "[[variant]]",
        "name = \"a\"",
        "[[variant]]",
        "name = \"b\"",
        "run = { processes = 3 }",
    ]);
    let sequential = plan_with(&text, ProfileChoice::Named("base"));
    assert_eq!(
        sequential.jobs,
        jobs(&[(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)])
    );
    let interleaved = plan_with(
        &text.replace("sequential", "interleaved"),
        ProfileChoice::Named("base"),
    );
    assert_eq!(
        interleaved.jobs,
        jobs(&[(0, 0), (1, 0), (0, 1), (1, 1), (1, 2)])
    );
}

#[test]
fn shuffled_order_uses_profile_seed() {
    let plan = build_plan(&full(), ProfileChoice::Named("nightly")).unwrap();
    assert_eq!((plan.order, plan.seed), (Order::Shuffled, 7));
    assert_eq!(
        plan.jobs,
        Plan::schedule(&plan.variants, Order::Shuffled, 7)
    );
    for round in plan.jobs.chunks(8) {
        let mut variants: Vec<usize> = round.iter().map(|j| j.variant).collect();
        variants.sort_unstable();
        assert_eq!(variants, (0..8).collect::<Vec<_>>());
    }
    assert!(plan
        .variants
        .iter()
        .all(|v| v.repetitions == 30 || v.repetitions == 5));
}

#[test]
fn auto_profile_selection() {
    let names = |profiles: &[&str], cuda_present: bool| {
        let mut lines: Vec<String> = SUITE.iter().map(|s| s.to_string()).collect();
        for p in profiles {
            lines.push(format!("[profiles.{p}]"));
        }
        let plan = plan_with(&lines.join("\n"), ProfileChoice::Auto { cuda_present });
        plan.profile
    };
    assert_eq!(names(&["quick", "cpu", "nightly"], false), "cpu");
    assert_eq!(names(&["quick", "nightly"], false), "quick");
    assert_eq!(names(&["nightly"], false), "base");
    assert_eq!(names(&["quick", "cpu", "nightly"], true), "nightly");
    assert_eq!(names(&["quick", "cpu"], true), "base");
    assert_eq!(names(&[], true), "base");
}

#[test]
fn implicit_default_variant_and_matrix() {
    let text = with_suite(&["[matrix]", "knobs.cudnn.benchmark = [true, false]"]);
    let plan = plan_with(&text, ProfileChoice::Named("base"));
    let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["default/benchmark=true", "default/benchmark=false"]);
    assert!(plan.variants[0].knobs.cudnn_benchmark);

    let plan = plan_of(&with_suite(&[]));
    assert_eq!(plan.variants.len(), 1);
    assert_eq!(plan.variants[0].name, "default");
    let v = &plan.variants[0];
    assert_eq!((v.warmup, v.repetitions, v.processes), (3, 10, 1));
    assert_eq!(v.timeout_ms, 600_000);
    assert_eq!(v.knobs, Knobs::default());
    assert_eq!((plan.order, plan.seed), (Order::Interleaved, 0));
}

fn plan_of(text: &str) -> Plan {
    plan_with(text, ProfileChoice::Named("base"))
}

#[test]
fn values_are_converted_to_their_declared_types() {
    let text = [
        "[suite]",
        "name = \"f\"",
        "workload = \"fault\"",
        "[params]",
        "alloc_gib = 2",
        "kind = \"alloc\"",
        "[knobs]",
        "vram_budget_gib = 4",
        "deterministic_algorithms = \"warn-only\"",
        "[run]",
        "seed = 18446744073709551615",
        "timeout = \"1h 30m\"",
        "[matrix]",
        "\"knobs.env.CUDA_LAUNCH_BLOCKING\" = [\"0\", \"1\"]",
    ]
    .join("\n");
    let plan = plan_of(&text);
    let v = &plan.variants[0];
    assert_eq!(v.name, "default/CUDA_LAUNCH_BLOCKING=0");
    assert_eq!(v.params["alloc_gib"], ParamValue::Float(2.0));
    assert_eq!(v.params["kind"], ParamValue::Str("alloc".into()));
    assert_eq!(v.knobs.vram_budget_gib, Some(4.0));
    assert_eq!(v.knobs.env["CUDA_LAUNCH_BLOCKING"], "0");
    assert_eq!(v.timeout_ms, 90 * 60 * 1000);
    assert_eq!(plan.seed, u64::MAX);
}

#[test]
fn errors_point_at_the_offending_key_or_value() {
    let cases: Vec<(String, &str)> = vec![
        (
            with_suite(&["[knobs]", "cudnn.enabeld = false"]),
            "scenarios/x.toml:5:7: unknown key `enabeld` in `knobs.cudnn`\n  hint: did you mean `enabled`?",
        ),
        (
            with_suite(&["[[variant]]", "name = \"a\"", "knobs = { cudnn = { benchmrk = true } }"]),
            "scenarios/x.toml:6:21: unknown key `benchmrk` in `variant[0].knobs.cudnn`\n  hint: did you mean `benchmark`?",
        ),
        (
            with_suite(&["[matrx]", "\"params.batch\" = [1]"]),
            "scenarios/x.toml:4:2: unknown table `[matrx]`\n  hint: did you mean `matrix`?",
        ),
        (
            with_suite(&["[params]", "resolutoin = 32"]),
            "scenarios/x.toml:5:1: unknown parameter `resolutoin` for workload `conv_stack`\n  hint: did you mean `resolution`?",
        ),
        (
            with_suite(&["[params]", "zzz = 1"]),
            "scenarios/x.toml:5:1: unknown parameter `zzz` for workload `conv_stack`\n  hint: parameters of `conv_stack`: `batch`, `in_channels`, `channels`, `resolution`, `blocks`, `groups`, `attention`, `seed`",
        ),
        (
            with_suite(&["[run]", "foo = 1"]),
            "scenarios/x.toml:5:1: unknown key `foo` in `run`\n  hint: valid keys: `warmup`, `warmup_max`, `settle`, `repetitions`, `repetitions_max`, `target_rel_ci`, `processes`, `processes_max`, `timeout`, `adaptive_budget`, `order`, `seed`",
        ),
        (
            with_suite(&["[params]", "batch = \"8\""]),
            "scenarios/x.toml:5:9: expected an integer for `params.batch`, found string `\"8\"`\n  hint: write it without quotes: `8`",
        ),
        (
            with_suite(&["[knobs]", "cudnn.enabled = 1"]),
            "scenarios/x.toml:5:17: expected a boolean for `knobs.cudnn.enabled`, found integer `1`",
        ),
        (
            with_suite(&["[params]", "resolution = 64.0"]),
            "scenarios/x.toml:5:14: expected an integer for `params.resolution`, found float `64.0`\n  hint: write it as an integer: `64`",
        ),
        (
            with_suite(&["[params]", "batch = 0"]),
            "scenarios/x.toml:5:9: `params.batch` = 0 is out of range: must be between 1 and 4096",
        ),
        (
            with_suite(&["[knobs]", "dtype = \"fp61\""]),
            "scenarios/x.toml:5:9: unknown value `fp61` for `knobs.dtype`\n  hint: did you mean `fp16`?",
        ),
        (
            with_suite(&["[run]", "order = \"random\""]),
            "scenarios/x.toml:5:9: unknown value `random` for `run.order`\n  hint: valid values: `sequential`, `interleaved`, `shuffled`",
        ),
        (
            with_suite(&["[knobs]", "device = \"gpu\""]),
            "scenarios/x.toml:5:10: unknown value `gpu` for `knobs.device`\n  hint: the GPU is `cuda`",
        ),
        (
            ["[suite]", "name = \"t\"", "workload = \"conv_stak\""].join("\n"),
            "scenarios/x.toml:3:12: unknown workload `conv_stak`\n  hint: did you mean `conv_stack`?",
        ),
        (
            ["[suite]", "workload = \"matmul\""].join("\n"),
            "scenarios/x.toml:1:1: missing required key `name` in `suite`",
        ),
        (
            ["[suite]", "name = \"Conv Stack\"", "workload = \"matmul\""].join("\n"),
            "scenarios/x.toml:2:8: invalid suite name `Conv Stack`\n  hint: suite names start with a lowercase letter or digit and contain only lowercase letters, digits, `.`, `_` and `-`",
        ),
        (
            with_suite(&["[[variant]]", "name = \"a\"", "[[variant]]", "name = \"a\""]),
            "scenarios/x.toml:7:8: duplicate variant name `a`\n  hint: `a` is first defined on line 5",
        ),
        (
            with_suite(&["[variant]", "name = \"a\""]),
            "scenarios/x.toml:4:1: expected an array of tables for `variant`, found table\n  hint: declare each variant with a `[[variant]]` header (double brackets)",
        ),
        (
            with_suite(&["[[variant]]", "name = \"a\"", "claims = [\"H0-1\"]"]),
            "scenarios/x.toml:6:11: invalid claim id `H0-1`\n  hint: claim ids look like `H0-01`: an uppercase letter, letters or digits, `-`, then at least two digits",
        ),
        (
            with_suite(&["[[variant]]", "name = \"a\"", "run = { order = \"sequential\" }"]),
            "scenarios/x.toml:6:9: `order` applies to the whole plan and cannot be set per variant\n  hint: set it in `[run]` or in a profile's `run`",
        ),
        (
            with_suite(&["[matrix]", "\"knobs.cudnn.enabeld\" = [true, false]"]),
            "scenarios/x.toml:5:1: unknown matrix axis `knobs.cudnn.enabeld`\n  hint: did you mean `knobs.cudnn.enabled`?",
        ),
        (
            with_suite(&["[matrix]", "\"params.batch\" = []"]),
            "scenarios/x.toml:5:18: matrix axis `params.batch` has no values\n  hint: list at least one value",
        ),
        (
            with_suite(&["[matrix]", "\"params.batch\" = [1, 2, 1]"]),
            "scenarios/x.toml:5:25: duplicate value `1` in matrix axis `params.batch`\n  hint: each value of an axis must give a distinct variant name",
        ),
        (
            with_suite(&["[matrix]", "\"params.batch\" = [1, 9999]"]),
            "scenarios/x.toml:5:22: `matrix.params.batch[1]` = 9999 is out of range: must be between 1 and 4096",
        ),
        (
            with_suite(&["[params]", "resolution = 64."]),
            "scenarios/x.toml:5:17: invalid TOML: invalid fraction, expected digits",
        ),
        (
            with_suite(&["[params]", "batch = 1", "batch = 2"]),
            "scenarios/x.toml:6:1: invalid TOML: duplicate key `batch`",
        ),
        (
            with_suite(&["[knobs]", "env = { \"1FOO\" = \"x\" }"]),
            "scenarios/x.toml:5:9: invalid environment variable name `1FOO` in `knobs.env`\n  hint: names must match [A-Za-z_][A-Za-z0-9_]*",
        ),
        (
            with_suite(&["[knobs]", "env = { FOO = 1 }"]),
            "scenarios/x.toml:5:15: expected a string for `knobs.env.FOO`, found integer `1`",
        ),
        (
            with_suite(&["[run]", "repetitions = 0"]),
            "scenarios/x.toml:5:15: `run.repetitions` = 0 is out of range: must be at least 1",
        ),
        (
            with_suite(&["[profiles.quick]", "run = { processes = 0 }"]),
            "scenarios/x.toml:5:21: `profiles.quick.run.processes` = 0 is out of range: must be at least 1",
        ),
        (
            with_suite(&["[knobs]", "vram_budget_gib = -1.5"]),
            "scenarios/x.toml:5:19: `knobs.vram_budget_gib` = -1.5 is out of range: must be greater than 0",
        ),
        (
            with_suite(&["[run]", "timeout = \"0s\""]),
            "scenarios/x.toml:5:11: `run.timeout` = \"0s\" is out of range: must be at least 1ms",
        ),
        (
            with_suite(&["[run]", "timeout = 600"]),
            "scenarios/x.toml:5:11: expected a duration string for `run.timeout`, found integer `600`\n  hint: write a duration such as \"90s\", \"10m\" or \"1h 30m\"",
        ),
        (
            with_suite(&["[profiles.base]"]),
            "scenarios/x.toml:4:11: profile name `base` is reserved\n  hint: `base` means \"no profile\"; give this profile another name",
        ),
        (
            "name = \"t\"".to_string(),
            "scenarios/x.toml:1:1: unknown top-level key `name`\n  hint: `name` belongs in the `[suite]` table",
        ),
        (
            "wibble = 1".to_string(),
            "scenarios/x.toml:1:1: unknown top-level key `wibble`\n  hint: valid top-level keys: `suite`, `params`, `knobs`, `run`, `compare`, `profiles`, `variant`, `matrix`, `claim`",
        ),
        (
            String::new(),
            "scenarios/x.toml:1:1: missing required table `[suite]`\n  hint: add a `[suite]` table with at least `name` and `workload`",
        ),
    ];
    for (text, expected) in cases {
        match parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => assert_eq!(error.to_string(), expected, "for:\n{text}"),
        }
    }
}

#[test]
fn error_fields_carry_key_and_position() {
    let text = with_suite(&[
        "[[variant]]",
        "name = \"a\"",
        "[[variant]]",
        "name = \"b\"",
        "knobs.cudnn.enabeld = false",
    ]);
    let error = parse(&text).unwrap_err();
    assert_eq!(error.path, Path::new("scenarios/x.toml"));
    assert_eq!((error.line, error.column), (Some(8), Some(13)));
    assert_eq!(error.key.as_deref(), Some("variant[1].knobs.cudnn.enabeld"));
    assert_eq!(
        error.message,
        "unknown key `enabeld` in `variant[1].knobs.cudnn`"
    );
    assert_eq!(error.hint.as_deref(), Some("did you mean `enabled`?"));
}

#[test]
fn unknown_profile_lists_or_suggests() {
    let manifest = parse(&with_suite(&["[profiles.nightly]", "[profiles.quick]"])).unwrap();
    let error = build_plan(&manifest, ProfileChoice::Named("nightley")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "scenarios/x.toml: unknown profile `nightley`\n  hint: did you mean `nightly`?"
    );
    assert_eq!(error.key.as_deref(), Some("profiles.nightley"));
    let error = build_plan(&manifest, ProfileChoice::Named("gpu")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "scenarios/x.toml: unknown profile `gpu`\n  hint: available profiles: `base`, `nightly`, `quick`"
    );
}

#[test]
fn bad_duration_and_missing_file() {
    let error = parse(&with_suite(&["[run]", "timeout = \"10x\""])).unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.starts_with("scenarios/x.toml:5:11: invalid duration `10x` for `run.timeout`: "),
        "{shown}"
    );
    assert!(shown.ends_with("\n  hint: write a duration such as \"90s\", \"10m\" or \"1h 30m\""));

    let path = Path::new("/nonexistent/scenarios/missing.toml");
    let shown = Manifest::from_path(path).unwrap_err().to_string();
    assert!(
        shown.starts_with("/nonexistent/scenarios/missing.toml: cannot read manifest: "),
        "{shown}"
    );
}

#[test]
fn from_path_reads_the_fixture() {
    // `file!()` is relative to the package root, the working directory of unit tests.
    let path = Path::new(file!())
        .parent()
        .unwrap()
        .join("../../tests/manifests/conv-stack.toml");
    let manifest = Manifest::from_path(&path).unwrap();
    assert_eq!(manifest.source_text(), FULL);
    assert_eq!(manifest.path(), path);
}

#[test]
fn sha256_is_hex_of_the_bytes() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn description_lists_variants_knobs_and_jobs() {
    let plan = build_plan(&full(), ProfileChoice::Named("nightly")).unwrap();
    let text = describe_plan(&plan);
    for expected in [
        "suite:    conv-stack\n",
        "workload: conv_stack\n",
        "profile:  nightly\n",
        "order:    shuffled (seed 7)\n\
         compare:  alpha 0.01 (benjamini-hochberg), time threshold 5 % (gpu_ms 4 %, \
         stage_attention_ms 10 %, wall_ms 2 %), memory tolerance max(1 %, 32 MiB), \
         reserved max(2 %, 64 MiB), host RSS max(5 %, 32 MiB)\n\
         adaptive budget: 30m of worker time for extra processes\n",
        "variant cudnn-off/resolution=256,dtype=bf16\n\
         \x20 about:   cuDNN disabled: native convolution kernels\n\
         \x20 claims:  H0-01, H0-02\n",
        "  params:  attention=true batch=8 blocks=4 channels=128 groups=32 in_channels=4 resolution=256 seed=0\n",
        "  knobs:   cudnn.enabled=false dtype=bf16 vram_budget_gib=8 env.CUBLAS_WORKSPACE_CONFIG=:4096:8 env.EXTRA=1\n",
        "  run:     warmup 3–8 (settle: 4 calls within 2 %, clock ≥ 75 %), \
         repetitions 5 (max 120 until CI width ≤ 1 %), processes 2–4, timeout 1m 30s\n",
        "variant cudnn-on/resolution=256,dtype=bf16\n  claims:  H0-01\n",
        "  run:     warmup 3–20 (settle: 4 calls within 2 %, clock ≥ 75 %), \
         repetitions 30 (max 120 until CI width ≤ 1 %), processes 2–4, timeout 10m\n",
        "jobs:     16 (8 variants, shuffled)\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let listed = text.lines().last().unwrap();
    assert_eq!(listed.split_whitespace().count(), 16);
    assert!(listed
        .trim_start()
        .starts_with(&format!("{}#0", plan.variants[plan.jobs[0].variant].name)));

    let plain = describe_plan(&plan_of(&with_suite(&[])));
    assert!(plain.contains("variant default\n  params:"), "{plain}");
    assert!(plain.contains("  knobs:   (defaults)\n"), "{plain}");
    assert!(
        plain.contains(
            "order:    interleaved\n\
             compare:  alpha 0.01 (holm), time threshold 3 %, memory tolerance max(1 %, 16 MiB), \
             reserved max(2 %, 64 MiB), host RSS max(5 %, 32 MiB)\n\
             \n"
        ),
        "{plain}"
    );
    assert!(!plain.contains("adaptive budget"), "{plain}");
    assert!(
        plain.contains(
            "  run:     warmup 3–20 (settle: 3 calls within 5 %, clock ≥ 75 %), repetitions 10, \
             processes 1, timeout 10m\n"
        ),
        "{plain}"
    );
    assert!(
        plain.contains("jobs:     1 (1 variant, interleaved)\n          default#0\n"),
        "{plain}"
    );
}

// ---- adaptive measurement and comparison settings ----

#[test]
fn adaptive_and_compare_defaults() {
    let plan = plan_of(&with_suite(&[]));
    let v = &plan.variants[0];
    assert_eq!(
        v.settle,
        Some(Settle::default()),
        "settling is on by default"
    );
    assert_eq!(
        Settle::default(),
        Settle {
            window: 3,
            tolerance: 0.05,
            min_clock_fraction: 0.75
        }
    );
    assert_eq!((v.warmup, v.warmup_max), (3, 20));
    assert_eq!((v.repetitions, v.repetitions_max), (10, 10));
    assert_eq!(v.target_rel_ci, None);
    assert_eq!((v.processes, v.processes_max), (1, 1));
    assert_eq!(v.description, None);
    assert_eq!(plan.adaptive_budget_s, None);
    assert_eq!(plan.compare, CompareSettings::default());
    assert_eq!(plan.compare.alpha, 0.01);
    assert_eq!(plan.compare.correction, Correction::Holm);
    assert_eq!(plan.compare.time_threshold, 0.03);
    assert!(plan.compare.metric_thresholds.is_empty());
    assert_eq!(plan.compare.memory_rel_tolerance, 0.01);
    assert_eq!(plan.compare.memory_abs_tolerance_bytes, 16 * 1024 * 1024);

    // Derived defaults follow the merged minimums.
    let v = &plan_of(&with_suite(&[
        "[run]",
        "warmup = 30",
        "repetitions = 7",
        "processes = 3",
    ]))
    .variants[0];
    assert_eq!(v.warmup_max, 30, "max(warmup, 20)");
    assert_eq!(
        v.repetitions_max, 7,
        "= repetitions without a precision target"
    );
    assert_eq!(v.processes_max, 3, "= processes");
    let v = &plan_of(&with_suite(&[
        "[run]",
        "repetitions = 7",
        "target_rel_ci = 0.02",
    ]))
    .variants[0];
    assert_eq!(
        v.repetitions_max, 28,
        "4 × repetitions with a precision target"
    );
    assert_eq!(v.target_rel_ci, Some(0.02));
}

#[test]
fn adaptive_settings_merge_suite_profile_variant() {
    let manifest = full();
    let on = "cudnn-on/resolution=128,dtype=fp16";
    let off = "cudnn-off/resolution=128,dtype=fp16";
    let suite_settle = Settle {
        window: 4,
        ..Settle::default()
    };

    // Suite only (cudnn-on) and suite < variant (cudnn-off).
    let base = build_plan(&manifest, ProfileChoice::Named("base")).unwrap();
    assert_eq!(base.adaptive_budget_s, Some(1800.0));
    let v = variant(&base, on);
    assert_eq!(v.settle, Some(suite_settle));
    assert_eq!((v.warmup, v.warmup_max), (3, 20));
    assert_eq!((v.repetitions, v.repetitions_max), (10, 40));
    assert_eq!(v.target_rel_ci, Some(0.02));
    assert_eq!((v.processes, v.processes_max), (2, 4));
    assert_eq!(v.description, None);
    let v = variant(&base, off);
    assert_eq!((v.warmup, v.warmup_max), (3, 8), "variant over suite");
    assert_eq!((v.repetitions, v.repetitions_max), (5, 40));
    assert_eq!(
        v.description.as_deref(),
        Some("cuDNN disabled: native convolution kernels"),
        "kept for every matrix cell"
    );

    // Profile over suite: `settle = false`, a zero budget switches the suite's off.
    let quick = build_plan(&manifest, ProfileChoice::Named("quick")).unwrap();
    assert_eq!(quick.adaptive_budget_s, None);
    let v = variant(&quick, on);
    assert_eq!(v.settle, None);
    assert_eq!(
        (v.warmup, v.warmup_max),
        (3, 3),
        "= warmup without settling"
    );
    assert_eq!((v.repetitions, v.repetitions_max), (3, 40));
    // Variant over profile: `settle = true` turns it back on with the suite's window.
    let v = variant(&quick, off);
    assert_eq!(v.settle, Some(suite_settle));
    assert_eq!(v.warmup_max, 8);

    // The profile's partial settle table merges field by field with the suite's.
    let nightly = build_plan(&manifest, ProfileChoice::Named("nightly")).unwrap();
    let v = variant(&nightly, on);
    let nightly_settle = Settle {
        window: 4,
        tolerance: 0.02,
        min_clock_fraction: 0.75,
    };
    assert_eq!(v.settle, Some(nightly_settle));
    assert_eq!((v.repetitions, v.repetitions_max), (30, 120));
    assert_eq!(v.target_rel_ci, Some(0.01));
    let v = variant(&nightly, off);
    assert_eq!((v.repetitions, v.repetitions_max), (5, 120));

    let cpu = build_plan(&manifest, ProfileChoice::Named("cpu")).unwrap();
    let v = variant(&cpu, on);
    assert_eq!((v.processes, v.processes_max), (1, 1));
    assert_eq!(
        cpu.adaptive_budget_s,
        Some(1800.0),
        "inherited from the suite"
    );

    // All keys at every level: suite < profile < variant, each key on its own.
    let text = with_suite(&[
        "[run]",
        "warmup = 2",
        "warmup_max = 10",
        "repetitions = 5",
        "repetitions_max = 50",
        "target_rel_ci = 0.05",
        "processes = 2",
        "processes_max = 8",
        "adaptive_budget = \"1h 30m\"",
        "[profiles.p]",
        "run = { warmup_max = 12, repetitions_max = 60, target_rel_ci = 0.04, processes_max = 9, adaptive_budget = \"90s\" }",
        "[[variant]]",
        "name = \"plain\"",
        "[[variant]]",
        "name = \"own\"",
        "run = { warmup_max = 14, repetitions_max = 70, target_rel_ci = 0.03, processes_max = 10 }",
    ]);
    let manifest = parse(&text).unwrap();
    let adaptive = |plan: &Plan, name: &str| {
        let v = variant(plan, name);
        (
            v.warmup_max,
            v.repetitions_max,
            v.target_rel_ci,
            v.processes_max,
        )
    };
    let base = build_plan(&manifest, ProfileChoice::Named("base")).unwrap();
    assert_eq!(base.adaptive_budget_s, Some(5400.0));
    assert_eq!(adaptive(&base, "plain"), (10, 50, Some(0.05), 8));
    assert_eq!(adaptive(&base, "own"), (14, 70, Some(0.03), 10));
    let p = build_plan(&manifest, ProfileChoice::Named("p")).unwrap();
    assert_eq!(p.adaptive_budget_s, Some(90.0));
    assert_eq!(adaptive(&p, "plain"), (12, 60, Some(0.04), 9));
    assert_eq!(adaptive(&p, "own"), (14, 70, Some(0.03), 10));
    for plan in [&base, &p] {
        let v = variant(plan, "own");
        assert_eq!((v.warmup, v.repetitions, v.processes), (2, 5, 2));
    }
}

#[test]
fn settle_false_true_and_partial_tables() {
    let settle_of = |lines: &[&str], profile: &str| {
        let plan = plan_with(&with_suite(lines), ProfileChoice::Named(profile));
        let v = &plan.variants[0];
        (v.settle, v.warmup, v.warmup_max)
    };
    assert_eq!(
        settle_of(&["[run]", "warmup = 5", "settle = false"], "base"),
        (None, 5, 5),
        "a fixed warm-up of exactly `warmup` calls"
    );
    assert_eq!(
        settle_of(&["[run]", "settle = true"], "base"),
        (Some(Settle::default()), 3, 20)
    );
    let partial = Settle {
        tolerance: 0.1,
        ..Settle::default()
    };
    assert_eq!(
        settle_of(&["[run]", "settle = { tolerance = 0.1 }"], "base"),
        (Some(partial), 3, 20)
    );
    assert_eq!(
        settle_of(&["[run.settle]", "tolerance = 0.1"], "base"),
        (Some(partial), 3, 20),
        "a sub-table header works too"
    );
    let empty = settle_of(&["[run]", "settle = {}"], "base");
    assert_eq!(empty.0, Some(Settle::default()));
    // An explicit `warmup_max` stays when settling is off (the worker then never reaches it).
    assert_eq!(
        settle_of(&["[run]", "settle = false", "warmup_max = 9"], "base"),
        (None, 3, 9)
    );

    // Whether it is on and each field merge separately across layers.
    let layered = [
        "[run]",
        "settle = { window = 5, tolerance = 0.2 }",
        "[profiles.off]",
        "run = { settle = false }",
        "[profiles.clock]",
        "run = { settle = { min_clock_fraction = 0 } }",
        "[[variant]]",
        "name = \"v\"",
    ];
    assert_eq!(
        settle_of(&layered, "base").0,
        Some(Settle {
            window: 5,
            tolerance: 0.2,
            min_clock_fraction: 0.75
        })
    );
    assert_eq!(settle_of(&layered, "off").0, None);
    assert_eq!(
        settle_of(&layered, "clock").0,
        Some(Settle {
            window: 5,
            tolerance: 0.2,
            min_clock_fraction: 0.0
        })
    );
    let mut back_on = layered.to_vec();
    back_on.push("run = { settle = { window = 2 } }");
    assert_eq!(
        settle_of(&back_on, "off").0,
        Some(Settle {
            window: 2,
            tolerance: 0.2,
            min_clock_fraction: 0.75
        }),
        "a variant's table turns it back on, keeping the suite's other fields"
    );
}

#[test]
fn compare_section_and_profile_override() {
    let text = with_suite(&[
        "[compare]",
        "alpha = 0.1",
        "correction = \"none\"",
        "time_threshold = 0.04",
        "memory_rel_tolerance = 0",
        "memory_abs_tolerance_mib = 0.5",
        "reserved_rel_tolerance = 0.05",
        "reserved_abs_tolerance_mib = 100",
        "host_rss_rel_tolerance = 0.1",
        "host_rss_abs_tolerance_mib = 256",
        "thresholds = { wall_ms = 0.02, stage_attention_ms = 0.1 }",
        "[profiles.gate]",
        "compare = { correction = \"benjamini-hochberg\", thresholds = { wall_ms = 0.01, gpu_ms = 0.05 } }",
        "[profiles.strict.compare]",
        "alpha = 0.01",
        "memory_abs_tolerance_mib = 64",
    ]);
    let manifest = parse(&text).unwrap();
    let thresholds = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    };

    let base = build_plan(&manifest, ProfileChoice::Named("base")).unwrap();
    let suite = CompareSettings {
        alpha: 0.1,
        correction: Correction::None,
        time_threshold: 0.04,
        metric_thresholds: thresholds(&[("wall_ms", 0.02), ("stage_attention_ms", 0.1)]),
        memory_rel_tolerance: 0.0,
        memory_abs_tolerance_bytes: 512 * 1024,
        reserved_rel_tolerance: 0.05,
        reserved_abs_tolerance_bytes: 100 << 20,
        host_rss_rel_tolerance: 0.1,
        host_rss_abs_tolerance_bytes: 256 << 20,
    };
    assert_eq!(base.compare, suite);

    let gate = build_plan(&manifest, ProfileChoice::Named("gate")).unwrap();
    assert_eq!(
        gate.compare,
        CompareSettings {
            correction: Correction::BenjaminiHochberg,
            metric_thresholds: thresholds(&[
                ("wall_ms", 0.01),
                ("gpu_ms", 0.05),
                ("stage_attention_ms", 0.1),
            ]),
            ..suite.clone()
        },
        "thresholds merge metric by metric"
    );

    let strict = build_plan(&manifest, ProfileChoice::Named("strict")).unwrap();
    assert_eq!(
        strict.compare,
        CompareSettings {
            alpha: 0.01,
            memory_abs_tolerance_bytes: 64 << 20,
            ..suite
        }
    );

    // A profile's compare over the defaults, integers accepted where numbers are.
    let plan = plan_with(
        &with_suite(&["[profiles.p]", "compare = { memory_abs_tolerance_mib = 1 }"]),
        ProfileChoice::Named("p"),
    );
    assert_eq!(
        plan.compare,
        CompareSettings {
            memory_abs_tolerance_bytes: 1 << 20,
            ..CompareSettings::default()
        }
    );

    let text = describe_plan(&gate);
    assert!(
        text.contains(
            "compare:  alpha 0.1 (benjamini-hochberg), time threshold 4 % (gpu_ms 5 %, \
             stage_attention_ms 10 %, wall_ms 1 %), memory tolerance max(0 %, 0.5 MiB), \
             reserved max(5 %, 100 MiB), host RSS max(10 %, 256 MiB)\n"
        ),
        "{text}"
    );
}

#[test]
fn describe_shows_unused_maximums_and_budget() {
    let text = with_suite(&[
        "[run]",
        "settle = false",
        "warmup_max = 9",
        "repetitions_max = 40",
        "processes = 2",
        "processes_max = 6",
        "[profiles.adaptive]",
        "run = { target_rel_ci = 0.015, adaptive_budget = \"1h\" }",
        "[profiles.budget]",
        "run = { adaptive_budget = \"10m\" }",
        "[[variant]]",
        "name = \"v\"",
        "description = \"the one\"",
    ]);
    let describe = |profile: &str| describe_plan(&plan_with(&text, ProfileChoice::Named(profile)));

    let base = describe("base");
    assert!(
        base.contains("variant v\n  about:   the one\n  params:"),
        "{base}"
    );
    assert!(
        base.contains(
            "  run:     warmup 3 (fixed; max 9 unused without settle), \
             repetitions 10 (max 40 unused without target_rel_ci), \
             processes 2 (max 6 unused without target_rel_ci and adaptive_budget), timeout 10m\n"
        ),
        "{base}"
    );
    assert!(!base.contains("adaptive budget"), "{base}");

    let budget = describe("budget");
    assert!(
        budget.contains("processes 2 (max 6 unused without target_rel_ci),"),
        "{budget}"
    );

    let adaptive = describe("adaptive");
    assert!(
        adaptive.contains("adaptive budget: 1h of worker time for extra processes\n"),
        "{adaptive}"
    );
    assert!(
        adaptive.contains(
            "  run:     warmup 3 (fixed; max 9 unused without settle), \
             repetitions 10 (max 40 until CI width ≤ 1.5 %), processes 2–6, timeout 10m\n"
        ),
        "{adaptive}"
    );
}

#[test]
fn adaptive_and_compare_errors() {
    let cases: Vec<(String, &str)> = vec![
        // `*_max` below its minimum, both in one table.
        (
            with_suite(&["[run]", "warmup = 5", "warmup_max = 2"]),
            "scenarios/x.toml:6:14: `run.warmup_max` = 2 is less than `warmup` = 5\n  hint: raise `warmup_max` to at least 5 or lower `warmup`",
        ),
        // … below a defaulted minimum.
        (
            with_suite(&["[run]", "warmup_max = 2"]),
            "scenarios/x.toml:5:14: `run.warmup_max` = 2 is less than `warmup` = 3\n  hint: `warmup` defaults to 3; raise `warmup_max` to at least 3 or lower `warmup`",
        ),
        (
            with_suite(&["[run]", "repetitions_max = 5"]),
            "scenarios/x.toml:5:19: `run.repetitions_max` = 5 is less than `repetitions` = 10\n  hint: `repetitions` defaults to 10; raise `repetitions_max` to at least 10 or lower `repetitions`",
        ),
        // … set in a lower layer than the minimum: caught for a profile that is not selected.
        (
            with_suite(&["[run]", "repetitions_max = 20", "[profiles.nightly]", "run = { repetitions = 30 }"]),
            "scenarios/x.toml:5:19: `run.repetitions_max` = 20 is less than `repetitions` = 30\n  hint: `repetitions` = 30 is set by `profiles.nightly.run.repetitions` on line 7; raise `repetitions_max` to at least 30 or lower `repetitions`",
        ),
        (
            with_suite(&["[run]", "processes_max = 2", "[[variant]]", "name = \"a\"", "[[variant]]", "name = \"b\"", "run = { processes = 3 }"]),
            "scenarios/x.toml:5:17: `run.processes_max` = 2 is less than `processes` = 3\n  hint: `processes` = 3 is set by `variant[1].run.processes` on line 10; raise `processes_max` to at least 3 or lower `processes`",
        ),
        (
            with_suite(&["[profiles.quick]", "run = { repetitions = 8, repetitions_max = 4 }"]),
            "scenarios/x.toml:5:44: `profiles.quick.run.repetitions_max` = 4 is less than `repetitions` = 8\n  hint: raise `repetitions_max` to at least 8 or lower `repetitions`",
        ),
        (
            with_suite(&["[run]", "settle = { windw = 5 }"]),
            "scenarios/x.toml:5:12: unknown key `windw` in `run.settle`\n  hint: did you mean `window`?",
        ),
        (
            with_suite(&["[[variant]]", "name = \"a\"", "run.settle.min_clock = 0.5"]),
            "scenarios/x.toml:6:12: unknown key `min_clock` in `variant[0].run.settle`\n  hint: did you mean `min_clock_fraction`?",
        ),
        (
            with_suite(&["[run]", "settle = { window = 1 }"]),
            "scenarios/x.toml:5:21: `run.settle.window` = 1 is out of range: must be at least 2",
        ),
        (
            with_suite(&["[run]", "settle = { tolerance = 5 }"]),
            "scenarios/x.toml:5:24: `run.settle.tolerance` = 5 is out of range: must be greater than 0 and less than 1\n  hint: this is a fraction, not a percentage: write `0.05` for 5 %",
        ),
        (
            with_suite(&["[run]", "settle = { min_clock_fraction = 1.2 }"]),
            "scenarios/x.toml:5:33: `run.settle.min_clock_fraction` = 1.2 is out of range: must be between 0 and 1\n  hint: this is a fraction, not a percentage: write `0.012` for 1.2 %",
        ),
        (
            with_suite(&["[run]", "settle = \"yes\""]),
            "scenarios/x.toml:5:10: expected `true`, `false` or a table for `run.settle`, found string `\"yes\"`\n  hint: write `settle = false` for a fixed warm-up, or a table such as `settle = { window = 3, tolerance = 0.05 }`",
        ),
        (
            with_suite(&["[run]", "settle = \"false\""]),
            "scenarios/x.toml:5:10: expected `true`, `false` or a table for `run.settle`, found string `\"false\"`\n  hint: write it without quotes: `false`",
        ),
        (
            with_suite(&["[run]", "target_rel_ci = 1.5"]),
            "scenarios/x.toml:5:17: `run.target_rel_ci` = 1.5 is out of range: must be greater than 0 and less than 1\n  hint: this is a fraction, not a percentage: write `0.015` for 1.5 %",
        ),
        (
            with_suite(&["[run]", "target_rel_ci = 0"]),
            "scenarios/x.toml:5:17: `run.target_rel_ci` = 0 is out of range: must be greater than 0 and less than 1",
        ),
        (
            with_suite(&["[run]", "target_rel_ci = \"1%\""]),
            "scenarios/x.toml:5:17: expected a number for `run.target_rel_ci`, found string `\"1%\"`",
        ),
        (
            with_suite(&["[run]", "repetitions_max = 0"]),
            "scenarios/x.toml:5:19: `run.repetitions_max` = 0 is out of range: must be at least 1",
        ),
        (
            with_suite(&["[[variant]]", "name = \"a\"", "run = { adaptive_budget = \"1h\" }"]),
            "scenarios/x.toml:6:9: `adaptive_budget` applies to the whole plan and cannot be set per variant\n  hint: set it in `[run]` or in a profile's `run`",
        ),
        (
            with_suite(&["[run]", "adaptive_budget = 600"]),
            "scenarios/x.toml:5:19: expected a duration string for `run.adaptive_budget`, found integer `600`\n  hint: write a duration such as \"90s\", \"10m\" or \"1h 30m\"",
        ),
        (
            with_suite(&["[compare]", "correction = \"holms\""]),
            "scenarios/x.toml:5:14: unknown value `holms` for `compare.correction`\n  hint: did you mean `holm`?",
        ),
        (
            with_suite(&["[compare]", "correction = \"benjamini_hochberg\""]),
            "scenarios/x.toml:5:14: unknown value `benjamini_hochberg` for `compare.correction`\n  hint: did you mean `benjamini-hochberg`?",
        ),
        (
            with_suite(&["[profiles.explore]", "compare = { correction = \"BH\" }"]),
            "scenarios/x.toml:5:26: unknown value `BH` for `profiles.explore.compare.correction`\n  hint: did you mean `benjamini-hochberg`?",
        ),
        (
            with_suite(&["[compare]", "correction = \"bonferroni\""]),
            "scenarios/x.toml:5:14: unknown value `bonferroni` for `compare.correction`\n  hint: use `holm`: it controls the same family-wise error rate and is never less powerful than Bonferroni",
        ),
        (
            with_suite(&["[compare]", "correction = \"sidak\""]),
            "scenarios/x.toml:5:14: unknown value `sidak` for `compare.correction`\n  hint: valid values: `holm`, `benjamini-hochberg`, `none`",
        ),
        (
            with_suite(&["[compare]", "thresholds = { latency = 0.05 }"]),
            "scenarios/x.toml:5:16: invalid metric name `latency` in `compare.thresholds`\n  hint: metric names are `wall_ms`, `gpu_ms` or `stage_<name>_ms`, where <name> is lowercase letters, digits and `_` (e.g. `stage_attention_ms`)",
        ),
        (
            with_suite(&["[compare.thresholds]", "stage_Attention_ms = 0.05"]),
            "scenarios/x.toml:5:1: invalid metric name `stage_Attention_ms` in `compare.thresholds`\n  hint: metric names are `wall_ms`, `gpu_ms` or `stage_<name>_ms`, where <name> is lowercase letters, digits and `_` (e.g. `stage_attention_ms`)",
        ),
        (
            with_suite(&["[compare]", "thresholds = { wall_time = 0.05 }"]),
            "scenarios/x.toml:5:16: invalid metric name `wall_time` in `compare.thresholds`\n  hint: did you mean `wall_ms`?",
        ),
        (
            with_suite(&["[compare]", "thresholds = { peak_allocated_bytes = 0.05 }"]),
            "scenarios/x.toml:5:16: invalid metric name `peak_allocated_bytes` in `compare.thresholds`\n  hint: memory metrics are compared with `memory_*`, `reserved_*` and `host_rss_*` tolerances, not per-metric thresholds",
        ),
        (
            with_suite(&["[compare]", "thresholds = { gpu_ms = 0 }"]),
            "scenarios/x.toml:5:25: `compare.thresholds.gpu_ms` = 0 is out of range: must be greater than 0 and less than 1",
        ),
        (
            with_suite(&["[compare]", "alpah = 0.01"]),
            "scenarios/x.toml:5:1: unknown key `alpah` in `compare`\n  hint: did you mean `alpha`?",
        ),
        (
            with_suite(&["[profiles.ci]", "compare = { corection = \"none\" }"]),
            "scenarios/x.toml:5:13: unknown key `corection` in `profiles.ci.compare`\n  hint: did you mean `correction`?",
        ),
        (
            with_suite(&["[compare]", "alpha = 1"]),
            "scenarios/x.toml:5:9: `compare.alpha` = 1 is out of range: must be greater than 0 and less than 1\n  hint: this is a fraction, not a percentage: write `0.01` for 1 %",
        ),
        (
            with_suite(&["[compare]", "memory_rel_tolerance = -0.1"]),
            "scenarios/x.toml:5:24: `compare.memory_rel_tolerance` = -0.1 is out of range: must be at least 0 and less than 1",
        ),
        (
            with_suite(&["[compare]", "memory_abs_tolerance_mib = -1"]),
            "scenarios/x.toml:5:28: `compare.memory_abs_tolerance_mib` = -1 is out of range: must be at least 0",
        ),
        (
            with_suite(&["[compare]", "time_threshold = nan"]),
            "scenarios/x.toml:5:18: `compare.time_threshold` = nan is not a finite number",
        ),
        (
            with_suite(&["[compare]", "thresholds = 0.05"]),
            "scenarios/x.toml:5:14: expected a table for `compare.thresholds`, found float `0.05`",
        ),
        (
            with_suite(&["[[variant]]", "name = \"a\"", "compare = { alpha = 0.1 }"]),
            "scenarios/x.toml:6:1: `compare` applies to the whole plan and cannot be set per variant\n  hint: set it in `[compare]` or in a profile's `compare`",
        ),
        (
            "alpha = 0.01".to_string(),
            "scenarios/x.toml:1:1: unknown top-level key `alpha`\n  hint: `alpha` belongs in the `[compare]` table",
        ),
    ];
    for (text, expected) in cases {
        match parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => assert_eq!(error.to_string(), expected, "for:\n{text}"),
        }
    }
}

#[test]
fn limit_errors_carry_the_key_of_the_offending_setting() {
    let text = with_suite(&[
        "[run]",
        "repetitions_max = 20",
        "[[variant]]",
        "name = \"a\"",
        "run = { repetitions = 30 }",
    ]);
    let error = parse(&text).unwrap_err();
    assert_eq!(error.key.as_deref(), Some("run.repetitions_max"));
    assert_eq!((error.line, error.column), (Some(5), Some(19)));
    assert_eq!(
        error.message,
        "`run.repetitions_max` = 20 is less than `repetitions` = 30"
    );

    // Defaulted maximums always satisfy their minimum, so the error that points at the
    // minimum instead can only be reached directly.
    let ctx = spanned::Ctx::new(Path::new("scenarios/x.toml"), &text);
    let located = schema::Located {
        value: 30,
        path: "variant[0].run.repetitions".to_string(),
        offset: text.find("30").unwrap(),
    };
    let min = expand::Count {
        value: 30,
        set_by: Some(&located),
    };
    let max = expand::Count {
        value: 20,
        set_by: None,
    };
    let error = expand::check_limit(&ctx, "repetitions", min, max).unwrap_err();
    assert_eq!(
        error.to_string(),
        "scenarios/x.toml:8:23: `variant[0].run.repetitions` = 30 is more than `repetitions_max` = 20\n  \
         hint: `repetitions_max` defaults to 20; raise `repetitions_max` to at least 30 or lower `repetitions`"
    );
    assert_eq!(error.key.as_deref(), Some("variant[0].run.repetitions"));
}

#[test]
fn compile_knob_is_accepted_in_its_three_spellings() {
    for (text, want) in [
        ("compile = false", None),
        ("compile = true", Some(crate::knobs::CompileMode::Default)),
        (
            "compile = \"reduce-overhead\"",
            Some(crate::knobs::CompileMode::ReduceOverhead),
        ),
    ] {
        let plan = plan_of(&with_suite(&["[knobs]", text]));
        assert_eq!(plan.variants[0].knobs.torch_compile, want, "{text}");
    }
    let err = parse(&with_suite(&["[knobs]", "compile = \"reduce-overhed\""])).unwrap_err();
    assert!(
        err.to_string().contains("did you mean `reduce-overhead`"),
        "{err}"
    );
    let err = parse(&with_suite(&["[knobs]", "compile = 3"])).unwrap_err();
    assert!(
        err.to_string().contains("a boolean or a mode string"),
        "{err}"
    );
}

#[test]
fn autocast_knob_is_read_described_and_a_matrix_axis() {
    let plan = plan_of(&with_suite(&[
        "[knobs]",
        "autocast = \"bf16\"",
        "[matrix]",
        "\"knobs.autocast\" = [\"off\", \"fp16\"]",
    ]));
    let autocast: Vec<_> = plan.variants.iter().map(|v| v.knobs.autocast).collect();
    assert_eq!(
        autocast,
        [crate::knobs::Autocast::Off, crate::knobs::Autocast::Fp16]
    );
    assert_eq!(plan.variants[1].name, "default/autocast=fp16");
    assert!(describe_plan(&plan).contains("  knobs:   autocast=fp16\n"));
    let err = parse(&with_suite(&["[knobs]", "autocast = \"bf61\""])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "scenarios/x.toml:5:12: unknown value `bf61` for `knobs.autocast`\n  hint: did you mean `bf16`?"
    );
}

#[test]
fn plans_too_large_to_hold_are_refused_where_they_are_written() {
    // 30 binary axes would be 2^30 variants: refused at the axis that passes the cap.
    let mut lines = vec!["[matrix]".to_string()];
    for i in 0..30 {
        lines.push(format!("\"knobs.env.V{i}\" = [\"0\", \"1\"]"));
    }
    let text = with_suite(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "scenarios/x.toml:18:1: with axis `knobs.env.V13` the matrix has more than 10000 cells"
        ),
        "{err}"
    );
    // Variants times cells.
    let axis = |from: i64| {
        let values: Vec<String> = (from..from + 100).map(|v| v.to_string()).collect();
        format!("[{}]", values.join(", "))
    };
    let text = with_suite(&[
        "[[variant]]",
        "name = \"a\"",
        "[[variant]]",
        "name = \"b\"",
        "[matrix]",
        &format!("\"params.batch\" = {}", axis(1)),
        &format!("\"params.channels\" = {}", axis(8)),
    ]);
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("2 variants × 10000 matrix cells make 20000 variants, more than 10000"),
        "{err}"
    );
    // Processes: per variant, and in all.
    let err = parse(&with_suite(&["[run]", "processes = 4294967295"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "scenarios/x.toml:5:13: variant `default` may run 4294967295 processes, more than 1000"
        ),
        "{err}"
    );
    let text = with_suite(&[
        "[run]",
        "processes = 1000",
        "[matrix]",
        &format!("\"params.batch\" = {}", axis(1)),
        "\"params.channels\" = [8, 16]",
    ]);
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("the plan would run more than 100000 worker processes"),
        "{err}"
    );
}

#[test]
fn names_that_cannot_be_file_names_are_refused_at_load() {
    let err = |lines: &[&str]| parse(&with_suite(lines)).unwrap_err().to_string();
    let collide = err(&[
        "[[variant]]",
        "name = \"v.1\"",
        "[[variant]]",
        "name = \"v-1\"",
    ]);
    assert!(
        collide.starts_with(
            "scenarios/x.toml:7:8: variant names `v.1` and `v-1` give the same file name `v-1`"
        ),
        "{collide}"
    );
    let long = "v".repeat(101);
    let text = format!("name = \"{long}\"");
    assert!(
        err(&["[[variant]]", &text]).contains("variant name is 101 characters long, more than 100")
    );
    let suite = format!(
        "[suite]\nname = \"{}\"\nworkload = \"conv_stack\"\n",
        "s".repeat(300)
    );
    assert!(parse(&suite)
        .unwrap_err()
        .to_string()
        .contains("suite name is 300 characters long, more than 100"));
    let nul = err(&["[knobs]", "env = { A = \"x\\u0000y\" }"]);
    assert!(
        nul.contains("`knobs.env.A` contains a NUL character"),
        "{nul}"
    );
    let nul = err(&["[matrix]", "\"knobs.env.A\" = [\"x\\u0000\"]"]);
    assert!(nul.contains("contains a NUL character"), "{nul}");
}

#[test]
fn devices_and_pipes_are_not_read_as_manifests() {
    let err = Manifest::from_path(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "/dev/zero: cannot read manifest: not a regular file");
}

/// The TOML reader refuses a key of more than 80 dotted parts without a position ("recursion
/// limit"); such keys are refused at their first part, by file, line, column and key.
#[test]
fn keys_of_too_many_dotted_parts_are_located() {
    let deep = |n: usize| vec!["a"; n].join(".");
    for (lines, line, column, parts) in [
        (
            vec!["[params]".to_string(), format!("{} = 1", deep(5000))],
            5,
            1,
            5000,
        ),
        (vec![format!("[{}]", deep(100)), "b = 1".into()], 4, 2, 100),
        (vec![format!("[[{}]]", deep(90))], 4, 3, 90),
        (
            vec!["[knobs]".into(), format!("x = 1\n  {} = 1", deep(81))],
            6,
            3,
            81,
        ),
        (vec![format!("v = {{ {} = 1 }}", deep(200))], 4, 7, 200),
    ] {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let error = parse(&with_suite(&lines)).unwrap_err();
        assert_eq!(
            (error.line, error.column),
            (Some(line), Some(column)),
            "{error}"
        );
        assert_eq!(error.key.as_deref(), Some("a.a.a.a.a.a.a.a…"));
        assert_eq!(
            error.message,
            format!("key `a.a.a.a.a.a.a.a…` has {parts} dotted parts, more than a manifest key may have (64)")
        );
    }
    // Up to what the TOML reader takes, a deep key is simply an unknown one.
    let error = parse(&with_suite(&["[params]", &format!("{} = 1", deep(70))])).unwrap_err();
    assert!(
        error.message.starts_with("unknown parameter `a`"),
        "{error}"
    );
}
