//! The shipped CI workflows (`.github/workflows/nightly.yml` and `pr.yml`) run end to end on
//! CPU. A small step executor reads each workflow and runs its steps the way GitHub Actions does
//! (`if:` conditions, `${{ }}` expressions, step outputs, `GITHUB_ENV`, the step summary, a fake
//! `gh`), so these tests fail when a workflow stops working as written, not when a re-typed copy
//! of its commands does. Expressions the executor does not know fail the test instead of being
//! skipped, so a workflow change that needs a new construct is noticed.

mod common;

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

// ---------------------------------------------------------------------------------------------
// Expressions: the subset of GitHub's `${{ }}` language that the two workflows use.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Num(n) => *n != 0.0,
            Value::Bool(b) => *b,
        }
    }

    /// As GitHub writes a value into a script.
    fn render(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Num(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Str(String),
    Num(f64),
    Name(String),
    Op(&'static str),
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let op = match (c, next) {
            ('=', Some('=')) => Some("=="),
            ('!', Some('=')) => Some("!="),
            ('&', Some('&')) => Some("&&"),
            ('|', Some('|')) => Some("||"),
            _ => None,
        };
        if let Some(op) = op {
            tokens.push(Token::Op(op));
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else if let Some(op) = match c {
            '!' => Some("!"),
            '(' => Some("("),
            ')' => Some(")"),
            ',' => Some(","),
            _ => None,
        } {
            tokens.push(Token::Op(op));
            i += 1;
        } else if c == '\'' {
            // '' inside a literal is a quote.
            let mut s = String::new();
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (None, _) => panic!("unterminated string in `{text}`"),
                    (Some('\''), Some('\'')) => {
                        s.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => {
                        i += 1;
                        break;
                    }
                    (Some(&c), _) => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            tokens.push(Token::Num(digits.parse().unwrap()));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_-.".contains(chars[i]))
            {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else {
            panic!("unsupported character `{c}` in expression `{text}`: teach the executor");
        }
    }
    tokens
}

#[derive(Debug, Clone)]
enum Expr {
    Literal(Value),
    Context(String),
    Call(String, Vec<Expr>),
    Not(Box<Expr>),
    Equals(Box<Expr>, Box<Expr>, bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Recursive descent with GitHub's precedence: `!` > `==`/`!=` > `&&` > `||`.
struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    text: &'t str,
}

impl Parser<'_> {
    fn parse(text: &str) -> Expr {
        let tokens = tokenize(text);
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            text,
        };
        let expr = parser.or();
        assert_eq!(parser.at, tokens.len(), "trailing tokens in `{text}`");
        expr
    }

    fn eat(&mut self, op: &'static str) -> bool {
        if self.tokens.get(self.at) == Some(&Token::Op(op)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Expr {
        let mut left = self.and();
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()));
        }
        left
    }

    fn and(&mut self) -> Expr {
        let mut left = self.equality();
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.equality()));
        }
        left
    }

    fn equality(&mut self) -> Expr {
        let mut left = self.unary();
        loop {
            let equal = if self.eat("==") {
                true
            } else if self.eat("!=") {
                false
            } else {
                return left;
            };
            left = Expr::Equals(Box::new(left), Box::new(self.unary()), equal);
        }
    }

    fn unary(&mut self) -> Expr {
        if self.eat("!") {
            return Expr::Not(Box::new(self.unary()));
        }
        self.primary()
    }

    fn primary(&mut self) -> Expr {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Op("(")) => {
                let inner = self.or();
                assert!(self.eat(")"), "missing `)` in `{}`", self.text);
                inner
            }
            Some(Token::Str(s)) => Expr::Literal(Value::Str(s)),
            Some(Token::Num(n)) => Expr::Literal(Value::Num(n)),
            Some(Token::Name(name)) if name == "true" || name == "false" => {
                Expr::Literal(Value::Bool(name == "true"))
            }
            Some(Token::Name(name)) if self.eat("(") => {
                let mut args = Vec::new();
                if !self.eat(")") {
                    loop {
                        args.push(self.or());
                        if self.eat(")") {
                            break;
                        }
                        assert!(self.eat(","), "expected `,` in `{}`", self.text);
                    }
                }
                Expr::Call(name, args)
            }
            Some(Token::Name(name)) => Expr::Context(name),
            other => panic!("unexpected {other:?} in `{}`", self.text),
        }
    }
}

const STATUS_CHECKS: [&str; 4] = ["always", "success", "failure", "cancelled"];

/// GitHub adds an implicit `success() &&` to an `if:` that names no status check function.
fn names_a_status_check(expr: &Expr) -> bool {
    match expr {
        Expr::Call(name, args) => {
            STATUS_CHECKS.contains(&name.as_str()) || args.iter().any(names_a_status_check)
        }
        Expr::Not(e) => names_a_status_check(e),
        Expr::Equals(a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
            names_a_status_check(a) || names_a_status_check(b)
        }
        Expr::Literal(_) | Expr::Context(_) => false,
    }
}

