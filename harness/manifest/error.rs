//! Manifest errors located in the file, so that a person (or an editor) can jump to the mistake.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with a manifest: where it is, which key, what is wrong and, when we can guess,
/// how to fix it.
///
/// Displays as `path:line:column: message`, followed by `\n  hint: …` when there is a hint;
/// unknown positions are left out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ManifestError {
    pub path: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// Dotted path of the offending key, e.g. `variant[2].knobs.cudnn.enabeld` (array indices
    /// count from 0).
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl ManifestError {
    pub(super) fn new(path: &Path, message: impl Into<String>) -> Self {
        ManifestError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Locates the error at byte `offset` of `text`.
    pub(super) fn at(self, text: &str, offset: usize) -> Self {
        self.at_line_col(line_col(text, offset))
    }

    pub(super) fn at_line_col(mut self, (line, column): (usize, usize)) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub(super) fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub(super) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(text, offset)
}

/// Where each line of a text starts, so that locating an offset costs a binary search and not
/// a scan of the text before it (a manifest of 20,000 claims locates each of them).
#[derive(Debug, Clone)]
pub(super) struct LineIndex {
    /// Byte offset of the first character of each line; the first is 0.
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// 1-based line and character column of byte `offset` in `text`, the text indexed.
    pub(super) fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let column = text[self.starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }
}

/// The option that `input` most plausibly misspells, if any is close enough to suggest.
pub(super) fn closest<'a>(input: &str, options: &[&'a str]) -> Option<&'a str> {
    let input = input.to_lowercase();
    options
        .iter()
        .map(|&option| {
            let lower = option.to_lowercase();
            let similarity = strsim::jaro_winkler(&input, &lower);
            let distance = strsim::levenshtein(&input, &lower);
            (option, similarity, distance)
        })
        .filter(|&(option, similarity, distance)| {
            let longest = input.chars().count().max(option.chars().count());
            similarity > 0.8 || distance * 3 <= longest
        })
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|(option, _, _)| option)
}

/// `did you mean `x`?` when `input` looks like a misspelling, otherwise the list of options,
/// introduced by `what` (e.g. "valid keys").
pub(super) fn choice_hint(input: &str, options: &[&str], what: &str) -> String {
    match closest(input, options) {
        Some(option) => format!("did you mean `{option}`?"),
        None => format!("{what}: {}", backticked(options)),
    }
}

/// `` `a`, `b`, `c` ``
pub(super) fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
