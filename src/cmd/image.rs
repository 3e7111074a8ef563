//! Image commands: import, images, tag, save, load, rmi, and `image …`.

use crate::ui::{self, print_table};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use gabang_content::archive::{self, SaveFormat, SaveItem};
use gabang_content::import::{import, ImportOptions};
use gabang_content::reference::familiar;
use gabang_content::{Image, ImageRef, Store};
use serde_json::{json, Value};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TopImageCommand {
    /// Import a rootfs tarball (plain, gzip or zstd; "-" for stdin) or folder as a one-layer image
    Import(ImportArgs),
    /// List images
    Images(ListArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Save images to a tar archive (OCI layout by default)
    Save(SaveArgs),
    /// Load images from an OCI layout or `docker save` archive
    Load(LoadArgs),
    /// Remove images
    Rmi(RmArgs),
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on images (JSON like docker's)
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove images
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag(TagArgs),
    /// Save images to a tar archive
    Save(SaveArgs),
    /// Load images from a tar archive
    Load(LoadArgs),
    /// Import a rootfs tarball or folder
    Import(ImportArgs),
    /// Remove unused images, then unreferenced blobs and snapshots
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// Tarball path, "-" for stdin, or a directory
    pub source: PathBuf,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL)
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message for the history
    #[arg(short, long)]
    pub message: Option<String>,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only images of this REPOSITORY[:TAG]
    pub reference: Option<String>,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_enum,
        default_value = "table"
    )]
    pub output: Output,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    pub image: String,
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove even if a container uses it or it has several tags
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ArchiveFormat {
    Oci,
    Docker,
}

#[derive(Args)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "oci")]
    pub format: ArchiveFormat,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from a file instead of stdin
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all images not used by a container, not just untagged ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt (accepted for docker compatibility)
    #[arg(short, long)]
    pub force: bool,
}

/// The process's image store under `root` (one connection, shared with the runtime).
pub fn open_store(root: &Path) -> Result<std::sync::Arc<Store>> {
    Store::shared(root).with_context(|| format!("open the image store under {}", root.display()))
}

pub fn run_top(cmd: TopImageCommand, root: &Path) -> Result<i32> {
    match cmd {
        TopImageCommand::Import(a) => run(ImageCommand::Import(a), root),
        TopImageCommand::Images(a) => run(ImageCommand::Ls(a), root),
        TopImageCommand::Tag(a) => run(ImageCommand::Tag(a), root),
        TopImageCommand::Save(a) => run(ImageCommand::Save(a), root),
        TopImageCommand::Load(a) => run(ImageCommand::Load(a), root),
        TopImageCommand::Rmi(a) => run(ImageCommand::Rm(a), root),
    }
}

