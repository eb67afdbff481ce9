//! What every chat channel does to text it did not write, before any
//! platform escaping: make invisible characters visible and cut long text
//! so the approver is told what is hidden and where to see it.
//!
//! An approver must never approve text they could not see. Two ways text
//! hides itself in a chat message, and both are handled here, once, for
//! Slack and Teams alike:
//!
//! - **Invisible or reordering characters.** Unicode format characters
//!   (general category Cf: U+200B zero width space, U+202E right-to-left
//!   override, U+2060 word joiner, U+061C Arabic letter mark, U+FEFF, …),
//!   the line and paragraph separators U+2028 / U+2029 (which chat clients
//!   may render as a line break that `\n` escaping does not see) and C0/C1
//!   controls. [`visible`] replaces each with its code point spelled out,
//!   `[U+202E]`, so the approver sees that something was there instead of
//!   having it silently dropped or, worse, obeyed.
//! - **Truncation.** [`cut`] keeps a field within one limit shared by both
//!   platforms ([`Limit`]: the smaller platform's limit governs, so the
//!   same field shows the same text everywhere) and ends a cut field with
//!   how many characters are hidden and the command that shows them all.
//!
//! Platform escaping (Slack's entities and mrkdwn, Teams' markdown) runs
//! after this, in each platform's renderer.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The longest each agent-supplied field may be on a chat message, in
/// characters, the same on Slack and Teams. Each is the smaller of what the
/// two platforms' layouts allow (Teams caps a whole card at about 28 KB,
/// Slack a text object at 3,000 and a field at 2,000 characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Summary,
    Justification,
    Action,
    Resource,
    DetailKey,
    DetailValue,
    /// A person's comment (a denial's reason) or a final state's reason.
    Comment,
    Reason,
    PolicyRule,
    Principal,
}

impl Limit {
    pub const fn chars(self) -> usize {
        match self {
            Limit::Summary => 500,
            Limit::Justification => 1000,
            Limit::Action => 200,
            Limit::Resource => 200,
            Limit::DetailKey => 60,
            Limit::DetailValue => 300,
            Limit::Comment => 300,
            Limit::Reason => 200,
            Limit::PolicyRule => 100,
            Limit::Principal => 200,
        }
    }
}

/// At most this many `details` entries are shown on a message; the rest
/// are counted and pointed at the audit command.
pub const MAX_DETAILS: usize = 20;

/// Whether `c` must not reach a chat message as itself.
fn hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::Control
    )
}

/// Replaces every invisible or reordering character with its code point
/// spelled out (`[U+202E]`). `\n` survives when `multiline`, otherwise it
/// becomes ` ⏎ ` so a one-line field cannot start a new line (and with it a
/// quote or a list) yet the approver still sees there was a break. A tab
/// becomes a space; `\r\n` counts as one `\n`.
pub fn visible(s: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' if multiline => out.push('\n'),
            '\n' => out.push_str(" ⏎ "),
            '\t' => out.push(' '),
            c if hidden(c) => out.push_str(&format!("[U+{:04X}]", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// How a cut field tells the reader where the rest is: the command that
/// shows the request in full on this platform.
#[derive(Debug, Clone, Copy)]
pub struct FullText<'a> {
    /// `/audit` on Slack, `audit` to the Teams bot.
    pub command: &'a str,
    pub request_id: &'a str,
}

impl FullText<'_> {
    /// The words appended to a field with `hidden` characters cut off.
    pub fn note(&self, hidden: usize) -> String {
        format!(
            "… ({} more character{} hidden: {} {} shows all)",
            thousands(hidden),
            if hidden == 1 { "" } else { "s" },
            self.command,
            self.request_id
        )
    }
}

/// Makes `s` visible ([`visible`]) and keeps its first `limit` characters;
/// a cut text ends with [`FullText::note`]. Returns the text and how many
/// characters were hidden.
pub fn cut(s: &str, limit: Limit, multiline: bool, full: FullText<'_>) -> (String, usize) {
    cut_to(s, limit.chars(), multiline, full)
}

pub fn cut_to(s: &str, max: usize, multiline: bool, full: FullText<'_>) -> (String, usize) {
    let shown = visible(s.trim(), multiline);
    let total = shown.chars().count();
    if total <= max {
        return (shown, 0);
    }
    let hidden = total - max;
    let mut out: String = shown.chars().take(max).collect();
    out.push_str(&full.note(hidden));
    (out, hidden)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: FullText<'static> = FullText {
        command: "/audit",
        request_id: "0000",
    };

    #[test]
    fn format_characters_are_spelled_out_not_obeyed_or_dropped() {
        let s = "a\u{202E}b\u{2028}c\u{2060}d\u{061C}e\u{200B}f\u{FEFF}g\u{2066}h\u{2029}i\u{1b}j";
        assert_eq!(
            visible(s, true),
            "a[U+202E]b[U+2028]c[U+2060]d[U+061C]e[U+200B]f[U+FEFF]g[U+2066]h[U+2029]i[U+001B]j"
        );
        assert_eq!(visible("é ü 日本 🟢", false), "é ü 日本 🟢");
    }

    #[test]
    fn a_line_break_survives_only_in_a_multiline_field() {
        assert_eq!(visible("a\r\nb\tc", true), "a\nb c");
        assert_eq!(visible("a\nb", false), "a ⏎ b");
    }

    #[test]
    fn a_cut_field_says_how_much_is_hidden_and_where_to_see_it() {
        let (s, hidden) = cut(&"x".repeat(1734), Limit::Summary, true, FULL);
        assert_eq!(hidden, 1234);
        assert!(s.starts_with(&"x".repeat(500)));
        assert!(
            s.ends_with("… (1,234 more characters hidden: /audit 0000 shows all)"),
            "{s}"
        );
        assert_eq!(
            cut("short", Limit::Summary, true, FULL),
            ("short".into(), 0)
        );
        let (_, hidden) = cut(&"y".repeat(501), Limit::Summary, true, FULL);
        assert_eq!(hidden, 1);
    }

    #[test]
    fn the_same_field_has_the_same_limit_everywhere() {
        // One table for both platforms: the smaller platform limit governs.
        assert_eq!(Limit::Summary.chars(), 500);
        assert_eq!(Limit::Justification.chars(), 1000);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
