//! Azure OpenAI's classic deployments API: which endpoints are deployment-scoped, and the
//! upstream path and query for a request (`/openai/deployments/{d}/…?api-version=…`).

use crate::config::AzureClassic;

/// Endpoints (after the client-facing base path) that Azure serves per deployment.
const DEPLOYMENT_SCOPED: &[&str] = &[
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/audio/transcriptions",
    "/audio/translations",
    "/audio/speech",
    "/images/generations",
    "/images/edits",
];

/// Whether `rest` (the path after the client-facing base path) is a deployment-scoped call.
pub fn is_deployment_scoped(rest: &str) -> bool {
    DEPLOYMENT_SCOPED.contains(&rest)
}

/// The deployment a client names itself in Azure's own path form
/// (`{prefix}/deployments/{d}/…`, prefix being the upstream URL's path such as `/openai`).
pub fn named_deployment<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?.strip_prefix("/deployments/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// The upstream path-and-query for a classic-API request. `prefix` is the upstream URL's
/// path (e.g. `/openai`), `rest` the client path after the base path (`None` when the client
/// path is outside the base path and goes as it is, in `path`), `deployment` the deployment
/// for a scoped call. The client's own `api-version` is replaced by the configured one.
pub fn classic_target(
    classic: &AzureClassic,
    prefix: &str,
    path: &str,
    rest: Option<&str>,
    deployment: Option<&str>,
    query: Option<&str>,
) -> String {
    let mut out = String::with_capacity(prefix.len() + path.len() + 64);
    match (rest, deployment) {
        (Some(rest), Some(deployment)) => {
            out.push_str(prefix);
            out.push_str("/deployments/");
            out.push_str(deployment);
            out.push_str(rest);
        }
        (Some(rest), None) => {
            out.push_str(prefix);
            out.push_str(rest);
        }
        (None, _) => out.push_str(path),
    }
    if out.is_empty() {
        out.push('/');
    }
    out.push('?');
    if let Some(query) = query {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let name = pair.split('=').next().unwrap_or_default();
            // `api%2Dversion` is `api-version` to the upstream.
            let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            if !decoded.eq_ignore_ascii_case("api-version") {
                out.push_str(pair);
                out.push('&');
            }
        }
    }
    out.push_str("api-version=");
    out.push_str(&classic.api_version);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelMap;

    fn classic() -> AzureClassic {
        AzureClassic {
            api_version: "2024-10-21".to_owned(),
            deployments: ModelMap::default(),
        }
    }

    /// path, rest, deployment, query, expected target.
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
    );

    #[test]
    fn targets() {
        let c = classic();
        let cases: &[Case<'_>] = &[
            (
                "/v1/chat/completions",
                Some("/chat/completions"),
                Some("gpt4o-prod"),
                None,
                "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
            ),
            (
                "/v1/embeddings",
                Some("/embeddings"),
                Some("emb"),
                Some("api-version=2023-05-15&x=1"),
                "/openai/deployments/emb/embeddings?x=1&api-version=2024-10-21",
            ),
            (
                "/v1/files",
                Some("/files"),
                None,
                Some("purpose=batch"),
                "/openai/files?purpose=batch&api-version=2024-10-21",
            ),
            (
                "/v1/responses/resp_1",
                Some("/responses/resp_1"),
                None,
                Some("API-VERSION=old&api%2Dversion=2099-01-01&api%2dVersion=x"),
                "/openai/responses/resp_1?api-version=2024-10-21",
            ),
            (
                "/openai/deployments/d/chat/completions",
                None,
                None,
                Some("api-version=2024-02-01"),
                "/openai/deployments/d/chat/completions?api-version=2024-10-21",
            ),
        ];
        for (path, rest, deployment, query, want) in cases {
            assert_eq!(
                classic_target(&c, "/openai", path, *rest, *deployment, *query),
                *want,
                "{path}"
            );
        }
    }

    #[test]
    fn named_deployments() {
        let cases = [
            ("/openai/deployments/d1/chat/completions", Some("d1")),
            ("/openai/deployments/d1", Some("d1")),
            ("/openai/deployments/", None),
            ("/openai/files", None),
            ("/other/deployments/d1/x", None),
        ];
        for (path, want) in cases {
            assert_eq!(named_deployment("/openai", path), want, "{path}");
        }
    }

    #[test]
    fn scoped_endpoints() {
        for rest in DEPLOYMENT_SCOPED {
            assert!(is_deployment_scoped(rest));
        }
        for rest in ["/responses", "/files", "/chat/completions/x", "/models", ""] {
            assert!(!is_deployment_scoped(rest), "{rest}");
        }
    }
}
