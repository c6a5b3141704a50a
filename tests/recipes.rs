//! The scale-out recipes under `recipes/` (Slurm job array, Kubernetes Indexed Job, GitHub
//! Actions matrix) parse, agree with themselves on the shard count, and call claimbench with
//! subcommands and flags this version's command line has (checked against its `--help`).

use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn yaml(rel: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.remove(0)
}

/// The claimbench command lines in `script`: the words after each `$CLAIMBENCH`, up to a
/// shell operator, with quotes removed.
fn commands(script: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in script.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("$CLAIMBENCH") {
            rest = &rest[at + "$CLAIMBENCH".len()..];
            let words: Vec<String> = rest
                .trim_start_matches(['"', '\\'])
                .split_whitespace()
                .map(|w| {
                    w.trim_matches(|c| c == '"' || c == '\'' || c == '\\')
                        .to_string()
                })
                .take_while(|w| !matches!(w.as_str(), "||" | "&&" | "|" | ">" | ">>" | ";" | ""))
                .collect();
            if words
                .first()
                .is_some_and(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            {
                found.push(words);
            }
        }
    }
    found
}

/// Checks each command against `claimbench SUBCOMMAND --help`; returns how many.
fn check_commands(rel: &str, script: &str) -> usize {
    let commands = commands(script);
    for words in &commands {
        let help = assert_cmd::Command::cargo_bin("claimbench")
            .unwrap()
            .arg(&words[0])
            .arg("--help")
            .output()
            .unwrap();
        assert!(help.status.success(), "{rel}: no command `{}`", words[0]);
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(help.contains(flag), "{rel}: `{}` has no {flag}", words[0]);
        }
    }
    commands.len()
}

/// `N` of `--shard X/N` in each command that shards.
fn shard_counts(script: &str) -> Vec<u32> {
    commands(script)
        .iter()
        .filter_map(|w| {
            let at = w.iter().position(|x| x == "--shard")?;
            w[at + 1].rsplit('/').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn the_slurm_array_runs_every_shard_then_a_dependent_merge() {
    let rel = "recipes/slurm/claimbench-shards.sbatch";
    let text = read(rel);
    let last_task: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array=0-"))
        .expect("#SBATCH --array=0-N-1")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        shard_counts(&text),
        [last_task + 1],
        "--array=0-(N-1) and --shard I/N"
    );
    assert!(text.contains("--shard \"$SLURM_ARRAY_TASK_ID/"));
    assert!(text.contains("--dependency=\"afterany:$SLURM_ARRAY_JOB_ID\""));
    let commands = commands(&text);
    assert!(commands.iter().any(|c| c[0] == "merge"), "{commands:?}");
    assert_eq!(check_commands(rel, &text), 2);
    // The script is valid shell.
    let syntax = std::process::Command::new("bash")
        .args(["-n", &format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))])
        .status()
        .unwrap();
    assert!(syntax.success());
}

#[test]
fn the_kubernetes_indexed_job_runs_one_shard_per_index() {
    let rel = "recipes/k8s/claimbench-shards.yaml";
    let job = yaml(rel);
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().unwrap() as u32;
    assert_eq!(spec["parallelism"].as_i64(), Some(completions as i64));
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(
        container["resources"]["limits"]["nvidia.com/gpu"].as_i64(),
        Some(1)
    );
    let script = container["args"][0].as_str().unwrap();
    assert!(script.contains("$JOB_COMPLETION_INDEX/"), "{script}");
    assert_eq!(shard_counts(script), [completions]);
    assert_eq!(check_commands(rel, script), 1);

    let rel = "recipes/k8s/claimbench-merge.yaml";
    let merge = yaml(rel);
    let script = merge["spec"]["template"]["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap();
    assert_eq!(commands(script)[0][0], "merge");
    assert_eq!(check_commands(rel, script), 1);
}

#[test]
fn the_github_matrix_runs_every_shard_then_merges() {
    let rel = "recipes/github/sharded-nightly.yml";
    let workflow = yaml(rel);
    let jobs = &workflow["jobs"];
    let matrix = jobs["shard"]["strategy"]["matrix"]["shard"]
        .as_vec()
        .unwrap();
    let steps = |job: &str| -> String {
        jobs[job]["steps"]
            .as_vec()
            .unwrap()
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let shard_script = steps("shard");
    assert_eq!(shard_counts(&shard_script), [matrix.len() as u32]);
    let indices: Vec<i64> = matrix.iter().map(|m| m.as_i64().unwrap()).collect();
    assert_eq!(indices, (0..matrix.len() as i64).collect::<Vec<_>>());
    assert_eq!(jobs["merge"]["needs"].as_str(), Some("shard"));
    assert_eq!(
        jobs["merge"]["if"].as_str(),
        Some("always()"),
        "merge reports failed shards"
    );
    assert_eq!(check_commands(rel, &shard_script), 1);
    let merge_script = steps("merge");
    assert_eq!(commands(&merge_script)[0][0], "merge");
    assert_eq!(check_commands(rel, &merge_script), 1);
}
