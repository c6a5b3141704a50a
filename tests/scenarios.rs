//! The shipped scenario manifests: every one validates under every profile, and together they
//! cover every knob value the optimisation notes name.

use claimbench::manifest::{build_plan, Manifest, ProfileChoice};
use claimbench::plan::{ParamValue, Plan};
use std::path::PathBuf;

fn manifests() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
    found.sort();
    found
}

fn plans(profile: &str) -> Vec<Plan> {
    manifests()
        .iter()
        .filter_map(|path| {
            let m = Manifest::from_path(path).unwrap_or_else(|e| panic!("{e}"));
            let has = m.profiles().iter().any(|p| p == profile) || profile == "base";
            has.then(|| {
                build_plan(&m, ProfileChoice::Named(profile)).unwrap_or_else(|e| panic!("{e}"))
            })
        })
        .collect()
}

#[test]
fn every_manifest_plans_under_every_profile() {
    for path in manifests() {
        let m = Manifest::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
        for profile in m.profiles().iter().map(String::as_str).chain(["base"]) {
            build_plan(&m, ProfileChoice::Named(profile))
                .unwrap_or_else(|e| panic!("{}: {profile}: {e}", path.display()));
        }
    }
}

#[test]
fn the_note_manifests_have_nightly_quick_and_cpu_profiles() {
    for name in [
        "hunyuan3d-cudnn",
        "hunyuan3d-scenarios",
        "sam3d-memory",
        "diffusers-vram",
        "up2you-vram",
    ] {
        let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))
            .join(format!("{name}.toml"));
        let m = Manifest::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
        for profile in ["nightly", "quick", "cpu"] {
            assert!(
                m.profiles().iter().any(|p| p == profile),
                "{name} lacks the {profile} profile"
            );
        }
        let plan = build_plan(&m, ProfileChoice::Auto { cuda_present: true }).unwrap();
        assert!(
            plan.variants.iter().all(|v| !v.claims.is_empty()
                || v.knobs.torch_compile.is_some()
                || v.description.is_some()),
            "{name}: every variant cites a claim or says what it is for"
        );
    }
}

