//! Low-level layer tools (hidden from help): make a layer blob from a directory and apply
//! one to a directory. Used by benchmarks and for debugging images.

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use gabang_content::digest::{Algorithm, HashingWriter};
use gabang_content::layer::apply::{apply_layer, ApplyOptions};
use gabang_content::layer::diff::tar_dir;
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
            let outer = HashingWriter::new(f, Algorithm::Sha256);
            let (outer, diff_id, n) = match compression {
                Comp::None => tar_dir(&dir, HashingWriter::new(outer, Algorithm::Sha256))?.finish(),
                Comp::Gzip => {
                    let enc = flate2::write::GzEncoder::new(outer, flate2::Compression::fast());
                    let (enc, d, n) =
                        tar_dir(&dir, HashingWriter::new(enc, Algorithm::Sha256))?.finish();
                    (enc.finish()?, d, n)
                }
                Comp::Zstd => {
                    let enc = zstd::stream::write::Encoder::new(outer, 3)?;
                    let (enc, d, n) =
                        tar_dir(&dir, HashingWriter::new(enc, Algorithm::Sha256))?.finish();
                    (enc.finish()?, d, n)
                }
            };
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