fn unsupported_context(path: &str) -> ! {
    panic!("unsupported context `{path}`: teach the workflow executor what it means")
}

/// What expressions can see while one job runs.
#[derive(Default)]
struct Scope {
    /// `github.<key>`: only the keys listed here exist (the executor's knowledge of the event).
    github: BTreeMap<&'static str, String>,
    vars: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    /// `steps.<id>.outputs.<name>`.
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    job_failed: bool,
    workspace: PathBuf,
}

impl Scope {
    fn context(&self, path: &str) -> Value {
        let unknown = || unsupported_context(path);
        let text = |s: Option<&String>| Value::Str(s.cloned().unwrap_or_default());
        match path.split_once('.') {
            Some(("github", key)) => match self.github.get(key) {
                Some(v) => Value::Str(v.clone()),
                None => unknown(),
            },
            // Unset variables and secrets are empty, as on GitHub.
            Some(("vars", name)) if !name.contains('.') => text(self.vars.get(name)),
            Some(("secrets", name)) if !name.contains('.') => text(self.secrets.get(name)),
            Some(("steps", rest)) => match rest.split('.').collect::<Vec<_>>()[..] {
                [id, "outputs", name] => {
                    text(self.outputs.get(id).and_then(|outputs| outputs.get(name)))
                }
                _ => unknown(),
            },
            _ => unknown(),
        }
    }

    fn call(&self, name: &str, args: &[Value]) -> Value {
        match (name, args) {
            ("always", []) => Value::Bool(true),
            ("success", []) => Value::Bool(!self.job_failed),
            ("failure", []) => Value::Bool(self.job_failed),
            ("cancelled", []) => Value::Bool(false),
            // Only whether a file matched matters to the workflows; a content hash stands in
            // for GitHub's SHA-256.
            ("hashFiles", [Value::Str(pattern)]) => {
                assert!(
                    !pattern.contains(['*', '?', '[']),
                    "hashFiles globs are not supported: `{pattern}`"
                );
                match std::fs::read(self.workspace.join(pattern)) {
                    Ok(bytes) => {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        bytes.hash(&mut h);
                        Value::Str(format!("{:016x}", h.finish()))
                    }
                    Err(_) => Value::Str(String::new()),
                }
            }
            _ => panic!("unsupported function `{name}({args:?})`: teach the workflow executor"),
        }
    }

    fn eval(&self, expr: &Expr) -> Value {
        match expr {
            Expr::Literal(v) => v.clone(),
            Expr::Context(path) => self.context(path),
            Expr::Call(name, args) => {
                let args: Vec<Value> = args.iter().map(|a| self.eval(a)).collect();
                self.call(name, &args)
            }
            Expr::Not(e) => Value::Bool(!self.eval(e).truthy()),
            // `||` and `&&` yield an operand, not a boolean (`vars.X || 'default'`).
            Expr::Or(a, b) => {
                let a = self.eval(a);
                if a.truthy() {
                    a
                } else {
                    self.eval(b)
                }
            }
            Expr::And(a, b) => {
                let a = self.eval(a);
                if a.truthy() {
                    self.eval(b)
                } else {
                    a
                }
            }
            Expr::Equals(a, b, equal) => {
                let same = match (self.eval(a), self.eval(b)) {
                    // GitHub compares strings ignoring case.
                    (Value::Str(a), Value::Str(b)) => a.to_lowercase() == b.to_lowercase(),
                    (a, b) if std::mem::discriminant(&a) == std::mem::discriminant(&b) => a == b,
                    (a, b) => panic!("comparing {a:?} with {b:?}: type coercion not supported"),
                };
                Value::Bool(same == *equal)
            }
        }
    }

    /// Every context and function an expression names, whether or not evaluation reaches it:
    /// an unknown one in a branch that happens to be skipped must still fail the test.
    fn check_known(&self, expr: &Expr) {
        match expr {
            Expr::Literal(_) => {}
            Expr::Context(path) => {
                self.context(path);
            }
            Expr::Call(name, args) => {
                assert!(
                    STATUS_CHECKS.contains(&name.as_str()) || name == "hashFiles",
                    "unsupported function `{name}`: teach the workflow executor"
                );
                args.iter().for_each(|a| self.check_known(a));
            }
            Expr::Not(e) => self.check_known(e),
            Expr::Equals(a, b, _) | Expr::And(a, b) | Expr::Or(a, b) => {
                self.check_known(a);
                self.check_known(b);
            }
        }
    }

