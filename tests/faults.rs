//! Failing workers are recorded with their outcome and the suite goes on.

mod common;

use common::{fault_manifest, Sandbox};
use std::time::{Duration, Instant};

fn process<'a>(run: &'a serde_json::Value, variant: &str) -> &'a serde_json::Value {
    run["suites"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["variant"] == variant)
        .unwrap_or_else(|| panic!("no process record for {variant}: {run}"))
}

#[test]
fn crashes_errors_and_timeouts_are_recorded_and_the_suite_continues() {
    let sb = Sandbox::new();
    // A timeout bounds worker start-up too: both are generous, so that a loaded machine cannot
    // turn the panic or exit variants into timeouts, or cut `hang` off before its first call.
    let text = fault_manifest(
        "faults",
        "60s",
        &[
            r#"name = "healthy-first"
params = { kind = "none" }"#,
            r#"name = "abort"
params = { kind = "abort", after_calls = 1 }"#,
            r#"name = "panic"
params = { kind = "panic" }"#,
            r#"name = "exit"
params = { kind = "exit", exit_code = 7 }"#,
            r#"name = "hang"
params = { kind = "hang", after_calls = 1 }
run = { timeout = "20s" }"#,
            r#"name = "host-oom"
params = { kind = "alloc", alloc_gib = 100000.0 }"#,
            r#"name = "healthy-last"
params = { kind = "none" }"#,
        ],
    );
    let manifest = sb.manifest("faults.toml", &text);
    let started = Instant::now();
    let out = sb
        .cmd()
        .args(["run", "--quiet", &manifest])
        .assert()
        .code(4)
        .get_output()
        .clone();
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the hang was not cut off by its timeout"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("worker(s) failed"), "{stderr}");

    let run = sb.run_json();
    let abort = process(&run, "abort");
    assert_eq!(abort["status"], "crashed");
    assert_eq!(abort["signal"], libc_sigabrt());
    assert_eq!(
        abort["samples"], 1,
        "the call before the abort is kept: {abort}"
    );

    let panic = process(&run, "panic");
    assert_eq!(panic["status"], "error");
    assert!(
        panic["message"]
            .as_str()
            .unwrap()
            .contains("injected panic"),
        "{panic}"
    );

    let exit = process(&run, "exit");
    assert_eq!(exit["status"], "crashed");
    assert_eq!(exit["exit_code"], 7);

    let hang = process(&run, "hang");
    assert_eq!(hang["status"], "timeout");
    assert_eq!(hang["samples"], 1);
    assert!(
        hang["message"].as_str().unwrap().contains("timeout"),
        "{hang}"
    );

    let oom = process(&run, "host-oom");
    assert_eq!(oom["status"], "oom", "{oom}");
    assert_eq!(
        oom["oom"]["requested_bytes"].as_u64(),
        Some(100000 * (1u64 << 30))
    );

    for healthy in ["healthy-first", "healthy-last"] {
        assert_eq!(process(&run, healthy)["status"], "ok");
    }
    // Samples of the variants that ran survive in the CSV, failures included.
    let samples = sb.samples();
    let measured = |v: &str| {
        samples
            .iter()
            .filter(|s| s["variant"] == v && s["warmup"] == "false")
            .count()
    };
    assert_eq!(measured("healthy-last"), 2);
    assert_eq!(measured("abort"), 1);
    assert_eq!(measured("panic"), 0);

    // The JUnit file fails exactly the broken workers, and `report` exits as `run` did.
    let xml = std::fs::read_to_string(sb.run_dir().join("junit.xml")).unwrap();
    let junit = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).unwrap();
    let workers = junit
        .suites
        .iter()
        .find(|s| s.name == "faults workers")
        .unwrap();
    let mut failed: Vec<&str> = workers
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .map(|c| c.original_name.as_str())
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        [
            "abort process 0",
            "exit process 0",
            "hang process 0",
            "panic process 0"
        ]
    );
    let run_dir = sb.run_dir();
    sb.cmd()
        .args(["report", run_dir.to_str().unwrap(), "--out", "again"])
        .assert()
        .code(4);
}

fn libc_sigabrt() -> i64 {
    6
}

#[test]
fn ctrl_c_keeps_what_finished_and_leaves_valid_files() {
    let sb = Sandbox::new();
    let text = fault_manifest(
        "interrupt",
        "5m",
        &[
            r#"name = "done"
params = { kind = "none" }"#,
            r#"name = "stuck"
params = { kind = "hang" }"#,
            r#"name = "never"
params = { kind = "none" }"#,
        ],
    );
    let manifest = sb.manifest("interrupt.toml", &text);
    let exe = assert_cmd::cargo::cargo_bin("claimbench");
    let mut child = std::process::Command::new(exe)
        .current_dir(sb.path())
        .args(["run", "--quiet", &manifest])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first worker's record is on disk, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the first worker never finished");
        let done = std::fs::read_dir(sb.path().join("results/runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("run.json")).ok())
            .is_some_and(|t| t.contains("\"variant\": \"done\""));
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));

    let run = sb.run_json();
    assert_eq!(run["interrupted"], true);
    assert_eq!(process(&run, "done")["status"], "ok");
    assert_eq!(process(&run, "stuck")["status"], "interrupted");
    let ran: Vec<_> = run["suites"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["variant"].clone())
        .collect();
    assert!(
        !ran.contains(&serde_json::json!("never")),
        "scheduling went on after Ctrl-C: {ran:?}"
    );
    let samples = sb.samples();
    assert_eq!(
        samples
            .iter()
            .filter(|s| s["variant"] == "done" && s["warmup"] == "false")
            .count(),
        2
    );
}

