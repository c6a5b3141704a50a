//! `claimbench history`: the metric histories of a results folder, one line per series with
//! its change points, or every run's value with `--runs`.

use super::args::ShiftArgs;
use super::{ExpectedError, Outcome};
use crate::exit_code;
use crate::store::history::{self, Shift};
use crate::store::Results;
use crate::text::printable;

/// Lists the series whose `<stack>/<profile> <suite>/<variant> <metric>` contains `filter`
/// (all without one). A history file that does not parse ends the command (exit 2, naming
/// file and line); a half-written last line is ignored with a warning.
pub fn history(results: &Results, filter: Option<&str>, runs: bool, shift: &ShiftArgs) -> Outcome {
    let series = results.history_series();
    let config = shift.config();
    let mut all_shifts: Vec<Shift> = Vec::new();
    let mut shown = 0;
    for (id, path) in series {
        let name = format!("{} {}/{} {}", id.key, id.suite, id.variant, id.metric);
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let h = history::read(&path).map_err(ExpectedError::BadHistory)?;
        for w in &h.warnings {
            eprintln!("warning: {}", printable(w));
        }
        let points = history::per_run(&h.rows, None);
        let shifts = history::shifts(&id, &points, &config);
        shown += 1;
        let newest = points
            .last()
            .map_or("–".into(), |p| format!("{:.4}", p.value));
        println!(
            "{}  {} run(s), newest {newest}, {} shift(s)",
            printable(&name),
            points.len(),
            shifts.len()
        );
        if runs {
            for p in &points {
                println!(
                    "    {}  {}  {}  {} process(es)  {:.4}",
                    printable(&p.run_id),
                    printable(&p.commit),
                    printable(&p.time),
                    p.processes,
                    p.value
                );
            }
        }
        for s in &shifts {
            println!(
                "    shift {:+.1}% ({:.4} → {:.4}, p = {:.3}) between {} ({}) and {} ({}){}",
                s.relative_change * 100.0,
                s.before,
                s.after,
                s.p_value,
                printable(&s.last_before),
                printable(&s.commit_before),
                printable(&s.first_after),
                printable(&s.commit_after),
                if s.recent_worsening {
                    " [recent, worse]"
                } else {
                    ""
                }
            );
        }
        all_shifts.extend(shifts);
    }
    if shown == 0 {
        println!(
            "no history under {}{}",
            results.history_root().display(),
            filter.map_or(String::new(), |f| format!(" matching `{}`", printable(f)))
        );
    }
    Ok(shift.exit_code(&all_shifts).unwrap_or(exit_code::OK))
}
