//! Image-config effects of metadata instructions (ENV, LABEL, CMD, ENTRYPOINT,
//! WORKDIR, USER, EXPOSE, VOLUME, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD,
//! MAINTAINER) on an `oci_spec` [`ImageConfiguration`], plus [`ExtraConfig`]
//! for the docker fields oci-spec lacks (Healthcheck, Shell, OnBuild).
//! Every effect also appends a history entry with `empty_layer: true`.

use crate::ignore::clean_path;
use oci_spec::image::{Config, History, ImageConfiguration};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// Docker's Healthcheck (durations in nanoseconds, like docker's JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// Docker config fields missing from oci-spec's `Config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExtraConfig {
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
}

impl ExtraConfig {
    /// Read the extra fields from a raw image config JSON (`config.Healthcheck` …).
    pub fn from_config_json(raw: &serde_json::Value) -> ExtraConfig {
        raw.get("config")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default()
    }

    /// The SHELL in effect (docker's default `/bin/sh -c`).
    pub fn shell_or_default(&self) -> Vec<String> {
        self.shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}

/// Serialize a config with the extra fields merged into `config`, ready to be
/// stored as the image config blob (digest those bytes, never re-serialise).
pub fn config_json(cfg: &ImageConfiguration, extra: &ExtraConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null);
    if let (Some(obj), Ok(serde_json::Value::Object(ex))) =
        (v.as_object_mut(), serde_json::to_value(extra))
    {
        let c = obj.entry("config").or_insert_with(|| serde_json::json!({}));
        if let Some(c) = c.as_object_mut() {
            for (k, val) in ex {
                c.insert(k, val);
            }
        }
    }
    v
}

/// An error applying a metadata instruction (the caller adds file:line:col).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectError(pub String);

/// The image config being built for one stage, with helpers for each effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigState {
    pub image: ImageConfiguration,
    pub extra: ExtraConfig,
    /// CMD was set in this stage (ENTRYPOINT then keeps it; otherwise ENTRYPOINT resets an inherited CMD).
    pub cmd_set_here: bool,
}

fn dur_ns(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
}

impl ConfigState {
    pub fn new(image: ImageConfiguration, extra: ExtraConfig) -> Self {
        ConfigState {
            image,
            extra,
            cmd_set_here: false,
        }
    }

    /// oci-spec has no `config_mut`: modify a copy and put it back.
    fn with_config<R>(&mut self, f: impl FnOnce(&mut Config) -> R) -> R {
        let mut c = self.image.config().clone().unwrap_or_default();
        let r = f(&mut c);
        self.image.set_config(Some(c));
        r
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.image
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect()
    }

