//! Ark (`ark.mckinsey.com/v1alpha1` `Model`): the provider is `spec.provider` in the newer schema,
//! else `spec.type` (`openai`, `azure`, `bedrock`), and the endpoint is the `baseUrl` ValueSource
//! of the matching `spec.config.<provider>` block.
//!
//! A ValueSource is resolved in Ark's order: a non-empty `value` wins, then
//! `valueFrom.secretKeyRef` (a Secret, never read: unresolved), `configMapKeyRef`, `serviceRef`
//! (`http://<name>.<namespace>.svc.cluster.local:<port>/<path>`). Ark has no default base URL.

use super::value::{Field, Malformed};
use super::{Resource, usage};
use crate::detect::{Endpoint, EndpointValue, OPENAI, Usage};

pub(super) fn read(r: &Resource<'_>) -> Result<Vec<Usage>, Malformed> {
    let root = Field::root(r.object);
    let Some(spec) = root.object("spec")? else {
        return Ok(Vec::new());
    };
    let (provider, provider_path) = match spec.string("provider")? {
        Some(p) => (p, spec.path_of("provider")),
        None => (
            spec.string("type")?.unwrap_or_default(),
            spec.path_of("type"),
        ),
    };
    let config = spec.object("config")?;
    let block_key = match provider {
        "openai" => "openai",
        "azure" => "azure",
        other => {
            return Ok(vec![usage(other, r.at(&provider_path), Vec::new())]);
        }
    };
    let block_path = format!("{}.{block_key}", spec.path_of("config"));
    let block = match &config {
        Some(c) => c.object(block_key)?,
        None => None,
    };
    let endpoint = match block {
        None => r.endpoint(
            EndpointValue::Unresolved(format!(
                "{} {provider} has no {block_path} block, so Ark has no endpoint for it",
                provider_path
            )),
            &block_path,
            block_path.clone(),
        ),
        Some(block) => match block.object("baseUrl")? {
            None => {
                let path = block.path_of("baseUrl");
                r.endpoint(
                    EndpointValue::Unresolved(format!(
                        "{path} is not set; the CRD requires it and Ark has no default"
                    )),
                    &path,
                    path.clone(),
                )
            }
            Some(source) => value_source(r, &source)?,
        },
    };
    Ok(vec![usage(OPENAI, r.at(&provider_path), vec![endpoint])])
}

/// Resolves a ValueSource as Ark does (`internal/common/resolver.go:24-45`).
fn value_source(r: &Resource<'_>, source: &Field<'_>) -> Result<Endpoint, Malformed> {
    if let Some(value) = source.string("value")? {
        let path = source.path_of("value");
        return Ok(r.endpoint(EndpointValue::Url(value.into()), &path, path.clone()));
    }
    let Some(from) = source.object("valueFrom")? else {
        return Ok(r.endpoint(
            EndpointValue::Unresolved(format!("{} has neither value nor valueFrom", source.path)),
            &source.path,
            source.path.clone(),
        ));
    };
    if let Some(secret) = from.object("secretKeyRef")? {
        let name = secret.string("name")?.unwrap_or_default();
        return Ok(r.endpoint(
            EndpointValue::Unresolved(format!(
                "the endpoint is in Secret {name:?}, which hostguard never reads"
            )),
            &secret.path,
            secret.path.clone(),
        ));
    }
    if let Some(cm) = from.object("configMapKeyRef")? {
        let name = cm.string("name")?.unwrap_or_default();
        let key = cm.string("key")?.unwrap_or_default();
        let value = match r.config_map_key(name, key) {
            Ok(url) => EndpointValue::Url(url),
            Err(why) => EndpointValue::Unresolved(why),
        };
        let mut e = r.endpoint(value, &cm.path, cm.path.clone());
        e.origin = Some(format!("ConfigMap {name:?} key {key:?}"));
        return Ok(e);
    }
    if let Some(svc) = from.object("serviceRef")? {
        let name = svc.string("name")?.unwrap_or_default();
        let namespace = svc.string("namespace")?.unwrap_or(r.namespace);
        let path = svc.string("path")?.unwrap_or_default();
        // The port is a port *name* resolved against the Service; the host decides the class.
        let url = format!(
            "http://{name}.{namespace}.svc.cluster.local/{}",
            path.trim_start_matches('/')
        );
        return Ok(r.endpoint(EndpointValue::Url(url), &svc.path, svc.path.clone()));
    }
    Ok(r.endpoint(
        EndpointValue::Unresolved(format!("{} names no source", from.path)),
        &from.path,
        from.path.clone(),
    ))
}
