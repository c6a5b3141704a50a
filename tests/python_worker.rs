//! The Python worker (`workload = "python"`): the same protocol, knobs and measurement
//! definitions as the built-in worker, user pipelines named by `entry`, failures recorded like
//! a built-in worker's. Runs on CPU with the Python that `scripts/env.sh` selects.

mod common;

use common::Sandbox;
use serde_json::Value;
use std::collections::BTreeMap;

fn processes(run: &Value) -> Vec<Value> {
    run["suites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["processes"].as_array().unwrap().clone())
        .collect()
}

fn process<'a>(run: &'a Value, suite: &str, variant: &str) -> &'a Value {
    run["suites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["plan"]["suite"] == suite)
        .unwrap_or_else(|| panic!("no suite {suite}"))["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["variant"] == variant)
        .unwrap_or_else(|| panic!("no variant {variant} in {suite}"))
}

/// Measured wall times per suite.
fn wall_times(sandbox: &Sandbox, suite: &str) -> Vec<f64> {
    sandbox
        .samples()
        .iter()
        .filter(|r| r["suite"] == suite && r["warmup"] == "false")
        .map(|r| r["wall_ms"].parse().unwrap())
        .collect()
}

const RUN: &str =
    "[run]\nwarmup = 1\nsettle = false\nrepetitions = 8\nprocesses = 1\ntimeout = \"2m\"\n";

#[test]
fn both_workers_measure_a_reference_op_alike() {
    let sandbox = Sandbox::new();
    // The same 200 ms call in two stages, built in and in Python, with a CUDA-only knob set so
    // that both must report it as not applicable on CPU.
    let knobs = "[knobs]\ndevice = \"cpu\"\ncudnn.enabled = false\n";
    let rust = sandbox.manifest(
        "rust.toml",
        &format!("[suite]\nname = \"rust-sleep\"\nworkload = \"sleep\"\n[params]\nms = 200.0\nstages = 2\n{knobs}{RUN}"),
    );
    let python = sandbox.manifest(
        "python.toml",
        &format!("[suite]\nname = \"python-sleep\"\nworkload = \"python\"\nreplica = \"rust-sleep\"\n[params]\nentry = \"claimbench.reference:Sleep\"\nms = 200.0\nstages = 2\n{knobs}{RUN}"),
    );
    sandbox
        .cmd()
        .args(["run", "--quiet", &rust, &python])
        .assert()
        .success();
    let run = sandbox.run_json();
    let (r, p) = (
        process(&run, "rust-sleep", "default"),
        process(&run, "python-sleep", "default"),
    );
    for p in [r, p] {
        assert_eq!(p["status"], "ok", "{p}");
        assert_eq!(p["samples"], 8, "{p}");
    }
    for key in [
        "device",
        "backend_flags",
        "not_applicable",
        "memory_fraction",
    ] {
        assert_eq!(r["hello"][key], p["hello"][key], "hello.{key}");
    }
    assert_eq!(p["hello"]["backend_flags"]["cudnn_enabled"], false);
    assert_eq!(
        p["hello"]["not_applicable"][0],
        "cudnn.enabled: acts on CUDA only; this worker runs on CPU"
    );
    assert!(
        p["hello"]["versions"]["python"].is_string(),
        "{}",
        p["hello"]
    );
    assert_eq!(p["warmup_calls"], 1);
    assert_eq!(p["stop"]["reason"], "fixed");
    // Both record what the host did over the measured calls: 8 calls of 2 sleeps each wait
    // at least 16 times.
    for w in [r, p] {
        let host = &w["stop"]["host"];
        assert!(host["voluntary_switches"].as_u64().unwrap() >= 16, "{host}");
        assert!(host["user_ms"].as_f64().unwrap() >= 0.0, "{host}");
        assert!(host["last_cpu"].is_u64(), "{host}");
        // The host CPU probe ran (before and after the measured calls) and took some time.
        let probe = host["cpu_probe_ms"].as_f64().unwrap();
        assert!(probe > 0.0 && probe < 1000.0, "{host}");
    }
    assert_eq!(
        r["stop"]["host"]["allowed_cpus"],
        p["stop"]["host"]["allowed_cpus"]
    );

    // Both write every sample column; the allocator's are empty on a CPU.
    for row in sandbox.samples() {
        assert!(row.contains_key("allocated_at_start_bytes"), "{row:?}");
        assert_eq!(row["allocated_at_start_bytes"], "", "{row:?}");
        assert_eq!(row["peak_reserved_bytes"], "", "{row:?}");
    }

    // The fastest call of each: on a loaded CPU a sleeping process wakes late by whatever the
    // scheduler adds, never early, so the fastest call is the op's own cost plus the worker's.
    let fastest = |suite: &str| {
        wall_times(&sandbox, suite)
            .into_iter()
            .fold(f64::INFINITY, f64::min)
    };
    let (rust_ms, python_ms) = (fastest("rust-sleep"), fastest("python-sleep"));
    assert!(
        (python_ms / rust_ms - 1.0).abs() < 0.01,
        "fastest call: built-in {rust_ms:.2} ms, Python {python_ms:.2} ms"
    );
    // The report puts the pair side by side (real ÷ replica).
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.run_dir().join("report.json")).unwrap(),
    )
    .unwrap();
    let fidelity = &report["fidelity"][0];
    assert_eq!(fidelity["real_suite"], "python-sleep");
    assert_eq!(fidelity["replica_suite"], "rust-sleep");
    let ratio = fidelity["time_ratio"].as_f64().unwrap();
    assert!((ratio - 1.0).abs() < 0.05, "{fidelity}");
    assert_eq!(fidelity["stage_ratios"].as_array().unwrap().len(), 2);
    // Same stages and counters, column for column.
    let rows = sandbox.samples();
    let row = |suite: &str| {
        rows.iter()
            .find(|r| r["suite"] == suite && r["warmup"] == "false")
            .unwrap()
            .clone()
    };
    let (a, b) = (row("rust-sleep"), row("python-sleep"));
    let keys: Vec<&String> = a
        .keys()
        .filter(|k| k.starts_with("stage_") || k.starts_with("count_"))
        .collect();
    assert!(keys.len() >= 3, "{a:?}");
    for k in keys {
        assert!(b.contains_key(k), "Python samples lack {k}");
        if k.starts_with("count_") {
            assert_eq!(a[k], b[k], "{k}");
        }
    }
}