    pub fn get_env(&self, name: &str) -> Option<String> {
        self.env()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn workdir(&self) -> String {
        self.image
            .config()
            .as_ref()
            .and_then(|c| c.working_dir().clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    pub fn user(&self) -> Option<String> {
        self.image
            .config()
            .as_ref()
            .and_then(|c| c.user().clone())
            .filter(|u| !u.is_empty())
    }

    /// Append a history entry.
    pub fn history(&mut self, created_by: &str, empty_layer: bool) {
        let mut h = History::default();
        h.set_created(Some(
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ));
        h.set_created_by(Some(created_by.to_string()));
        h.set_comment(Some("gabang build".into()));
        if empty_layer {
            h.set_empty_layer(Some(true));
        }
        let hist = self.image.history_mut().get_or_insert_with(Vec::new);
        hist.push(h);
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.with_config(|c| {
            let mut env = c.env().clone().unwrap_or_default();
            let entry = format!("{key}={value}");
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == key)
            {
                Some(e) => *e = entry,
                None => env.push(entry),
            }
            c.set_env(Some(env));
        });
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        self.with_config(|c| {
            c.labels_mut()
                .get_or_insert_with(HashMap::new)
                .insert(key.to_string(), value.to_string());
        });
    }

    pub fn set_cmd(&mut self, argv: Vec<String>) {
        self.with_config(|c| {
            c.set_cmd(Some(argv));
        });
        self.cmd_set_here = true;
    }

    pub fn set_entrypoint(&mut self, argv: Vec<String>) {
        let keep_cmd = self.cmd_set_here;
        self.with_config(|c| {
            c.set_entrypoint(Some(argv));
            if !keep_cmd {
                c.set_cmd(None);
            }
        });
    }

    /// WORKDIR: relative paths resolve against the current one; the result is
    /// clean and absolute, so it can never point outside the rootfs.
    pub fn set_workdir(&mut self, dir: &str) -> String {
        let base = self.workdir();
        let joined = if dir.starts_with('/') {
            dir.to_string()
        } else {
            format!("{}/{}", base.trim_end_matches('/'), dir)
        };
        let cleaned = clean_path(&joined);
        self.with_config(|c| {
            c.set_working_dir(Some(cleaned.clone()));
        });
        cleaned
    }

    pub fn set_user(&mut self, user: &str) {
        self.with_config(|c| {
            c.set_user(Some(user.to_string()));
        });
    }

    /// EXPOSE: `80`, `80/tcp`, `53/udp`, `8000-8010[/proto]` → `port/proto` entries.
    pub fn expose(&mut self, spec: &str) -> Result<Vec<String>, EffectError> {
        let (ports, proto) = match spec.split_once('/') {
            Some((p, proto)) => (p, proto.to_ascii_lowercase()),
            None => (spec, "tcp".to_string()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(EffectError(format!(
                "invalid proto \"{proto}\" in EXPOSE {spec}: expected tcp, udp or sctp"
            )));
        }
        let parse = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
        let (lo, hi) = match ports.split_once('-') {
            Some((a, b)) => (parse(a), parse(b)),
            None => (parse(ports), parse(ports)),
        };
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Err(EffectError(format!("invalid port \"{ports}\" in EXPOSE: expected a number 1-65535 or a range like 8000-8010")));
        };
        if hi < lo {
            return Err(EffectError(format!(
                "invalid port range {ports} in EXPOSE: end is before start"
            )));
        }
        let added: Vec<String> = (lo..=hi).map(|p| format!("{p}/{proto}")).collect();
        self.with_config(|c| {
            let mut list = c.exposed_ports().clone().unwrap_or_default();
            for a in &added {
                if !list.contains(a) {
                    list.push(a.clone());
                }
            }
            c.set_exposed_ports(Some(list));
        });
        Ok(added)
    }

    pub fn add_volume(&mut self, path: &str) {
        self.with_config(|c| {
            let mut v = c.volumes().clone().unwrap_or_default();
            if !v.iter().any(|x| x == path) {
                v.push(path.to_string());
            }
            c.set_volumes(Some(v));
        });
    }

    pub fn set_shell(&mut self, shell: Vec<String>) {
        self.extra.shell = Some(shell);
    }

    /// STOPSIGNAL: a name (`SIGTERM`, `TERM`, `SIGRTMIN+3`) or a number 1-64.
    pub fn set_stopsignal(&mut self, sig: &str) -> Result<(), EffectError> {
        let upper = sig.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        const NAMES: [&str; 31] = [
            "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1",
            "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP",
            "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
        ];
        let ok = sig.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n))
            || NAMES.contains(&name)
            || name == "SYS"
            || name.strip_prefix("RTMIN").is_some_and(|r| {
                r.is_empty()
                    || r.strip_prefix('+')
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n <= 30)
            })
            || name.strip_prefix("RTMAX").is_some_and(|r| {
                r.is_empty()
                    || r.strip_prefix('-')
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n <= 30)
            });
        if !ok {
            return Err(EffectError(format!("invalid signal \"{sig}\" in STOPSIGNAL: expected a name like SIGTERM or a number 1-64")));
        }
        self.with_config(|c| {
            c.set_stop_signal(Some(sig.to_string()));
        });
        Ok(())
    }

    pub fn set_healthcheck(&mut self, hc: &crate::parser::HealthcheckArgs) {
        use crate::parser::{Command, HealthTest};
        let test = match &hc.test {
            HealthTest::None => vec!["NONE".to_string()],
            HealthTest::Cmd(Command::Exec(v)) => std::iter::once("CMD".to_string())
                .chain(v.iter().cloned())
                .collect(),
            HealthTest::Cmd(Command::Shell(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
        };
        self.extra.healthcheck = Some(Healthcheck {
            test,
            interval: dur_ns(hc.interval),
            timeout: dur_ns(hc.timeout),
            start_period: dur_ns(hc.start_period),
            start_interval: dur_ns(hc.start_interval),
            retries: hc.retries,
        });
    }

    pub fn add_onbuild(&mut self, trigger: &str) {
        self.extra.on_build.push(trigger.to_string());
    }

    pub fn set_author(&mut self, who: &str) {
        self.image.set_author(Some(who.to_string()));
    }
}
