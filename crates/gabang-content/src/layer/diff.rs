//! Directory → layer tar. Overlay-format whiteouts in the directory (0/0 character devices,
//! `trusted.overlay.opaque=y`) become OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`); hardlinks
//! stay hardlinks; `security.capability` and `user.*` xattrs travel as PAX records. Entries
//! are sorted, so the same tree gives the same bytes.

use super::Compression;
use crate::blobs::BlobStore;
use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::error::{IoContext, Result};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A layer blob written to the store.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Digest of the stored (compressed) blob.
    pub digest: Digest,
    /// Size of the stored blob.
    pub size: u64,
    pub media_type: String,
    pub tar_size: u64,
}

/// Write the tar of `dir` into `w`.
pub fn tar_dir<W: Write>(dir: &Path, w: W) -> Result<W> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Complete);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk(dir, Path::new(""), &mut b, &mut links)?;
    b.into_inner().ctx(|| "finish layer tar".to_string())
}

fn walk<W: Write>(
    abs: &Path,
    rel: &Path,
    b: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(abs)
        .ctx(|| format!("read {}", abs.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let p = abs.join(&name);
        let r = rel.join(&name);
        let md = fs::symlink_metadata(&p).ctx(|| format!("stat {}", p.display()))?;
        let ft = md.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        let ctx = || format!("add {} to layer", p.display());
        if ft.is_char_device() && md.rdev() == 0 {
            // overlay whiteout → OCI whiteout file
            let mut wh = tar::Header::new_gnu();
            wh.set_entry_type(tar::EntryType::Regular);
            wh.set_size(0);
            wh.set_mode(0o644);
            wh.set_mtime(md.mtime().max(0) as u64);
            let mut whname = std::ffi::OsString::from(".wh.");
            whname.push(&name);
            b.append_data(&mut wh, rel.join(whname), io::empty())
                .ctx(ctx)?;
            continue;
        }
        append_xattrs(b, &p, &r)?;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            let mut dname = r.as_os_str().to_owned();
            dname.push("/");
            b.append_data(&mut h, &dname, io::empty()).ctx(ctx)?;
            if is_opaque(&p) {
                let mut oh = tar::Header::new_gnu();
                oh.set_entry_type(tar::EntryType::Regular);
                oh.set_size(0);
                oh.set_mode(0o644);
                oh.set_mtime(md.mtime().max(0) as u64);
                b.append_data(&mut oh, r.join(".wh..wh..opq"), io::empty())
                    .ctx(ctx)?;
            }
            walk(&p, &r, b, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&p).ctx(ctx)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &r, &target).ctx(ctx)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &r, first).ctx(ctx)?;
                    continue;
                }
                links.insert(key, r.clone());
            }
            let f = fs::File::open(&p).ctx(ctx)?;
            b.append_data(&mut h, &r, f).ctx(ctx)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            h.set_size(0);
            b.append_data(&mut h, &r, io::empty()).ctx(ctx)?;
        }
        // sockets are not content; skipped like docker does
    }
    Ok(())
}

fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(p, "trusted.overlay.opaque", &mut buf[..]), Ok(n) if n >= 1 && buf[0] == b'y')
}

fn append_xattrs<W: Write>(b: &mut tar::Builder<W>, p: &Path, r: &Path) -> Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(p, &mut names[..]) {
        Ok(n) => n,
        Err(_) => return Ok(()),
    };
    let mut records = Vec::new();
    for name in names[..n].split(|c| *c == 0).filter(|s| !s.is_empty()) {
        if !(name.starts_with(b"user.") || name == b"security.capability") {
            continue;
        }
        let mut val = vec![0u8; 65536];
        let Ok(vn) = rustix::fs::lgetxattr(p, name, &mut val[..]) else {
            continue;
        };
        let mut rec = b"SCHILY.xattr.".to_vec();
        rec.extend_from_slice(name);
        rec.push(b'=');
        rec.extend_from_slice(&val[..vn]);
        rec.push(b'\n');
        // "LEN key=value\n", where LEN counts itself.
        let mut len = rec.len() + 2;
        loop {
            let total = len.to_string().len() + 1 + rec.len();
            if total == len {
                break;
            }
            len = total;
        }
        records.extend_from_slice(format!("{len} ").as_bytes());
        records.extend_from_slice(&rec);
    }
    if records.is_empty() {
        return Ok(());
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(records.len() as u64);
    h.set_mode(0o644);
    let name = format!("PaxHeaders/{}", r.display());
    let short: String = name.chars().take(90).collect();
    h.set_path(&short)
        .ctx(|| format!("pax header for {}", p.display()))?;
    h.set_cksum();
    b.append(&h, &records[..])
        .ctx(|| format!("pax header for {}", p.display()))
}

/// Tar `dir` compressed with `compression` into `w`; returns `w`, the diff id and the tar size.
pub fn compressed_tar_dir<W: Write>(
    dir: &Path,
    compression: Compression,
    w: W,
) -> Result<(W, Digest, u64)> {
    Ok(match compression {
        Compression::None => tar_dir(dir, HashingWriter::new(w, Algorithm::Sha256))?.finish(),
        Compression::Gzip => {
            let enc = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
            let (enc, d, n) = tar_dir(dir, HashingWriter::new(enc, Algorithm::Sha256))?.finish();
            (enc.finish().ctx(|| "finish gzip".to_string())?, d, n)
        }
        Compression::Zstd => {
            let enc = zstd::stream::write::Encoder::new(w, 3).ctx(|| "zstd".to_string())?;
            let (enc, d, n) = tar_dir(dir, HashingWriter::new(enc, Algorithm::Sha256))?.finish();
            (enc.finish().ctx(|| "finish zstd".to_string())?, d, n)
        }
    })
}

/// Tar `dir`, compress it, and store it as a blob; returns both digests.
pub fn write_layer(blobs: &BlobStore, dir: &Path, compression: Compression) -> Result<LayerBlob> {
    let bw = blobs.writer(Algorithm::Sha256)?;
    let (bw, diff_id, tar_size) = compressed_tar_dir(dir, compression, bw)?;
    let size = bw.bytes_written();
    let digest = bw.commit(None, None)?;
    Ok(LayerBlob {
        diff_id,
        digest,
        size,
        media_type: compression.oci_media_type().to_string(),
        tar_size,
    })
}
