//! Run records stay readable: `tests/data/run-1.0/` was written by claimbench before the record
//! had types of its own (sleep and fault workloads on CPU: ok, out-of-memory and crashed
//! workers, precision-driven stopping), and must load and write back the same JSON.

mod common;

use claimbench::store::{RunRecord, StoredRun};
use claimbench::worker::protocol::Status;
use common::Sandbox;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run-1.0")
}

#[test]
fn a_format_1_0_record_loads_and_writes_back_the_same_json() {
    let text = std::fs::read_to_string(fixture().join("run.json")).unwrap();
    let record = RunRecord::load(&fixture()).unwrap();
    let written = String::from_utf8(serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    // Line by line; serde_json's reader may round a float's 17th digit differently from the
    // writer (412.44723700000003 reads back as 412.447237), in the old code as in the new.
    assert_eq!(written.lines().count(), text.lines().count());
    for (n, (was, now)) in text.lines().zip(written.lines()).enumerate() {
        if was == now {
            continue;
        }
        let number = |line: &str| -> Option<(String, f64)> {
            let (key, value) = line.rsplit_once(": ")?;
            let value = value.trim_end_matches(',').parse().ok()?;
            Some((key.to_string(), value))
        };
        match (number(was), number(now)) {
            (Some((k1, a)), Some((k2, b))) if k1 == k2 && ((a - b) / a).abs() < 1e-15 => {}
            _ => panic!("run.json line {} changed: {was:?} → {now:?}", n + 1),
        }
    }
    assert_eq!(
        serde_json::to_value(&record).unwrap(),
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    );

    let processes: Vec<_> = record.suites.iter().flat_map(|s| &s.processes).collect();
    for status in [Status::Ok, Status::Oom, Status::Crashed] {
        assert!(
            processes.iter().any(|p| p.status == status),
            "the fixture lacks a {} worker",
            status.as_str()
        );
    }
    assert!(processes.iter().any(|p| p.oom.is_some()));
    assert!(processes.iter().any(|p| p.stop.is_some()));
    assert!(processes
        .iter()
        .all(|p| p.status == Status::Crashed || p.hello.is_some()));
    let run = StoredRun::load(&fixture()).unwrap();
    assert!(!run.samples.is_empty());
}

#[test]
fn a_format_1_0_record_is_reported() {
    let sb = Sandbox::new();
    let run = sb.path().join("results/runs/fixture");
    std::fs::create_dir_all(&run).unwrap();
    for file in ["run.json", "samples.csv"] {
        std::fs::copy(fixture().join(file), run.join(file)).unwrap();
    }
    // The fixture holds a crashed worker: `report` exits 4, as its `run` did.
    sb.cmd()
        .args(["report", "--format", "json"])
        .assert()
        .code(4);
    assert!(run.join("report.html").is_file());
}