    /// Replaces each `${{ … }}` in `text` by its value, as GitHub does before a script runs.
    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find("}}")
                .unwrap_or_else(|| panic!("unterminated `${{{{` in `{text}`"));
            let expr = Parser::parse(&rest[start + 3..start + end]);
            out.push_str(&self.eval(&expr).render());
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// Every expression in `text`, checked without evaluating.
    fn check_text(&self, text: &str) {
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            let end = rest[start..].find("}}").unwrap();
            self.check_known(&Parser::parse(&rest[start + 3..start + end]));
            rest = &rest[start + end + 2..];
        }
    }

    /// A step's (or job's) `if:`, with GitHub's implicit `success() &&`.
    fn condition(&self, yaml: &Yaml) -> bool {
        let text = match yaml {
            Yaml::BadValue => return !self.job_failed,
            Yaml::Boolean(b) => return *b && !self.job_failed,
            Yaml::String(s) => s.trim(),
            other => panic!("unsupported `if:` {other:?}"),
        };
        let text = text
            .strip_prefix("${{")
            .and_then(|t| t.strip_suffix("}}"))
            .unwrap_or(text);
        let expr = Parser::parse(text);
        self.check_known(&expr);
        let holds = self.eval(&expr).truthy();
        if names_a_status_check(&expr) {
            holds
        } else {
            holds && !self.job_failed
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The executor: one job of a workflow, step by step, in a fresh workspace.
// ---------------------------------------------------------------------------------------------

fn load_workflow(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".github/workflows")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .remove(0)
}

/// What a job runs for, and on which runner state.
struct Trigger {
    git_ref: String,
    pull_request: Option<u32>,
    /// `full_name` of the pull request's head repository (a fork's differs).
    head_repo: String,
    /// `vars.CLAIMBENCH_RESULTS`: the runner's folder that outlives jobs.
    results: PathBuf,
}

const REPOSITORY: &str = "example/claimbench";

impl Trigger {
    fn push_to_main(results: &Path) -> Self {
        Trigger {
            git_ref: "refs/heads/main".into(),
            pull_request: None,
            head_repo: String::new(),
            results: results.to_path_buf(),
        }
    }

    fn pull_request(number: u32, results: &Path) -> Self {
        Trigger {
            git_ref: format!("refs/pull/{number}/merge"),
            pull_request: Some(number),
            head_repo: REPOSITORY.into(),
            results: results.to_path_buf(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Skipped,
    /// A `uses:` action: not run here (its inputs are checked).
    Action,
    /// The build step, replaced by the test's own binary.
    Replaced,
    Exited(i32),
}

struct StepRun {
    name: String,
    outcome: Outcome,
    log: String,
    seconds: f64,
}

struct JobRun {
    ran: bool,
    steps: Vec<StepRun>,
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    summary: String,
    workspace: PathBuf,
}

impl JobRun {
    fn step(&self, name_start: &str) -> &StepRun {
        self.steps
            .iter()
            .find(|s| s.name.starts_with(name_start))
            .unwrap_or_else(|| panic!("no step `{name_start}…`:\n{}", self.transcript()))
    }

    fn output(&self, id: &str, name: &str) -> &str {
        self.outputs
            .get(id)
            .and_then(|o| o.get(name))
            .map_or("", String::as_str)
    }

    /// The run folder a step reported, resolved against the workspace.
    fn run_dir(&self, id: &str) -> PathBuf {
        let dir = self.output(id, "dir");
        assert!(!dir.is_empty(), "step `{id}` named no run folder");
        self.workspace.join(dir)
    }

    fn transcript(&self) -> String {
        self.steps
            .iter()
            .map(|s| {
                let tail = &s.log[s.log.len().saturating_sub(3000)..];
                format!(
                    "--- {} → {:?} ({:.1} s)\n{tail}",
                    s.name, s.outcome, s.seconds
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The workflows run every step and fail at the end, in their final step: the job's status
    /// is that step's exit code, and no earlier step may have failed.
    fn assert_exit(&self, expected: i32) {
        assert!(self.ran, "the job did not run");
        let (last, earlier) = self.steps.split_last().unwrap();
        let earlier_failure = earlier
            .iter()
            .find(|s| matches!(s.outcome, Outcome::Exited(c) if c != 0));
        assert!(
            earlier_failure.is_none(),
            "step `{}` failed before the final one:\n{}",
            earlier_failure.unwrap().name,
            self.transcript()
        );
        assert_eq!(
            last.outcome,
            Outcome::Exited(expected),
            "final step `{}`:\n{}",
            last.name,
            self.transcript()
        );
    }
}

/// The fake GitHub CLI: records each call and keeps each pull request's comments as files
/// (`pr-<n>/<k>.md`); `--edit-last` fails like the real one when there is no comment yet.
const FAKE_GH: &str = r#"#!/usr/bin/env bash
set -eu
state="$FAKE_GH_STATE"
printf '%s\t%s\n' "${GH_TOKEN:+token}" "$*" >> "$state/calls.log"
[ "${1:-} ${2:-}" = "pr comment" ] || { echo "fake gh: unsupported: $*" >&2; exit 2; }
pr=$3; shift 3
body=""; edit_last=0
while [ $# -gt 0 ]; do
  case "$1" in
    --body-file) body=$2; shift 2 ;;
    --edit-last) edit_last=1; shift ;;
    *) echo "fake gh: unknown flag $1" >&2; exit 2 ;;
  esac
done
[ -n "${GH_TOKEN:-}" ] || { echo "fake gh: GH_TOKEN is not set" >&2; exit 4; }
dir="$state/pr-$pr"; mkdir -p "$dir"
count=$(find "$dir" -name '*.md' | wc -l)
if [ "$edit_last" = 1 ]; then
  [ "$count" -gt 0 ] || { echo "no comments found for current user" >&2; exit 1; }
  cp "$body" "$dir/$count.md"
else
  cp "$body" "$dir/$((count + 1)).md"
fi
"#;

/// A self-hosted runner: a scratch root with the fake `gh`, the fake GitHub's state and one
/// fresh workspace per job (actions/checkout cleans it), while results folders outlive jobs.
struct Runner {
    root: tempfile::TempDir,
    jobs: u32,
}

impl Runner {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["bin", "github", "tmp"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        let gh = root.path().join("bin/gh");
        std::fs::write(&gh, FAKE_GH).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
        Runner { root, jobs: 0 }
    }

    /// A results folder on the runner (`CLAIMBENCH_RESULTS`), not created.
    fn results(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The comments on a pull request, oldest first.
    fn comments(&self, pr: u32) -> Vec<String> {
        let dir = self.root.path().join(format!("github/pr-{pr}"));
        (1..)
            .map(|k| dir.join(format!("{k}.md")))
            .take_while(|p| p.is_file())
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    fn gh_calls(&self) -> String {
        std::fs::read_to_string(self.root.path().join("github/calls.log")).unwrap_or_default()
    }

    /// Runs the workflow's only job with `manifests` as the checkout's `scenarios/`.
    fn run(&mut self, workflow: &str, trigger: &Trigger, manifests: &[(&str, &str)]) -> JobRun {
        self.jobs += 1;
        let yaml = load_workflow(workflow);
        let jobs = yaml["jobs"].as_hash().unwrap();
        assert_eq!(jobs.len(), 1, "{workflow}: the executor runs one job");
        let job = jobs.values().next().unwrap();
        // Settings that would change how steps run (`defaults`, `shell`, `working-directory`,
        // `continue-on-error`, a matrix, …) must be taught to the executor, not ignored.
        assert_keys(&yaml, &["name", "on", "permissions", "jobs"], workflow);
        assert_keys(
            job,
            &["if", "runs-on", "timeout-minutes", "env", "steps"],
            workflow,
        );
        for step in job["steps"].as_vec().unwrap() {
            let keys = ["name", "id", "if", "run", "uses", "with", "env"];
            assert_keys(step, &keys, workflow);
        }

        let workspace = self
            .root
            .path()
            .join(format!("job-{}-{workflow}", self.jobs));
        std::fs::create_dir_all(workspace.join("scenarios")).unwrap();
        for (name, text) in manifests {
            std::fs::write(workspace.join("scenarios").join(name), text).unwrap();
        }

        let mut scope = Scope {
            workspace: workspace.clone(),
            ..Scope::default()
        };
        let pr = trigger
            .pull_request
            .map(|n| n.to_string())
            .unwrap_or_default();
        scope.github = BTreeMap::from([
            ("ref", trigger.git_ref.clone()),
            ("run_id", (1000 + self.jobs).to_string()),
            ("repository", REPOSITORY.to_string()),
            ("event.pull_request.number", pr),
            (
                "event.pull_request.head.repo.full_name",
                trigger.head_repo.clone(),
            ),
        ]);
        scope.vars.insert(
            "CLAIMBENCH_RESULTS".into(),
            trigger.results.to_string_lossy().into_owned(),
        );
        scope
            .secrets
            .insert("GITHUB_TOKEN".into(), "fake-token".into());

        let mut run = JobRun {
            ran: false,
            steps: Vec::new(),
            outputs: BTreeMap::new(),
            summary: String::new(),
            workspace: workspace.clone(),
        };
        if !scope.condition(&job["if"]) {
            return run;
        }
        run.ran = true;

        let mut env = evaluated_env(&scope, &job["env"]);
        for (index, step) in job["steps"].as_vec().unwrap().iter().enumerate() {
            let name = step["name"]
                .as_str()
                .or(step["uses"].as_str())
                .unwrap_or("(unnamed)")
                .to_string();
            // Everything a step names must be understood, even when the step is skipped.
            for text in yaml_strings(step) {
                scope.check_text(&text);
            }
            let started = std::time::Instant::now();
            let (outcome, log) = if !scope.condition(&step["if"]) {
                (Outcome::Skipped, String::new())
            } else if !step["uses"].is_badvalue() {
                check_action_inputs(&scope, step, &workspace);
                (Outcome::Action, String::new())
            } else {
                let script = step["run"].as_str().expect("a step has `run` or `uses`");
                if script.contains("cargo build") {
                    // The build's contract with later steps: `CLAIMBENCH` in the job's env.
                    assert!(
                        script.contains("echo \"CLAIMBENCH=") && script.contains("$GITHUB_ENV"),
                        "{workflow}: the build step no longer exports CLAIMBENCH:\n{script}"
                    );
                    env.insert("CLAIMBENCH".into(), env!("CARGO_BIN_EXE_claimbench").into());
                    (Outcome::Replaced, String::new())
                } else {
                    let mut step_env = env.clone();
                    step_env.extend(evaluated_env(&scope, &step["env"]));
                    let result = self.run_script(
                        &format!("{}-{index}", self.jobs),
                        &scope.substitute(script),
                        &workspace,
                        &step_env,
                    );
                    if let Some(id) = step["id"].as_str() {
                        scope.outputs.insert(id.into(), result.outputs);
                    }
                    env.extend(result.env);
                    run.summary.push_str(&result.summary);
                    (Outcome::Exited(result.code), result.log)
                }
            };
            if matches!(outcome, Outcome::Exited(c) if c != 0) {
                scope.job_failed = true;
            }
            run.steps.push(StepRun {
                name,
                outcome,
                log,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        run.outputs = scope.outputs;
        run
    }

    /// One `run:` step as GitHub runs it with no `shell:` given: `bash -e {0}` on a file.
    fn run_script(
        &self,
        tag: &str,
        script: &str,
        workspace: &Path,
        env: &BTreeMap<String, String>,
    ) -> ScriptResult {
        let tmp = self.root.path().join("tmp");
        let file = |kind: &str| {
            let path = tmp.join(format!("{tag}-{kind}"));
            std::fs::write(&path, "").unwrap();
            path
        };
        let (script_file, output, env_file, summary) = (
            file("script.sh"),
            file("output"),
            file("env"),
            file("summary"),
        );
        std::fs::write(&script_file, script).unwrap();
        let path = format!(
            "{}:{}",
            self.root.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("bash")
            .arg("-e")
            .arg(&script_file)
            .current_dir(workspace)
            .env_remove("CUDA_VISIBLE_DEVICES")
            .envs(env)
            .env("PATH", path)
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", workspace)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_ENV", &env_file)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("FAKE_GH_STATE", self.root.path().join("github"))
            .output()
            .unwrap();
        ScriptResult {
            code: out.status.code().expect("a step was killed by a signal"),
            outputs: key_values(&output),
            env: key_values(&env_file),
            summary: std::fs::read_to_string(&summary).unwrap(),
            log: format!(
                "$ {script}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

struct ScriptResult {
    code: i32,
    outputs: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    summary: String,
    log: String,
}

fn assert_keys(yaml: &Yaml, known: &[&str], workflow: &str) {
    for key in yaml.as_hash().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(
            known.contains(&key),
            "{workflow}: the workflow executor does not support `{key}`: teach it"
        );
    }
}

/// `GITHUB_OUTPUT` / `GITHUB_ENV` lines. The multi-line `name<<EOF` form is not used by the
/// workflows, so it fails the test rather than being misread.
fn key_values(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("unsupported output line `{line}`"));
            assert!(
                !key.contains("<<"),
                "unsupported multi-line output `{line}`"
            );
            (key.to_string(), value.to_string())
        })
        .collect()
}

fn evaluated_env(scope: &Scope, yaml: &Yaml) -> BTreeMap<String, String> {
    let Some(hash) = yaml.as_hash() else {
        return BTreeMap::new();
    };
    hash.iter()
        .map(|(k, v)| {
            let value = v.as_str().expect("string env values");
            (k.as_str().unwrap().to_string(), scope.substitute(value))
        })
        .collect()
}

/// Every string in a step, for checking its expressions.
fn yaml_strings(yaml: &Yaml) -> Vec<String> {
    match yaml {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Hash(h) => h.values().flat_map(yaml_strings).collect(),
        Yaml::Array(a) => a.iter().flat_map(yaml_strings).collect(),
        _ => Vec::new(),
    }
}

/// Actions are not run, but the files they would upload or read must exist: an artifact path
/// or a benchmark file that claimbench no longer writes is a broken workflow.
fn check_action_inputs(scope: &Scope, step: &Yaml, workspace: &Path) {
    for input in ["path", "output-file-path"] {
        let Some(value) = step["with"][input].as_str() else {
            continue;
        };
        for line in scope.substitute(value).lines().map(str::trim) {
            if line.is_empty() {
                continue;
            }
            assert!(
                workspace.join(line).exists(),
                "`{}`: its `{input}` names `{line}`, which does not exist",
                step["uses"].as_str().unwrap()
            );
        }
    }
    // Expressions in the action's inputs must evaluate too (artifact names, tokens).
    for text in yaml_strings(&step["with"]) {
        scope.substitute(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// The suites and the runner state the scenarios use.
// ---------------------------------------------------------------------------------------------

/// Milliseconds per call: long enough that scheduling jitter on a loaded 2-core box is small
/// against the gate's threshold, short enough that a job takes seconds.
const NAP_MS: f64 = 30.0;

/// One `sleep` variant in 6 processes (the fewest the gate judges time on), with the `cpu`
/// profile a CPU runner's nightly picks by default and the `quick` profile of pull requests.
fn naps(ms: f64) -> String {
    common::sleep_suite("naps", 6, &[("nap", ms)])
        + r#"
[compare]
# Wide, so that a loaded box never turns an A/A comparison into a regression; the injected
# slowdown (x2) is far beyond it.
time_threshold = 0.25

[profiles.cpu]
run = { repetitions = 4 }

[profiles.quick]
run = { repetitions = 3 }
"#
}

/// A suite whose only worker aborts on its first measured call.
fn crashing_suite() -> String {
    common::fault_manifest(
        "crashes",
        "1m",
        &["name = \"abort\"\nparams = { kind = \"abort\" }"],
    ) + "\n[profiles.quick]\nrun = { repetitions = 2 }\n"
}

/// `<results>/baselines/<stack>/<profile>/<suite>.json` by (profile, suite).
fn baselines(results: &Path) -> BTreeMap<(String, String), PathBuf> {
    common::files_under(&results.join("baselines"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let profile = p.parent().unwrap().file_name().unwrap();
            let suite = p.file_stem().unwrap();
            let key = (
                profile.to_string_lossy().into_owned(),
                suite.to_string_lossy().into_owned(),
            );
            (key, p)
        })
        .collect()
}

fn read_json(path: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run_id(run_dir: &Path) -> String {
    run_dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// Names of the failed test cases of a JUnit suite.
fn junit_failures(junit_xml: &Path, suite: &str) -> Vec<String> {
    let xml = std::fs::read_to_string(junit_xml).unwrap();
    let junit = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    let suite = junit
        .suites
        .iter()
        .find(|s| s.name == suite)
        .unwrap_or_else(|| panic!("no JUnit suite `{suite}` in {xml}"));
    suite
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .map(|c| c.original_name.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

const FINAL_NIGHTLY_STEP: &str = "Fail on a regression, a refuted claim or failed workers";

/// The documented life of the gate on one runner, in order: main's nightly records baselines,
/// pull requests are gated against them, and a failing nightly neither passes nor promotes.
#[test]
fn nightly_records_baselines_and_pull_requests_are_gated_against_them() {
    let mut runner = Runner::new();
    let results = runner.results("results");
    let nap = naps(NAP_MS);
    let suite = [("naps.toml", nap.as_str())];

    // 1. The first nightly on main: no baseline yet is allowed, the clean run is promoted, and
    //    so is the `quick` run that pull requests are compared with.
    let nightly = runner.run("nightly.yml", &Trigger::push_to_main(&results), &suite);
    nightly.assert_exit(0);
    assert_eq!(nightly.steps.last().unwrap().name, FINAL_NIGHTLY_STEP);
    assert_eq!(nightly.output("run", "code"), "0");
    assert_eq!(nightly.output("quick", "code"), "0");
    assert_eq!(
        nightly.step("Promote").outcome,
        Outcome::Exited(0),
        "{}",
        nightly.transcript()
    );
    let stored = baselines(&results);
    let promoted: Vec<_> = stored.keys().cloned().collect();
    assert_eq!(
        promoted,
        [
            ("cpu".to_string(), "naps".to_string()),
            ("quick".to_string(), "naps".to_string())
        ],
        "a CPU runner's nightly picks the `cpu` profile; the quick step adds `quick`"
    );
    let nightly_run = nightly.run_dir("run");
    assert_eq!(
        read_json(&stored[&("cpu".into(), "naps".into())])["source_run"],
        run_id(&nightly_run).as_str(),
        "the promoted baseline is the run this job recorded"
    );
    let report = std::fs::read_to_string(nightly_run.join("report.md")).unwrap();
    assert!(report.contains("naps"), "{report}");
    assert!(
        nightly.summary.contains(report.trim()),
        "the step summary is the run's report.md:\n{}",
        nightly.summary
    );

    // 2. A pull request that changes nothing: it passes, and report.md is posted as a comment
    //    (the fake gh's first `--edit-last` fails, so the fallback creates the comment).
    let pr = runner.run("pr.yml", &Trigger::pull_request(7, &results), &suite);
    pr.assert_exit(0);
    let report_md = std::fs::read_to_string(pr.workspace.join("report.md")).unwrap();
    assert!(report_md.contains("naps"), "{report_md}");
    assert_eq!(runner.comments(7), std::slice::from_ref(&report_md));
    assert!(pr.summary.contains(report_md.trim()));
    assert_eq!(
        runner.gh_calls(),
        "token\tpr comment 7 --body-file report.md --edit-last\n\
         token\tpr comment 7 --body-file report.md\n",
        "gh runs with GH_TOKEN on the pull request's number, and creates the first comment"
    );
    let compare = std::fs::read_to_string(pr.workspace.join("compare.txt")).unwrap();
    assert!(compare.contains("0 regression(s)"), "{compare}");
    assert!(
        compare.lines().any(|l| l.contains("naps/nap")
            && l.contains("wall_ms")
            && (l.starts_with("unchanged") || l.starts_with("inconclusive"))),
        "an unchanged manifest is compared, and passes:\n{compare}"
    );

    // 3a. A pull request that makes the sleep 30 % longer through its parameter changes the
    //     variant's configuration: documented as "not compared", so it passes, and says so.
    let longer = naps(NAP_MS + 9.0);
    let pr = runner.run(
        "pr.yml",
        &Trigger::pull_request(7, &results),
        &[("naps.toml", longer.as_str())],
    );
    pr.assert_exit(0);
    let comments = runner.comments(7);
    assert_eq!(comments.len(), 1, "the second push edits the comment");
    assert!(
        comments[0].contains("configuration changed")
            && comments[0].contains("params.ms: 30.0 → 39.0"),
        "{}",
        comments[0]
    );

    // 3b. A pull request whose code (not configuration) regressed: the next test.

    // 5. A pull request whose worker crashes: exit 4, and junit.xml fails that worker.
    let crashes = crashing_suite();
    let pr = runner.run(
        "pr.yml",
        &Trigger::pull_request(8, &results),
        &[
            ("naps.toml", nap.as_str()),
            ("crashes.toml", crashes.as_str()),
        ],
    );
    pr.assert_exit(4);
    assert_eq!(
        junit_failures(&pr.run_dir("run").join("junit.xml"), "crashes workers"),
        ["abort process 0"]
    );
    assert_eq!(
        runner.comments(8).len(),
        1,
        "a failing run is still reported"
    );

    // 6. A nightly with a crashing worker fails with the run's code and promotes nothing.
    let before: Vec<String> = baselines(&results)
        .values()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let nightly = runner.run(
        "nightly.yml",
        &Trigger::push_to_main(&results),
        &[("crashes.toml", crashes.as_str())],
    );
    nightly.assert_exit(4);
    assert_eq!(nightly.output("run", "code"), "4");
    assert_eq!(nightly.step("Promote").outcome, Outcome::Skipped);
    assert_eq!(nightly.step("Run the quick").outcome, Outcome::Skipped);
    let after: Vec<String> = baselines(&results)
        .values()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(
        before, after,
        "a failing nightly must not replace baselines"
    );
    assert_eq!(
        junit_failures(&nightly.run_dir("run").join("junit.xml"), "crashes workers"),
        ["abort process 0"]
    );
}

/// A team's own pipeline, `scenarios/pipeline.py`: it holds `EXTRA_MIB` MiB of host memory
/// (a bigger buffer, say) and each call sleeps `ms` times `SLOWER`.
fn pipeline_code(slower: f64, extra_mib: usize) -> String {
    format!(
        r#"import time

SLOWER = {slower:?}
EXTRA_MIB = {extra_mib}


class Nap:
    def setup(self, params, ctx):
        self.seconds = float(params["ms"]) / 1e3 * SLOWER
        # Multiplying writes every page, so the memory is resident, not only mapped.
        self.held = b"\xa5" * (EXTRA_MIB << 20)

    def call(self, ctx):
        with ctx.stage("nap"):
            time.sleep(self.seconds)
"#
    )
}

/// The pipeline in 6 processes for pull requests, 2 for the nightly's own `cpu` profile.
fn pipeline_suite() -> String {
    format!(
        r#"[suite]
name = "pipeline"
workload = "python"

[params]
entry = "pipeline.py:Nap"
ms = {NAP_MS:?}

[knobs]
device = "cpu"

[run]
warmup = 1
settle = false
repetitions = 3
processes = 6

[compare]
time_threshold = 0.25

[profiles.cpu]
run = {{ repetitions = 2, processes = 2 }}

[profiles.quick]
run = {{ repetitions = 3 }}

[[variant]]
name = "nap"
"#
    )
}

fn files(checkout: &[(String, String)]) -> Vec<(&str, &str)> {
    checkout
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect()
}

/// The regression lines (`regression SUITE/VARIANT METRIC …`) of a `compare.txt`.
fn regressions(compare: &str) -> Vec<String> {
    compare
        .lines()
        .filter(|l| l.starts_with("regression "))
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

/// 3b. The gate catches what a pull request's code does, with the configuration unchanged:
/// the team's Python pipeline gets twice as slow, or takes 64 MiB more host memory per call.
/// Both fail with exit 1 and name the metric; the unchanged code passes.
#[test]
fn a_pull_request_whose_pipeline_code_regresses_fails_the_gate() {
    let mut runner = Runner::new();
    let results = runner.results("results");
    let suite = pipeline_suite();
    let checkout = |code: &str| -> Vec<(String, String)> {
        vec![
            ("pipeline.toml".into(), suite.clone()),
            ("pipeline.py".into(), code.to_string()),
        ]
    };

    // A nightly whose quick step fails (here the manifest has no `quick` profile) fails too,
    // rather than leave pull requests without a current baseline.
    let without_quick: Vec<(String, String)> = checkout(&pipeline_code(1.0, 0))
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                t.replace("[profiles.quick]\nrun = { repetitions = 3 }\n\n", ""),
            )
        })
        .collect();
    assert_ne!(without_quick[0].1, suite);
    let nightly = runner.run(
        "nightly.yml",
        &Trigger::push_to_main(&results),
        &files(&without_quick),
    );
    assert_eq!(nightly.output("run", "code"), "0");
    nightly.assert_exit(2);
    assert!(!baselines(&results).contains_key(&("quick".into(), "pipeline".into())));

    let main = checkout(&pipeline_code(1.0, 0));
    let nightly = runner.run(
        "nightly.yml",
        &Trigger::push_to_main(&results),
        &files(&main),
    );
    nightly.assert_exit(0);
    assert!(
        baselines(&results).contains_key(&("quick".into(), "pipeline".into())),
        "{}",
        nightly.transcript()
    );

    // Each pull request's job, its compare.txt and the comment it left.
    let mut pull_request = |code: String| {
        let pr = runner.run(
            "pr.yml",
            &Trigger::pull_request(11, &results),
            &files(&checkout(&code)),
        );
        let compare = std::fs::read_to_string(pr.workspace.join("compare.txt")).unwrap();
        let comment = runner.comments(11).pop().unwrap();
        (pr, compare, comment)
    };

    let (pr, compare, _) = pull_request(pipeline_code(1.0, 0));
    pr.assert_exit(0);
    assert!(
        compare
            .lines()
            .any(|l| l.starts_with("unchanged") && l.contains("host_peak_rss_bytes")),
        "the same code keeps its host memory:\n{compare}"
    );

    let (pr, compare, comment) = pull_request(pipeline_code(1.0, 64));
    pr.assert_exit(1);
    assert_eq!(
        regressions(&compare),
        ["regression pipeline/nap host_peak_rss_bytes"],
        "{compare}\n{}",
        pr.transcript()
    );
    assert!(comment.contains("host_peak_rss_bytes"), "{comment}");

    let (pr, compare, _) = pull_request(pipeline_code(2.0, 0));
    pr.assert_exit(1);
    assert_eq!(
        regressions(&compare),
        ["regression pipeline/nap wall_ms"],
        "{compare}\n{}",
        pr.transcript()
    );
}

/// 4. The gate fails closed: a runner without main's baselines gives exit 5, not a pass.
#[test]
fn a_pull_request_on_a_runner_without_baselines_fails_closed() {
    let mut runner = Runner::new();
    let empty = runner.results("fresh-results");
    let nap = naps(NAP_MS);
    let pr = runner.run(
        "pr.yml",
        &Trigger::pull_request(9, &empty),
        &[("naps.toml", nap.as_str())],
    );
    pr.assert_exit(5);
    let gate = pr.step("Report and gate");
    assert!(gate.log.contains("no baseline for naps"), "{}", gate.log);
    assert_eq!(runner.comments(9).len(), 1, "the report is still posted");
}

/// Forks' pull requests must not run on the self-hosted runner: the job's guard skips them.
#[test]
fn a_pull_request_from_a_fork_is_not_run() {
    let mut runner = Runner::new();
    let results = runner.results("results");
    let mut fork = Trigger::pull_request(10, &results);
    fork.head_repo = "someone/claimbench".into();
    let job = runner.run("pr.yml", &fork, &[]);
    assert!(!job.ran);
    assert!(job.steps.is_empty());
    assert!(runner.gh_calls().is_empty());
}

#[test]
fn expressions_evaluate_as_on_github() {
    let mut scope = Scope::default();
    let eval = |scope: &Scope, text: &str| scope.eval(&Parser::parse(text)).render();
    assert_eq!(eval(&scope, "vars.R || '/srv/r'"), "/srv/r");
    scope.vars.insert("R".into(), "/tmp/r".into());
    assert_eq!(eval(&scope, "vars.R || '/srv/r'"), "/tmp/r");
    assert_eq!(eval(&scope, "steps.run.outputs.code || 1"), "1");
    scope.outputs.insert(
        "run".into(),
        BTreeMap::from([("code".to_string(), "4".to_string())]),
    );
    assert_eq!(eval(&scope, "steps.run.outputs.code || 1"), "4");
    scope.github.insert("ref", "refs/heads/main".into());
    let cond = "steps.run.outputs.code == '0' && github.ref == 'refs/heads/main'";
    assert_eq!(eval(&scope, cond), "false");
    assert_eq!(
        eval(&scope, "'It''s' != 'it''S'"),
        "false",
        "case-insensitive"
    );
    // Without a status check an `if:` holds only while the job has not failed.
    let if_yaml = |s: &str| Yaml::String(s.into());
    assert!(scope.condition(&if_yaml("steps.run.outputs.code != '0'")));
    scope.job_failed = true;
    assert!(!scope.condition(&if_yaml("steps.run.outputs.code != '0'")));
    assert!(scope.condition(&if_yaml("always() && steps.run.outputs.code != ''")));
}

#[test]
#[should_panic(expected = "unsupported context `github.sha`")]
fn an_expression_the_executor_does_not_know_fails_the_test() {
    Scope::default().substitute("echo ${{ github.sha }}");
}

#[test]
#[should_panic(expected = "unsupported function `fromJSON`")]
fn a_function_the_executor_does_not_know_fails_the_test_even_when_skipped() {
    Scope::default().condition(&Yaml::String(
        "false && fromJSON(steps.run.outputs.code)".into(),
    ));
}
