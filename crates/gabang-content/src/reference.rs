//! Image references parsed like docker: `busybox` → `docker.io/library/busybox:latest`,
//! `host:port/repo:tag`, `repo@sha256:…`, with clear errors and docker's "familiar" short
//! form for display.
//!
//! Written by hand after docker's distribution/reference grammar: oci-spec's `Reference`
//! compiles a very large regex on first use (about 100 ms of CPU), which every
//! `gabang run` would pay.

use crate::error::{Error, Result};
use std::fmt;

const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A fully qualified image reference: registry, repository, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
}

fn is_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty() && host.split('.').all(is_domain_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let x = b[i];
        if x.is_ascii_lowercase() || x.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|y| y == b'-');
        if !ok || i == start || i >= b.len() {
            return false;
        }
        if !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.chars().any(char::is_whitespace) || s.is_empty() {
            return Err(err("must not be empty or contain spaces"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                d.parse::<crate::digest::Digest>()
                    .map_err(|e| err(&e.to_string()))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !is_tag(t) {
                return Err(err("a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                if !is_domain(h) {
                    return Err(err("invalid registry host (expected HOST[:PORT])"));
                }
                (Some(h), p)
            }
            _ => (None, name),
        };
        if path.is_empty() {
            return Err(err("repository name must have at least one component"));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        if !path.split('/').all(is_path_component) {
            return Err(err(
                "expected [HOST[:PORT]/]NAME[:TAG][@sha256:HEX], with a lowercase name of \
                 [a-z0-9] separated by '.', '_', '__' or '-', and a tag of [A-Za-z0-9_.-] (max 128)",
            ));
        }
        let (registry, repository) = match domain {
            Some("index.docker.io") | Some("docker.io") | None => {
                let repo = if path.contains('/') {
                    path.to_string()
                } else {
                    format!("library/{path}")
                };
                ("docker.io".to_string(), repo)
            }
            Some(d) => (d.to_string(), path.to_string()),
        };
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err("repository name must not be more than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository` (no tag or digest).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The name docker shows: `busybox` for `docker.io/library/busybox`.
    pub fn familiar_name(&self) -> String {
        familiar(&self.name())
    }

    /// `name:tag` fully qualified, the key under which tags are stored.
    /// Only meaningful when the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag().map(|t| format!("{}:{}", self.name(), t))
    }

    /// Same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef> {
        ImageRef::parse(&format!("{}:{}", self.name(), tag))
    }
}

/// Strip `docker.io/library/` or `docker.io/` from a full name as docker does for display.
pub fn familiar(full: &str) -> String {
    if let Some(rest) = full.strip_prefix("docker.io/library/") {
        if !rest.contains('/') {
            return rest.to_string();
        }
    }
    if let Some(rest) = full.strip_prefix("docker.io/") {
        return rest.to_string();
    }
    full.to_string()
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalisation() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar_name(), "busybox");
        let r = ImageRef::parse("localhost:5000/bb:1.0").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "bb");
        assert_eq!(r.familiar_name(), "localhost:5000/bb");
        let r = ImageRef::parse("me/app:v2").unwrap();
        assert_eq!(r.tagged().unwrap(), "docker.io/me/app:v2");
        assert_eq!(r.familiar_name(), "me/app");
        let d = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let r = ImageRef::parse(&format!("repo@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d));
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn grammar_edges() {
        for ok in [
            "a",
            "a_b",
            "a__b",
            "a---b",
            "a.b/c-d",
            "localhost/x",
            "127.0.0.1:5000/x/y:v1.2_3",
            "my.reg:443/a/b/c",
            "x:A_b.c-d",
        ] {
            ImageRef::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "a..b", "a___b", "a_", "_a", "a//b", "/a", "a/", "host:/a", "x:.tag", "x:-t", "a:b:c/d",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            ImageRef::parse("index.docker.io/busybox")
                .unwrap()
                .to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            ImageRef::parse("docker.io/me/x").unwrap().familiar_name(),
            "me/x"
        );
    }

    #[test]
    fn clear_errors() {
        for (bad, needle) in [
            ("Busybox", "lowercase"),
            ("bb:", "tag"),
            ("bb:a b", "spaces"),
            ("", "empty"),
            ("bb@sha256:123", "digest"),
            ("-x", "expected"),
        ] {
            let e = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }
}
