//! Docker's rules for the container process: ENTRYPOINT/CMD combination, environment merge,
//! working directory and user, from an image config plus [`RunOptions`].

use oci_spec::image::ImageConfiguration;

use crate::error::{Result, RuntimeError};
use crate::model::RunOptions;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The combined process (before the user name is resolved in the rootfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

/// Combine as `docker run` does.
pub fn plan_process(image: &ImageConfiguration, opts: &RunOptions) -> Result<ProcessPlan> {
    let cfg = image.config().as_ref();
    let image_ep: Vec<String> = cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
    let image_cmd: Vec<String> = cfg.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let entrypoint = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image_ep,
    };
    // `--entrypoint` resets the image's CMD (docker does the same).
    let cmd = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        image_cmd
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if args.is_empty() {
        return Err(RuntimeError::NoCommand);
    }
    let mut env: Vec<String> = cfg.and_then(|c| c.env().clone()).unwrap_or_default();
    for e in &opts.env {
        set_env(&mut env, e);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    let cwd = opts
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| {
            cfg.and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(RuntimeError::InvalidOption(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    let user = opts
        .user
        .clone()
        .or_else(|| cfg.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    Ok(ProcessPlan {
        entrypoint,
        cmd,
        args,
        env,
        cwd,
        user,
    })
}

/// Set `K=V` in `env`, replacing an existing `K`.
pub fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split('=').next().unwrap_or(kv);
    if let Some(slot) = env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        *slot = kv.to_owned();
    } else {
        env.push(kv.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    fn image(ep: Option<Vec<&str>>, cmd: Option<Vec<&str>>) -> ImageConfiguration {
        let mut c = ConfigBuilder::default()
            .env(vec!["PATH=/bin".to_owned(), "A=image".to_owned()])
            .working_dir("/srv".to_owned())
            .user("app".to_owned());
        if let Some(ep) = ep {
            c = c.entrypoint(ep.into_iter().map(String::from).collect::<Vec<_>>());
        }
        if let Some(cmd) = cmd {
            c = c.cmd(cmd.into_iter().map(String::from).collect::<Vec<_>>());
        }
        ImageConfigurationBuilder::default()
            .config(c.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn entrypoint_cmd_combination() {
        let img = image(Some(vec!["/ep", "-x"]), Some(vec!["def"]));
        let p = plan_process(&img, &RunOptions::default()).unwrap();
        assert_eq!(p.args, ["/ep", "-x", "def"]);
        let o = RunOptions {
            cmd: vec!["mine".into()],
            ..Default::default()
        };
        assert_eq!(plan_process(&img, &o).unwrap().args, ["/ep", "-x", "mine"]);
        let o = RunOptions {
            entrypoint: Some("sh".into()),
            ..Default::default()
        };
        assert_eq!(plan_process(&img, &o).unwrap().args, ["sh"]);
        let o = RunOptions {
            entrypoint: Some(String::new()),
            cmd: vec!["echo".into(), "x".into()],
            ..Default::default()
        };
        assert_eq!(plan_process(&img, &o).unwrap().args, ["echo", "x"]);
        let img = image(None, None);
        assert!(matches!(
            plan_process(&img, &RunOptions::default()),
            Err(RuntimeError::NoCommand)
        ));
    }

    #[test]
    fn env_cwd_user() {
        let img = image(None, Some(vec!["sh"]));
        let o = RunOptions {
            env: vec!["A=mine".into(), "B=2".into()],
            workdir: Some("/w".into()),
            ..Default::default()
        };
        let p = plan_process(&img, &o).unwrap();
        assert_eq!(p.env, ["PATH=/bin", "A=mine", "B=2"]);
        assert_eq!(p.cwd, "/w");
        assert_eq!(p.user, "app");
        let p = plan_process(&img, &RunOptions::default()).unwrap();
        assert_eq!(p.cwd, "/srv");
    }
}
