//! Where a SigV4 upstream's AWS credentials come from: AWS's own provider chain (`aws-config`).
//!
//! Without a `profile` in the config: the default chain, as in the AWS SDKs — environment
//! variables, then the shared config and credentials files (profile `AWS_PROFILE` or
//! `default`: static keys, `credential_process`, SSO, assume-role), web identity (EKS IRSA),
//! ECS container credentials, EC2 instance metadata. With `profile = "NAME"`: that profile
//! only. Like the AWS CLI's explicit `--profile`, environment keys do not override it; unlike
//! the CLI, nothing else is tried after it either: an explicit choice that cannot be honoured
//! is a startup error, never a silent fallback to some other identity (an instance role).
//!
//! The chain's own HTTP calls (STS, SSO, ECS, IMDS) go through aws-smithy-http-client on
//! rustls with the *ring* provider.

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::Region;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use crate::config::SigV4Settings;

/// The provider chain for `settings`. Nothing is read until it is asked for credentials.
pub(super) async fn provider(settings: &SigV4Settings) -> SharedCredentialsProvider {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let region = Region::new(settings.region.clone());
    let conf = ProviderConfig::default()
        .with_http_client(http)
        .with_region(Some(region.clone()));
    match &settings.profile {
        Some(profile) => SharedCredentialsProvider::new(
            ProfileFileCredentialsProvider::builder()
                .configure(&conf)
                .profile_name(profile)
                .build(),
        ),
        None => SharedCredentialsProvider::new(
            DefaultCredentialsChain::builder()
                .configure(conf)
                .region(region)
                .build()
                .await,
        ),
    }
}

/// Where the chain for `settings` looks, for the error when it finds nothing. Reads the
/// environment as the chain will (only at start and refresh, never per request).
pub(super) fn looked_in(settings: &SigV4Settings) -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let credentials =
        var("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|| "~/.aws/credentials".to_owned());
    let config = var("AWS_CONFIG_FILE").unwrap_or_else(|| "~/.aws/config".to_owned());
    match &settings.profile {
        Some(profile) => {
            format!("profile {profile:?} (set in the config) of {credentials} and {config}")
        }
        None => {
            let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
            format!(
                "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), profile {profile:?} of {credentials} and {config}, web identity (AWS_WEB_IDENTITY_TOKEN_FILE), ECS container credentials and EC2 instance metadata"
            )
        }
    }
}
