//! KAITO (`kaito.sh` `RAGEngine`, v1alpha1 and v1beta1): the RAG service POSTs OpenAI
//! chat-completions bodies to `spec.inferenceService.url`, and a remote embedding model is called
//! at `spec.embedding.remote.url`. No inference service (v1beta1: retrieve-only) and a local
//! embedding model call no model API.

use super::value::{Field, Malformed};
use super::{Resource, usage};
use crate::detect::{EndpointValue, OPENAI, Usage};

pub(super) fn read_rag_engine(r: &Resource<'_>) -> Result<Vec<Usage>, Malformed> {
    let root = Field::root(r.object);
    let Some(spec) = root.object("spec")? else {
        return Ok(Vec::new());
    };
    let mut endpoints = Vec::new();
    if let Some(inference) = spec.object("inferenceService")? {
        let path = inference.path_of("url");
        match inference.string("url")? {
            Some(url) => {
                endpoints.push(r.endpoint(EndpointValue::Url(url.into()), &path, path.clone()))
            }
            None if r.version == "v1alpha1" => endpoints.push(r.endpoint(
                EndpointValue::Unresolved(format!("{path} is required in v1alpha1 and not set")),
                &path,
                path.clone(),
            )),
            None => {}
        }
    }
    if let Some(remote) = spec
        .object("embedding")?
        .map(|e| e.object("remote"))
        .transpose()?
        .flatten()
    {
        let path = remote.path_of("url");
        match remote.string("url")? {
            Some(url) => {
                endpoints.push(r.endpoint(EndpointValue::Url(url.into()), &path, path.clone()))
            }
            None => endpoints.push(r.endpoint(
                EndpointValue::Unresolved(format!(
                    "{path} is required for a remote embedding and not set"
                )),
                &path,
                path.clone(),
            )),
        }
    }
    if endpoints.is_empty() {
        return Ok(Vec::new());
    }
    let first = endpoints[0].path.clone();
    Ok(vec![usage(OPENAI, first, endpoints)])
}
