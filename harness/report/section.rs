//! A titled table section, as the Markdown and HTML reports render it: sections that are a
//! title, an introductory sentence and one row per item share this layout.

use super::escape::{html as esc, markdown_cell as cell};
use std::fmt::Write;

/// The Markdown head (`### title`, intro, header and alignment rows); `align` is the
/// alignment row's inside, e.g. `---|---:`.
pub fn markdown_head(title: &str, intro: &str, columns: &[&str], align: &str) -> String {
    format!(
        "\n### {title}\n\n{intro}.\n\n| {} |\n|{align}|\n",
        columns.join(" | ")
    )
}

/// One Markdown table row, every cell escaped.
pub fn markdown_row(fields: &[String]) -> String {
    let cells: Vec<String> = fields.iter().map(|f| cell(f)).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// The HTML section: heading with `id`, intro, table; every cell escaped.
pub fn html(id: &str, title: &str, intro: &str, columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<h2 id=\"{id}\">{}</h2>", esc(title));
    let _ = writeln!(out, "<p>{}.</p>", esc(intro));
    let head: Vec<String> = columns.iter().map(|c| format!("<th>{c}</th>")).collect();
    let _ = writeln!(
        out,
        "<div class=\"scroll\"><table><tr>{}</tr>",
        head.join("")
    );
    for fields in rows {
        let cells: Vec<String> = fields
            .iter()
            .map(|f| format!("<td>{}</td>", esc(f)))
            .collect();
        let _ = writeln!(out, "<tr>{}</tr>", cells.join(""));
    }
    let _ = writeln!(out, "</table></div>");
    out
}

/// A section that is a table of items: its anchor, title, intro, columns and Markdown
/// alignment row; [`Table::markdown`] and [`Table::html`] render it from the items' fields.
pub struct Table<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub intro: &'a str,
    pub columns: &'a [&'a str],
    pub align: &'a str,
}

impl Table<'_> {
    /// The Markdown head and one row per item.
    pub fn markdown<R, const N: usize>(
        &self,
        items: &[R],
        fields: impl Fn(&R) -> [String; N],
    ) -> (String, Vec<String>) {
        let head = markdown_head(self.title, self.intro, self.columns, self.align);
        (
            head,
            items.iter().map(|r| markdown_row(&fields(r))).collect(),
        )
    }

    /// The HTML section; empty when there is no item.
    pub fn html<R, const N: usize>(
        &self,
        items: &[R],
        fields: impl Fn(&R) -> [String; N],
    ) -> String {
        if items.is_empty() {
            return String::new();
        }
        let rows: Vec<Vec<String>> = items.iter().map(|r| fields(r).to_vec()).collect();
        html(self.id, self.title, self.intro, self.columns, &rows)
    }
}
