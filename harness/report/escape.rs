//! Escaping of text that comes from manifests (claim summaries, sources, descriptions) before
//! it goes into HTML or a Markdown table. Small enough to audit, and tested below.

use crate::text::printable;

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values; control characters
/// are shown as escapes (see [`printable`]).
pub fn html(text: &str) -> String {
    let text = printable(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Makes text safe for one Markdown table cell of a PR comment: no line breaks, `|` escaped,
/// HTML markup neutralised (GitHub renders inline HTML in comments), no live links or images
/// (`[`, `]` escaped), no @mentions (`@` as an entity), no code spans (`` ` `` escaped), and
/// control characters shown as escapes.
pub fn markdown_cell(text: &str) -> String {
    let text = printable(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '[' => out.push_str("\\["),
            ']' => out.push_str("\\]"),
            '`' => out.push_str("\\`"),
            '@' => out.push_str("&#64;"),
            '\n' | '\r' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<script>alert("x & 'y'")</script>"#),
            "&lt;script&gt;alert(&quot;x &amp; &#39;y&#39;&quot;)&lt;/script&gt;"
        );
        assert_eq!(html("8 GiB → 7.5 GiB"), "8 GiB → 7.5 GiB");
    }

    #[test]
    fn markdown_cells_carry_no_live_links_images_mentions_or_escapes() {
        let cell = markdown_cell(
            "[click me](https://example.invalid/p) ![pixel](https://example.invalid/t.png) @octocat `x` \u{1b}[2J",
        );
        assert_eq!(
            cell,
            "\\[click me\\](https://example.invalid/p) !\\[pixel\\](https://example.invalid/t.png) &#64;octocat \\`x\\` \\u{1b}\\[2J"
        );
        assert_eq!(html("a\u{1b}b"), "a\\u{1b}b");
    }

    #[test]
    fn markdown_cells_stay_in_their_cell() {
        assert_eq!(
            markdown_cell("a | b\nc <b>d</b> & e"),
            "a \\| b c &lt;b&gt;d&lt;/b&gt; &amp; e"
        );
    }
}
