//! A container's image: taken from the node's content store, pulled through gabang's
//! registry client as `imagePullPolicy` says. A failed pull is `ErrImagePull`; until its
//! backoff passes the container waits with `ImagePullBackOff`.

use std::time::Instant;

use gabang_content::{Image, ImageRef};

use super::sync::{Events, Waiting};
use super::{PodRuntime, PodState};
use crate::backoff::Backoff;
use crate::podspec::PullPolicy;

/// A failed pull of one image, per pod.
pub(super) struct PullBackoff {
    backoff: Backoff,
    retry_at: Instant,
    message: String,
}

/// The image of a container about to be created, or why it waits.
pub(super) fn ensure(
    rt: &PodRuntime,
    st: &mut PodState,
    image: &str,
    policy: PullPolicy,
    ev: &mut Events,
) -> Result<Image, Waiting> {
    let local = rt.content.resolve_image(image);
    match (policy, local) {
        (PullPolicy::IfNotPresent | PullPolicy::Never, Ok(img)) => {
            ev.normal(
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(img);
        }
        (PullPolicy::Never, Err(_)) => {
            let msg =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            ev.warning("ErrImageNeverPull", msg.clone());
            return Err(Waiting::new("ErrImageNeverPull", msg));
        }
        _ => {}
    }
    let now = Instant::now();
    if let Some(b) = st.images.get(image) {
        if now < b.retry_at {
            let msg = format!("Back-off pulling image \"{image}\": {}", b.message);
            ev.normal("BackOff", format!("Back-off pulling image \"{image}\""));
            return Err(Waiting::new("ImagePullBackOff", msg).until(b.retry_at));
        }
    }
    ev.normal("Pulling", format!("Pulling image \"{image}\""));
    match pull(rt, image) {
        Ok(img) => {
            st.images.remove(image);
            ev.normal(
                "Pulled",
                format!(
                    "Successfully pulled image \"{image}\" in {:.3}s",
                    now.elapsed().as_secs_f64()
                ),
            );
            Ok(img)
        }
        Err(e) => {
            let message = format!("failed to pull and unpack image \"{image}\": {e}");
            let b = st
                .images
                .entry(image.to_owned())
                .or_insert_with(|| PullBackoff {
                    backoff: Backoff::new(),
                    retry_at: now,
                    message: String::new(),
                });
            b.retry_at = b.backoff.on_exit(now, now);
            b.message = message.clone();
            ev.warning("Failed", format!("Failed to pull image \"{image}\": {e}"));
            ev.warning("Failed", "Error: ErrImagePull".to_owned());
            Err(Waiting::new("ErrImagePull", message).until(b.retry_at))
        }
    }
}

fn pull(rt: &PodRuntime, image: &str) -> Result<Image, String> {
    let r = ImageRef::parse(image).map_err(|e| e.to_string())?;
    let opts = gabang_registry::client::Options::default();
    gabang_registry::client::pull(&rt.content, &r, &opts)
        .map(|(img, _)| img)
        .map_err(|e| e.to_string())
}
