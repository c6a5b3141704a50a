//! The parent side of a run: launches one worker process per job (variant × process) in the
//! plan's order, streams its messages into the run record, enforces the variant's timeout, and
//! keeps everything recorded so far when a worker fails or the user presses Ctrl-C.
//!
//! Workers run in their own process group: a terminal's Ctrl-C reaches only the parent, which
//! then kills the current worker's group, marks it interrupted and stops scheduling. SIGTERM
//! and SIGHUP (CI cancellation, `timeout`, a closed terminal) are handled the same way. Each
//! worker also asks the kernel to kill it when the parent dies (`PR_SET_PDEATHSIG`), so even
//! a parent killed with SIGKILL leaves no worker behind.

pub mod merge;
pub mod python;
pub mod shard;
pub mod slots;

use crate::plan::{Job, Plan};
use crate::stats::{check_nested, NestedSample, StopDecision, StopReason, StoppingRule};
use crate::store::{AdaptiveRecord, AdaptiveVariant, ProcessRecord, RunDir, SampleRow};
use crate::worker::protocol::{Message, Status, WorkerJob, PROTOCOL_VERSION};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The signal that asked the run to stop (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The signals that stop a run: Ctrl-C, termination (CI cancellation, `docker stop`,
/// `timeout`) and hang-up (the terminal went away).
const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_stop_signal(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe. The first signal wins.
    let _ = STOP_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP: each stops scheduling, and the current
/// worker is killed at the runner's next check (within 100 ms).
pub fn install_interrupt_handler() -> Result<()> {
    for signal in STOP_SIGNALS {
        // SAFETY: a zeroed sigaction with a handler that only stores to an atomic.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if installed != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("installing the handler for {}", signal_name(signal)));
        }
    }
    Ok(())
}

pub fn interrupted() -> bool {
    STOP_SIGNAL.load(Ordering::SeqCst) != 0
}

/// The signal that stopped the run, if one did.
pub fn stop_signal() -> Option<i32> {
    Some(STOP_SIGNAL.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}

/// Makes the worker about to be executed die with SIGKILL when the parent dies. (The kernel
/// sends it when the spawning *thread* ends: workers are spawned from the main thread.)
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (prctl, getppid, kill).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody would send the signal.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// How workers are launched.
pub struct Launcher {
    /// The executable that understands `worker` (normally the running binary).
    pub exe: PathBuf,
    /// Lines of a worker's stderr kept in the record when it fails.
    pub stderr_tail_lines: usize,
    /// The GPUs workers run on (`--gpus`), and how jobs are placed on them.
    pub slots: slots::Slots,
}

/// Runs `jobs` (the plan's, or a shard's part of them) of `plan` (already added to `run` as
/// suite `suite_index`), on several GPUs at once with `--gpus`; then, if the plan has an
/// adaptive budget and the run is not a shard, extra processes for variants whose median is
/// not yet precise (a shard sees only some of a variant's processes, so it adds none).
pub fn run_plan(
    run: &mut RunDir,
    suite_index: usize,
    jobs: &[Job],
    launcher: &Launcher,
    progress: &ProgressBar,
) -> Result<()> {
    let plan = run.record.suites[suite_index].plan.clone();
    if launcher.slots.gpus.len() > 1 {
        slots::run_parallel(run, suite_index, &plan, jobs, launcher, progress)?;
    } else {
        for job in jobs {
            if interrupted() {
                return Ok(());
            }
            execute(run, suite_index, &plan, job, launcher, progress)?;
        }
    }
    if interrupted() {
        return Ok(());
    }
    if plan.adaptive_budget_s.is_some() && run.record.shard.is_some() {
        eprintln!(
            "note: {}: adaptive replication is skipped in a shard (it needs every process of a variant); the shards run each variant's minimum processes",
            plan.suite
        );
    } else if let Some(budget_s) = plan.adaptive_budget_s {
        let adaptive = add_processes(run, suite_index, &plan, budget_s, launcher, progress)?;
        run.record.suites[suite_index].adaptive = Some(adaptive);
        run.save()?;
    }
    Ok(())
}

/// Runs one job and stores its record and samples.
fn execute(
    run: &mut RunDir,
    suite_index: usize,
    plan: &Plan,
    job: &Job,
    launcher: &Launcher,
    progress: &ProgressBar,
) -> Result<f64> {
    let variant = &plan.variants[job.variant];
    progress.set_message(format!(
        "{} · {} · process {}",
        plan.suite,
        variant.name,
        job.process + 1
    ));
    let gpu = launcher.slots.gpus.first().map(String::as_str);
    let (record, samples) = run_job(&run.path, plan, job, launcher, gpu, progress)?;
    store_result(run, suite_index, plan, job, record, samples, progress)
}

/// Prints one finished worker's line and stores its record and samples; returns its seconds.
fn store_result(
    run: &mut RunDir,
    suite_index: usize,
    plan: &Plan,
    job: &Job,
    record: ProcessRecord,
    samples: Vec<SampleRow>,
    progress: &ProgressBar,
) -> Result<f64> {
    let variant = &plan.variants[job.variant];
    let gpu = record
        .placement
        .as_ref()
        .and_then(|p| p.gpu.as_deref())
        .map(|g| format!(" gpu {g}"))
        .unwrap_or_default();
    let line = format!(
        "{:<28} {:<40} p{:<2}{gpu} {:<12} {} samples{}",
        plan.suite,
        variant.name,
        job.process,
        record.status.as_str(),
        record.samples,
        record
            .message
            .as_deref()
            .map(|m| format!(" — {}", first_line(m)))
            .unwrap_or_default()
    );
    let line = crate::text::fit(&line);
    if progress.is_hidden() {
        eprintln!("{line}");
    } else {
        progress.println(line);
    }
    if let Some(h) = &record.hello {
        run.record.fingerprint.complete_from(h);
    }
    let seconds = record.duration_ms / 1e3;
    run.samples.extend(samples);
    run.record.suites[suite_index].processes.push(record);
    run.save()?;
    Ok(seconds)
}

/// Measured wall times of one variant, grouped by process (successful processes only).
fn nested_wall_times(run: &RunDir, suite: &str, variant: &str) -> Option<NestedSample> {
    let mut by_process: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for s in run
        .samples
        .iter()
        .filter(|s| s.suite == suite && s.variant == variant && !s.warmup)
    {
        by_process
            .entry(s.process)
            .or_default()
            .push(s.measurement.wall_ms);
    }
    NestedSample::new(by_process.into_values().collect()).ok()
}

/// Adaptive replication: round-robin over the variants that have a precision target, adding
/// one process at a time to each variant whose process-level interval (two-stage bootstrap,
/// see `stats::stopping`) is still wider than its target, until every variant is precise or
/// at `processes_max`, or the budget of worker wall time is spent.
fn add_processes(
    run: &mut RunDir,
    suite_index: usize,
    plan: &Plan,
    budget_s: f64,
    launcher: &Launcher,
    progress: &ProgressBar,
) -> Result<AdaptiveRecord> {
    let mut processes: Vec<u32> = plan.variants.iter().map(|v| v.processes).collect();
    let mut spent_s = 0.0;
    let mut budget_exhausted = false;
    let decision = |run: &RunDir, i: usize| -> Option<StopDecision> {
        let v = &plan.variants[i];
        let rule = StoppingRule::new(v.target_rel_ci?, v.processes_max as usize)
            .ok()?
            // Never stop on precision below the replication a time verdict needs.
            .with_min_units((v.processes as usize).max(crate::stats::MIN_PROCESSES_FOR_GATE));
        Some(check_nested(
            &nested_wall_times(run, &plan.suite, &v.name)?,
            &rule,
        ))
    };
    'rounds: loop {
        let needy: Vec<usize> = (0..plan.variants.len())
            .filter(|&i| processes[i] < plan.variants[i].processes_max)
            .filter(|&i| decision(run, i).is_some_and(|d| !d.should_stop()))
            .collect();
        if needy.is_empty() {
            break;
        }
        for i in needy {
            if interrupted() {
                break 'rounds;
            }
            if spent_s >= budget_s {
                budget_exhausted = true;
                break 'rounds;
            }
            progress.inc_length(u64::from(
                plan.variants[i].warmup + plan.variants[i].repetitions,
            ));
            let job = Job {
                variant: i,
                process: processes[i],
            };
            spent_s += execute(run, suite_index, plan, &job, launcher, progress)?;
            processes[i] += 1;
        }
    }
    let variants = plan
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let d = decision(run, i);
            let reason = match d {
                None => "no precision target".to_string(),
                Some(d) if d.reason == StopReason::Precise => "precise".into(),
                Some(_) if processes[i] >= v.processes_max => "processes_max reached".into(),
                Some(_) if budget_exhausted => "budget spent".into(),
                Some(_) => "stopped".into(),
            };
            AdaptiveVariant {
                variant: v.name.clone(),
                processes: processes[i],
                relative_ci: d.map(|d| d.relative_width),
                reason,
            }
        })
        .collect();
    Ok(AdaptiveRecord {
        budget_s,
        spent_s,
        budget_exhausted,
        variants,
    })
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or("");
    match line.char_indices().nth(160) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

enum Event {
    Line(String),
    Closed,
}

/// Launches one worker (pinned to `gpu` when given: `CUDA_VISIBLE_DEVICES`, over any the
/// variant's `env` sets) and follows it to the end; never fails for worker problems, only for
/// I/O on the run directory `run_path`.
fn run_job(
    run_path: &Path,
    plan: &Plan,
    job: &Job,
    launcher: &Launcher,
    gpu: Option<&str>,
    progress: &ProgressBar,
) -> Result<(ProcessRecord, Vec<SampleRow>)> {
    let variant = &plan.variants[job.variant];
    let log_file = RunDir::log_file(&plan.suite, &variant.name, job.process);
    let mut record = ProcessRecord {
        variant: variant.name.clone(),
        process: job.process,
        status: Status::Crashed,
        message: None,
        oom: None,
        exit_code: None,
        signal: None,
        duration_ms: 0.0,
        samples: 0,
        hello: None,
        warmup_calls: None,
        warmup_settled: None,
        stop: None,
        warnings: Vec::new(),
        log_file: log_file.clone(),
        placement: Some(crate::store::Placement {
            host: crate::store::host_name(),
            // Pinned by `--gpus`, else what the parent got (a scheduler's grant, say).
            gpu: gpu
                .map(str::to_string)
                .or_else(|| std::env::var("CUDA_VISIBLE_DEVICES").ok()),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }),
    };
    let mut samples = Vec::new();
    let mut calls = JobProgress::new(
        progress,
        u64::from(variant.warmup) + u64::from(variant.repetitions),
    );
    let started = Instant::now();
    let request = WorkerJob {
        protocol: PROTOCOL_VERSION,
        suite: plan.suite.clone(),
        process: job.process,
        variant: variant.clone(),
    };
    let is_python =
        crate::workloads::catalog::workload(&variant.workload).is_some_and(|w| w.is_python());
    let mut command = if is_python {
        match python::command(&plan.manifest_path) {
            Ok(command) => command,
            Err(e) => {
                record.status = Status::SpawnFailed;
                record.message = Some(e);
                return Ok((record, samples));
            }
        }
    } else {
        let mut command = Command::new(&launcher.exe);
        command.arg("worker");
        command
    };
    command
        .envs(&variant.knobs.env)
        .envs(gpu.map(|g| ("CUDA_VISIBLE_DEVICES", g)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_parent(&mut command);
    // The log exists before the worker does: a run that cannot write it starts no worker that
    // would then run unobserved.
    let mut log = match std::fs::File::create(run_path.join(&log_file)) {
        Ok(log) => log,
        Err(e) => {
            record.status = Status::SpawnFailed;
            record.message = Some(format!("cannot create the worker's log {log_file}: {e}"));
            return Ok((record, samples));
        }
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            record.status = Status::SpawnFailed;
            let program = command.get_program().to_string_lossy().into_owned();
            let hint = if is_python {
                " (set CLAIMBENCH_PYTHON to a Python with torch)"
            } else {
                ""
            };
            record.message = Some(format!("cannot start {program}: {e}{hint}"));
            return Ok((record, samples));
        }
    };
    let pid = child.id() as i32;
    if let Some(mut stdin) = child.stdin.take() {
        // A worker that dies before reading its job shows up as a crash below.
        let _ = serde_json::to_writer(&mut stdin, &request);
        let _ = stdin.write_all(b"\n");
    }
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().context("worker stdout")?;
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(Event::Line(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Closed);
    });
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr = child.stderr.take().context("worker stderr")?;
    let err_thread = {
        let (tail, keep) = (tail.clone(), launcher.stderr_tail_lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                let _ = writeln!(log, "{line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == keep {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })
    };

    let deadline = started + Duration::from_millis(variant.timeout_ms);
    let mut outcome = None;
    let mut forced: Option<Status> = None;
    loop {
        if interrupted() {
            forced = Some(Status::Interrupted);
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            forced = Some(Status::Timeout);
            break;
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
            Ok(Event::Line(line)) => match serde_json::from_str::<Message>(&line) {
                Ok(Message::Hello(h)) => record.hello = Some((*h).into()),
                Ok(Message::Sample(s)) => {
                    calls.call();
                    record.samples += u32::from(!s.warmup);
                    samples.push(SampleRow {
                        suite: plan.suite.clone(),
                        variant: variant.name.clone(),
                        process: job.process,
                        call: s.call,
                        warmup: s.warmup,
                        flags: s.flags,
                        measurement: s.measurement,
                    });
                }
                Ok(Message::Log { message, .. }) => record.warnings.push(message),
                Ok(Message::WarmedUp { calls, settled }) => {
                    record.warmup_calls = Some(calls);
                    record.warmup_settled = Some(settled);
                }
                Ok(Message::Measured(stop)) => record.stop = Some(stop.into()),
                Ok(Message::Outcome(o)) => outcome = Some(o),
                // Stray stdout from a library: keep it, it may explain a failure.
                Err(_) => record.warnings.push(format!("stdout: {line}")),
            },
            Ok(Event::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    if forced.is_some() {
        // SAFETY: signalling the worker's own process group (created with process_group(0)).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let status = child.wait().context("waiting for a worker")?;
    let _ = out_thread.join();
    let _ = err_thread.join();
    record.duration_ms = started.elapsed().as_secs_f64() * 1e3;
    record.exit_code = status.code();
    record.signal = status.signal();
    let stderr_tail = || {
        let t = tail.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    };
    match (forced, outcome) {
        (Some(Status::Timeout), _) => {
            record.status = Status::Timeout;
            record.message = Some(format!(
                "killed after exceeding the {:.0} s timeout ({} measured calls done)",
                variant.timeout_ms as f64 / 1e3,
                record.samples
            ));
        }
        (Some(other), _) => {
            record.status = other;
            record.message = Some(match stop_signal() {
                Some(libc::SIGINT) | None => "stopped by Ctrl-C".into(),
                Some(signal) => format!("stopped by {}", signal_name(signal)),
            });
        }
        (None, Some(o)) => {
            record.status = o.status;
            record.message = o.message;
            record.oom = o.oom.map(Into::into);
        }
        (None, None) => {
            record.status = Status::Crashed;
            let how = match (status.code(), status.signal()) {
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(code), _) => format!("exited with status {code}"),
                _ => "ended".into(),
            };
            let tail = stderr_tail();
            record.message = Some(if tail.is_empty() {
                format!("worker {how} without reporting an outcome")
            } else {
                format!("worker {how} without reporting an outcome; stderr ends with:\n{tail}")
            });
        }
    }
    Ok((record, samples))
}

/// A progress bar over measured and warm-up calls of all jobs, with ETA; hidden when stderr is
/// not a terminal (CI logs get one line per finished worker instead).
pub fn progress_bar(total_calls: u64, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total_calls), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} calls, ETA {eta} · {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Keeps the bar's length equal to the calls that really run. A job is counted in advance at
/// `warmup + repetitions` calls; a settling warm-up and precision stopping may run more (each
/// extra call lengthens the bar as it arrives), a failed or stopped worker fewer (the remainder
/// is taken off when the job ends), so the count never passes its total and the ETA, which
/// indicatif derives from the remaining count, does not sit at zero while work remains.
struct JobProgress<'a> {
    bar: &'a ProgressBar,
    planned: u64,
    seen: u64,
}

impl<'a> JobProgress<'a> {
    fn new(bar: &'a ProgressBar, planned: u64) -> Self {
        JobProgress {
            bar,
            planned,
            seen: 0,
        }
    }

    fn call(&mut self) {
        self.seen += 1;
        if self.seen > self.planned {
            self.bar.inc_length(1);
        }
        self.bar.inc(1);
    }
}

impl Drop for JobProgress<'_> {
    fn drop(&mut self) {
        let unused = self.planned.saturating_sub(self.seen);
        if let (true, Some(len)) = (unused > 0, self.bar.length()) {
            self.bar.set_length(len.saturating_sub(unused));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_the_calls_that_really_run() {
        // Two jobs planned at 4 calls each: one runs 6 (settling, precision), one fails after 1.
        let bar = progress_bar(8, true);
        {
            let mut job = JobProgress::new(&bar, 4);
            for _ in 0..6 {
                job.call();
                assert!(bar.position() <= bar.length().unwrap());
            }
        }
        assert_eq!((bar.position(), bar.length()), (6, Some(10)));
        {
            let mut job = JobProgress::new(&bar, 4);
            job.call();
        }
        assert_eq!(
            (bar.position(), bar.length()),
            (7, Some(7)),
            "complete at the end"
        );
        // A worker that never started takes its calls off too.
        let bar = progress_bar(3, true);
        drop(JobProgress::new(&bar, 3));
        assert_eq!(bar.length(), Some(0));
    }
}
