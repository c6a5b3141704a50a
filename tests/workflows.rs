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
    assert!(
        runs.contains("run --compare --allow-missing-baseline"),
        "{runs}"
    );
    // Main's nightly records the baselines that pull requests are compared with.
    assert!(
        runs.contains("baseline accept \"${{ steps.run.outputs.dir }}\""),
        "{runs}"
    );
    // Baselines are kept per profile: main also records the `quick` baseline pull requests use.
    assert!(runs.contains("run --profile quick --compare"), "{runs}");
    assert!(runs.contains("baseline accept \"$quick_dir\""), "{runs}");
    assert!(
        !runs.contains("ls -d"),
        "the run folder comes from the command's output"
    );
    assert!(
        !runs.contains("bencher"),
        "no half-configured Bencher upload"
    );
    // The README puts the nightly at about 6.5 h on one GPU.
    let timeout = workflow["jobs"]["suite"]["timeout-minutes"]
        .as_i64()
        .unwrap();
    assert!(timeout >= 420, "timeout {timeout} min");
    assert!(runs.contains("report.md"));
    let text = format!("{workflow:?}");
    // bmf.json is kept with the report, for Bencher or any other history service.
    assert!(text.contains("report.html") && text.contains("github-benchmark.json"));
    assert!(text.contains("bmf.json"));
    assert!(text.contains("customSmallerIsBetter"));
}

#[test]
fn pr_runs_the_quick_profile_and_comments() {
    let workflow = load("pr.yml");
    let runs = scripts(&workflow, "pr.yml").join("\n");
    assert!(runs.contains("--profile quick"), "{runs}");
    assert!(runs.contains("report \"$run_dir\""));
    // The gate fails closed: `compare` without --allow-missing-baseline decides the status.
    assert!(runs.contains("compare \"$run_dir\""), "{runs}");
    assert!(!runs.contains("allow-missing-baseline"), "{runs}");
    assert!(
        !runs.contains("ls -d"),
        "the run folder comes from the command's output"
    );
    // Self-hosted runners must not run forks' code.
    let guard = workflow["jobs"]["quick"]["if"].as_str().unwrap_or("");
    assert!(
        guard.contains("head.repo.full_name == github.repository"),
        "{guard}"
    );
    assert!(runs.contains("--format markdown"));
    assert!(runs.contains("gh pr comment"));
    assert!(runs.contains("GITHUB_STEP_SUMMARY"));
}

/// Every `"$CLAIMBENCH" …` command in the workflows names a subcommand and flags that this
/// version's command line has (checked against its `--help`).
#[test]
fn workflow_commands_use_flags_the_cli_has() {
    let mut checked = 0;
    for name in ["nightly.yml", "pr.yml"] {
        let workflow = load(name);
        for script in scripts(&workflow, name) {
            for line in script.lines() {
                let Some(at) = line.find("\"$CLAIMBENCH\" ") else {
                    continue;
                };
                let words: Vec<&str> = line[at + "\"$CLAIMBENCH\" ".len()..]
                    .split_whitespace()
                    .take_while(|w| !matches!(*w, ">" | "2>" | "|" | "&&" | ";"))
                    .collect();
                let mut command: Vec<&str> = vec![words[0]];
                if words[0] == "baseline" {
                    command.push(words[1]);
                }
                let help = assert_cmd::Command::cargo_bin("claimbench")
                    .unwrap()
                    .args(&command)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(help.status.success(), "{name}: `{line}`: no such command");
                let help = String::from_utf8_lossy(&help.stdout);
                for flag in words.iter().filter(|w| w.starts_with("--")) {
                    assert!(
                        help.contains(flag),
                        "{name}: `{line}`: {command:?} has no {flag}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} commands found");
}

/// Every action is pinned to a full commit SHA (a tag can be moved to other code; the runner
/// holds a GPU and the repository's secrets), with the version it stands for in a comment.
#[test]
fn actions_are_pinned_to_commit_shas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pinned = 0;
    for file in [
        ".github/workflows/nightly.yml",
        ".github/workflows/pr.yml",
        "recipes/github/sharded-nightly.yml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for line in text.lines().filter(|l| l.contains("uses:")) {
            let target = line.split("uses:").nth(1).unwrap().trim();
            let (_, rest) = target
                .split_once('@')
                .unwrap_or_else(|| panic!("{file}: {line}"));
            let sha = rest.split_whitespace().next().unwrap();
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{file}: `{line}` is not pinned to a commit"
            );
            assert!(rest.contains("# v"), "{file}: `{line}` names no version");
            pinned += 1;
        }
    }
    assert!(pinned >= 9, "{pinned} actions found");
}
