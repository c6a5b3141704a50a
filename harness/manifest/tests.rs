use super::*;
use crate::knobs::{DeviceChoice, Dtype, Knobs};
use crate::plan::{Job, Order, ParamValue, VariantPlan};

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
            "scenarios/x.toml:5:1: unknown key `foo` in `run`\n  hint: valid keys: `warmup`, `repetitions`, `processes`, `timeout`, `order`, `seed`",
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
            "scenarios/x.toml:1:1: unknown top-level key `wibble`\n  hint: valid top-level keys: `suite`, `params`, `knobs`, `run`, `profiles`, `variant`, `matrix`",
        ),
        (
            String::new(),
            "scenarios/x.toml: missing required table `[suite]`\n  hint: add a `[suite]` table with at least `name` and `workload`",
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
        "order:    shuffled (seed 7)\n",
        "variant cudnn-off/resolution=256,dtype=bf16\n  claims:  H0-01, H0-02\n",
        "  params:  attention=true batch=8 blocks=4 channels=128 groups=32 in_channels=4 resolution=256 seed=0\n",
        "  knobs:   cudnn.enabled=false dtype=bf16 vram_budget_gib=8 env.CUBLAS_WORKSPACE_CONFIG=:4096:8 env.EXTRA=1\n",
        "  run:     warmup 3, repetitions 5, processes 2, timeout 1m 30s\n",
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
        plain.contains("jobs:     1 (1 variant, interleaved)\n          default#0\n"),
        "{plain}"
    );
}
