//! Image references parsed like docker: `busybox` → `docker.io/library/busybox:latest`,
//! `host:port/repo:tag`, `repo@sha256:…`. Parsing is oci-spec's; we add clear errors and
//! docker's "familiar" short form for display.

use crate::error::{Error, Result};
use oci_spec::distribution::{ParseError, Reference};
use std::fmt;

/// A fully qualified image reference: registry, repository, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: Reference,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self> {
        let err = |reason: String| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.chars().any(char::is_whitespace) || s.is_empty() {
            return Err(err("must not be empty or contain spaces".into()));
        }
        if let Some((_, d)) = s.split_once('@') {
            if let Err(e) = d.parse::<crate::digest::Digest>() {
                return Err(err(e.to_string()));
            }
        }
        let name_part = s.split('@').next().unwrap_or(s);
        let repo_part = match name_part.rsplit_once(':') {
            Some((left, tag)) if !tag.contains('/') => left,
            _ => name_part,
        };
        let path_part = repo_part.split_once('/').map(|(h, rest)| {
            if h.contains('.') || h.contains(':') || h == "localhost" {
                rest
            } else {
                repo_part
            }
        });
        if path_part
            .unwrap_or(repo_part)
            .chars()
            .any(|c| c.is_ascii_uppercase())
        {
            return Err(err("repository name must be lowercase".into()));
        }
        let inner: Reference = s.parse().map_err(|e: ParseError| {
            err(match e {
                ParseError::ReferenceInvalidFormat => {
                    "expected [HOST[:PORT]/]NAME[:TAG][@sha256:HEX], with a lowercase name of \
                     [a-z0-9] separated by '.', '_', '__' or '-', and a tag of [A-Za-z0-9_.-] (max 128)"
                        .into()
                }
                other => other.to_string(),
            })
        })?;
        Ok(ImageRef { inner })
    }

    pub fn registry(&self) -> &str {
        self.inner.registry()
    }
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
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
        write!(f, "{}", self.inner)
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
    fn clear_errors() {
        for (bad, needle) in [
            ("Busybox", "lowercase"),
            ("bb:", "expected"),
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
