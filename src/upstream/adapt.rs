//! Provider adapters: the upstream URI for a request and, when a model mapping applies, the
//! rewritten body. Azure's classic API picks a deployment from the request's `model`; any
//! upstream may rename models (`models`). Everything else goes byte-identical.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::uri::PathAndQuery;
use http::{Method, Uri};

use super::model::{self, ModelError};
use super::{azure, rest_of, Endpoint, UpstreamClient};

/// The request as this upstream receives it.
pub struct Adapted {
    pub uri: Uri,
    /// The rewritten body, when a model mapping applied; `None` means "as the client sent it".
    pub body: Option<Bytes>,
}

/// A request this upstream's adapter cannot forward as asked.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    #[error("model {model:?} is not mapped to a deployment of upstream {upstream}; the gateway operator can add it to upstreams.{upstream}.deployments")]
    ModelNotMapped { model: String, upstream: String },
    #[error("{endpoint} needs the request's \"model\" to choose an Azure deployment of upstream {upstream}: {detail}")]
    ModelRequired {
        upstream: String,
        endpoint: String,
        detail: String,
    },
    #[error("the request's \"model\" cannot be renamed for upstream {upstream}: {error}")]
    Ambiguous { upstream: String, error: ModelError },
    #[error("deployment {deployment:?} is not one of upstream {upstream}'s deployments; the gateway operator can add it to upstreams.{upstream}.deployments")]
    DeploymentNotConfigured {
        deployment: String,
        upstream: String,
    },
    #[error("cannot build the upstream URI: {0}")]
    Uri(String),
}

/// How the request body carries its fields.
#[derive(Debug, PartialEq, Eq)]
enum BodyKind {
    Json,
    /// `multipart/form-data` with this boundary.
    Multipart(String),
    /// Compressed, or a content type without a `model` field the gateway can read.
    Opaque,
}

impl UpstreamClient {
    /// Whether the whole body must be read before the request can be adapted and sent:
    /// SigV4 signs its hash; a model mapping (JSON bodies only: nothing else is renamed) or
    /// an Azure deployment needs its `model`.
    pub fn needs_body(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        base_path: &str,
    ) -> bool {
        if self.pool().endpoints().iter().any(|e| e.auth.needs_body()) {
            return true;
        }
        if !carries_body(method) {
            return false;
        }
        if !self.models.is_empty() && matches!(body_kind(headers), BodyKind::Json) {
            return true;
        }
        self.azure_classic.is_some()
            && *method == Method::POST
            && rest_of(base_path, path).is_some_and(azure::is_deployment_scoped)
    }

