# Driven by tests/kubectl.rs: the official Python client against gabang-apiserver.
import threading
import time

from kubernetes import client, config, watch

config.load_kube_config()
v1 = client.CoreV1Api()
apps = client.AppsV1Api()

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"src": "py"}), data={"k": "v"})
created = v1.create_namespaced_config_map("default", cm)
print("created", created.metadata.name, flush=True)

listed = v1.list_namespaced_config_map("default", label_selector="src=py")
for item in listed.items:
    print("listed", item.metadata.name, flush=True)


def modify():
    time.sleep(1)
    v1.patch_namespaced_config_map("py-cm", "default", {"data": {"k": "v2"}})


threading.Thread(target=modify).start()
w = watch.Watch()
seen = 0
for ev in w.stream(v1.list_namespaced_config_map, "default", timeout_seconds=20):
    print("watched", ev["type"], ev["object"].metadata.name, flush=True)
    seen += 1
    if ev["type"] == "MODIFIED":
        w.stop()

dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="py-web"),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "py"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "py"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
        ),
    ),
)
apps.create_namespaced_deployment("default", dep)
apps.patch_namespaced_deployment_scale("py-web", "default", {"spec": {"replicas": 3}})
got = apps.read_namespaced_deployment("py-web", "default")
print("deployment", got.metadata.name, "replicas", got.spec.replicas, flush=True)
