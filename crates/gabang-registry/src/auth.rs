//! Authentication: an htpasswd file (bcrypt entries) checked by HTTP basic auth, and the
//! token flow docker clients use (`WWW-Authenticate: Bearer realm=…/token,service=…,scope=…`;
//! `/token` trades basic credentials for an opaque, server-side, expiring token that carries
//! the scopes asked for). htpasswd has no ACLs: an authenticated user gets every scope.

use crate::error::{io_ctx, Error, Result};
use base64::Engine as _;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Users and bcrypt hashes from an htpasswd file (`user:$2y$…`, as `htpasswd -B` writes).
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256(user:password) of credentials already verified (bcrypt is slow by design and
    /// basic-auth clients send credentials on every request).
    verified: Mutex<std::collections::HashSet<String>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd> {
        let text = io_ctx(std::fs::read_to_string(path), || {
            format!("read htpasswd {}", path.display())
        })?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> std::result::Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, h) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:hash", i + 1))?;
            if !h.starts_with("$2") {
                return Err(format!(
                    "line {}: user {u:?} has a non-bcrypt hash (use `htpasswd -B`)",
                    i + 1
                ));
            }
            users.insert(u.to_string(), h.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(Default::default()),
        })
    }

    /// Whether the password is right for the user.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let key =
            gabang_content::Digest::sha256_of(format!("{user}:{password}").as_bytes()).to_string();
        if self
            .verified
            .lock()
            .map(|v| v.contains(&key))
            .unwrap_or(false)
        {
            return true;
        }
        let ok = self
            .users
            .get(user)
            .is_some_and(|h| bcrypt::verify(password, h).unwrap_or(false));
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                v.insert(key);
            }
        }
        ok
    }
}

/// Parse `Authorization: Basic …` into (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// A granted token.
#[derive(Clone)]
pub struct Grant {
    pub user: String,
    pub expires_ms: i64,
    /// `repository:NAME:ACTIONS` / `registry:catalog:*` as requested.
    pub scopes: Vec<String>,
}

impl Grant {
    /// Whether the grant covers `action` (pull, push, delete) on `resource`
    /// (`repository:NAME` or `registry:catalog`).
    pub fn allows(&self, resource: &str, action: &str) -> bool {
        self.scopes.iter().any(|s| {
            let Some((res, actions)) = s.rsplit_once(':') else {
                return false;
            };
            res == resource
                && actions
                    .split(',')
                    .any(|a| a == action || a == "*" || (action == "delete" && a == "push"))
        })
    }
}

/// Tokens issued by this server (in memory: a restart asks clients to log in again).
#[derive(Default)]
pub struct Tokens {
    map: Mutex<HashMap<String, Grant>>,
}

impl Tokens {
    pub fn issue(&self, grant: Grant, now_ms: i64) -> String {
        let token = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, g| g.expires_ms > now_ms);
            m.insert(token.clone(), grant);
        }
        token
    }
    pub fn get(&self, token: &str, now_ms: i64) -> Option<Grant> {
        let m = self.map.lock().ok()?;
        m.get(token).filter(|g| g.expires_ms > now_ms).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_and_basic() {
        let h = bcrypt::hash("s3cret", 4).unwrap();
        let f = Htpasswd::parse(&format!("# c\nalice:{h}\n")).unwrap();
        assert!(f.verify("alice", "s3cret"));
        assert!(f.verify("alice", "s3cret"));
        assert!(!f.verify("alice", "nope"));
        assert!(!f.verify("bob", "s3cret"));
        assert!(Htpasswd::parse("bob:{SHA}abc").is_err());
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcmV0"),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        let g = Grant {
            user: "a".into(),
            expires_ms: 10,
            scopes: vec!["repository:x/y:pull,push".into()],
        };
        assert!(g.allows("repository:x/y", "push") && g.allows("repository:x/y", "delete"));
        assert!(!g.allows("repository:x", "pull"));
    }
}
