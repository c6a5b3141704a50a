//! Text that comes from manifests and run records (descriptions, claim summaries, reasons,
//! environment values) is untrusted where it is shown: a terminal obeys escape sequences, and
//! a Markdown comment renders links, images and mentions. These functions neutralise both
//! while keeping the text readable.

use std::borrow::Cow;

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

fn is_unsafe_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

#[cfg(test)]
mod tests {
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
