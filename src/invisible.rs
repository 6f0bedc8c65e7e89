//! Characters that are not what they look like: invisible ones, look-alikes of a space, and the
//! marks that reorder text on screen. Pasted into a password they cause a `535` that "cannot
//! be"; in an address they make two different mailboxes look alike, or make a reply, a log
//! line or `queue list` show something else than what is there.

use std::borrow::Cow;

/// What `c` is, in plain words, if it is one of those characters.
pub fn invisible(c: char) -> Option<&'static str> {
    let name = match c {
        '\u{00A0}' => "a no-break space (U+00A0, looks like a space)",
        '\u{202F}' | '\u{2007}' => "a narrow or figure no-break space (looks like a space)",
        '\u{200B}' => "a zero-width space (U+200B, invisible)",
        '\u{200C}' => "a zero-width non-joiner (U+200C, invisible)",
        '\u{200D}' => "a zero-width joiner (U+200D, invisible)",
        '\u{2060}'..='\u{2064}' => "a word joiner or invisible operator (U+2060-U+2064)",
        '\u{FEFF}' => "a byte order mark (U+FEFF, invisible)",
        '\u{00AD}' => "a soft hyphen (U+00AD, usually invisible)",
        '\u{034F}' | '\u{180E}' | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' => {
            "a filler or joiner that shows as nothing"
        }
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => {
            "a text-direction mark (invisible; reorders the text around it)"
        }
        '\u{2028}' | '\u{2029}' => "a line or paragraph separator (U+2028/U+2029)",
        '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}' => "an invisible tag or annotation",
        c if c.is_control() => "a control character (tab, CR, LF or similar)",
        c if c.is_whitespace() && c != ' ' => "an unusual whitespace character",
        _ => return None,
    };
    Some(name)
}

/// `text` for a terminal: each invisible or reordering character (see [`invisible`]) written as
/// `\u{XXXX}`, so what is shown is what is there (an address accepted before such characters
/// were refused, a reply from a remote server).
pub fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| invisible(c).is_some()) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match invisible(c) {
            Some(_) => shown.push_str(&format!("\\u{{{:04X}}}", c as u32)),
            None => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_shows_what_is_there() {
        assert_eq!(escaped("a@b.example"), "a@b.example");
        assert_eq!(
            escaped("ad\u{202E}nim@b.example\r"),
            "ad\\u{202E}nim@b.example\\u{000D}"
        );
        assert_eq!(escaped("jürgen@b.example"), "jürgen@b.example");
    }

    #[test]
    fn invisible_and_reordering_characters_are_named() {
        for c in [
            '\u{200B}',
            '\u{202E}',
            '\u{2028}',
            '\u{2029}',
            '\u{FEFF}',
            '\u{2066}',
            '\u{00A0}',
            '\u{E0041}',
            '\t',
        ] {
            assert!(invisible(c).is_some(), "U+{:04X}", c as u32);
        }
        for c in ['a', ' ', 'é', 'ß', '日', '-'] {
            assert_eq!(invisible(c), None, "{c}");
        }
    }
}