    /// The upstream URI for this request, and its body if a model mapping rewrote it.
    /// `body` is the whole body when `needs_body` asked for it (or the classifier read it).
    pub async fn adapt(
        &self,
        endpoint: &Endpoint,
        base_path: &str,
        method: &Method,
        pq: &PathAndQuery,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<Adapted, AdaptError> {
        let uri_error = |e: http::Error| AdaptError::Uri(e.to_string());
        let body = body.filter(|_| carries_body(method));
        let kind = body_kind(headers);
        let renamed = match (body, &kind) {
            (Some(bytes), BodyKind::Json) if !self.models.is_empty() => self.rename(bytes)?,
            _ => None,
        };

        let Some(classic) = &self.azure_classic else {
            let uri = self.map_uri(endpoint, base_path, pq).map_err(uri_error)?;
            return Ok(Adapted { uri, body: renamed });
        };
        let path = pq.path();
        let rest = rest_of(base_path, path);
        let deployment =
            match rest {
                // Listing or fetching stored chat completions (GET) is not deployment-scoped.
                Some(rest) if *method == Method::POST && azure::is_deployment_scoped(rest) => {
                    // Boxed: reading a multipart body's `model` is a large future, and
                    // inline it would make every request's future (and its moves) larger.
                    let model = Box::pin(self.request_model(rest, body, &kind)).await?;
                    let deployment = classic.deployments.get(&model).ok_or_else(|| {
                        AdaptError::ModelNotMapped {
                            model: model.clone(),
                            upstream: self.name.clone(),
                        }
                    })?;
                    Some(deployment)
                }
                Some(_) => None,
                // The client speaks Azure's own paths: the deployment it names must be one the
                // operator configured.
                None => {
                    if let Some(named) = azure::named_deployment(&endpoint.url.path, path) {
                        if !classic.deployments.0.values().any(|d| d == named) {
                            return Err(AdaptError::DeploymentNotConfigured {
                                deployment: named.to_owned(),
                                upstream: self.name.clone(),
                            });
                        }
                    }
                    None
                }
            };
        let target = azure::classic_target(
            classic,
            &endpoint.url.path,
            path,
            rest,
            deployment,
            pq.query(),
        );
        let uri = self.uri(endpoint, target).map_err(uri_error)?;
        Ok(Adapted { uri, body: renamed })
    }

    /// `models`: the body with its `model` renamed, or `None` when no mapping applies (no
    /// model, an unmapped one, or a body that is not a JSON object: the provider judges it).
    fn rename(&self, body: &Bytes) -> Result<Option<Bytes>, AdaptError> {
        match model::find(body) {
            Ok(Some(field)) => Ok(self
                .models
                .get(&field.value)
                .map(|to| model::replace(body, field.span, to))),
            Err(error @ ModelError::Duplicate) => Err(AdaptError::Ambiguous {
                upstream: self.name.clone(),
                error,
            }),
            Ok(None) | Err(_) => Ok(None),
        }
    }

    /// The model a deployment-scoped request names, from a JSON or multipart body.
    async fn request_model(
        &self,
        endpoint: &str,
        body: Option<&Bytes>,
        kind: &BodyKind,
    ) -> Result<String, AdaptError> {
        let required = |detail: String| AdaptError::ModelRequired {
            upstream: self.name.clone(),
            endpoint: endpoint.to_owned(),
            detail,
        };
        let Some(body) = body else {
            return Err(required("the request has no body".to_owned()));
        };
        match kind {
            BodyKind::Json => match model::find(body) {
                Ok(Some(field)) => Ok(field.value),
                Ok(None) => Err(required("the body has no \"model\" field".to_owned())),
                Err(e) => Err(required(e.to_string())),
            },
            BodyKind::Multipart(boundary) => multipart_model(body, boundary)
                .await
                .map_err(required)?
                .ok_or_else(|| required("the form has no \"model\" field".to_owned())),
            BodyKind::Opaque => Err(required(
                "the body is compressed or neither JSON nor multipart/form-data".to_owned(),
            )),
        }
    }
}

/// Methods whose requests carry a body the adapters look at.
fn carries_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

fn body_kind(headers: &HeaderMap) -> BodyKind {
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"));
    if encoded {
        return BodyKind::Opaque;
    }
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        // The OpenAI API is JSON; clients that omit the type still send JSON.
        return BodyKind::Json;
    };
    // Compared without case and without a lowercased copy: this runs on every request.
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let ends_with_json = essence
        .len()
        .checked_sub("+json".len())
        .and_then(|at| essence.get(at..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case("+json"));
    if essence.eq_ignore_ascii_case("application/json") || ends_with_json {
        BodyKind::Json
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        multer::parse_boundary(content_type).map_or(BodyKind::Opaque, BodyKind::Multipart)
    } else {
        BodyKind::Opaque
    }
}

/// The text of the form's `model` field, if it has one; two are an error. The other parts
/// are skipped, not collected.
async fn multipart_model(body: &Bytes, boundary: &str) -> Result<Option<String>, String> {
    let chunk = body.clone();
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(chunk) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| format!("the multipart body cannot be read: {e}");
    let mut model = None;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() == Some("model") {
            let text = field.text().await.map_err(bad)?;
            if model.replace(text.trim().to_owned()).is_some() {
                // As with duplicate JSON keys: the provider might read the other one.
                return Err("the form has more than one \"model\" field".to_owned());
            }
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn body_kind_from_the_content_type_and_encoding() {
        let multipart = || BodyKind::Multipart("xyz".to_owned());
        let cases: &[(Option<&str>, Option<&str>, BodyKind)] = &[
            (None, None, BodyKind::Json),
            (Some("application/json"), None, BodyKind::Json),
            (
                Some("Application/JSON; charset=utf-8"),
                None,
                BodyKind::Json,
            ),
            (
                Some(" application/json ;charset=utf-8"),
                None,
                BodyKind::Json,
            ),
            (Some("application/merge-patch+json"), None, BodyKind::Json),
            (Some("application/VND.API+JSON"), None, BodyKind::Json),
            (Some("+json"), None, BodyKind::Json),
            (Some("json"), None, BodyKind::Opaque),
            (Some("application/jsonx"), None, BodyKind::Opaque),
            (Some("text/plain"), None, BodyKind::Opaque),
            (Some("multipart/form-data; boundary=xyz"), None, multipart()),
            (Some("Multipart/Form-Data; boundary=xyz"), None, multipart()),
            (Some("multipart/form-data"), None, BodyKind::Opaque),
            (Some("application/json"), Some("gzip"), BodyKind::Opaque),
            (Some("application/json"), Some(" Identity "), BodyKind::Json),
            (None, Some("br"), BodyKind::Opaque),
        ];
        for (content_type, encoding, want) in cases {
            let mut headers = HeaderMap::new();
            if let Some(t) = content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
            }
            if let Some(e) = encoding {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_str(e).unwrap());
            }
            assert_eq!(&body_kind(&headers), want, "{content_type:?} {encoding:?}");
        }
    }
}
