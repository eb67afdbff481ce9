//! Text for an Adaptive Card. Agent text (and anyone's but ours) goes into
//! `TextRun`s, which Adaptive Cards render as plain text ("Markdown is not
//! supported" in a TextRun, per the 1.2+ schema): [`plain`] only cuts it to
//! the shared limits. Text in a `TextBlock` or a `FactSet` (which Teams
//! renders as markdown) is ours, or goes through [`escape`].

use crate::channels::text::{self, FullText, Limit};

/// Escapes text for an Adaptive Card's markdown (a `TextBlock` or a
/// `FactSet`) and cuts it to `max` characters. Markdown and mention syntax
/// is backslash-escaped so the text cannot make a link, a mention, emphasis
/// or a heading; line breaks become ` ⏎ `, so it cannot start a list or a
/// quote either, and invisible or direction-changing characters are spelled
/// out (`[U+202E]`) so they cannot reorder or hide what is shown. Prefer a
/// `TextRun` ([`plain`]) for agent text.
pub fn escape(s: &str, max: usize) -> String {
    let mut cleaned = text::visible(s.trim(), false);
    if cleaned.chars().count() > max {
        cleaned = cleaned.chars().take(max.saturating_sub(1)).collect();
        cleaned.push('…');
    }
    let mut out = String::with_capacity(cleaned.len() + 8);
    for (i, c) in cleaned.chars().enumerate() {
        let special = matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '<'
                | '>'
                | '#'
                | '|'
                | '~'
                | '!'
                | '&'
        ) || (i == 0 && matches!(c, '-' | '+' | '='));
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Agent text for a `TextRun`: visible, cut to its shared limit with a
/// note on what is hidden. Nothing else is needed: a TextRun is plain text.
pub fn plain(s: &str, limit: Limit, multiline: bool, full: FullText<'_>) -> String {
    text::cut(s, limit, multiline, full).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_text_cannot_make_links_mentions_or_emphasis() {
        let e = escape("[click](https://x) <at>all</at> **b** _i_ `c` # h", 500);
        let chars: Vec<char> = e.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if "[]()<>*_`#".contains(*c) {
                assert_eq!(chars[i - 1], '\\', "{c} at {i} is not escaped in {e}");
            }
        }
        assert!(e.contains("\\[click\\]\\(https://x\\)"));
        assert!(e.contains("\\<at\\>"));
        // A line break is shown, not obeyed; a format character is spelled
        // out, not silently dropped.
        assert_eq!(escape("line\n- item", 100), "line ⏎ - item");
        assert_eq!(escape("- item", 100), "\\- item");
        assert_eq!(escape("a\u{202E}b", 100), "a\\[U+202E\\]b");
    }

    #[test]
    fn long_agent_text_is_truncated_with_an_ellipsis() {
        let e = escape(&"x".repeat(1000), 10);
        assert_eq!(e.chars().count(), 10);
        assert!(e.ends_with('…'));
    }
}
