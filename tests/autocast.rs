//! The `autocast` knob end to end on CPU: the worker applies it through libtorch and records
//! what libtorch reports back.

mod common;

use common::Sandbox;

const AUTOCAST: &str = r#"
[suite]
name = "autocast"
workload = "conv_stack"

[params]
batch = 1
channels = 16
resolution = 8
blocks = 2
groups = 8

[knobs]
device = "cpu"

[run]
warmup = 1
settle = false
repetitions = 2

[[variant]]
name = "fp32"

[[variant]]
name = "bf16"
knobs = { autocast = "bf16" }
"#;

#[test]
fn autocast_is_applied_on_cpu_and_read_back() {
    let sb = Sandbox::new();
    let manifest = sb.manifest("autocast.toml", AUTOCAST);
    sb.cmd()
        .args(["run", "--quiet", &manifest])
        .assert()
        .success();
    let run = sb.run_json();
    let processes = run["suites"][0]["processes"].as_array().unwrap();
    let flags = |variant: &str| {
        let p = processes.iter().find(|p| p["variant"] == variant).unwrap();
        assert_eq!(p["status"], "ok", "{p}");
        assert!(
            p["hello"]["not_applicable"].as_array().unwrap().is_empty(),
            "{p}"
        );
        p["hello"]["backend_flags"].clone()
    };
    // Flags that are off are left out of the record (older records have none).
    assert_eq!(flags("bf16")["autocast_cpu"], "bf16");
    assert!(flags("bf16").get("autocast_cuda").is_none());
    assert!(flags("fp32").get("autocast_cpu").is_none());
}