/// The parent pid of a live process, read from /proc (`None` once it is gone or a zombie).
fn live_parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.next()?.parse().ok()
}

/// A worker found by [`start_hanging_run`]; killed on drop if a test left it alive.
struct Worker(i32);

impl Drop for Worker {
    fn drop(&mut self) {
        if live_parent(self.0).is_some() {
            // SAFETY: the pid of a worker this test started through claimbench.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// Starts `claimbench run` on a suite whose second worker hangs, and returns once that worker
/// is running: the parent (the caller waits for it) and the hanging worker.
#[allow(clippy::zombie_processes)]
fn start_hanging_run(sb: &Sandbox) -> (std::process::Child, Worker) {
    let variants = [("done", "none"), ("stuck", "hang"), ("never", "none")]
        .map(|(name, kind)| format!("name = \"{name}\"\nparams = {{ kind = \"{kind}\" }}"));
    let variants: Vec<&str> = variants.iter().map(String::as_str).collect();
    let manifest = sb.manifest("hangs.toml", &fault_manifest("hangs", "5m", &variants));
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("claimbench"));
    command
        .current_dir(sb.path())
        .args(["run", "--quiet", &manifest]);
    command.stdout(std::process::Stdio::null());
    command.stderr(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let parent = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the hanging worker never started");
        }
        let done = std::fs::read_dir(sb.path().join("results/runs"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("run.json")).ok())
            .is_some_and(|t| t.contains("\"variant\": \"done\""));
        let worker = done
            .then(|| {
                std::fs::read_dir("/proc")
                    .ok()?
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                    .find(|&pid| live_parent(pid) == Some(parent))
            })
            .flatten();
        if let Some(pid) = worker {
            // Let the worker reach its hang.
            std::thread::sleep(Duration::from_millis(500));
            return (child, Worker(pid));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits up to `limit` for `pid` to be gone.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if live_parent(pid).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits for the parent to end and returns its exit code.
fn exit_code_within(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the parent did not end within {limit:?}");
}

/// SIGTERM or SIGHUP: like Ctrl-C, with the signal's own exit code, no worker left behind, a
/// run marked interrupted that `baseline save` refuses.
fn stop_signal_is_handled_like_ctrl_c(signal: i32, code: i32, name: &str) {
    let sb = Sandbox::new();
    let (mut child, worker) = start_hanging_run(&sb);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    assert!(
        gone_within(worker.0, Duration::from_secs(5)),
        "the worker survived {name} of its parent"
    );
    assert_eq!(
        exit_code_within(&mut child, Duration::from_secs(30)),
        Some(code)
    );

    let run = sb.run_json();
    assert_eq!(run["interrupted"], true, "{run}");
    assert_eq!(run["interrupted_by"], name, "{run}");
    assert!(run["finished_at"].is_string(), "{run}");
    assert_eq!(process(&run, "done")["status"], "ok");
    let stuck = process(&run, "stuck");
    assert_eq!(stuck["status"], "interrupted");
    assert!(stuck["message"].as_str().unwrap().contains(name), "{stuck}");
    assert!(
        !run["suites"][0]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["variant"] == "never"),
        "scheduling went on after {name}"
    );
    assert!(
        sb.run_dir().join("report.md").is_file(),
        "no report written"
    );
    let dir = sb.run_dir().to_string_lossy().into_owned();
    sb.cmd()
        .args(["baseline", "save", &dir])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!(
            "incomplete, it was interrupted by {name}"
        )));
}

#[test]
fn sigterm_is_handled_like_ctrl_c_and_leaves_no_worker() {
    stop_signal_is_handled_like_ctrl_c(libc::SIGTERM, 143, "SIGTERM");
}

#[test]
fn sighup_is_handled_like_ctrl_c_and_leaves_no_worker() {
    stop_signal_is_handled_like_ctrl_c(libc::SIGHUP, 129, "SIGHUP");
}

#[test]
fn kill_9_of_the_parent_leaves_no_worker_and_an_incomplete_run() {
    let sb = Sandbox::new();
    let (mut child, worker) = start_hanging_run(&sb);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        gone_within(worker.0, Duration::from_secs(5)),
        "the worker survived kill -9 of its parent"
    );
    let run = sb.run_json();
    assert!(run["finished_at"].is_null(), "{run}");
    let dir = sb.run_dir().to_string_lossy().into_owned();
    sb.cmd()
        .args(["report", &dir])
        .assert()
        .success()
        .stdout(predicates::str::contains("incomplete run: cut short"));
    let markdown = std::fs::read_to_string(sb.run_dir().join("report.md")).unwrap();
    assert!(markdown.contains("**Incomplete**"), "{markdown}");
    sb.cmd()
        .args(["baseline", "save", &dir])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("it never finished"));
    assert!(!sb.path().join("results/baselines").exists());
}
