//! The stage graph: which stages a target needs (through `FROM <stage>` and
//! `COPY --from=<stage|index>`), and an order in levels where the stages of
//! one level do not depend on each other and may build in parallel.

use crate::error::{DockerfileError, Pos};
use crate::parser::{Dockerfile, InstructionKind};
use std::collections::BTreeSet;

/// What a stage builds on or copies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageBase {
    Scratch,
    /// An earlier stage.
    Stage(usize),
    /// An image reference, resolved by the executor.
    Image(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageGraph {
    pub base: Vec<StageBase>,
    /// deps[i]: earlier stages stage i needs (its base and COPY --from sources).
    pub deps: Vec<BTreeSet<usize>>,
}

/// Classify a (expanded) FROM reference or `--from` value: an earlier stage by
/// name or (for `--from`) index, `scratch`, or an image.
pub fn classify_ref(
    df: &Dockerfile,
    current: usize,
    r: &str,
    allow_index: bool,
    pos: Pos,
) -> Result<StageBase, DockerfileError> {
    let lower = r.to_ascii_lowercase();
    if lower == "scratch" {
        return Ok(StageBase::Scratch);
    }
    if let Some(s) = df
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        if s.index >= current {
            return Err(DockerfileError::new(
                &df.file,
                pos,
                format!("stage \"{lower}\" is used before it is defined (line {}): a stage can only use earlier stages", s.pos.line),
            ));
        }
        return Ok(StageBase::Stage(s.index));
    }
    if allow_index && !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()) {
        let idx = r.parse::<usize>().unwrap_or(usize::MAX);
        if idx >= current {
            return Err(DockerfileError::new(
                &df.file,
                pos,
                format!("--from={r} refers to the current or a later stage: expected an index below {current}"),
            ));
        }
        return Ok(StageBase::Stage(idx));
    }
    Ok(StageBase::Image(r.to_string()))
}

impl StageGraph {
    /// Build the graph. `expand_from(stage, word)` expands a FROM image or a
    /// `--from` value (docker expands both with ARGs).
    pub fn new(
        df: &Dockerfile,
        expand_from: &mut dyn FnMut(usize, &crate::parser::Word) -> Result<String, DockerfileError>,
    ) -> Result<StageGraph, DockerfileError> {
        let mut base = Vec::new();
        let mut deps = Vec::new();
        for st in &df.stages {
            let img = expand_from(st.index, &st.from.image)?;
            let b = classify_ref(df, st.index, &img, false, st.from.image.pos)?;
            let mut d = BTreeSet::new();
            if let StageBase::Stage(i) = b {
                d.insert(i);
            }
            for ins in &st.instructions {
                if let InstructionKind::Copy(c) = &ins.kind {
                    if let Some(from) = &c.from {
                        let v = expand_from(st.index, from)?;
                        if let StageBase::Stage(i) = classify_ref(df, st.index, &v, true, from.pos)?
                        {
                            d.insert(i);
                        }
                    }
                }
            }
            base.push(b);
            deps.push(d);
        }
        Ok(StageGraph { base, deps })
    }

    /// Stages needed to build `target` (including it).
    pub fn needed(&self, target: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(s) = todo.pop() {
            if s < self.deps.len() && seen.insert(s) {
                todo.extend(self.deps[s].iter().copied());
            }
        }
        seen
    }

    /// Needed stages in levels: every stage's dependencies are in earlier levels.
    pub fn levels(&self, target: usize) -> Vec<Vec<usize>> {
        let needed = self.needed(target);
        let mut level = vec![0usize; self.deps.len()];
        // deps always point to earlier stages, so one pass in index order suffices
        for &s in &needed {
            level[s] = self.deps[s]
                .iter()
                .map(|d| level[*d] + 1)
                .max()
                .unwrap_or(0);
        }
        let max = needed.iter().map(|s| level[*s]).max().unwrap_or(0);
        let mut out = vec![Vec::new(); max + 1];
        for &s in &needed {
            out[level[s]].push(s);
        }
        out
    }
}

/// Resolve `--target` (name or index; default: the last stage).
pub fn resolve_target(df: &Dockerfile, target: Option<&str>) -> Result<usize, DockerfileError> {
    match target {
        None => Ok(df.stages.len().saturating_sub(1)),
        Some(t) => df.stage_by_ref(t).ok_or_else(|| {
            let names: Vec<String> = df.stages.iter().filter_map(|s| s.name.clone()).collect();
            DockerfileError::new(
                &df.file,
                Pos::new(1, 1),
                format!(
                    "target stage \"{t}\" could not be found: expected one of [{}] or an index below {}",
                    names.join(", "),
                    df.stages.len()
                ),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn graph(text: &str) -> (Dockerfile, StageGraph) {
        let df = parse("Dockerfile", text).unwrap();
        let g = StageGraph::new(&df, &mut |_, w| Ok(w.text.clone())).unwrap();
        (df, g)
    }

    #[test]
    fn diamond_levels_and_skips() {
        let (df, g) = graph(
            "FROM busybox AS base\nFROM base AS left\nFROM base AS right\nFROM busybox AS lonely\nFROM scratch AS final\nCOPY --from=left /a /a\nCOPY --from=2 /b /b\n",
        );
        assert_eq!(
            g.base,
            vec![
                StageBase::Image("busybox".into()),
                StageBase::Stage(0),
                StageBase::Stage(0),
                StageBase::Image("busybox".into()),
                StageBase::Scratch
            ]
        );
        let t = resolve_target(&df, None).unwrap();
        assert_eq!(t, 4);
        assert_eq!(
            g.needed(t).into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 4]
        );
        assert_eq!(g.levels(t), vec![vec![0], vec![1, 2], vec![4]]);
        assert_eq!(g.levels(3), vec![vec![3]]);
        assert_eq!(
            g.levels(resolve_target(&df, Some("LEFT")).unwrap()),
            vec![vec![0], vec![1]]
        );
    }

    #[test]
    fn from_a_later_stage_name_is_an_error_and_unknown_names_are_images() {
        let df = parse("Dockerfile", "FROM later\nFROM busybox AS later\n").unwrap();
        let e = StageGraph::new(&df, &mut |_, w| Ok(w.text.clone())).unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:1:6: stage \"later\" is used before it is defined (line 2): a stage can only use earlier stages");
        let (_, g) = graph(
            "FROM busybox AS a\nFROM other/image:tag\nCOPY --from=registry.local/x:1 /a /b\n",
        );
        assert_eq!(g.base[1], StageBase::Image("other/image:tag".into()));
        assert!(g.deps[1].is_empty());
    }
}
