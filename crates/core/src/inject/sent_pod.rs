//! The Pod as the API server sent it, parsed for the webhook.
//!
//! Two things a plain `serde_json::from_str::<Pod>` gets wrong here:
//! - the typed `Pod` defaults a missing `metadata`, but a patch into a
//!   missing object would fail, so we keep whether it was there;
//! - a container's `env` list grows by doubling while serde fills it, and an
//!   `EnvVar` is some 300 bytes: a pod with 100,000 variables briefly holds
//!   one and a half lists (SPEC §10 bounds one answer's memory). Each `env`
//!   is counted first (a scan that allocates nothing) and filled once.
//!
//! That careful parse reads the spec's text three times, so a pod of at
//! most [`ONE_PASS`] bytes, whose lists cannot grow past a small multiple
//! of it, is parsed in one pass.
//!
//! Everything else goes through `k8s_openapi`'s own deserializers, from the
//! same JSON text.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The parsed pod and whether it had a `metadata` object.
#[derive(Debug)]
pub struct SentPod {
    pub pod: Pod,
    pub has_metadata: bool,
}

/// The largest pod text parsed in one pass.
pub const ONE_PASS: usize = 64 << 10;

#[derive(Deserialize)]
struct Whole {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<PodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default, borrow)]
    spec: Option<&'a RawValue>,
    #[serde(default)]
    status: Option<PodStatus>,
}

type Fields<'a> = BTreeMap<Cow<'a, str>, &'a RawValue>;

/// Parses `request.object`.
pub fn parse(raw: &str) -> Result<SentPod, serde_json::Error> {
    if raw.len() > ONE_PASS {
        return parse_large(raw);
    }
    let w: Whole = serde_json::from_str(raw)?;
    Ok(SentPod {
        has_metadata: w.metadata.is_some(),
        pod: Pod {
            metadata: w.metadata.unwrap_or_default(),
            spec: w.spec,
            status: w.status,
        },
    })
}

/// [`parse`] for a pod over [`ONE_PASS`] bytes: every `env` list allocated
/// once, at its size.
fn parse_large(raw: &str) -> Result<SentPod, serde_json::Error> {
    let top: Top<'_> = serde_json::from_str(raw)?;
    let spec = match top.spec {
        Some(s) if s.get() != "null" => Some(spec(s)?),
        _ => None,
    };
    Ok(SentPod {
        has_metadata: top.metadata.is_some(),
        pod: Pod {
            metadata: top.metadata.unwrap_or_default(),
            spec,
            status: top.status,
        },
    })
}

/// An object's text from its fields, `extra` appended.
fn object(fields: &Fields<'_>, extra: &str) -> Result<String, serde_json::Error> {
    let mut out = String::from("{");
    for (k, v) in fields {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k.as_ref())?);
        out.push(':');
        out.push_str(v.get());
    }
    if !extra.is_empty() {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(extra);
    }
    out.push('}');
    Ok(out)
}

fn spec(raw: &RawValue) -> Result<PodSpec, serde_json::Error> {
    let mut fields: Fields<'_> = serde_json::from_str(raw.get())?;
    let main = fields.remove("containers").map(containers).transpose()?;
    let init = fields
        .remove("initContainers")
        .filter(|r| r.get() != "null")
        .map(containers)
        .transpose()?;
    let mut spec: PodSpec = serde_json::from_str(&object(&fields, r#""containers":[]"#)?)?;
    spec.containers = main.unwrap_or_default();
    spec.init_containers = init;
    Ok(spec)
}

fn containers(raw: &RawValue) -> Result<Vec<Container>, serde_json::Error> {
    let items: Vec<Fields<'_>> = serde_json::from_str(raw.get())?;
    items
        .into_iter()
        .map(|mut fields| {
            let env = fields
                .remove("env")
                .filter(|r| r.get() != "null")
                .map(env)
                .transpose()?;
            let mut c: Container = serde_json::from_str(&object(&fields, "")?)?;
            c.env = env;
            Ok(c)
        })
        .collect()
}

fn env(raw: &RawValue) -> Result<Vec<EnvVar>, serde_json::Error> {
    // `IgnoredAny` is zero-sized: counting allocates nothing.
    let n = serde_json::from_str::<Vec<IgnoredAny>>(raw.get())?.len();
    let mut out = Vec::with_capacity(n);
    Fill(&mut out).deserialize(&mut serde_json::Deserializer::from_str(raw.get()))?;
    Ok(out)
}

/// Deserializes a sequence into an existing vector.
struct Fill<'v, T>(&'v mut Vec<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Fill<'_, T> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Fill<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(x) = seq.next_element()? {
            self.0.push(x);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The same Pod as the plain parse, for every shape that matters.
    #[test]
    fn parses_as_the_plain_deserializer_does() {
        for pod in [
            json!({"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"containers": [
                {"name": "app", "image": "i", "env": [{"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "ports": [{"containerPort": 80}]},
                {"name": "side", "env": null}],
                "initContainers": [{"name": "init", "env": [{"name": "C"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}], "nodeName": "n",
                "securityContext": {"runAsUser": 1000}}}),
            json!({"spec": {"containers": [{"name": "app"}], "initContainers": null}}),
            json!({"metadata": {}, "spec": null}),
            json!({}),
            json!({"metadata": {"name": "e\"scaped"}, "spec": {"containers": [{"name": "a", "env": []}]}}),
        ] {
            let text = pod.to_string();
            let plain: Pod = serde_json::from_str(&text).expect("plain");
            for (path, ours) in [
                ("one pass", parse(&text).expect("ours")),
                ("large", parse_large(&text).expect("large")),
            ] {
                assert_eq!(ours.pod, plain, "{path}: {text}");
                assert_eq!(ours.has_metadata, pod.get("metadata").is_some(), "{path}");
            }
        }
    }

    #[test]
    fn env_lists_of_a_large_pod_are_allocated_at_their_size() {
        let env: Vec<_> = (0..3000)
            .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
            .collect();
        let text = json!({"spec": {"containers": [{"name": "a", "env": env}]}}).to_string();
        assert!(text.len() > ONE_PASS, "{} bytes", text.len());
        let p = parse(&text).expect("parse");
        let e = p.pod.spec.expect("spec").containers[0]
            .env
            .clone()
            .expect("env");
        assert_eq!(e.len(), 3000);
        let spec = parse(&text).expect("parse").pod.spec.expect("spec");
        let env = spec.containers[0].env.as_ref().expect("env");
        assert_eq!(env.capacity(), 3000, "filled once, no doubling");
    }

    #[test]
    fn a_wrong_shape_is_an_error_not_a_panic() {
        for bad in [
            r#"{"spec": {"containers": "no"}}"#,
            r#"{"spec": {"containers": [{"env": 5}]}}"#,
            r#"[1]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
            assert!(parse_large(bad).is_err(), "{bad}");
        }
    }
}
