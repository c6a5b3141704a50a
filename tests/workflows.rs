//! The CI workflow examples under `.github/workflows/` must be valid YAML with the shape GitHub
//! Actions expects, and must call claimbench the way this version's command line works.

use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn load(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".github/workflows")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

/// Every step's `run` script, after checking the workflow's shape.
fn scripts(workflow: &Yaml, name: &str) -> Vec<String> {
    assert!(workflow["name"].as_str().is_some(), "{name}: name");
    assert!(!workflow["on"].is_badvalue(), "{name}: triggers");
    let jobs = workflow["jobs"].as_hash().expect("jobs");
    assert!(!jobs.is_empty(), "{name}: jobs");
    let mut runs = Vec::new();
    for (job_name, job) in jobs {
        let job_name = job_name.as_str().unwrap();
        assert!(!job["runs-on"].is_badvalue(), "{name}/{job_name}: runs-on");
        let steps = job["steps"].as_vec().expect("steps");
        assert!(!steps.is_empty());
        for step in steps {
            let run = step["run"].as_str();
            let uses = step["uses"].as_str();
            assert!(
                run.is_some() != uses.is_some(),
                "{name}/{job_name}: a step has exactly one of `run` and `uses`: {step:?}"
            );
            runs.extend(run.map(str::to_string));
        }
    }
    runs
}

#[test]
fn nightly_runs_compares_and_publishes() {
    let workflow = load("nightly.yml");
    let runs = scripts(&workflow, "nightly.yml").join("\n");
    assert!(runs.contains("run --compare"), "{runs}");
    assert!(runs.contains("report.md"));
    assert!(runs.contains("bmf.json"));
    let text = format!("{workflow:?}");
    assert!(text.contains("report.html") && text.contains("github-benchmark.json"));
    assert!(text.contains("customSmallerIsBetter"));
}

#[test]
fn pr_runs_the_quick_profile_and_comments() {
    let workflow = load("pr.yml");
    let runs = scripts(&workflow, "pr.yml").join("\n");
    assert!(runs.contains("--profile quick"), "{runs}");
    assert!(runs.contains("report \"$run_dir\""));
    assert!(runs.contains("--format markdown"));
    assert!(runs.contains("gh pr comment"));
    assert!(runs.contains("GITHUB_STEP_SUMMARY"));
}
