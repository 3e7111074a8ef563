//! The generated table against k8s-openapi: every JSON name it can produce is a
//! field k8s-openapi v1_32 knows (a wrong name would be dropped by the server's
//! typed decoding), and the table is well formed (sorted unique tags, valid
//! message indices, no cycles, so recursion is bounded by the schema itself).

use gabang_kproto::schema::{KINDS, MESSAGES};
use gabang_kproto::table::{Card, Ty};
use k8s_openapi::api::{apps::v1 as apps, autoscaling::v1 as autoscaling};
use k8s_openapi::api::{coordination::v1 as coord, core::v1 as core, discovery::v1 as disc};
use k8s_openapi::api::{networking::v1 as net, policy::v1 as policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Map, Value};

/// A JSON object with every field of message `idx` set to a sample value.
fn sample(idx: u16, depth: usize) -> Map<String, Value> {
    assert!(depth < 40, "the schema nests too deep (a cycle?)");
    let mut out = Map::new();
    for f in MESSAGES[usize::from(idx)].fields {
        if f.card == Card::Inline {
            let Ty::Msg(i) = f.ty else {
                panic!("inline field {} is not a message", f.tag)
            };
            out.extend(sample(i, depth + 1));
            continue;
        }
        let one = match f.ty {
            Ty::Str => json!("x"),
            Ty::Bytes => json!("eA=="),
            Ty::Bool => json!(true),
            Ty::I32 | Ty::I64 => json!(1),
            Ty::F64 => json!(1.5),
            Ty::Msg(i) => Value::Object(sample(i, depth + 1)),
            Ty::Time => json!("2024-01-02T03:04:05Z"),
            Ty::MicroTime => json!("2024-01-02T03:04:05.123456Z"),
            Ty::Duration => json!("1m0s"),
            Ty::Quantity => json!("1"),
            Ty::IntOrString => json!(1),
            Ty::RawJson => json!({"f:x": {}}),
        };
        let v = match f.card {
            Card::List => json!([one]),
            Card::Map => json!({"k": one}),
            _ => one,
        };
        out.insert(f.json.to_string(), v);
    }
    out
}

/// Keys of `input` that the typed round trip dropped.
fn dropped(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = format!("{path}.{key}");
                match k.get(key) {
                    None => out.push(p),
                    Some(kv) => dropped(v, kv, &p, out),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (a, b) in i.iter().zip(k) {
                dropped(a, b, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Value {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    serde_json::to_value(&t).unwrap()
}

#[test]
fn every_json_name_is_known_to_k8s_openapi() {
    for k in KINDS {
        let v = Value::Object(sample(k.message, 0));
        let back = match k.kind {
            "Namespace" => round_trip::<core::Namespace>(&v),
            "Pod" => round_trip::<core::Pod>(&v),
            "Service" => round_trip::<core::Service>(&v),
            "Endpoints" => round_trip::<core::Endpoints>(&v),
            "ConfigMap" => round_trip::<core::ConfigMap>(&v),
            "Secret" => round_trip::<core::Secret>(&v),
            "Event" => round_trip::<core::Event>(&v),
            "ServiceAccount" => round_trip::<core::ServiceAccount>(&v),
            "Node" => round_trip::<core::Node>(&v),
            "Binding" => round_trip::<core::Binding>(&v),
            "Deployment" => round_trip::<apps::Deployment>(&v),
            "ReplicaSet" => round_trip::<apps::ReplicaSet>(&v),
            "Ingress" => round_trip::<net::Ingress>(&v),
            "IngressClass" => round_trip::<net::IngressClass>(&v),
            "Lease" => round_trip::<coord::Lease>(&v),
            "EndpointSlice" => round_trip::<disc::EndpointSlice>(&v),
            "Eviction" => round_trip::<policy::Eviction>(&v),
            "Scale" => round_trip::<autoscaling::Scale>(&v),
            "DeleteOptions" => round_trip::<meta::DeleteOptions>(&v),
            other => panic!("no k8s-openapi type listed for {other}"),
        };
        let mut lost = Vec::new();
        dropped(&v, &back, k.kind, &mut lost);
        assert!(
            lost.is_empty(),
            "{}: names k8s-openapi does not know: {lost:?}",
            k.kind
        );
    }
}

#[test]
fn table_is_well_formed() {
    for m in MESSAGES {
        let tags: Vec<u32> = m.fields.iter().map(|f| f.tag).collect();
        assert!(
            tags.windows(2).all(|w| w[0] < w[1]),
            "{}: tags not sorted/unique",
            m.name
        );
        for f in m.fields {
            if let Ty::Msg(j) = f.ty {
                assert!(usize::from(j) < MESSAGES.len(), "{}.{}", m.name, f.json);
            }
            assert_eq!(
                f.json.is_empty(),
                f.card == Card::Inline,
                "{}.{}",
                m.name,
                f.tag
            );
            assert!(m.field(f.tag).is_some_and(|g| std::ptr::eq(g, f)));
        }
    }
    for k in KINDS {
        assert!(usize::from(k.message) < MESSAGES.len(), "{}", k.kind);
    }
    // No cycles: sample() asserts a bounded depth from every message.
    for i in 0..MESSAGES.len() {
        sample(u16::try_from(i).unwrap(), 0);
    }
}
