use super::*;

fn row(run: usize, process: u32, value: f64) -> HistoryRow {
    HistoryRow {
        run_id: format!("run-{run:02}"),
        commit: format!("c{run}"),
        time: format!("2026-12-{:02}T02:00:00Z", run + 1),
        process,
        value,
    }
}

#[test]
fn appends_keep_earlier_rows_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/wall_ms.csv");
    assert!(append(&path, &[row(1, 0, 10.0), row(1, 1, 12.0)])
        .unwrap()
        .is_empty());
    append(&path, &[row(2, 0, 11.5)]).unwrap();
    // The same run again adds nothing.
    append(&path, &[row(2, 0, 11.5)]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("run_id,commit,time,process,value\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    let h = read(&path).unwrap();
    assert!(h.warnings.is_empty());
    assert_eq!(h.rows, [row(1, 0, 10.0), row(1, 1, 12.0), row(2, 0, 11.5)]);
}

#[test]
fn a_half_written_last_line_is_ignored_then_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wall_ms.csv");
    append(&path, &[row(1, 0, 10.0)]).unwrap();
    // A crash in the middle of the next append.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"run-02,c2,2026-12-03T0").unwrap();
    drop(f);
    let h = read(&path).unwrap();
    assert_eq!(h.rows, [row(1, 0, 10.0)]);
    assert_eq!(h.warnings.len(), 1);
    assert!(
        h.warnings[0].contains("wall_ms.csv: line 3"),
        "{:?}",
        h.warnings
    );
    assert!(h.warnings[0].contains("half-written"));
    let warnings = append(&path, &[row(2, 0, 11.0)]).unwrap();
    assert!(warnings[0].contains("line 3"), "{warnings:?}");
    let h = read(&path).unwrap();
    assert!(h.warnings.is_empty());
    assert_eq!(h.rows, [row(1, 0, 10.0), row(2, 0, 11.0)]);
}

#[test]
fn bad_rows_are_errors_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wall_ms.csv");
    std::fs::write(
        &path,
        format!("{HEADER}\nrun-1,c,t,0,1.5\nrun-2,c,t,0,fast\n"),
    )
    .unwrap();
    let err = format!("{:#}", read(&path).unwrap_err());
    assert!(
        err.contains("wall_ms.csv: line 3: column value: `fast`"),
        "{err}"
    );
    std::fs::write(&path, "something else\n").unwrap();
    let err = format!("{:#}", read(&path).unwrap_err());
    assert!(err.contains("line 1: expected the header"), "{err}");
    std::fs::write(&path, format!("{HEADER}\nrun-1,c,t,zero,1.5\n")).unwrap();
    let err = format!("{:#}", read(&path).unwrap_err());
    assert!(err.contains("line 2: column process"), "{err}");
}

#[test]
fn per_run_points_are_medians_of_process_medians_in_append_order() {
    let rows = [
        row(2, 0, 10.0),
        row(2, 1, 14.0),
        row(2, 2, 11.0),
        row(1, 0, 20.0),
        row(3, 0, 30.0),
    ];
    let points = per_run(&rows, None);
    let shown: Vec<(&str, f64, usize)> = points
        .iter()
        .map(|p| (p.run_id.as_str(), p.value, p.processes))
        .collect();
    assert_eq!(
        shown,
        [
            ("run-02", 11.0, 3),
            ("run-01", 20.0, 1),
            ("run-03", 30.0, 1)
        ]
    );
    assert_eq!(per_run(&rows, Some("run-01")).len(), 2);
    assert_eq!(per_run(&rows, Some("not there")).len(), 3);
}

fn series() -> SeriesId {
    SeriesId {
        key: "cpu/quick".into(),
        suite: "naps".into(),
        variant: "nap".into(),
        metric: "wall_ms".into(),
    }
}

/// One point per run: `before` for `n_before` runs, then `after`, with ±1 % wiggle.
fn points(n_before: usize, before: f64, n_after: usize, after: f64) -> Vec<RunPoint> {
    (0..n_before + n_after)
        .map(|i| {
            let level = if i < n_before { before } else { after };
            let wiggle = [1.0, 1.01, 0.99, 1.005, 0.995][i % 5];
            per_run(&[row(i, 0, level * wiggle)], None).remove(0)
        })
        .collect()
}

#[test]
fn a_persistent_slowdown_names_the_runs_and_commits_around_it() {
    let found = shifts(
        &series(),
        &points(6, 100.0, 5, 112.0),
        &ChangePointConfig::default(),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let s = &found[0];
    assert_eq!(
        (s.last_before.as_str(), s.first_after.as_str()),
        ("run-05", "run-06")
    );
    assert_eq!(
        (s.commit_before.as_str(), s.commit_after.as_str()),
        ("c5", "c6")
    );
    assert!((s.relative_change - 0.12).abs() < 0.01, "{s:?}");
    assert_eq!(s.runs_since, 5);
    assert!(s.recent_worsening);
}

#[test]
fn improvements_and_old_shifts_do_not_count_as_recent_worsening() {
    let config = ChangePointConfig::default();
    let faster = shifts(&series(), &points(6, 100.0, 5, 85.0), &config);
    assert_eq!(faster.len(), 1);
    assert!(!faster[0].recent_worsening);
    let old = shifts(
        &series(),
        &points(5, 100.0, RECENT_RUNS + 1, 112.0),
        &config,
    );
    assert_eq!(old.len(), 1);
    assert!(!old[0].recent_worsening, "{old:?}");
    // Below the minimum magnitude: nothing to report.
    assert!(shifts(&series(), &points(6, 100.0, 6, 103.0), &config).is_empty());
}