/// Every (knob, value) pair of the notes' knob table appears in some variant.
#[test]
fn every_documented_knob_value_is_exercised() {
    let plans = plans("base");
    let mut seen: Vec<String> = Vec::new();
    for plan in &plans {
        for v in &plan.variants {
            let k = &v.knobs;
            seen.push(format!("cudnn.enabled={}", k.cudnn_enabled));
            seen.push(format!("cudnn.benchmark={}", k.cudnn_benchmark));
            seen.push(format!("cudnn.deterministic={}", k.cudnn_deterministic));
            seen.push(format!(
                "deterministic_algorithms={}",
                k.deterministic_algorithms.as_str()
            ));
            seen.push(format!("tf32.matmul={}", k.tf32_matmul));
            seen.push(format!("tf32.cudnn={}", k.tf32_cudnn));
            seen.push(format!("dtype={}", k.dtype));
            seen.push(format!("empty_cache={}", k.empty_cache_between_stages));
            if let Some(gib) = k.vram_budget_gib {
                seen.push(format!("vram_budget_gib={gib}"));
            }
            if let Some(mode) = k.torch_compile {
                seen.push(format!("compile={}", mode.as_str()));
            }
            for (name, value) in &k.env {
                seen.push(format!("env.{name}={value}"));
            }
            for (name, value) in &v.params {
                let value = match value {
                    ParamValue::Float(x) => format!("{x}"),
                    other => other.to_string(),
                };
                seen.push(format!("{}.{name}={value}", v.workload));
            }
        }
    }
    let required = [
        "cudnn.enabled=false",
        "cudnn.enabled=true",
        "cudnn.benchmark=false",
        "cudnn.benchmark=true",
        "cudnn.deterministic=false",
        "cudnn.deterministic=true",
        "deterministic_algorithms=warn-only",
        "deterministic_algorithms=off",
        "tf32.matmul=true",
        "tf32.matmul=false",
        "tf32.cudnn=true",
        "dtype=fp32",
        "dtype=fp16",
        "dtype=bf16",
        "empty_cache=true",
        "empty_cache=false",
        "env.CUBLAS_WORKSPACE_CONFIG=:4096:8",
        "env.CUDA_LAUNCH_BLOCKING=1",
        "env.CUDA_MODULE_LOADING=LAZY",
        "env.CUDNN_CONV_WORKSPACE_LIMIT=512",
        "env.CUDNN_CONV_WORKSPACE_LIMIT=384",
        "env.CUDNN_CONV_WORKSPACE_LIMIT=256",
        "env.CUDNN_CONV_USE_MAX_WORKSPACE=0",
        "env.PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:512",
        "env.PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:256",
        "env.PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
        "env.PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:512,expandable_segments:True",
        "compile=reduce-overhead",
        "vram_budget_gib=8",
        "vram_budget_gib=12",
        "vram_budget_gib=16",
        "vram_budget_gib=24",
        // diffusers-style switches
        "t2i_dit.attention=sdpa",
        "t2i_dit.attention=sliced:auto",
        "t2i_dit.attention=sliced:max",
        "t2i_dit.vae_slicing=true",
        "t2i_dit.vae_tiling=true",
        "t2i_dit.offload=none",
        "t2i_dit.offload=model",
        "t2i_dit.offload=sequential",
        "t2i_dit.height=1024",
        "t2i_dit.height=768",
        "t2i_dit.height=512",
        "t2i_dit.steps=9",
        "t2i_dit.guidance=0",
        // loading strategies
        "sam3d.load=all_at_once",
        "sam3d.load=lazy",
        "sam3d.load=sequential",
        "hunyuan3d_texture.sequential_load=true",
        "sam3d.input_resolution=518",
        "sam3d.input_resolution=384",
        // Hunyuan3D-2
        "hunyuan3d_texture.shape_steps=3",
        "hunyuan3d_texture.shape_steps=4",
        "hunyuan3d_texture.shape_steps=5",
        "hunyuan3d_texture.octree_resolution=128",
        "hunyuan3d_texture.octree_resolution=192",
        "hunyuan3d_texture.shape_guidance=5",
        "hunyuan3d_texture.delight_steps=4",
        "hunyuan3d_texture.delight_steps=5",
        "hunyuan3d_texture.delight_steps=6",
        "hunyuan3d_texture.multiview_steps=4",
        "hunyuan3d_texture.multiview_steps=5",
        "hunyuan3d_texture.multiview_steps=6",
        "hunyuan3d_texture.views=minimal",
        "hunyuan3d_texture.views=fast",
        "hunyuan3d_texture.views=standard",
        "hunyuan3d_texture.render_size=1024",
        "hunyuan3d_texture.render_size=1536",
        "hunyuan3d_texture.render_size=2048",
        "hunyuan3d_texture.texture_size=1024",
        "hunyuan3d_texture.texture_size=1536",
        "hunyuan3d_texture.texture_size=2048",
        "hunyuan3d_texture.vae_slicing=true",
        "hunyuan3d_texture.vae_tiling=true",
        // UP2You
        "up2you.views=6",
        "up2you.views=12",
        "up2you.views=20",
        "up2you.views=30",
        "up2you.resolution=512",
        "up2you.resolution=768",
        "up2you.resolution=1024",
        "up2you.steps=50",
        "up2you.steps=30",
        "up2you.guidance=3",
        "up2you.guidance_interval=1",
        "up2you.guidance_interval=3",
        "up2you.guidance_interval=4",
    ];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| !seen.iter().any(|s| s == r))
        .collect();
    assert!(
        missing.is_empty(),
        "knob values no variant exercises: {missing:?}"
    );
}

/// A real-code suite's `replica` names a shipped suite (in scenarios/ or tests/manifests/)
/// that defines the same variants under every profile the real suite has, so that the report's
/// "replica vs real code" table pairs like with like and misses none.
#[test]
fn every_replica_pair_defines_the_same_variants() {
    let dirs = ["/scenarios", "/tests/manifests"];
    let all: Vec<Manifest> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(format!("{}{d}", env!("CARGO_MANIFEST_DIR"))).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| Manifest::from_path(&p).ok())
        .collect();
    let mut pairs = 0;
    for real in &all {
        let base = build_plan(real, ProfileChoice::Named("base")).unwrap();
        let Some(replica_name) = &base.replica else {
            continue;
        };
        let replica = all
            .iter()
            .find(|m| m.suite_name() == replica_name)
            .unwrap_or_else(|| panic!("{}: no suite `{replica_name}`", base.suite));
        for profile in real.profiles().iter().map(String::as_str).chain(["base"]) {
            let names = |m: &Manifest| -> Vec<String> {
                let mut v: Vec<String> = build_plan(m, ProfileChoice::Named(profile))
                    .unwrap()
                    .variants
                    .into_iter()
                    .map(|v| v.name)
                    .collect();
                v.sort();
                v
            };
            assert_eq!(
                names(real),
                names(replica),
                "{} vs {replica_name}, profile {profile}",
                base.suite
            );
        }
        pairs += 1;
    }
    assert!(pairs >= 7, "found {pairs} pairs");
}
