//! Text that comes from manifests and run records (descriptions, claim summaries, reasons,
//! environment values) is untrusted where it is shown: a terminal obeys escape sequences, and
//! a Markdown comment renders links, images and mentions. These functions neutralise both
//! while keeping the text readable.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

/// Terminal output is wrapped to this many columns unless `--wide` is given.
pub const TERMINAL_WIDTH: usize = 120;

static WIDE: AtomicBool = AtomicBool::new(false);

/// `--wide`: terminal lines keep their full length (for wide terminals and for `grep`).
pub fn set_wide(wide: bool) {
    WIDE.store(wide, Ordering::Relaxed);
}

pub fn is_wide() -> bool {
    WIDE.load(Ordering::Relaxed)
}

/// `text` for the terminal: unchanged with `--wide`, else wrapped to [`TERMINAL_WIDTH`] by
/// [`fit_to`].
pub fn fit(text: &str) -> String {
    if is_wide() {
        text.to_string()
    } else {
        fit_to(text, TERMINAL_WIDTH)
    }
}

/// Every line of `text` wider than `width` wrapped at spaces (never inside a hyphenated name;
/// a word longer than the line is broken), continuation lines hanging under the line's second
/// column (the text after the first run of two spaces, as in `  verdict   text`), else two
/// columns past its indent. ANSI colour sequences take no width; shorter lines stay as they are.
pub fn fit_to(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        if textwrap::core::display_width(body) <= width {
            out.push_str(line);
            continue;
        }
        // Columns are found in the text as shown, without colour sequences.
        let plain = without_ansi(body);
        let lead = plain.len() - plain.trim_start_matches(' ').len();
        let hanging = plain[lead..]
            .find("  ")
            .map(|gap| {
                let after = &plain[lead + gap..];
                plain[..lead + gap].chars().count()
                    + (after.len() - after.trim_start_matches(' ').len())
            })
            .filter(|&col| col <= width / 2)
            .unwrap_or(lead + 2);
        let indent = " ".repeat(hanging.min(width / 2));
        let options = textwrap::Options::new(width)
            .subsequent_indent(&indent)
            .word_splitter(textwrap::WordSplitter::NoHyphenation);
        out.push_str(&textwrap::wrap(body, options).join("\n"));
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// `text` with control characters other than newline and tab written as visible escapes
/// (`\u{1b}`), so a terminal shows them instead of obeying them.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` without ANSI CSI sequences (`ESC [ … final byte`), such as colours.
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_unsafe_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_lines_wrap_under_their_own_indent_and_short_ones_stay() {
        let text = format!("short\n  {}\n", "word ".repeat(40).trim_end());
        let fitted = super::fit_to(&text, 50);
        let lines: Vec<&str> = fitted.lines().collect();
        assert_eq!(lines[0], "short");
        assert!(lines.len() > 3, "{fitted}");
        assert!(lines[1].starts_with("  word"), "{fitted}");
        for l in &lines[2..] {
            assert!(l.starts_with("    word"), "continuation indent: {l:?}");
        }
        assert!(lines.iter().all(|l| l.chars().count() <= 50), "{fitted}");
        assert!(fitted.ends_with('\n'));
        // A verdict column: continuations hang under the text; hyphenated names stay whole.
        let row = format!("  refuted   {}", "suite-name-x ".repeat(8).trim_end());
        let fitted = super::fit_to(&row, 50);
        for l in fitted.lines().skip(1) {
            assert!(l.starts_with("            suite-name-x"), "{fitted}");
        }
        // Colour codes take no width, and a word longer than the line is broken.
        let coloured = "\u{1b}[1mverdict\u{1b}[0m ".to_string() + &"x".repeat(10);
        assert_eq!(super::fit_to(&coloured, 18), coloured);
        let coloured_row = format!("  \u{1b}[1mrefuted \u{1b}[0m  {}", "word ".repeat(20));
        let fitted = super::fit_to(coloured_row.trim_end(), 50);
        assert!(
            fitted
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("            word"),
            "{fitted}"
        );
        let long = "y".repeat(120);
        assert!(super::fit_to(&long, 50)
            .lines()
            .all(|l| l.chars().count() <= 50));
    }

    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let title = "\u{1b}]0;PWNED\u{7}\u{1b}[2Jdone";
        assert_eq!(printable(title), "\\u{1b}]0;PWNED\\u{7}\\u{1b}[2Jdone");
        assert!(matches!(
            printable("8 GiB → 7.5 GiB\n\tok"),
            Cow::Borrowed(_)
        ));
    }
}
