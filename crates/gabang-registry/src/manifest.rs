//! Parsing and checking manifest documents as they arrive (raw bytes are stored and digested,
//! never re-serialised): which kind a document is, what it references, its subject.

use gabang_content::Digest;
use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const ALL_MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Whether a media type is an index (a list of manifests).
pub fn is_index_type(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_LIST
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A checked manifest or index.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The effective media type (the document's, else the Content-Type).
    pub media_type: String,
    pub is_index: bool,
    /// Blobs it needs (config + layers) — empty for an index.
    pub blobs: Vec<Digest>,
    /// Manifests it lists (index only).
    pub children: Vec<Descriptor>,
    pub subject: Option<Digest>,
    /// `artifactType`, else the config media type (for referrers).
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Check a manifest PUT body against its Content-Type. Errors are messages for MANIFEST_INVALID.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    if doc.schema_version != Some(2) {
        return Err("schemaVersion must be 2 (schema 1 is not supported)".into());
    }
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty());
    let media_type = match (&doc.media_type, &ct) {
        (Some(m), Some(c)) if m != c => {
            return Err(format!("mediaType {m:?} disagrees with Content-Type {c:?}"))
        }
        (Some(m), _) => m.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => return Err("no mediaType and no Content-Type".into()),
    };
    if !ALL_MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(format!("unsupported manifest media type {media_type:?}"));
    }
    let has_manifest_fields = doc.config.is_some() || doc.layers.is_some();
    let has_index_fields = doc.manifests.is_some();
    if has_manifest_fields && has_index_fields {
        return Err("document has both config/layers and manifests (manifest/index hybrid)".into());
    }
    let is_index = is_index_type(&media_type);
    if is_index && has_manifest_fields {
        return Err(format!("{media_type} must not have config or layers"));
    }
    if !is_index && has_index_fields {
        return Err(format!("{media_type} must not have manifests"));
    }
    let dig = |d: &Descriptor| -> Result<Digest, String> {
        if d.size < 0 {
            return Err(format!("descriptor {} has a negative size", d.digest));
        }
        d.digest
            .parse::<Digest>()
            .map_err(|e| format!("descriptor digest: {e}"))
    };
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    if is_index {
        for m in doc.manifests.unwrap_or_default() {
            dig(&m)?;
            children.push(m);
        }
    } else {
        let config = doc.config.as_ref().ok_or("manifest has no config")?;
        blobs.push(dig(config)?);
        for l in doc.layers.as_deref().unwrap_or_default() {
            blobs.push(dig(l)?);
        }
    }
    let subject = doc.subject.as_ref().map(dig).transpose()?;
    let artifact_type = doc
        .artifact_type
        .clone()
        .or_else(|| doc.config.as_ref().map(|c| c.media_type.clone()));
    Ok(Parsed {
        media_type,
        is_index,
        blobs,
        children,
        subject,
        artifact_type,
        annotations: doc.annotations,
    })
}

/// Pick the linux/amd64 entry of an index (else the first entry).
pub fn pick_platform(children: &[Descriptor]) -> Option<&Descriptor> {
    children
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .or_else(|| children.iter().find(|d| d.platform.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;
    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn kinds_and_rejections() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{D}","size":0}},"layers":[]}}"#
        );
        let p = parse(m.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert!(!p.is_index && p.blobs.len() == 1);
        assert!(parse(m.as_bytes(), Some(OCI_INDEX))
            .unwrap_err()
            .contains("disagrees"));
        let hybrid = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D}","size":0}},"layers":[],"manifests":[]}}"#
        );
        assert!(parse(hybrid.as_bytes(), Some(OCI_MANIFEST))
            .unwrap_err()
            .contains("hybrid"));
        assert!(parse(b"{", Some(OCI_MANIFEST)).is_err());
        assert!(parse(b"{\"schemaVersion\":1}", Some(OCI_MANIFEST)).is_err());
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":3}}]}}"#
        );
        let p = parse(idx.as_bytes(), Some(OCI_INDEX)).unwrap();
        assert!(p.is_index && p.children.len() == 1);
        let bad =
            r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:zz","size":3}]}"#.to_string();
        assert!(parse(bad.as_bytes(), Some(OCI_INDEX)).is_err());
    }
}
