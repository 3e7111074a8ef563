//! Low-level layer tools (hidden from help): make a layer blob from a directory and apply
//! one to a directory. Used by benchmarks and for debugging images.

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use gabang_content::digest::{Algorithm, HashingWriter};
use gabang_content::layer::apply::{apply_layer, ApplyOptions};
use gabang_content::layer::diff::compressed_tar_dir;
use gabang_content::layer::Compression;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

#[derive(Subcommand)]
pub enum LayerCommand {
    /// Write DIR as a layer tar (with OCI whiteouts) to OUT and print its digests
    Create {
        dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "gzip")]
        compression: Comp,
    },
    /// Apply a layer blob (plain, gzip or zstd) into DIR, safely, in overlay format
    Apply { blob: PathBuf, dir: PathBuf },
}

pub fn run(cmd: LayerCommand) -> Result<i32> {
    match cmd {
        LayerCommand::Create {
            dir,
            output,
            compression,
        } => {
            let f = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&output)
                    .with_context(|| format!("create {}", output.display()))?,
            );
            let comp = match compression {
                Comp::None => Compression::None,
                Comp::Gzip => Compression::Gzip,
                Comp::Zstd => Compression::Zstd,
            };
            let outer = HashingWriter::new(f, Algorithm::Sha256);
            let (outer, diff_id, n) = compressed_tar_dir(&dir, comp, outer)?;
            let (f, digest, size) = outer.finish();
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            println!("digest  {digest}\nsize    {size}\ndiff_id {diff_id}\ntar     {n}");
        }
        LayerCommand::Apply { blob, dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let f =
                std::fs::File::open(&blob).with_context(|| format!("open {}", blob.display()))?;
            let r = apply_layer(f, &dir, &ApplyOptions::default())
                .with_context(|| format!("apply {}", blob.display()))?;
            println!(
                "diff_id {}\ncompression {:?}\ntar {} bytes, {} entries, {} content bytes",
                r.diff_id, r.compression, r.tar_bytes, r.entries, r.content_bytes
            );
            for s in r.skipped {
                eprintln!("skipped: {s}");
            }
        }
    }
    Ok(0)
}