pub fn run(cmd: ImageCommand, root: &Path) -> Result<i32> {
    let store = open_store(root)?;
    match cmd {
        ImageCommand::Import(a) => {
            let tag = a.reference.as_deref().map(ImageRef::parse).transpose()?;
            let opts = ImportOptions {
                changes: a.change,
                message: a.message,
            };
            let bar = if a.source.is_file() {
                let len = std::fs::metadata(&a.source).ok().map(|m| m.len());
                ui::bytes_bar(len, "Importing")
            } else {
                ui::bytes_bar(None, "Importing")
            };
            let img = import(&store, &a.source, tag.as_ref(), &opts, &|n| {
                bar.set_position(n)
            })
            .with_context(|| format!("import {}", a.source.display()))?;
            bar.finish_and_clear();
            println!("{}", img.id);
        }
        ImageCommand::Ls(a) => list(&store, &a)?,
        ImageCommand::Inspect(a) => {
            let mut out = Vec::new();
            let mut code = 0;
            for r in &a.images {
                match store.resolve_image(r) {
                    Ok(img) => out.push(inspect_json(&store, &img)),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        code = 1;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(code);
        }
        ImageCommand::History(a) => history(&store, &a)?,
        ImageCommand::Rm(a) => {
            let mut code = 0;
            for r in &a.images {
                match store.remove_image(r, a.force) {
                    Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
                    Err(e) => {
                        eprintln!("Error response: {e}");
                        code = 1;
                    }
                }
            }
            if code == 0 {
                store.gc().context("collect unused blobs")?;
            }
            return Ok(code);
        }
        ImageCommand::Tag(a) => {
            store.tag(&a.source, &a.target)?;
        }
        ImageCommand::Save(a) => {
            let mut items: Vec<SaveItem> = Vec::new();
            for r in &a.images {
                let img = store.resolve_image(r)?;
                // Name the archive entry as the user did, or all tags when named by ID.
                let names = match ImageRef::parse(r).ok().and_then(|p| p.tagged()) {
                    Some(t) if img.tags.contains(&t) => vec![t],
                    _ => img.tags.clone(),
                };
                if let Some(prev) = items.iter_mut().find(|i| i.image.id == img.id) {
                    prev.names.extend(names);
                } else {
                    items.push(SaveItem { image: img, names });
                }
            }
            let format = match a.format {
                ArchiveFormat::Oci => SaveFormat::Oci,
                ArchiveFormat::Docker => SaveFormat::Docker,
            };
            match &a.output {
                Some(p) => archive::save_to_file(&store, &items, format, p)
                    .with_context(|| format!("save to {}", p.display()))?,
                None => {
                    if io::stdout().is_terminal() {
                        bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
                    }
                    let out = archive::save(
                        &store,
                        &items,
                        format,
                        io::BufWriter::new(io::stdout().lock()),
                    )?;
                    out.into_inner().map_err(|e| e.into_error())?.flush()?;
                }
            }
        }
        ImageCommand::Load(a) => {
            let (loaded, shown) = match &a.input {
                Some(p) => {
                    let f =
                        std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
                    let len = f.metadata().ok().map(|m| m.len());
                    let bar = if a.quiet {
                        indicatif::ProgressBar::hidden()
                    } else {
                        ui::bytes_bar(len, "Loading")
                    };
                    let r = ui::ProgressReader {
                        inner: f,
                        bar: bar.clone(),
                    };
                    let shown = p.display().to_string();
                    let res = archive::load(&store, r, &shown);
                    bar.finish_and_clear();
                    (res, shown)
                }
                None => (
                    archive::load(&store, io::stdin(), "stdin"),
                    "stdin".to_string(),
                ),
            };
            let loaded = loaded.with_context(|| format!("load {shown}"))?;
            for l in loaded {
                if l.names.is_empty() {
                    println!("Loaded image ID: {}", l.image.id);
                }
                for n in &l.names {
                    println!("Loaded image: {}", familiar(n));
                }
            }
        }
        ImageCommand::Prune(a) => {
            for l in store.prune_images(a.all)? {
                println!("{l}");
            }
            let r = store.gc()?;
            println!(
                "Total reclaimed space: {} ({} blobs, {} snapshots)",
                ui::human_size(r.bytes_freed),
                r.blobs_removed,
                r.snapshots_removed
            );
        }
    }
    Ok(0)
}

fn split_tag(full: &str) -> (String, String) {
    let f = familiar(full);
    match f.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
        _ => (f, "<none>".into()),
    }
}

fn list(store: &Store, a: &ListArgs) -> Result<()> {
    let filter = a.reference.as_deref().map(ImageRef::parse).transpose()?;
    let explicit_tag = a
        .reference
        .as_deref()
        .is_some_and(|r| r.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/')));
    let mut rows = Vec::new();
    let mut json_out = Vec::new();
    for img in store.list_images()? {
        let size = store.image_size(&img);
        let created = img.config.created().clone();
        let id = if a.no_trunc {
            img.id.clone()
        } else {
            img.short_id().to_string()
        };
        let mut names: Vec<(String, String)> = img.tags.iter().map(|t| split_tag(t)).collect();
        if let Some(f) = &filter {
            names.retain(|(repo, tag)| {
                *repo == f.familiar_name() && (!explicit_tag || Some(tag.as_str()) == f.tag())
            });
            if names.is_empty() {
                continue;
            }
        }
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            json_out.push(json!({"Repository": repo, "Tag": tag, "ID": img.id, "Digest": img.manifest_digest.to_string(),
                "CreatedAt": created, "Size": size}));
            let mut row = vec![repo, tag];
            if a.digests {
                row.push(img.manifest_digest.to_string());
            }
            row.extend([
                id.clone(),
                ui::ago(created.as_deref()),
                ui::human_size(size),
            ]);
            rows.push(row);
        }
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in rows {
            let id = &r[r.len() - 3];
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&json_out)?);
        return Ok(());
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    print_table(&header, rows);
    Ok(())
}

/// docker-compatible `image inspect` document.
pub fn inspect_json(store: &Store, img: &Image) -> Value {
    let raw: Value = serde_json::from_slice(&img.config_bytes).unwrap_or(Value::Null);
    let lowers: Vec<String> = store
        .snapshot_dirs(img)
        .map(|v| v.iter().rev().map(|p| p.display().to_string()).collect())
        .unwrap_or_default();
    let repo_digests: Vec<String> = img
        .tags
        .iter()
        .map(|t| format!("{}@{}", split_tag(t).0, img.manifest_digest))
        .collect();
    json!({
        "Id": img.id,
        "RepoTags": img.tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": raw["history"].as_array().and_then(|h| h.last()).and_then(|h| h["comment"].as_str()).unwrap_or(""),
        "Created": raw["created"],
        "Author": raw.get("author").cloned().unwrap_or(json!("")),
        "Config": raw.get("config").cloned().unwrap_or(json!({})),
        "Architecture": raw["architecture"],
        "Os": raw["os"],
        "Size": store.image_size(img),
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": lowers.join(":")}},
        "RootFS": {"Type": "layers", "Layers": raw["rootfs"]["diff_ids"]},
        "Descriptor": {"mediaType": img.manifest_media_type, "digest": img.manifest_digest.to_string(),
            "size": store.blobs().info(&img.manifest_digest).map(|i| i.size).unwrap_or(0)},
    })
}

fn history(store: &Store, a: &HistoryArgs) -> Result<()> {
    let img = store.resolve_image(&a.image)?;
    let raw: Value = serde_json::from_slice(&img.config_bytes)?;
    let hist = raw["history"].as_array().cloned().unwrap_or_default();
    let chains = img.chain_ids()?;
    let mut layer_sizes = chains.iter().map(|c| {
        store
            .snapshots()
            .info(c)
            .ok()
            .flatten()
            .map(|i| i.size)
            .unwrap_or(0)
    });
    let mut rows = Vec::new();
    for h in &hist {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        let by = h["created_by"].as_str().unwrap_or("").to_string();
        let by = if a.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            format!("{}…", by.chars().take(44).collect::<String>())
        };
        rows.push(vec![
            "<missing>".to_string(),
            ui::ago(h["created"].as_str()),
            by,
            ui::human_size(size),
            h["comment"].as_str().unwrap_or("").to_string(),
        ]);
    }
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first[0] = if a.no_trunc {
            img.id.clone()
        } else {
            img.short_id().to_string()
        };
    }
    if a.quiet {
        rows.iter().for_each(|r| println!("{}", r[0]));
        return Ok(());
    }
    print_table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows);
    Ok(())
}
