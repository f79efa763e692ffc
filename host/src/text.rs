//! Text a module or a caller controls, shown in an error: cut so that the error does not
//! grow with it.

/// `text`, cut to at most `max` bytes (at a character boundary) with `…` marking the cut.
pub(crate) fn clipped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}…", &text[..text.floor_char_boundary(max)])
}

#[cfg(test)]
mod tests {
    use super::clipped;

    #[test]
    fn text_over_the_limit_is_cut_at_a_character_boundary_and_marked() {
        assert_eq!(clipped("short", 5), "short");
        assert_eq!(clipped("abcdef", 4), "abcd…");
        // `é` is two bytes: a cut inside it moves back before it.
        assert_eq!(clipped("aébc", 2), "a…");
        assert_eq!(clipped("aébc", 3), "aé…");
    }
}
