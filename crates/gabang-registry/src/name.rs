//! Repository names and tags as the distribution spec defines them. A name that passes
//! [`valid_name`] has no `..`, no leading `/`, no empty component, so it can never escape
//! anything it is joined to (the registry never uses names as paths, but stays strict).

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255 bytes.
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or '-'+.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a-b/c__d/e.f", "x--y", "a0/1b"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "../etc", "a/../b", "/a", "a/", "a//b", "a..b", "a/.b", "a___b", "-a", "a-",
            "a b", "a%2f", "a/./b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        assert!(valid_tag("latest") && valid_tag("v1.0_rc-2") && valid_tag("_x"));
        assert!(!valid_tag("") && !valid_tag(".x") && !valid_tag("-x") && !valid_tag("a/b"));
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
