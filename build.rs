//! Compiles the C++ shim (harness/ffi/shim.cpp) against the libtorch that torch-sys found, and
//! records where that libtorch lives so binaries, tests and benches run without LD_LIBRARY_PATH.
//!
//! libtorch headers: `<libtorch lib dir>/../include` (torch-sys exports the lib dir as
//! `DEP_TCH_LIBTORCH_LIB`). CUDA runtime headers, needed only for the allocator's
//! memory-fraction setter: `CLAIMBENCH_CUDA_INCLUDE` if set, else the complete set that the
//! triton wheel (a dependency of PyTorch) ships under `triton/backends/nvidia/include`. Without
//! them the shim still builds, and a VRAM budget fails with an explicit error at run time.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=harness/ffi/shim.cpp");
    println!("cargo:rerun-if-changed=harness/ffi/shim.h");
    println!("cargo:rerun-if-env-changed=CLAIMBENCH_CUDA_INCLUDE");

    let lib_dir = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not export DEP_TCH_LIBTORCH_LIB"),
    );
    let include = lib_dir.join("../include");
    let cuda_include = env::var_os("CLAIMBENCH_CUDA_INCLUDE")
        .map(PathBuf::from)
        .or_else(|| {
            let triton = lib_dir.join("../../triton/backends/nvidia/include");
            triton.join("cuda_runtime_api.h").exists().then_some(triton)
        });

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        // PyTorch wheels since 2.7 are built with the C++11 ABI only.
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .file("harness/ffi/shim.cpp");
    match &cuda_include {
        Some(dir) if dir.join("cuda_runtime_api.h").exists() => {
            build.include(dir).define("CLAIMBENCH_HAVE_CUDA_HEADERS", None);
        }
        _ => println!(
            "cargo:warning=no CUDA runtime headers found (set CLAIMBENCH_CUDA_INCLUDE): VRAM budgets will be unavailable"
        ),
    }
    build.compile("claimbench_shim");
    // The shim calls into these directly; name them after it so the linker resolves its symbols
    // even in targets that use no tch API.
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");

    // Tests, benches and the engine binary find libtorch through RUNPATH on the build machine;
    // elsewhere the `claimbench` launcher sets LD_LIBRARY_PATH (see harness/main.rs).
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!(
        "cargo:rustc-env=CLAIMBENCH_BUILD_LIBTORCH={}",
        lib_dir.display()
    );
    println!("cargo:rustc-env=CLAIMBENCH_GIT_COMMIT={}", git_commit());
    // Re-run when HEAD moves (not on every index change: that would relink on each `git add`).
    if Path::new(".git/HEAD").exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
            if let Some(reference) = head.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed=.git/{reference}");
            }
        }
    }
}

/// `git describe`-like commit id with a `-dirty` suffix, or `unknown` outside a checkout.
fn git_commit() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown".to_string(),
    }
}
