#!/usr/bin/env python3
"""Writes crates/gabang-kproto/src/schema.rs: the protobuf schema of the Kubernetes
kinds the API server accepts, as a compact Rust table.

Inputs (both read from the local cargo registry, nothing is copied verbatim):
  * k8s-pb 0.9 (prost-generated from Kubernetes' .proto files): message names,
    field tags, wire types, repeated/map-ness.
  * k8s-openapi 0.24 (feature v1_32): the JSON name of each field (from the serde
    impls: `"podIP" => Field::Key_pod_ip`) and whether the field is required
    (a non-`Option` struct member).

Usage: python3 scripts/gen-kproto-schema.py [--check]
  --check: exit 1 if the committed schema.rs differs from what would be written.
Fetch the crates first if they are missing: `cargo fetch` in a project that
depends on k8s-pb = "0.9" and k8s-openapi = "0.24".
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "gabang-kproto", "src", "schema.rs")
REG = os.path.expanduser(os.environ.get("CARGO_HOME", "~/.cargo")) + "/registry/src/*/"

# (group, version, kind, k8s-pb module path, message name)
ROOTS = [
    ("", "v1", "Namespace", "api.core.v1", "Namespace"),
    ("", "v1", "Pod", "api.core.v1", "Pod"),
    ("", "v1", "Service", "api.core.v1", "Service"),
    ("", "v1", "Endpoints", "api.core.v1", "Endpoints"),
    ("", "v1", "ConfigMap", "api.core.v1", "ConfigMap"),
    ("", "v1", "Secret", "api.core.v1", "Secret"),
    ("", "v1", "Event", "api.core.v1", "Event"),
    ("", "v1", "ServiceAccount", "api.core.v1", "ServiceAccount"),
    ("", "v1", "Node", "api.core.v1", "Node"),
    ("", "v1", "Binding", "api.core.v1", "Binding"),
    ("apps", "v1", "Deployment", "api.apps.v1", "Deployment"),
    ("apps", "v1", "ReplicaSet", "api.apps.v1", "ReplicaSet"),
    ("networking.k8s.io", "v1", "Ingress", "api.networking.v1", "Ingress"),
    ("networking.k8s.io", "v1", "IngressClass", "api.networking.v1", "IngressClass"),
    ("coordination.k8s.io", "v1", "Lease", "api.coordination.v1", "Lease"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "api.discovery.v1", "EndpointSlice"),
    ("policy", "v1", "Eviction", "api.policy.v1", "Eviction"),
    ("autoscaling", "v1", "Scale", "api.autoscaling.v1", "Scale"),
    # DeleteOptions is registered in every group version; "*" matches any.
    ("*", "*", "DeleteOptions", "apimachinery.pkg.apis.meta.v1", "DeleteOptions"),
]

# Messages whose JSON form is not an object: decoded by hand in the decoder.
SPECIAL = {
    "apimachinery.pkg.apis.meta.v1.Time": "Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "apimachinery.pkg.runtime.RawExtension": "RawJson",
    "apimachinery.pkg.api.resource.Quantity": "Quantity",
    "apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
}

# Numbers and booleans that Go holds in non-pointer fields tagged `omitempty`: the
# zero value means "unset" and Kubernetes' JSON omits it (Go always writes these
# fields to protobuf, zero or not). Every other number or boolean is a pointer or
# required, so a zero on the wire is kept. Strings and bytes need no list: an
# empty one is omitted unless k8s-openapi says the field is required.
# From the Go types of k8s.io/api 1.32 (types.go); the generator fails if an
# entry names no field.
OMIT_ZERO = {
    "meta.v1.ObjectMeta": ["generation"],
    "meta.v1.Condition": ["observedGeneration"],
    "core.v1.Event": ["count"],
    "core.v1.EventSeries": ["count"],
    "core.v1.PodSpec": ["hostNetwork", "hostPID", "hostIPC"],
    "core.v1.Container": ["stdin", "stdinOnce", "tty"],
    "core.v1.EphemeralContainerCommon": ["stdin", "stdinOnce", "tty"],
    "core.v1.ContainerPort": ["hostPort"],
    "core.v1.VolumeMount": ["readOnly"],
    "core.v1.VolumeMountStatus": ["readOnly"],
    "core.v1.Probe": ["initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                      "successThreshold", "failureThreshold"],
    "core.v1.ContainerStateTerminated": ["signal"],
    "core.v1.ContainerImage": ["sizeBytes"],
    "core.v1.ServiceSpec": ["healthCheckNodePort", "publishNotReadyAddresses"],
    "core.v1.ServicePort": ["nodePort"],
    "core.v1.NodeSpec": ["unschedulable"],
    "core.v1.GcePersistentDiskVolumeSource": ["partition", "readOnly"],
    "core.v1.AwsElasticBlockStoreVolumeSource": ["partition", "readOnly"],
    "core.v1.NfsVolumeSource": ["readOnly"],
    "core.v1.IscsiVolumeSource": ["readOnly", "chapAuthDiscovery", "chapAuthSession"],
    "core.v1.GlusterfsVolumeSource": ["readOnly"],
    "core.v1.PersistentVolumeClaimVolumeSource": ["readOnly"],
    "core.v1.RbdVolumeSource": ["readOnly"],
    "core.v1.FlexVolumeSource": ["readOnly"],
    "core.v1.CinderVolumeSource": ["readOnly"],
    "core.v1.CephFsVolumeSource": ["readOnly"],
    "core.v1.FcVolumeSource": ["readOnly"],
    "core.v1.AzureFileVolumeSource": ["readOnly"],
    "core.v1.QuobyteVolumeSource": ["readOnly"],
    "core.v1.PortworxVolumeSource": ["readOnly"],
    "core.v1.ScaleIoVolumeSource": ["sslEnabled", "readOnly"],
    "core.v1.StorageOsVolumeSource": ["readOnly"],
    "apps.v1.DeploymentSpec": ["minReadySeconds", "paused"],
    "apps.v1.DeploymentStatus": ["observedGeneration", "replicas", "updatedReplicas",
                                 "availableReplicas", "unavailableReplicas", "readyReplicas"],
    "apps.v1.ReplicaSetSpec": ["minReadySeconds"],
    "apps.v1.ReplicaSetStatus": ["fullyLabeledReplicas", "observedGeneration",
                                 "readyReplicas", "availableReplicas"],
    "autoscaling.v1.ScaleSpec": ["replicas"],
    "networking.v1.ServiceBackendPort": ["number"],
}

SCALARS = {
    "string": "Str",
    "bytes": "Bytes",
    'bytes = "vec"': "Bytes",
    "bool": "Bool",
    "int32": "I32",
    "int64": "I64",
    "double": "F64",
}


def one(pattern):
    hits = sorted(glob.glob(REG + pattern))
    if not hits:
        sys.exit(f"not found in the cargo registry: {pattern} (run cargo fetch)")
    return hits[-1]


def strip_comments(src):
    return "\n".join(l for l in src.splitlines() if not l.strip().startswith("//"))


def struct_bodies(src):
    """Yields (name, body) for every `pub struct Name { ... }` (brace-matched)."""
    for m in re.finditer(r"pub struct (\w+)\s*\{", src):
        depth, i = 1, m.end()
        while depth:
            c = src[i]
            depth += c == "{"
            depth -= c == "}"
            i += 1
        yield m.group(1), src[m.end() : i - 1]


def split_type(s):
    """Reads a Rust type up to the first top-level comma; returns (type, rest)."""
    depth = 0
    for i, c in enumerate(s):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return s[:i].strip(), s[i + 1 :]
    return s.strip(), ""


def resolve(module, ty):
    """Resolves a prost type path (`super::super::core::v1::X`) to `a.b.c.X`."""
    ty = re.sub(r"\s+", "", ty)
    for wrap in (
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ):
        while ty.startswith(wrap):
            ty = ty[len(wrap) : -1]
    if ty.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = ty[len("::prost::alloc::collections::BTreeMap<") : -1]
        _, ty = inner.split(",", 1)
        ty = ty.rstrip(",")
    parts = ty.split("::")
    base = module.split(".")
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    return ".".join(base + parts)


def parse_pb(pb_src):
    """{full message name: [(tag, rust_name, kind, card, type)]}"""
    msgs = {}
    for path in glob.glob(pb_src + "/**/mod.rs", recursive=True):
        module = ".".join(os.path.relpath(os.path.dirname(path), pb_src).split(os.sep))
        with open(path) as f:
            src = strip_comments(f.read())
        for name, body in struct_bodies(src):
            fields = []
            rest = body
            while True:
                m = re.search(r"#\[prost\((.*?)\)\]\s*pub (?:r#)?(\w+)\s*:", rest, re.S)
                if not m:
                    break
                attr, rname = m.group(1), m.group(2)
                ty, rest = split_type(rest[m.end() :])
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                mm = re.match(r'btree_map = "string, (\w+)"', attr)
                if mm:
                    card, kind = "Map", mm.group(1)
                else:
                    kind = attr.split(",")[0].strip()
                    card = "List" if "repeated" in attr else "One"
                    if "oneof" in attr or "enumeration" in attr:
                        sys.exit(f"unsupported prost attribute in {module}.{name}: {attr}")
                target = resolve(module, ty) if kind == "message" else None
                fields.append((tag, rname, kind, card, target))
            msgs[f"{module}.{name}"] = fields
    return msgs


def parse_openapi(oa_src):
    """{module.Struct: {rust_name: (json_name, required)}}, plus a global name map."""
    types, global_names = {}, {}
    for path in glob.glob(oa_src + "/**/*.rs", recursive=True):
        if path.endswith("mod.rs"):
            continue
        module = ".".join(os.path.relpath(os.path.dirname(path), oa_src).split(os.sep))
        with open(path) as f:
            src = f.read()
        jsons = dict(
            (key, js) for js, key in re.findall(r'"([^"]+)" => Field::Key_(\w+),', src)
        )
        for name, body in struct_bodies(strip_comments(src)):
            fields = {}
            for rname, ty in re.findall(r"pub (\w+)\s*:\s*([^\n]*),\n", body):
                if rname in jsons:
                    fields[rname.rstrip("_")] = (jsons[rname], not ty.startswith("Option<"))
                    global_names[rname.rstrip("_")] = jsons[rname]
            types[f"{module}.{name}"] = fields
    return types, global_names


def short(full):
    for p in ("apimachinery.pkg.apis.", "apimachinery.pkg.", "api."):
        if full.startswith(p):
            return full[len(p) :]
    return full


def norm(name):
    return name.replace("_", "").lower()


def main():
    pb = parse_pb(one("k8s-pb-0.9.*/src"))
    oa_raw, global_names = parse_openapi(one("k8s-openapi-0.24.*/src/v1_32"))
    # prost and k8s-openapi spell some names differently (PodDnsConfig / PodDNSConfig,
    # pod_cid_rs / pod_cidrs, a_pi_group / api_group): match them case- and
    # underscore-insensitively.
    oa = {}
    for full, fields in oa_raw.items():
        mod, _, name = full.rpartition(".")
        oa[mod + "." + norm(name)] = {norm(k): v for k, v in fields.items()}
    global_norm = {norm(k): v for k, v in global_names.items()}

    def openapi_of(full):
        mod, _, name = full.rpartition(".")
        return oa.get(mod + "." + norm(name))

    order, seen = [], set()
    stack = [f"{m}.{n}" for (_, _, _, m, n) in ROOTS]
    while stack:
        name = stack.pop(0)
        if name in seen or name in SPECIAL:
            continue
        if name not in pb:
            sys.exit(f"message {name} is not in k8s-pb")
        seen.add(name)
        order.append(name)
        for (_, _, kind, _, target) in pb[name]:
            if kind == "message":
                stack.append(target)
    index = {n: i for i, n in enumerate(order)}

    # Field names per message: from the message's own k8s-openapi struct, else from
    # the struct of a message that embeds it inline (Go `json:",inline"`: Volume
    # embeds VolumeSource, Probe embeds ProbeHandler, ...).
    names_of = {n: openapi_of(n) for n in order}
    inline = set()
    changed = True
    while changed:
        changed = False
        for name in order:
            own = names_of[name]
            if own is None:
                continue
            for (_, rname, kind, card, target) in pb[name]:
                if kind != "message" or norm(rname) in own or target in SPECIAL:
                    continue
                sub = [norm(f[1]) for f in pb[target]]
                if card == "One" and sub and all(f in own or f not in global_norm for f in sub) \
                        and any(f in own for f in sub):
                    if (name, rname) not in inline:
                        inline.add((name, rname))
                        changed = True
                    if names_of[target] is None:
                        names_of[target] = own
                        changed = True

    # Keep the fields k8s-openapi v1_32 knows (and inline embeddings); fields
    # newer than Kubernetes 1.32 are left out, so they are skipped like any unknown
    # protobuf field, as a 1.32 API server would. Then walk the kinds again over
    # the kept fields only.
    skipped = []

    def kept(name):
        names = names_of.get(name) or {}
        out = []
        for f in sorted(pb[name]):
            if (name, f[1]) in inline or norm(f[1]) in names:
                out.append(f)
            else:
                skipped.append(f"{name}.{f[1]}")
        return out

    order, seen, fields_of = [], set(), {}
    stack = [f"{m}.{n}" for (_, _, _, m, n) in ROOTS]
    while stack:
        name = stack.pop(0)
        if name in seen or name in SPECIAL:
            continue
        seen.add(name)
        order.append(name)
        fields_of[name] = kept(name)
        for (_, _, kind, _, target) in fields_of[name]:
            if kind == "message":
                stack.append(target)
    index = {n: i for i, n in enumerate(order)}

    used = set()
    out = [
        "// @generated by scripts/gen-kproto-schema.py from k8s-pb 0.9 (tags, wire types)",
        "// and k8s-openapi 0.24 v1_32 (JSON names, required fields). Do not edit by hand.",
        "",
        "use crate::table::{Card::*, Field, Kind, Message, Ty::*};",
        "",
        f"/// {len(order)} messages: every kind in [`KINDS`] and what it contains.",
        "pub static MESSAGES: &[Message] = &[",
    ]
    for name in order:
        names = names_of[name] or {}
        out.append(f'    Message {{ name: "{short(name)}", fields: &[')
        for (tag, rname, kind, card, target) in fields_of[name]:
            if (name, rname) in inline:
                js, req, card = "", False, "Inline"
            else:
                js, req = names[norm(rname)]
            if kind == "message":
                ty = SPECIAL.get(target) or f"Msg({index[target]})"
            else:
                ty = SCALARS[kind]
            if card != "One":
                omit = False
            elif kind in ("string", 'bytes = "vec"'):
                omit = not req
            else:
                omit = js in OMIT_ZERO.get(short(name), [])
                if omit:
                    used.add((short(name), js))
            out.append(
                f'        Field {{ tag: {tag}, json: "{js}", ty: {ty}, card: {card}, omit_empty: {str(omit).lower()} }},'
            )
        out.append("    ] },")
    out.append("];")
    out.append("")
    out.append("/// (group, version, kind) → index in [`MESSAGES`]; `*` matches any group or version.")
    out.append("pub static KINDS: &[Kind] = &[")
    for (g, v, k, m, n) in ROOTS:
        out.append(
            f'    Kind {{ group: "{g}", version: "{v}", kind: "{k}", message: {index[m + "." + n]} }},'
        )
    out.append("];")
    text = "\n".join(out) + "\n"

    for m, names in OMIT_ZERO.items():
        for js in names:
            if (m, js) not in used:
                sys.exit(f"OMIT_ZERO names {m}.{js}, which is not a number or boolean field")
    for f in skipped:
        print("note: not in k8s-openapi v1_32, skipped:", f, file=sys.stderr)
    for (n, f) in sorted(inline):
        print(f"note: inline: {n}.{f}", file=sys.stderr)
    if "--check" in sys.argv:
        with open(OUT) as f:
            if f.read() != text:
                sys.exit(f"{OUT} is out of date: run scripts/gen-kproto-schema.py")
        return
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, OUT)
    print(f"wrote {OUT}: {len(order)} messages, {len(ROOTS)} kinds", file=sys.stderr)


main()