/// A pipeline that logs what it was given, as JSON, for the test to read back.
const ECHO: &str = r#"
import json, os, torch
class Echo:
    def setup(self, params, ctx):
        ctx.log(json.dumps({
            "params": {k: [type(v).__name__, v] for k, v in sorted(params.items())},
            "dtype": str(ctx.dtype), "autocast": str(ctx.autocast), "device": str(ctx.device),
            "cudnn": torch.backends.cudnn.enabled, "tf32": torch.backends.cuda.matmul.allow_tf32,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "env": os.environ.get("ECHO_VAR"), "grad": torch.is_grad_enabled(),
        }))
    def call(self, ctx):
        with ctx.stage("a"):
            x = torch.ones(4, 4, dtype=ctx.dtype) @ torch.ones(4, 4, dtype=ctx.dtype)
        with ctx.stage("b"):
            ctx.count("evals", 3)
            ctx.log("autocast in call: " + str(torch.is_autocast_cpu_enabled()))
"#;

fn echoed(process: &Value) -> Value {
    let line = process["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|w| w.as_str().filter(|s| s.starts_with('{')))
        .unwrap_or_else(|| panic!("no echo in {process}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn params_knobs_and_matrix_axes_reach_the_pipeline_typed() {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.path().join("manifests/echo.py"), ECHO).unwrap();
    let manifest = sandbox.manifest(
        "echo.toml",
        r#"
[suite]
name = "echo"
workload = "python"
[params]
entry = "echo.py:Echo"
steps = 3
scale = 0.5
fast = true
mode = "x"
[knobs]
dtype = "bf16"
autocast = "bf16"
deterministic_algorithms = "warn-only"
env = { ECHO_VAR = "seen" }
[run]
warmup = 0
settle = false
repetitions = 2
processes = 1
[matrix]
"params.steps" = [3, 7]
"#,
    );
    sandbox
        .cmd()
        .args(["run", "--quiet", &manifest])
        .assert()
        .success();
    let run = sandbox.run_json();
    let all = processes(&run);
    assert_eq!(all.len(), 2, "one process per matrix cell");
    let mut steps = Vec::new();
    for p in &all {
        assert_eq!(p["status"], "ok", "{p}");
        let e = echoed(p);
        assert_eq!(e["params"]["scale"], serde_json::json!(["float", 0.5]));
        assert_eq!(e["params"]["fast"], serde_json::json!(["bool", true]));
        assert_eq!(e["params"]["mode"], serde_json::json!(["str", "x"]));
        assert!(
            e["params"].get("entry").is_none(),
            "entry is not a parameter"
        );
        assert_eq!(e["params"]["steps"][0], "int");
        steps.push(e["params"]["steps"][1].as_i64().unwrap());
        assert_eq!(e["dtype"], "torch.bfloat16");
        assert_eq!(e["autocast"], "torch.bfloat16");
        assert_eq!(e["device"], "cpu");
        assert_eq!(e["deterministic"], true);
        assert_eq!(e["env"], "seen");
        assert_eq!(e["grad"], false, "setup runs without autograd");
        assert!(
            p["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w == "autocast in call: True"),
            "calls run under autocast: {p}"
        );
        assert_eq!(p["hello"]["backend_flags"]["autocast_cpu"], "bf16");
    }
    steps.sort();
    assert_eq!(steps, [3, 7]);
    let rows = sandbox.samples();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["count_evals"], "3", "{r:?}");
        let (a, b): (f64, f64) = (
            r["stage_a_ms"].parse().unwrap(),
            r["stage_b_ms"].parse().unwrap(),
        );
        let wall: f64 = r["wall_ms"].parse().unwrap();
        assert!(a > 0.0 && b > 0.0 && a + b <= wall * 1.001, "{r:?}");
    }
}

#[test]
fn pipeline_failures_are_recorded_and_the_suite_goes_on() {
    let sandbox = Sandbox::new();
    let manifest = sandbox.manifest(
        "faults.toml",
        r#"
[suite]
name = "py-faults"
workload = "python"
[params]
entry = "claimbench.reference:Fault"
after_calls = 1
[run]
warmup = 0
settle = false
repetitions = 3
processes = 1
timeout = "1m"
[[variant]]
name = "raise"
params = { kind = "raise" }
[[variant]]
name = "raise-in-setup"
params = { kind = "raise", in_setup = true }
[[variant]]
name = "alloc"
params = { kind = "alloc", bytes = 1125899906842624 }
[[variant]]
name = "abort"
params = { kind = "abort" }
[[variant]]
name = "exit"
params = { kind = "exit" }
[[variant]]
name = "print"
params = { kind = "print", after_calls = 1000 }
[[variant]]
name = "missing-class"
params = { entry = "claimbench.reference:Nope" }
[[variant]]
name = "missing-file"
params = { entry = "nowhere.py:Pipeline" }
"#,
    );
    let out = sandbox
        .cmd()
        .args(["run", "--quiet", &manifest])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "a failed worker exits 4");
    let run = sandbox.run_json();
    let status = |v: &str| process(&run, "py-faults", v).clone();

    let raised = status("raise");
    assert_eq!(raised["status"], "error");
    assert_eq!(raised["samples"], 1, "the call before the fault is kept");
    assert!(raised["message"]
        .as_str()
        .unwrap()
        .contains("RuntimeError: fault pipeline: raised on purpose"));
    let log = std::fs::read_to_string(sandbox.run_dir().join(raised["log_file"].as_str().unwrap()))
        .unwrap();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(
        log.contains("in _fail"),
        "the traceback names the frame: {log}"
    );

    assert_eq!(status("raise-in-setup")["status"], "error");
    assert_eq!(status("raise-in-setup")["samples"], 0);

    let oom = status("alloc");
    assert_eq!(oom["status"], "oom", "{oom}");
    assert_eq!(oom["oom"]["requested_bytes"], 1u64 << 50);
    assert_eq!(oom["oom"]["completed_calls"], 1);

    assert_eq!(status("abort")["status"], "crashed");
    assert_eq!(status("abort")["signal"], 6);
    assert_eq!(status("exit")["status"], "crashed");
    assert_eq!(status("exit")["exit_code"], 3);

    // Stray prints from a library go to the log, not into the protocol.
    let printed = status("print");
    assert_eq!(printed["status"], "ok", "{printed}");
    assert_eq!(printed["samples"], 3);

    let missing = status("missing-class");
    assert_eq!(missing["status"], "error");
    assert!(missing["message"]
        .as_str()
        .unwrap()
        .contains("`claimbench.reference` has no attribute `Nope`"));
    assert!(status("missing-file")["message"]
        .as_str()
        .unwrap()
        .contains("manifests/nowhere.py"));
}

#[test]
fn entries_are_checked_at_load() {
    let sandbox = Sandbox::new();
    let cases: BTreeMap<&str, (&str, &str)> = BTreeMap::from([
        (
            "no-entry.toml",
            (
                "[params]\nsteps = 1\n",
                "the `python` workload needs `entry` in the top-level `[params]`",
            ),
        ),
        (
            "bad-entry.toml",
            (
                "[params]\nentry = \"pipeline\"\n",
                "invalid value `pipeline` for `params.entry`",
            ),
        ),
        (
            "table-param.toml",
            (
                "[params]\nentry = \"m:C\"\nsizes = { a = 1 }\n",
                "`params.sizes` must be a boolean, integer, number or string",
            ),
        ),
        (
            "nan-param.toml",
            (
                "[params]\nentry = \"m:C\"\nscale = nan\n",
                "is not a finite number",
            ),
        ),
    ]);
    for (name, (body, message)) in cases {
        let manifest = sandbox.manifest(
            name,
            &format!("[suite]\nname = \"x\"\nworkload = \"python\"\n{body}"),
        );
        let out = sandbox.cmd().args(["check", &manifest]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(stderr.contains(name), "{name}: the file is named: {stderr}");
    }
}

#[test]
fn the_example_user_pipeline_runs() {
    let sandbox = Sandbox::new();
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/python-pipeline/claimbench.toml");
    sandbox
        .cmd()
        .args(["run", "--quiet", "--profile", "smoke"])
        .arg(&manifest)
        .assert()
        .success();
    let rows = sandbox.samples();
    let measured: Vec<_> = rows.iter().filter(|r| r["warmup"] == "false").collect();
    assert_eq!(measured.len(), 2, "one call per variant: {rows:?}");
    for r in measured {
        // DDPM: one UNet evaluation per step, whatever the batch.
        assert_eq!(r["count_unet_evals"], "4", "{r:?}");
        assert!(r["stage_denoise_ms"].parse::<f64>().unwrap() > 0.0);
    }
}

#[test]
fn a_python_without_torch_is_an_error_that_says_what_to_set() {
    let sandbox = Sandbox::new();
    // A `torch` that cannot be imported shadows the real one.
    let fake = sandbox.path().join("no-torch/torch");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(
        fake.join("__init__.py"),
        "raise ImportError('no torch here')\n",
    )
    .unwrap();
    let manifest = sandbox.manifest(
        "sleep.toml",
        "[suite]\nname = \"s\"\nworkload = \"python\"\n[params]\nentry = \"claimbench.reference:Sleep\"\n",
    );
    let out = sandbox
        .cmd()
        .env("PYTHONPATH", sandbox.path().join("no-torch"))
        .args(["run", "--quiet", &manifest])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let run = sandbox.run_json();
    let p = process(&run, "s", "default");
    assert_eq!(p["status"], "error", "{p}");
    let message = p["message"].as_str().unwrap();
    assert!(message.contains("cannot import torch"), "{message}");
    assert!(message.contains("CLAIMBENCH_PYTHON"), "{message}");
}

/// The allocator trace is a CUDA diagnostic: on a CPU both workers say why none was written
/// and measure as usual, rather than failing or staying silent.
#[test]
fn an_allocator_trace_asked_for_on_the_cpu_is_declined_with_a_warning() {
    let sandbox = Sandbox::new();
    let run = "[knobs]\ndevice = \"cpu\"\n[run]\nwarmup = 1\nsettle = false\nrepetitions = 2\nprocesses = 1\ntimeout = \"2m\"\n";
    let rust = sandbox.manifest(
        "rust.toml",
        &format!("[suite]\nname = \"rust-sleep\"\nworkload = \"sleep\"\n[params]\nms = 5.0\n{run}"),
    );
    let python = sandbox.manifest(
        "python.toml",
        &format!("[suite]\nname = \"python-sleep\"\nworkload = \"python\"\n[params]\nentry = \"claimbench.reference:Sleep\"\nms = 5.0\n{run}"),
    );
    let traces = sandbox.path().join("traces");
    sandbox
        .cmd()
        .env("CLAIMBENCH_CUDA_MEMORY_TRACE", &traces)
        .args(["run", "--quiet", &rust, &python])
        .assert()
        .success();
    let run = sandbox.run_json();
    for suite in ["rust-sleep", "python-sleep"] {
        let p = process(&run, suite, "default");
        assert_eq!(p["status"], "ok", "{p}");
        assert_eq!(p["samples"], 2, "{p}");
        let warned = p["warnings"].as_array().unwrap().iter().any(|w| {
            w.as_str()
                .is_some_and(|s| s.contains("CLAIMBENCH_CUDA_MEMORY_TRACE: no CUDA allocator"))
        });
        assert!(warned, "{suite}: no warning in {p}");
    }
    assert!(!traces.exists(), "a trace folder was made on the CPU");
    // A call index that is not one is said, in both workers, before the device is looked at.
    sandbox
        .cmd()
        .env("CLAIMBENCH_CUDA_MEMORY_TRACE", &traces)
        .env("CLAIMBENCH_CUDA_MEMORY_TRACE_CALL", "first")
        .args(["run", "--quiet", &rust, &python])
        .assert()
        .success();
    let newest = std::path::Path::new(&sandbox.newest_run()).join("run.json");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
    for suite in ["rust-sleep", "python-sleep"] {
        let p = process(&run, suite, "default");
        assert_eq!(p["samples"], 2, "{p}");
        let warned = p["warnings"].as_array().unwrap().iter().any(|w| {
            w.as_str().is_some_and(|s| {
                s.contains("CLAIMBENCH_CUDA_MEMORY_TRACE_CALL=") && s.contains("not a call index")
            })
        });
        assert!(warned, "{suite}: no warning about the call index in {p}");
    }
}
